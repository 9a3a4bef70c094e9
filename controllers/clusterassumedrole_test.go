package controllers_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	th "github.com/rolekeeper/rolekeeper/test/harness"
)

// A ClusterAssumedRole selecting 3 of 5 namespaces, one of them denied by policy; namespaces
// relabelled in and out; a foreign AssumedRole of the same name left alone.
func TestClusterAssumedRoleFanOut(t *testing.T) {
	h := newHarness(t, ststest.Options{})
	h.opts.RequireAccessPolicy = true
	h.clusterRoles = true
	const label = "rolekeeper.io.test/fan-out"
	in := map[string]string{label: "yes"}
	nsA, nsB, nsC := h.namespace("a", in), h.namespace("b", in), h.namespace("c", in)
	nsD, nsE := h.namespace("d", nil), h.namespace("e", nil)
	const role = "arn:aws:iam::111122223333:role/shared-reader"
	h.policy("fan-out", rkv1.AssumedRolePolicySpec{Namespaces: []string{nsA, nsB, nsD, nsE}, AllowedRoleArns: []string{role}})
	h.start()

	car := &rkv1.ClusterAssumedRole{
		ObjectMeta: metav1.ObjectMeta{Name: h.ns + "-reader"},
		Spec: rkv1.ClusterAssumedRoleSpec{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: in},
			Template: rkv1.AssumedRoleTemplate{
				Metadata: rkv1.TemplateMetadata{Labels: map[string]string{"team": "platform"}},
				Spec:     rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: role}, Secret: rkv1.SecretSpec{Name: "aws"}},
			},
		},
	}
	if err := k8s.Create(context.Background(), car); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), car) })
	name := car.Name

	status := func(t *testing.T, selected, ready int32, failing ...string) *rkv1.ClusterAssumedRole {
		t.Helper()
		cur := &rkv1.ClusterAssumedRole{}
		h.eventually(30*time.Second, fmt.Sprintf("status %d selected, %d ready, failing %v", selected, ready, failing), func() bool {
			if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, cur); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range cur.Status.Failures {
				got = append(got, f.Namespace+"/"+f.Reason)
			}
			st := cur.Status
			return st.ObservedGeneration == cur.Generation && st.SelectedNamespaces == selected && st.ReadyNamespaces == ready &&
				st.FailedNamespaces == int32(len(failing)) && reflect.DeepEqual(got, failing)
		})
		return cur
	}

	h.phase("3 of 5 selected, one of them not allowed by any policy", func(t *testing.T) {
		cur := status(t, 3, 2, nsC+"/"+rkv1.ReasonNotPermitted)
		if c := meta.FindStatusCondition(cur.Status.Conditions, rkv1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != rkv1.ReasonNamespacesFailing {
			t.Errorf("Ready %s/%s %q; want False/NamespacesFailing", c.Status, c.Reason, c.Message)
		}
		for _, ns := range []string{nsA, nsB} {
			ar := h.getIn(ns, name)
			if !metav1.IsControlledBy(ar, cur) || ar.Labels["team"] != "platform" || ar.Labels[rkv1.LabelClusterAssumedRole] != name {
				t.Errorf("%s: AssumedRole owners %v labels %v", ns, ar.OwnerReferences, ar.Labels)
			}
			if s := th.Secret(t, k8s, ns, "aws"); s == nil {
				t.Errorf("%s: no Secret", ns)
			}
		}
		for _, ns := range []string{nsD, nsE} {
			if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &rkv1.AssumedRole{}); !apierrors.IsNotFound(err) {
				t.Errorf("%s is not selected but has an AssumedRole (%v)", ns, err)
			}
		}
		// Each namespace has its own session, tagged with its own namespace; none for the denied one.
		assertSessions(t, h.sts, map[string]int{nsA: 1, nsB: 1, nsC: 0})
	})
	h.phase("a child edited by hand is put back to the template", func(t *testing.T) {
		// As kubectl apply would: the last-applied annotation, which the cache does not keep,
		// must survive the repair.
		const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
		h.changeIn(nsB, name, func(b *rkv1.AssumedRole) {
			b.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900)
			b.Annotations = map[string]string{lastApplied: `{"spec":{"assumeRole":{"durationSeconds":900}}}`}
		})
		h.eventually(20*time.Second, "the template restored in "+nsB, func() bool { return h.getIn(nsB, name).Spec.AssumeRole.DurationSeconds == nil })
		if got := h.getIn(nsB, name).Annotations[lastApplied]; got == "" {
			t.Error("repairing the AssumedRole removed its last-applied annotation")
		}
	})
	h.phase("namespaces relabelled in and out", func(t *testing.T) {
		relabel(t, nsD, in)
		status(t, 4, 3, nsC+"/"+rkv1.ReasonNotPermitted)
		relabel(t, nsA, nil)
		h.eventually(20*time.Second, "the AssumedRole of "+nsA+" deleted", func() bool {
			return apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKey{Namespace: nsA, Name: name}, &rkv1.AssumedRole{}))
		})
		status(t, 3, 2, nsC+"/"+rkv1.ReasonNotPermitted)
		assertSessions(t, h.sts, map[string]int{nsA: 1, nsC: 0, nsD: 1}) // B re-issued for the edit and the revert, racing the revert
	})
	h.phase("allowing the last namespace makes every selected one ready", func(t *testing.T) {
		p := &rkv1.AssumedRolePolicy{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: h.ns + "-fan-out"}, p); err != nil {
			t.Fatal(err)
		}
		p.Spec.Namespaces = append(p.Spec.Namespaces, nsC)
		if err := k8s.Update(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		cur := status(t, 3, 3)
		if c := meta.FindStatusCondition(cur.Status.Conditions, rkv1.ConditionReady); c.Status != metav1.ConditionTrue || c.Reason != rkv1.ReasonAllNamespacesReady {
			t.Errorf("Ready %s/%s %q; want True/AllNamespacesReady", c.Status, c.Reason, c.Message)
		}
	})
	h.phase("someone else's AssumedRole of the same name is reported and left untouched", func(t *testing.T) {
		foreign := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nsE},
			Spec: rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/shared-reader", DurationSeconds: ptr.To[int32](1800)}}}
		if err := k8s.Create(context.Background(), foreign); err != nil {
			t.Fatal(err)
		}
		relabel(t, nsE, in)
		status(t, 4, 4-1, nsE+"/"+rkv1.ReasonAssumedRoleConflict)
		got := h.getIn(nsE, name)
		if len(got.OwnerReferences) != 0 || got.Labels[rkv1.LabelClusterAssumedRole] != "" || *got.Spec.AssumeRole.DurationSeconds != 1800 || got.Generation != foreign.Generation {
			t.Errorf("the foreign AssumedRole was modified: owners %v labels %v spec %+v", got.OwnerReferences, got.Labels, got.Spec.AssumeRole)
		}
	})
}

