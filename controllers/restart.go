package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=patch

// restartTargets rolls the pods of spec.rolloutRestartTargets after a rotation by setting their
// pod template annotation rolekeeper.io/restartedAt to the issue time. The value is the same for
// every attempt of one rotation, so repeating the patch does not restart twice. A missing target
// is reported, never an error: the rotation has already succeeded.
func (r *AssumedRoleReconciler) restartTargets(ctx context.Context, ar *rkv1.AssumedRole, issuedAt time.Time) *rkv1.RolloutRestartStatus {
	if len(ar.Spec.RolloutRestartTargets) == 0 {
		return nil
	}
	stamp := rfc3339(issuedAt)
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, rkv1.AnnotationRestartedAt, stamp)
	out := &rkv1.RolloutRestartStatus{Time: timePtr(issuedAt)}
	for _, t := range ar.Spec.RolloutRestartTargets {
		obj := workload(t.Kind)
		obj.SetNamespace(ar.Namespace)
		obj.SetName(t.Name)
		id := t.Kind + "/" + t.Name
		err := r.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
		switch {
		case err == nil:
			out.Restarted = append(out.Restarted, id)
		case apierrors.IsNotFound(err):
			out.NotFound = append(out.NotFound, id)
		default:
			out.Failed = append(out.Failed, id+": "+err.Error())
		}
	}
	if len(out.Restarted) > 0 {
		r.event(ar, corev1.EventTypeNormal, rkv1.ReasonRolloutRestarted, "Restart", "restarted %s after the rotation at %s", strings.Join(out.Restarted, ", "), stamp)
	}
	if len(out.NotFound)+len(out.Failed) > 0 {
		r.event(ar, corev1.EventTypeWarning, rkv1.ReasonRolloutRestarted, "Restart", "could not restart after the rotation at %s: %s", stamp, strings.Join(append(append([]string{}, out.NotFound...), out.Failed...), ", "))
	}
	return out
}

func workload(kind string) client.Object {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	default:
		return &appsv1.Deployment{}
	}
}

// restartNote is the part of Ready's message about the last rollout restart, when something
// went wrong with it.
func restartNote(st *rkv1.RolloutRestartStatus) string {
	if st == nil || len(st.NotFound)+len(st.Failed) == 0 {
		return ""
	}
	var parts []string
	if len(st.NotFound) > 0 {
		parts = append(parts, "not found: "+strings.Join(st.NotFound, ", "))
	}
	if len(st.Failed) > 0 {
		parts = append(parts, "failed: "+strings.Join(st.Failed, "; "))
	}
	return "; rollout restart after the last rotation " + strings.Join(parts, "; ")
}
