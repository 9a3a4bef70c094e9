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

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;patch

// restartTargets rolls the pods of spec.rolloutRestartTargets after a rotation by setting their
// pod template annotation rolekeeper.io/restartedAt to the issue time. The value is the same for
// every attempt of one rotation, so repeating the patch does not restart twice. Whoever may edit
// the AssumedRole chooses the targets, and the restart is done with the operator's rights, so
// only workloads whose pod template uses the Secret are restarted: the others are skipped and
// reported. A missing target is reported, never an error: the rotation has already succeeded.
func (r *AssumedRoleReconciler) restartTargets(ctx context.Context, ar *rkv1.AssumedRole, issuedAt time.Time) *rkv1.RolloutRestartStatus {
	if len(ar.Spec.RolloutRestartTargets) == 0 {
		return nil
	}
	stamp := rfc3339(issuedAt)
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, rkv1.AnnotationRestartedAt, stamp)
	out := &rkv1.RolloutRestartStatus{Time: timePtr(issuedAt)}
	secret := secretName(ar)
	for _, t := range ar.Spec.RolloutRestartTargets {
		obj := workload(t.Kind)
		key := client.ObjectKey{Namespace: ar.Namespace, Name: t.Name}
		id := t.Kind + "/" + t.Name
		// Read past the cache: the operator does not watch workloads, and a few reads per
		// rotation cost less than caching every workload of the cluster.
		err := r.APIReader.Get(ctx, key, obj)
		if err == nil && !usesSecret(podSpec(obj), secret) {
			out.Skipped = append(out.Skipped, id)
			continue
		}
		if err == nil {
			err = r.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
		}
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
	// One warning for everything that went wrong: events of one kind about one object are
	// folded into a series that keeps only the first message.
	var problems []string
	if len(out.NotFound)+len(out.Failed) > 0 {
		problems = append(problems, "could not restart "+strings.Join(append(append([]string{}, out.NotFound...), out.Failed...), ", "))
	}
	if len(out.Skipped) > 0 {
		problems = append(problems, fmt.Sprintf("did not restart %s: their pod templates do not use Secret %s (a target must mount it or read it into the environment)", strings.Join(out.Skipped, ", "), secret))
	}
	if len(problems) > 0 {
		r.event(ar, corev1.EventTypeWarning, rkv1.ReasonRolloutRestarted, "Restart", "after the rotation at %s: %s", stamp, strings.Join(problems, "; "))
	}
	return out
}

// podSpec is the pod template of a workload.
func podSpec(o client.Object) *corev1.PodSpec {
	switch o := o.(type) {
	case *appsv1.StatefulSet:
		return &o.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &o.Spec.Template.Spec
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec
	}
	return &corev1.PodSpec{}
}

// usesSecret reports whether pods of spec read Secret name: as a volume, in a projected volume,
// with envFrom or with an env secretKeyRef, in any container or init container.
func usesSecret(spec *corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == name {
					return true
				}
			}
		}
	}
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == name {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true
			}
		}
	}
	return false
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
	if st == nil || len(st.NotFound)+len(st.Failed)+len(st.Skipped) == 0 {
		return ""
	}
	var parts []string
	if len(st.Skipped) > 0 {
		parts = append(parts, "skipped (their pods do not use the Secret): "+strings.Join(st.Skipped, ", "))
	}
	if len(st.NotFound) > 0 {
		parts = append(parts, "not found: "+strings.Join(st.NotFound, ", "))
	}
	if len(st.Failed) > 0 {
		parts = append(parts, "failed: "+strings.Join(st.Failed, "; "))
	}
	return "; rollout restart after the last rotation " + strings.Join(parts, "; ")
}
