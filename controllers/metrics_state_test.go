package controllers

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// The state collector reports Ready, Stalled and failed attempts per AssumedRole from what the
// reader holds, and nothing for objects it does not hold.
func TestStateCollectorReportsStalledAndFailedAttempts(t *testing.T) {
	conds := func(ready, stalled metav1.ConditionStatus) []metav1.Condition {
		return []metav1.Condition{
			{Type: rkv1.ConditionReady, Status: ready, Reason: "r"},
			{Type: rkv1.ConditionStalled, Status: stalled, Reason: "r"},
		}
	}
	healthy := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "healthy"},
		Status: rkv1.AssumedRoleStatus{Conditions: conds(metav1.ConditionTrue, metav1.ConditionFalse)}}
	denied := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "denied"},
		Status: rkv1.AssumedRoleStatus{Conditions: conds(metav1.ConditionFalse, metav1.ConditionTrue), FailedAttempts: 3}}
	reader := fake.NewClientBuilder().WithScheme(NewScheme()).WithObjects(healthy, denied).Build()
	reg := prometheus.NewPedanticRegistry()
	if err := NewMetrics(reader).Register(reg); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP rolekeeper_assumedrole_failed_attempts Failed issuance attempts since the AssumedRole's last success (status.failedAttempts).
# TYPE rolekeeper_assumedrole_failed_attempts gauge
rolekeeper_assumedrole_failed_attempts{name="denied",namespace="a"} 3
rolekeeper_assumedrole_failed_attempts{name="healthy",namespace="a"} 0
# HELP rolekeeper_assumedrole_ready 1 when the AssumedRole's Ready condition is True, else 0.
# TYPE rolekeeper_assumedrole_ready gauge
rolekeeper_assumedrole_ready{name="denied",namespace="a"} 0
rolekeeper_assumedrole_ready{name="healthy",namespace="a"} 1
# HELP rolekeeper_assumedrole_stalled 1 when the AssumedRole's Stalled condition is True (issuing waits for a change to the spec, a policy or AWS), else 0.
# TYPE rolekeeper_assumedrole_stalled gauge
rolekeeper_assumedrole_stalled{name="denied",namespace="a"} 1
rolekeeper_assumedrole_stalled{name="healthy",namespace="a"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "rolekeeper_assumedrole_ready", "rolekeeper_assumedrole_stalled", "rolekeeper_assumedrole_failed_attempts"); err != nil {
		t.Error(err)
	}
}
