package controllers_test

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/patch"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// TestStatusPatchOnTheAPIServer: the status patch the reconciler sends, with the metadata-only
// target it sends it on, writes the status; with a resourceVersion it is refused once the object
// has moved on (a reconcile that decided from a stale copy), without one it applies anyway (a
// reconcile that called STS).
func TestStatusPatchOnTheAPIServer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	ctx := context.Background()
	ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: h.ns}, Spec: roleSpec("arn:aws:iam::111122223333:role/app", 900)}
	if err := k8s.Create(ctx, ar); err != nil {
		t.Fatal(err)
	}
	target := func() *metav1.PartialObjectMetadata {
		m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "app"}}
		m.SetGroupVersionKind(rkv1.GroupVersion.WithKind("AssumedRole"))
		return m
	}
	stale := ar.ResourceVersion
	first := rkv1.AssumedRoleStatus{SecretName: "app", FailedAttempts: 1}
	if err := k8s.Status().Patch(ctx, target(), patch.Status{Before: &ar.Status, After: &first, ResourceVersion: stale}); err != nil {
		t.Fatalf("patch at the current resourceVersion: %v", err)
	}
	second := rkv1.AssumedRoleStatus{SecretName: "app"}
	err := k8s.Status().Patch(ctx, target(), patch.Status{Before: &first, After: &second, ResourceVersion: stale})
	if !apierrors.IsConflict(err) {
		t.Fatalf("patch at a stale resourceVersion: %v, want a conflict", err)
	}
	if got := h.get("app").Status; got.FailedAttempts != 1 {
		t.Errorf("a refused patch changed the status: %+v", got)
	}
	if err := k8s.Status().Patch(ctx, target(), patch.Status{Before: &first, After: &second}); err != nil {
		t.Fatalf("unconditional patch: %v", err)
	}
	got := &rkv1.AssumedRole{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(ar), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.SecretName != "app" || got.Status.FailedAttempts != 0 {
		t.Errorf("status after the patches: %+v, want secretName app and failedAttempts removed", got.Status)
	}
}
