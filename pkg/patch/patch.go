// Package patch builds the status patches the controllers send to the API server.
package patch

import (
	"encoding/json"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Status is a JSON merge patch of an object's status alone, computed from the status before and
// after a reconcile. client.MergeFrom computes the same patch from the whole object: it marshals
// and diffs metadata (managed fields included) and spec, which a status write never changes, on
// every issuance. With a ResourceVersion the patch carries it, and the API server applies it only
// to that version of the object (optimistic locking); without one it applies to the current
// version.
type Status struct {
	Before, After   any // the status structs (or pointers to them), before and after
	ResourceVersion string
}

var _ client.Patch = Status{}

// Type is a JSON merge patch (RFC 7386).
func (Status) Type() types.PatchType { return types.MergePatchType }

// Data is the patch: {"metadata":{"resourceVersion":...},"status":{...changed fields...}}. A field
// set before and unset after is null, so the API server removes it; lists are replaced whole.
func (p Status) Data(client.Object) ([]byte, error) {
	before, err := json.Marshal(p.Before)
	if err != nil {
		return nil, fmt.Errorf("status before: %w", err)
	}
	after, err := json.Marshal(p.After)
	if err != nil {
		return nil, fmt.Errorf("status after: %w", err)
	}
	diff, err := jsonpatch.CreateMergePatch(before, after)
	if err != nil {
		return nil, fmt.Errorf("status patch: %w", err)
	}
	out := make([]byte, 0, len(diff)+len(p.ResourceVersion)+48)
	out = append(out, '{')
	if p.ResourceVersion != "" {
		rv, err := json.Marshal(p.ResourceVersion)
		if err != nil {
			return nil, err
		}
		out = append(out, `"metadata":{"resourceVersion":`...)
		out = append(out, rv...)
		out = append(out, "},"...)
	}
	out = append(out, `"status":`...)
	out = append(out, diff...)
	return append(out, '}'), nil
}

// WholeStatus replaces an object's status with Status, whatever the API server holds: a JSON
// patch (RFC 6902) that adds /status, which replaces the member when it exists. It is for a
// writer that knows the whole status and may hold a stale copy of it, so a difference computed
// against that copy could leave fields of a write it has not seen. It carries no
// resourceVersion and applies to the current object.
type WholeStatus struct {
	Status any // the status struct (or a pointer to it)
}

var _ client.Patch = WholeStatus{}

// Type is a JSON patch.
func (WholeStatus) Type() types.PatchType { return types.JSONPatchType }

// Data is [{"op":"add","path":"/status","value":<status>}].
func (p WholeStatus) Data(client.Object) ([]byte, error) {
	value, err := json.Marshal(p.Status)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	out := make([]byte, 0, len(value)+40)
	out = append(out, `[{"op":"add","path":"/status","value":`...)
	out = append(out, value...)
	return append(out, "}]"...), nil
}
