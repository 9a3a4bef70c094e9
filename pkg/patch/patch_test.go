package patch

import (
	"encoding/json"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

var t0 = metav1.NewTime(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))

func at(d time.Duration) *metav1.Time { t := metav1.NewTime(t0.Add(d)); return &t }

// object is an AssumedRole as the API server holds it: metadata with managed fields, a spec.
func object() *rkv1.AssumedRole {
	ar := &rkv1.AssumedRole{
		TypeMeta: metav1.TypeMeta{APIVersion: rkv1.GroupVersion.String(), Kind: "AssumedRole"},
		ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: "payments", UID: "6f1c2a8e-0b7d-4a53-9d1e-3f2b8c4d5e6f",
			ResourceVersion: "4711", Generation: 3, CreationTimestamp: t0, Labels: map[string]string{"team": "payments"}},
		Spec: rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/reader"}},
	}
	for _, m := range []string{"kubectl", "rolekeeper"} {
		ar.ManagedFields = append(ar.ManagedFields, metav1.ManagedFieldsEntry{Manager: m, Operation: metav1.ManagedFieldsOperationUpdate,
			APIVersion: rkv1.GroupVersion.String(), Time: &t0, FieldsType: "FieldsV1",
			FieldsV1: metav1.NewFieldsV1(`{"f:spec":{".":{},"f:assumeRole":{".":{},"f:roleArn":{}}},"f:metadata":{"f:labels":{".":{},"f:team":{}}}}`)})
	}
	return ar
}

func condition(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: 3, LastTransitionTime: t0}
}

func issued() rkv1.AssumedRoleStatus {
	size := int32(6)
	return rkv1.AssumedRoleStatus{
		ObservedGeneration: 3, SecretName: "reader", Expiration: at(time.Hour), RenewalTime: at(40 * time.Minute), LastIssuedTime: &t0,
		AssumedRoleUser:  &rkv1.AssumedRoleUser{Arn: "arn:aws:sts::111122223333:assumed-role/reader/payments.reader", AssumedRoleID: "AROAEXAMPLE:payments.reader"},
		PackedPolicySize: &size,
		Conditions: []metav1.Condition{
			condition(rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, "credentials in Secret reader are valid until 2026-11-23T11:00:00Z"),
			condition(rkv1.ConditionIssuing, metav1.ConditionFalse, rkv1.ReasonUpToDate, "credentials are current"),
			condition(rkv1.ConditionStalled, metav1.ConditionFalse, rkv1.ReasonUpToDate, ""),
		},
	}
}

func failed() rkv1.AssumedRoleStatus {
	st := issued()
	st.FailedAttempts = 2
	st.LastFailure = &rkv1.IssueFailure{Code: "Throttling", Message: "rate exceeded", Time: at(40 * time.Minute), Generation: 3, Retryable: true}
	st.RenewalTime = at(41 * time.Minute)
	st.Conditions[1] = condition(rkv1.ConditionIssuing, metav1.ConditionTrue, rkv1.ReasonRenewalDue, "attempt 2 failed with Throttling")
	return st
}

func restarted() rkv1.AssumedRoleStatus {
	st := issued()
	st.RolloutRestart = &rkv1.RolloutRestartStatus{Time: at(40 * time.Minute), Restarted: []string{"Deployment/api"}, NotFound: []string{"Deployment/gone"}}
	return st
}

// transitions are status changes a reconcile makes, including fields and nested fields removed.
func transitions() map[string][2]rkv1.AssumedRoleStatus {
	noID := issued()
	noID.AssumedRoleUser.AssumedRoleID = ""
	renewed := issued()
	renewed.LastIssuedTime, renewed.Expiration, renewed.RenewalTime = at(40*time.Minute), at(100*time.Minute), at(80*time.Minute)
	renewed.Conditions[0].Reason = rkv1.ReasonRenewed
	fewer := issued()
	fewer.RolloutRestart = &rkv1.RolloutRestartStatus{Time: at(41 * time.Minute), Restarted: []string{"Deployment/api"}}
	return map[string][2]rkv1.AssumedRoleStatus{
		"first issue":                 {{}, issued()},
		"renewal":                     {issued(), renewed},
		"failure":                     {issued(), failed()},
		"recovery clears the failure": {failed(), issued()},
		"nested field removed":        {issued(), noID},
		"restart record removed":      {restarted(), issued()},
		"restart list removed":        {restarted(), fewer},
		"status cleared":              {failed(), {}},
	}
}

