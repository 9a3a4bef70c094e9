package controllers

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// maxListedFailures bounds status.failures, so a selector over thousands of namespaces cannot
// grow the object without limit; status.failedNamespaces still counts them all.
const maxListedFailures = 32

// namespaceCounts is how the AssumedRoles of a ClusterAssumedRole are doing, namespace by
// namespace.
type namespaceCounts struct {
	selected, ready, pending int32
	failures                 []rkv1.NamespaceFailure
}

// add counts the AssumedRole of namespace ns: ready, failing (stalled or failing to issue) or
// pending (not reconciled at its generation yet, or waiting, say for a chain's source).
func (c *namespaceCounts) add(ns string, ar *rkv1.AssumedRole) {
	ready := meta.FindStatusCondition(ar.Status.Conditions, rkv1.ConditionReady)
	switch {
	case ready == nil || ready.ObservedGeneration != ar.Generation:
		c.pending++
	case ready.Status == metav1.ConditionTrue:
		c.ready++
	case meta.IsStatusConditionTrue(ar.Status.Conditions, rkv1.ConditionStalled) || ar.Status.FailedAttempts > 0:
		c.failed(rkv1.NamespaceFailure{Namespace: ns, Reason: ready.Reason, Message: ready.Message})
	default:
		c.pending++
	}
}

func (c *namespaceCounts) failed(f rkv1.NamespaceFailure) { c.failures = append(c.failures, f) }

// setClusterStatus records the counts, the first failures, and a Ready condition that names the
// first failing namespaces.
func setClusterStatus(car *rkv1.ClusterAssumedRole, c namespaceCounts) {
	st := &car.Status
	st.ObservedGeneration = car.Generation
	st.SelectedNamespaces, st.ReadyNamespaces, st.FailedNamespaces = c.selected, c.ready, int32(len(c.failures)) //nolint:gosec // a namespace count fits
	st.Failures = nil
	if len(c.failures) > 0 {
		st.Failures = c.failures[:min(len(c.failures), maxListedFailures)]
	}
	switch {
	case len(c.failures) > 0:
		names := make([]string, 0, 3)
		for _, f := range c.failures[:min(len(c.failures), 3)] {
			names = append(names, f.Namespace+" ("+f.Reason+")")
		}
		more := ""
		if len(c.failures) > 3 {
			more = fmt.Sprintf(" and %d more", len(c.failures)-3)
		}
		setClusterReady(car, metav1.ConditionFalse, rkv1.ReasonNamespacesFailing, fmt.Sprintf("%d of %d namespaces ready; failing: %s%s", c.ready, c.selected, strings.Join(names, ", "), more))
	case c.pending > 0:
		setClusterReady(car, metav1.ConditionFalse, rkv1.ReasonNamespacesPending, fmt.Sprintf("%d of %d namespaces ready; %d issuing", c.ready, c.selected, c.pending))
	default:
		setClusterReady(car, metav1.ConditionTrue, rkv1.ReasonAllNamespacesReady, fmt.Sprintf("%d of %d namespaces ready", c.ready, c.selected))
	}
}

func setClusterReady(car *rkv1.ClusterAssumedRole, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&car.Status.Conditions, metav1.Condition{
		Type: rkv1.ConditionReady, Status: status, Reason: reason, Message: message, ObservedGeneration: car.Generation,
	})
}