// A selector the API server accepts but that cannot be parsed is reported, and nothing is created.
func TestClusterAssumedRoleInvalidSelector(t *testing.T) {
	h := newHarness(t, ststest.Options{})
	h.clusterRoles = true
	h.start()
	car := &rkv1.ClusterAssumedRole{
		ObjectMeta: metav1.ObjectMeta{Name: h.ns + "-bad"},
		Spec: rkv1.ClusterAssumedRoleSpec{
			NamespaceSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Near", Values: []string{"a"}}}},
			Template:          rkv1.AssumedRoleTemplate{Spec: rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/reader"}}},
		},
	}
	if err := k8s.Create(context.Background(), car); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), car) })
	h.eventually(20*time.Second, "InvalidSelector", func() bool {
		cur := &rkv1.ClusterAssumedRole{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(car), cur); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(cur.Status.Conditions, rkv1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == rkv1.ReasonInvalidSelector && strings.Contains(c.Message, "Near")
	})
	var list rkv1.AssumedRoleList
	if err := k8s.List(context.Background(), &list, client.MatchingLabels{rkv1.LabelClusterAssumedRole: car.Name}); err != nil || len(list.Items) != 0 {
		t.Errorf("AssumedRoles created from an invalid selector: %d (%v)", len(list.Items), err)
	}
}

// assertSessions checks the AssumeRole calls per kubernetes-namespace session tag.
func assertSessions(t *testing.T, srv *ststest.Server, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	for _, c := range srv.Calls() {
		if c.Action != "AssumeRole" || c.Code != "" {
			continue
		}
		for _, tag := range c.Tags {
			if tag.Key == "kubernetes-namespace" {
				got[tag.Value]++
			}
		}
	}
	for ns, n := range want {
		if got[ns] != n {
			t.Errorf("namespace %s: %d sessions tagged with it, want %d (all: %v)", ns, got[ns], n, got)
		}
	}
}
