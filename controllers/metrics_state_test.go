package controllers

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

// copyCountingClient records, for each List and Get, whether it asked the cache for shared
// objects.
type copyCountingClient struct {
	client.Client
	copied, shared int
}

func (c *copyCountingClient) count(unsafe *bool) {
	if unsafe != nil && *unsafe {
		c.shared++
	} else {
		c.copied++
	}
}

func (c *copyCountingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.count((&client.GetOptions{}).ApplyOptions(opts).UnsafeDisableDeepCopy)
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c *copyCountingClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.count((&client.ListOptions{}).ApplyOptions(opts).UnsafeDisableDeepCopy)
	return c.Client.List(ctx, list, opts...)
}

// The lists that only read names or status (a scrape, the AssumedRoles a policy, namespace or
// chain source event re-queues) take the cache's objects without copying each: with thousands
// of AssumedRoles a copy of every one per scrape or per event is a burst of garbage the size of
// the cache.
func TestReadOnlyListsTakeNoCopies(t *testing.T) {
	chained := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "chained"},
		Spec: rkv1.AssumedRoleSpec{Source: &rkv1.CredentialSource{AssumedRoleRef: rkv1.LocalAssumedRoleReference{Name: "base"}}}}
	r := &AssumedRoleReconciler{Options: Options{RequireAccessPolicy: true}}
	fc := fake.NewClientBuilder().WithScheme(NewScheme()).WithObjects(chained).
		WithIndex(&rkv1.AssumedRole{}, sourceIndex, r.indexSource).Build()
	r.indexSource(chained) // as the cache does when it takes chained in; the fake client indexes only when it lists
	c := &copyCountingClient{Client: fc}
	r.Client = c
	reg := prometheus.NewPedanticRegistry()
	if err := NewMetrics(c).Register(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := r.dependentsOf(ctx, "a", "base"); len(got) != 1 || got[0].Name != "chained" {
		t.Fatalf("dependents of base: %v, want a/chained", got)
	}
	if got := r.allAssumedRoles(ctx, nil); len(got) != 1 {
		t.Fatalf("after a policy change: %v, want a/chained", got)
	}
	if got := r.assumedRolesIn(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}}); len(got) != 1 {
		t.Fatalf("after a namespace change: %v, want a/chained", got)
	}
	if c.copied != 0 || c.shared != 4 {
		t.Errorf("%d lists copied the objects and %d took them shared, want 0 and 4", c.copied, c.shared)
	}
}

// While no AssumedRole chains from another, an event asks for no list of dependents: the
// answer is none. The first chained AssumedRole the cache indexes turns the lists on, and its
// source's events then find it. (The envtest chaining tests show the informer's index marks
// it: a dependent there issues right after its source rotates.)
func TestDependentsListedOnlyOnceChainsExist(t *testing.T) {
	plain := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "base"},
		Spec: rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/base"}}}
	r := &AssumedRoleReconciler{}
	fc := fake.NewClientBuilder().WithScheme(NewScheme()).WithObjects(plain).
		WithIndex(&rkv1.AssumedRole{}, sourceIndex, r.indexSource).Build()
	c := &copyCountingClient{Client: fc}
	r.Client = c
	ctx := context.Background()
	if got := r.dependentsOf(ctx, "a", "base"); len(got) != 0 || c.copied+c.shared != 0 {
		t.Fatalf("without chains: dependents %v after %d lists, want none after none", got, c.copied+c.shared)
	}
	chained := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "chained"},
		Spec: rkv1.AssumedRoleSpec{Source: &rkv1.CredentialSource{AssumedRoleRef: rkv1.LocalAssumedRoleReference{Name: "base"}}}}
	if err := c.Create(ctx, chained); err != nil {
		t.Fatal(err)
	}
	if got := r.indexSource(plain); got != nil {
		t.Fatalf("index of an AssumedRole without a source: %v", got)
	}
	if got := r.indexSource(chained); len(got) != 1 || got[0] != "base" {
		t.Fatalf("index of a/chained: %v, want base", got)
	}
	if got := r.dependentsOf(ctx, "a", "base"); len(got) != 1 || got[0].Name != "chained" || c.shared != 1 {
		t.Fatalf("with a chain: dependents %v after %d lists, want a/chained after one", got, c.shared)
	}
}

// The access check, asked on every reconcile, reads the policies and the namespace without a
// copy of each.
func TestAccessCheckTakesNoCopies(t *testing.T) {
	ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "reader"},
		Spec: rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/reader"}}}
	policy := &rkv1.AssumedRolePolicy{ObjectMeta: metav1.ObjectMeta{Name: "team-a"},
		Spec: rkv1.AssumedRolePolicySpec{Namespaces: []string{"a"}, AllowedRoleArns: []string{"arn:aws:iam::111122223333:role/*"}}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"team": "a"}}}
	c := &copyCountingClient{Client: fake.NewClientBuilder().WithScheme(NewScheme()).WithObjects(ar, policy, ns).Build()}
	r := &AssumedRoleReconciler{Client: c, Options: Options{RequireAccessPolicy: true}}
	if o := r.checkAccess(context.Background(), &scope{ar: ar}); !o.next || o.err != nil {
		t.Fatalf("a request the policy allows: %+v", o)
	}
	if c.copied != 0 || c.shared != 2 {
		t.Errorf("%d reads copied the objects and %d took them shared, want 0 and 2", c.copied, c.shared)
	}
}
