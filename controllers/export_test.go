package controllers

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// PatchStatus runs the reconciler's status write for ar, whose status the reconcile read as
// before; called says whether the reconcile called STS.
func (r *AssumedRoleReconciler) PatchStatus(ctx context.Context, ar *rkv1.AssumedRole, before rkv1.AssumedRoleStatus, called bool) error {
	return r.patchStatus(ctx, &scope{ar: ar, before: before, called: called})
}

// Remembers reports whether the reconciler still holds the issue time it last wrote for key,
// which it keeps only until its cache shows that issuance.
func (r *AssumedRoleReconciler) Remembers(key types.NamespacedName) bool {
	_, ok := r.written.Load(key)
	return ok
}

// SetupObservedWithManager sets the reconciler up as SetupWithManager does and calls done with
// the start time of each reconcile once it finishes: the tests' positive signal that the operator
// looked at an AssumedRole.
func (r *AssumedRoleReconciler) SetupObservedWithManager(ctx context.Context, mgr ctrl.Manager, done func(req reconcile.Request, started time.Time)) error {
	return r.setup(ctx, mgr, reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		started := time.Now()
		res, err := r.Reconcile(ctx, req)
		done(req, started)
		return res, err
	}))
}
