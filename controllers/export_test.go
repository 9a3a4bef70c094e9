package controllers

import (
	"context"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// PatchStatus runs the reconciler's status write for ar, whose status the reconcile read as
// before; called says whether the reconcile called STS.
func (r *AssumedRoleReconciler) PatchStatus(ctx context.Context, ar *rkv1.AssumedRole, before rkv1.AssumedRoleStatus, called bool) error {
	return r.patchStatus(ctx, &scope{ar: ar, before: before, called: called})
}
