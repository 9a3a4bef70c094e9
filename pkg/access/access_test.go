package access_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/access"
)

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "anything/at:all", true},
		{"arn:aws:iam::111122223333:role/team-a-*", "arn:aws:iam::111122223333:role/team-a-reader", true},
		{"arn:aws:iam::111122223333:role/team-a-*", "arn:aws:iam::111122223333:role/team-b-reader", false},
		{"arn:aws:iam::*:role/reader", "arn:aws:iam::444455556666:role/reader", true},
		{"arn:aws:iam::*:role/reader", "arn:aws:iam::444455556666:role/reader2", false},
		{"arn:aws:iam::111122223333:role/*", "arn:aws:iam::111122223333:role/path/to/x", true},
		{"4444????6666", "444455556666", true},
		{"4444????6666", "44445555666", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"a*b*c", "a-x-b-y-c", true},
		{"a*b*c", "a-x-c-y-b", false},
		{"**", "", true},
		{"", "", true},
		{"", "x", false},
	}
	for _, c := range cases {
		if got := access.Glob(c.pattern, c.s); got != c.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

func policy(name string, spec rkv1.AssumedRolePolicySpec) rkv1.AssumedRolePolicy {
	return rkv1.AssumedRolePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

func i32(v int32) *int32 { return &v }

func TestEvaluate(t *testing.T) {
	teamA := policy("team-a", rkv1.AssumedRolePolicySpec{
		Namespaces:         []string{"team-a"},
		AllowedRoleArns:    []string{"arn:aws:iam::111122223333:role/team-a-*"},
		MaxDurationSeconds: i32(3600),
	})
	byLabel := policy("by-label", rkv1.AssumedRolePolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"rolekeeper.io/tier": "platform"}},
		AllowedRoleArns:   []string{"arn:aws:iam::*:role/platform-reader"},
	})
	root := policy("root-ops", rkv1.AssumedRolePolicySpec{
		Namespaces:          []string{"ops"},
		AllowedRootTargets:  []string{"4444*"},
		AllowedTaskPolicies: []rkv1.RootTaskPolicy{rkv1.TaskPolicyS3UnlockBucketPolicy},
	})
	all := policy("all-namespaces", rkv1.AssumedRolePolicySpec{
		NamespaceSelector: &metav1.LabelSelector{},
		AllowedRoleArns:   []string{"arn:aws:iam::999999999999:role/shared"},
	})
	named := policy("team-c", rkv1.AssumedRolePolicySpec{
		Namespaces:              []string{"team-c"},
		AllowedRoleArns:         []string{"arn:aws:iam::111122223333:role/team-c-*"},
		AllowedSessionNames:     []string{"team-c.*"},
		AllowedSourceIdentities: []string{"ci-*"},
	})
	policies := []rkv1.AssumedRolePolicy{teamA, byLabel, root, all, named}
	ns := func(name string, labels map[string]string) access.Namespace {
		return access.Namespace{Name: name, Labels: labels}
	}
	role := func(arn string, d int32) access.Request { return access.Request{RoleArn: arn, DurationSeconds: d} }
	session := func(name, sourceIdentity string) access.Request {
		return access.Request{RoleArn: "arn:aws:iam::111122223333:role/team-c-deployer", DurationSeconds: 3600, SessionName: name, SourceIdentity: sourceIdentity}
	}
	rootReq := func(target string, tp rkv1.RootTaskPolicy) access.Request {
		return access.Request{TargetPrincipal: target, TaskPolicy: tp, DurationSeconds: 900}
	}

	cases := []struct {
		name   string
		ns     access.Namespace
		req    access.Request
		policy string // allowing policy, "" when denied
		msg    string // part of the denial message
	}{
		{"team-a role in team-a", ns("team-a", nil), role("arn:aws:iam::111122223333:role/team-a-reader", 3600), "team-a", ""},
		{"team-a role in team-b", ns("team-b", nil), role("arn:aws:iam::111122223333:role/team-a-reader", 3600), "", "none allows role arn:aws:iam::111122223333:role/team-a-reader"},
		{"team-b role in team-a", ns("team-a", nil), role("arn:aws:iam::111122223333:role/team-b-reader", 3600), "", "all-namespaces, team-a select namespace team-a but none allows"},
		{"over the duration cap", ns("team-a", nil), role("arn:aws:iam::111122223333:role/team-a-reader", 7200), "", "allowed in namespace team-a, but not as requested: team-a caps sessions at 3600 s (requested 7200 s)"},
		{"labelled namespace", ns("infra", map[string]string{"rolekeeper.io/tier": "platform"}), role("arn:aws:iam::444455556666:role/platform-reader", 43200), "by-label", ""},
		{"unlabelled namespace", ns("infra", nil), role("arn:aws:iam::444455556666:role/platform-reader", 900), "", "none allows"},
		{"shared role everywhere", ns("anything", nil), role("arn:aws:iam::999999999999:role/shared", 900), "all-namespaces", ""},
		{"allowed session name", ns("team-c", nil), session("team-c.deployer", ""), "team-c", ""},
		{"session name claimed from another team", ns("team-c", nil), session("admin", ""), "", "team-c allows session names team-c.* (requested admin)"},
		{"allowed source identity", ns("team-c", nil), session("team-c.deployer", "ci-main"), "team-c", ""},
		{"source identity claimed from elsewhere", ns("team-c", nil), session("team-c.deployer", "alice"), "", "team-c allows source identities ci-* (requested alice)"},
		{"session names unrestricted without the list", ns("team-a", nil), access.Request{RoleArn: "arn:aws:iam::111122223333:role/team-a-reader", DurationSeconds: 900, SessionName: "admin", SourceIdentity: "alice"}, "team-a", ""},
		{"root target and task allowed", ns("ops", nil), rootReq("444455556666", rkv1.TaskPolicyS3UnlockBucketPolicy), "root-ops", ""},
		{"root task not allowed", ns("ops", nil), rootReq("444455556666", rkv1.TaskPolicyIAMDeleteRootUserCredentials), "", "AssumeRoot on 444455556666 with task policy IAMDeleteRootUserCredentials"},
		{"root target not allowed", ns("ops", nil), rootReq("555555555555", rkv1.TaskPolicyS3UnlockBucketPolicy), "", "none allows AssumeRoot"},
		{"root never granted by a role-only policy", ns("team-a", nil), rootReq("444455556666", rkv1.TaskPolicyS3UnlockBucketPolicy), "", "none allows AssumeRoot"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := access.Evaluate(policies, c.ns, c.req)
			if d.Allowed != (c.policy != "") || d.Policy != c.policy {
				t.Fatalf("got %+v, want allowed by %q", d, c.policy)
			}
			if c.msg != "" && !strings.Contains(d.Message, c.msg) {
				t.Errorf("message %q lacks %q", d.Message, c.msg)
			}
		})
	}

	if d := access.Evaluate(nil, ns("team-a", nil), role("arn:aws:iam::111122223333:role/team-a-reader", 900)); d.Allowed || !strings.Contains(d.Message, "no AssumedRolePolicy selects namespace team-a") {
		t.Errorf("no policies: %+v", d)
	}
	bad := policy("bad-selector", rkv1.AssumedRolePolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Bogus"}}},
		AllowedRoleArns:   []string{"*"},
	})
	if d := access.Evaluate([]rkv1.AssumedRolePolicy{bad}, ns("team-a", nil), role("arn:aws:iam::1:role/x", 900)); d.Allowed {
		t.Error("an invalid selector selected a namespace")
	}
}

func FuzzGlobStarMatchesEverything(f *testing.F) {
	f.Add("arn:aws:iam::111122223333:role/x", "arn")
	f.Fuzz(func(t *testing.T, s, prefix string) {
		if !access.Glob("*", s) || !access.Glob(s, s) && !strings.ContainsAny(s, "*?") {
			t.Fatalf("%q", s)
		}
		if strings.ContainsAny(prefix, "*?") {
			return
		}
		if access.Glob(prefix+"*", s) != strings.HasPrefix(s, prefix) {
			t.Fatalf("prefix %q on %q", prefix, s)
		}
	})
}
