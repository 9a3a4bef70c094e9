package access_test

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/access"
)

// Explain gives each policy's verdict in name order: whether it selects the namespace, the
// pattern that matched, the duration cap that refused, and whether it allows the request.
func TestExplain(t *testing.T) {
	policy := func(name string, spec rkv1.AssumedRolePolicySpec) rkv1.AssumedRolePolicy {
		return rkv1.AssumedRolePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	}
	policies := []rkv1.AssumedRolePolicy{
		policy("z-capped", rkv1.AssumedRolePolicySpec{Namespaces: []string{"team-a"}, AllowedRoleArns: []string{"arn:aws:iam::111122223333:role/*"}, MaxDurationSeconds: ptr.To[int32](900)}),
		policy("other-team", rkv1.AssumedRolePolicySpec{Namespaces: []string{"team-b"}, AllowedRoleArns: []string{"*"}}),
		policy("b-by-label", rkv1.AssumedRolePolicySpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
			AllowedRoleArns: []string{"arn:aws:iam::111122223333:role/reader-*", "arn:aws:iam::111122223333:role/app"}}),
		policy("a-root", rkv1.AssumedRolePolicySpec{Namespaces: []string{"team-a"}, AllowedRootTargets: []string{"4444*"}, AllowedTaskPolicies: []rkv1.RootTaskPolicy{rkv1.RootTaskPolicy("S3UnlockBucketPolicy")}}),
	}
	ns := access.Namespace{Name: "team-a", Labels: map[string]string{"team": "a"}}
	cases := map[string]struct {
		req  access.Request
		want string
	}{
		"role allowed by the second pattern of a label-selected policy": {
			access.Request{RoleArn: "arn:aws:iam::111122223333:role/app", DurationSeconds: 3600},
			"[{a-root true  false  false} {b-by-label true arn:aws:iam::111122223333:role/app false  true} {other-team false  false  false} {z-capped true arn:aws:iam::111122223333:role/* false caps sessions at 900 s (requested 3600 s) false}]",
		},
		"role refused by every selecting policy": {
			access.Request{RoleArn: "arn:aws:iam::999999999999:role/app", DurationSeconds: 900},
			"[{a-root true  false  false} {b-by-label true  false  false} {other-team false  false  false} {z-capped true  false  false}]",
		},
		"AssumeRoot with an allowed target and task policy": {
			access.Request{TargetPrincipal: "444455556666", TaskPolicy: "S3UnlockBucketPolicy", DurationSeconds: 900},
			"[{a-root true 4444* true  true} {b-by-label true  false  false} {other-team false  false  false} {z-capped true  false  false}]",
		},
		"AssumeRoot with a task policy not allowed": {
			access.Request{TargetPrincipal: "444455556666", TaskPolicy: "IAMDeleteRootUserCredentials", DurationSeconds: 900},
			"[{a-root true  false  false} {b-by-label true  false  false} {other-team false  false  false} {z-capped true  false  false}]",
		},
	}
	for name, c := range cases {
		got := access.Explain(policies, ns, c.req)
		if s := fmt.Sprint(got); s != c.want {
			t.Errorf("%s:\n got %s\nwant %s", name, s, c.want)
		}
		allowed := false
		for _, v := range got {
			allowed = allowed || v.Allows
		}
		if d := access.Evaluate(policies, ns, c.req); d.Allowed != allowed {
			t.Errorf("%s: Evaluate says allowed=%v, Explain %v", name, d.Allowed, allowed)
		}
	}
}
