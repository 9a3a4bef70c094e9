package controllers

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/renewal"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

// maxChainDepth bounds how far a chain of source references is followed looking for a cycle.
const maxChainDepth = 16

// resolveSource loads the credentials of spec.source.assumedRoleRef (role chaining). It waits
// (SourceNotReady) while the source has no credentials fit to sign with, and refuses chains that
// loop back or whose sessions AWS would refuse. Nothing is read when nothing is due, so a steady
// chain costs no extra work.
func (r *AssumedRoleReconciler) resolveSource(ctx context.Context, s *scope) outcome {
	if s.ar.Spec.Source == nil {
		return proceed()
	}
	links, cycle, err := r.chain(ctx, s.ar)
	if err != nil {
		return failed(err)
	}
	if cycle != "" {
		return stalled(rkv1.ReasonInvalidSpec, "spec.source forms a cycle: "+cycle+"; break the chain")
	}
	ref := s.ar.Spec.Source.AssumedRoleRef.Name
	if len(links) == 0 {
		// Its creation re-queues this AssumedRole.
		return waiting(rkv1.ReasonSourceNotReady, fmt.Sprintf("source AssumedRole %s does not exist in namespace %s", ref, s.ar.Namespace))
	}
	src := links[0]
	if src.Spec.Secret.ECR != nil {
		return stalled(rkv1.ReasonInvalidSpec, fmt.Sprintf("source AssumedRole %s writes an image-pull Secret, which holds no AWS credentials; chain from an AssumedRole with the default Secret type", ref))
	}
	if msg := r.inheritedConflict(s, links); msg != "" {
		return stalled(rkv1.ReasonInvalidSpec, msg)
	}
	creds, why, err := r.sourceCredentials(ctx, src)
	if err != nil {
		return failed(err)
	}
	if why != "" {
		// The source's next issuance changes its Secret, which re-queues this AssumedRole.
		return waiting(rkv1.ReasonSourceNotReady, fmt.Sprintf("source AssumedRole %s %s", ref, why))
	}
	s.source = creds
	return proceed()
}

// chain follows spec.source from ar: the AssumedRoles it names, the direct source first, as far
// as they exist. cycle describes a loop back to an AssumedRole already on the chain.
func (r *AssumedRoleReconciler) chain(ctx context.Context, ar *rkv1.AssumedRole) (links []*rkv1.AssumedRole, cycle string, err error) {
	names := []string{ar.Name}
	name := ar.Spec.Source.AssumedRoleRef.Name
	for range maxChainDepth {
		for _, seen := range names {
			if seen == name {
				return links, strings.Join(names, " -> ") + " -> " + name, nil
			}
		}
		src := &rkv1.AssumedRole{}
		err := r.Get(ctx, client.ObjectKey{Namespace: ar.Namespace, Name: name}, src)
		if apierrors.IsNotFound(err) {
			return links, "", nil // a missing link cannot loop; reported if it is the direct source
		}
		if err != nil {
			return nil, "", err
		}
		links = append(links, src)
		if src.Spec.Source == nil {
			return links, "", nil
		}
		names = append(names, name)
		name = src.Spec.Source.AssumedRoleRef.Name
	}
	return links, "", nil
}

// inheritedConflict explains why AWS would refuse this request signed by the source's session:
// it sets a tag that the source passes on as transitive with another value (AWS lets no later
// session in a chain change a transitive tag; that the same value is accepted is inferred from
// AWS's wording, "override"). kubernetes-name, which every AssumedRole sets to its own name, is
// the usual case: marked transitive on a source, it makes every chain from it fail.
func (r *AssumedRoleReconciler) inheritedConflict(s *scope, links []*rkv1.AssumedRole) string {
	if s.req.role == nil {
		return ""
	}
	inherited := r.inheritedTags(links)
	for _, t := range s.req.role.Tags {
		in, ok := inherited[strings.ToLower(t.Key)]
		if !ok || in.value == t.Value {
			continue
		}
		fix := fmt.Sprintf("remove %s from the transitiveTagKeys of AssumedRole %s", in.key, in.from)
		if !isOperatorTag(t.Key) {
			fix += " or give this tag another key"
		}
		return fmt.Sprintf("this AssumedRole sets session tag %s=%s, but AssumedRole %s passes %s=%s on as a transitive tag to every session chained from it, and AWS refuses to change a transitive tag: %s",
			t.Key, t.Value, in.from, in.key, in.value, fix)
	}
	return ""
}

