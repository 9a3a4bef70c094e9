package controllers_test

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// The reconciler's status write on the API server: a reconcile that decided from a copy writes
// only on that copy's resourceVersion, and is refused once the object has moved on; a reconcile
// that called STS writes its outcome whatever the API server holds, and the outcome is the whole
// status even when its copy missed the last write (failedAttempts: 0 after a recovery sticks).
func TestStatusPatchOnTheAPIServer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	ctx := context.Background()
	r := &controllers.AssumedRoleReconciler{Client: k8s}
	ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: h.ns}, Spec: roleSpec("arn:aws:iam::111122223333:role/app", 900)}
	if err := k8s.Create(ctx, ar); err != nil {
		t.Fatal(err)
	}
	stale := ar.DeepCopy()

	t.Run("decided on the current copy: written", func(t *testing.T) {
		next := ar.DeepCopy()
		next.Status = rkv1.AssumedRoleStatus{SecretName: "app", FailedAttempts: 2, LastFailure: &rkv1.IssueFailure{Code: "Throttling", Retryable: true}}
		if err := r.PatchStatus(ctx, next, ar.Status, false); err != nil {
			t.Fatal(err)
		}
		if got := h.get("app").Status; got.FailedAttempts != 2 || got.LastFailure == nil {
			t.Fatalf("status %+v", got)
		}
	})
	t.Run("decided on a stale copy: refused", func(t *testing.T) {
		next := stale.DeepCopy()
		next.Status = rkv1.AssumedRoleStatus{SecretName: "app"}
		if err := r.PatchStatus(ctx, next, stale.Status, false); !apierrors.IsConflict(err) {
			t.Fatalf("got %v, want a conflict", err)
		}
		if got := h.get("app").Status; got.FailedAttempts != 2 {
			t.Errorf("a refused write changed the status: %+v", got)
		}
	})
	t.Run("called STS on a stale copy: the whole outcome is written", func(t *testing.T) {
		// The copy this reconcile read predates the failures: to it, failedAttempts was 0
		// before and is 0 after the successful call, so a difference would not mention it.
		next := stale.DeepCopy()
		next.Status = rkv1.AssumedRoleStatus{SecretName: "app", ObservedGeneration: 1}
		if err := r.PatchStatus(ctx, next, stale.Status, true); err != nil {
			t.Fatal(err)
		}
		got := h.get("app").Status
		if got.FailedAttempts != 0 || got.LastFailure != nil || got.SecretName != "app" || got.ObservedGeneration != 1 {
			t.Errorf("status %+v, want the outcome of the call alone: failures gone", got)
		}
	})
}