// apply applies a merge patch to the object's JSON as the API server does, and decodes the result.
func apply(t *testing.T, obj *rkv1.AssumedRole, data []byte) *rkv1.AssumedRole {
	t.Helper()
	doc, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := jsonpatch.MergePatch(doc, data)
	if err != nil {
		t.Fatalf("applying %s: %v", data, err)
	}
	out := &rkv1.AssumedRole{}
	if err := json.Unmarshal(patched, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func data(t *testing.T, p client.Patch, obj client.Object) []byte {
	t.Helper()
	b, err := p.Data(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStatusPatchGivesTheStatusAfter: applied to the object as it was, the patch yields the status
// after and leaves the rest alone: the same object as client.MergeFrom's whole-object patch gives.
func TestStatusPatchGivesTheStatusAfter(t *testing.T) {
	for name, tr := range transitions() {
		t.Run(name, func(t *testing.T) {
			before, after := object(), object()
			before.Status, after.Status = tr[0], tr[1]
			got := apply(t, before, data(t, Status{Before: &before.Status, After: &after.Status}, after))
			if !equality.Semantic.DeepEqual(got.Status, after.Status) {
				t.Errorf("status after the patch:\n%+v\nwant\n%+v", got.Status, after.Status)
			}
			if !equality.Semantic.DeepEqual(got.ObjectMeta, before.ObjectMeta) || !equality.Semantic.DeepEqual(got.Spec, before.Spec) {
				t.Errorf("the patch changed more than the status: %s", data(t, Status{Before: &before.Status, After: &after.Status}, after))
			}
			reference := apply(t, before, data(t, client.MergeFrom(before), after))
			if !equality.Semantic.DeepEqual(got, reference) {
				t.Errorf("object after the patch:\n%+v\nclient.MergeFrom gives\n%+v", got, reference)
			}
		})
	}
}

// TestStatusPatchCarriesTheResourceVersion: with a resourceVersion the patch is conditional on it
// (the API server answers 409 Conflict otherwise); without one it carries no metadata at all.
func TestStatusPatchCarriesTheResourceVersion(t *testing.T) {
	before, after := issued(), failed()
	var locked, unlocked struct {
		Metadata *struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Status map[string]any `json:"status"`
	}
	if err := json.Unmarshal(data(t, Status{Before: &before, After: &after, ResourceVersion: "4711"}, nil), &locked); err != nil {
		t.Fatal(err)
	}
	if locked.Metadata == nil || locked.Metadata.ResourceVersion != "4711" {
		t.Errorf("locked patch metadata = %+v, want resourceVersion 4711", locked.Metadata)
	}
	if err := json.Unmarshal(data(t, Status{Before: &before, After: &after}, nil), &unlocked); err != nil {
		t.Fatal(err)
	}
	if unlocked.Metadata != nil {
		t.Errorf("unlocked patch carries metadata %+v", unlocked.Metadata)
	}
	for _, p := range []map[string]any{locked.Status, unlocked.Status} {
		if p["failedAttempts"] != float64(2) || p["lastFailure"] == nil || p["secretName"] != nil {
			t.Errorf("status patch %v: want the changed fields (failedAttempts, lastFailure) and not the unchanged (secretName)", p)
		}
	}
	if (Status{}).Type() != "application/merge-patch+json" {
		t.Errorf("patch type %q", Status{}.Type())
	}
}

// BenchmarkStatusPatch compares the patch of a first issuance computed from the status alone with
// client.MergeFrom's from the whole object, as the operator sends one per issuance.
func BenchmarkStatusPatch(b *testing.B) {
	before, after := object(), object()
	after.Status = issued()
	for _, bc := range []struct {
		name  string
		patch client.Patch
	}{
		{"status", Status{Before: &before.Status, After: &after.Status, ResourceVersion: before.ResourceVersion}},
		{"whole-object", client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.patch.Data(after); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// WholeStatus leaves exactly the status it carries, whatever status the object held: fields
// the writer never saw are gone, and an object without a status gets one.
func TestWholeStatusReplacesTheStatus(t *testing.T) {
	after := rkv1.AssumedRoleStatus{SecretName: "reader", ObservedGeneration: 3, Expiration: at(time.Hour)}
	for name, held := range map[string]*rkv1.AssumedRoleStatus{
		"a status with fields the writer never saw": {SecretName: "reader", FailedAttempts: 4, LastFailure: &rkv1.IssueFailure{Code: "Throttling"}},
		"no status yet": nil,
	} {
		t.Run(name, func(t *testing.T) {
			obj := object()
			obj.Status = rkv1.AssumedRoleStatus{}
			if held != nil {
				obj.Status = *held
			}
			doc, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			if held == nil {
				var m map[string]any
				_ = json.Unmarshal(doc, &m)
				delete(m, "status")
				doc, _ = json.Marshal(m)
			}
			data, err := WholeStatus{Status: &after}.Data(nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := jsonpatch.DecodePatch(data)
			if err != nil {
				t.Fatalf("not a JSON patch: %v", err)
			}
			out, err := p.Apply(doc)
			if err != nil {
				t.Fatal(err)
			}
			var got rkv1.AssumedRole
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(got.Status, after) {
				t.Errorf("status %+v, want %+v", got.Status, after)
			}
			if got.Spec.AssumeRole == nil || got.Name != obj.Name {
				t.Error("the patch touched more than the status")
			}
		})
	}
}