// inheritedTag is a transitive tag a chain passes on, and the AssumedRole that set it.
type inheritedTag struct{ key, value, from string }

// inheritedTags are the transitive tags the direct source's sessions carry, by lower-case key:
// the tags each link marks transitive, on top of those its own source passes on (which no link
// can change, so the farthest link's value stands).
func (r *AssumedRoleReconciler) inheritedTags(links []*rkv1.AssumedRole) map[string]inheritedTag {
	out := map[string]inheritedTag{}
	for i := len(links) - 1; i >= 0; i-- {
		req, err := buildRequest(links[i], r.Options)
		if err != nil || req.role == nil {
			continue
		}
		transitive := map[string]bool{}
		for _, k := range req.role.TransitiveTagKeys {
			transitive[strings.ToLower(k)] = true
		}
		for _, t := range req.role.Tags {
			k := strings.ToLower(t.Key)
			if _, set := out[k]; transitive[k] && !set {
				out[k] = inheritedTag{key: t.Key, value: t.Value, from: links[i].Name}
			}
		}
	}
	return out
}

func isOperatorTag(key string) bool {
	switch strings.ToLower(key) {
	case TagNamespace, TagName, TagCluster:
		return true
	}
	return false
}

// sourceCredentials reads the current credentials of a source AssumedRole from its Secret. They
// are used only when the Secret is the source's own and was issued for the source's current
// spec: when the source is Ready, or not Ready only because its latest renewal failed while
// those credentials are still valid. They are never used in their last moments (the margin the
// source itself renews in at the latest): a session signed with them could reach AWS after they
// expired. why says what the chain waits for; "" when the credentials can be used.
func (r *AssumedRoleReconciler) sourceCredentials(ctx context.Context, src *rkv1.AssumedRole) (*sts.Credentials, string, error) {
	ready := meta.FindStatusCondition(src.Status.Conditions, rkv1.ConditionReady)
	failing := ready != nil && ready.Status == metav1.ConditionFalse && failedIssuance(ready.Reason)
	if ready == nil || (ready.Status != metav1.ConditionTrue && !failing) {
		return nil, "has no valid credentials yet", nil
	}
	// Read past the cache, which keeps no credential values.
	secret, err := r.readSecret(ctx, src)
	if err != nil {
		return nil, "", err
	}
	if secret == nil {
		return nil, "has no Secret yet", nil
	}
	in, complete := secretdata.Credentials(secret.Data)
	if !metav1.IsControlledBy(secret, src) || !complete {
		return nil, "has no valid credentials yet", nil
	}
	stamp, _ := secretdata.ParseStamp(secret.Annotations)
	if failing {
		// A source whose request cannot be built has no current credentials; its own status says why.
		if req, err := buildRequest(src, r.Options); err != nil || stamp.RequestHash != req.hash {
			return nil, "is failing, and its Secret holds credentials for an earlier spec", nil //nolint:nilerr // reported as a wait, not an error
		}
	}
	if last := renewal.LastUsable(stamp.IssuedAt, in.Expiration); !r.Clock.Now().Before(last) {
		return nil, fmt.Sprintf("has credentials that expire at %s, too soon to sign with: waiting for it to rotate", rfc3339(in.Expiration)), nil
	}
	return signingCredentials(in), "", nil
}

// failedIssuance reports whether a Ready reason says only that the latest issuance failed at AWS.
func failedIssuance(reason string) bool {
	switch reason {
	case rkv1.ReasonIssueFailed, rkv1.ReasonRegionUnknown, rkv1.ReasonTransitiveTagConflict:
		return true
	}
	return false
}
