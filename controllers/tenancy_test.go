package controllers_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	th "github.com/rolekeeper/rolekeeper/test/harness"
)

func roleSpec(arn string, duration int32) rkv1.AssumedRoleSpec {
	return rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: arn, DurationSeconds: ptr.To(duration)}}
}

func rootSpec(target string, task rkv1.RootTaskPolicy) rkv1.AssumedRoleSpec {
	return rkv1.AssumedRoleSpec{AssumeRoot: &rkv1.AssumeRootSpec{TargetPrincipal: target, TaskPolicy: task}}
}

// callsFor counts the STS calls made for one AssumedRole: AssumeRole calls carry its session name
// (<namespace>.<name>); AssumeRoot calls are matched by target.
func callsFor(srv *ststest.Server, ns, name, rootTarget string) int {
	all := srv.Calls()
	n := th.CallsFor(all, "", ns, name)
	for _, c := range all {
		if rootTarget != "" && c.Action == "AssumeRoot" && c.TargetPrincipal == rootTarget && c.SessionName != ns+"."+name {
			n++
		}
	}
	return n
}

// Namespaces × policies × requests: every allowed request is issued with exactly one STS call,
// every denied one is NotPermitted with none.
func TestAccessPolicyTable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.opts.RequireAccessPolicy = true
	tier := h.ns + "-tier"
	teamA := h.namespace("team-a", nil)
	teamB := h.namespace("team-b", nil)
	platform := h.namespace("platform", map[string]string{tier: "platform"})
	h.policy("team-a", rkv1.AssumedRolePolicySpec{Namespaces: []string{teamA}, AllowedRoleArns: []string{"arn:aws:iam::111122223333:role/team-a-*"}, MaxDurationSeconds: ptr.To[int32](3600)})
	h.policy("platform", rkv1.AssumedRolePolicySpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{tier: "platform"}}, AllowedRoleArns: []string{"arn:aws:iam::*:role/platform-*"}})
	h.policy("root", rkv1.AssumedRolePolicySpec{Namespaces: []string{platform}, AllowedRootTargets: []string{"4444*"}, AllowedTaskPolicies: []rkv1.RootTaskPolicy{rkv1.TaskPolicyS3UnlockBucketPolicy}})
	h.start()

	cases := []struct {
		ns, name   string
		spec       rkv1.AssumedRoleSpec
		rootTarget string
		allowed    bool
		message    string
	}{
		{teamA, "own-role", roleSpec("arn:aws:iam::111122223333:role/team-a-reader", 3600), "", true, ""},
		{teamA, "too-long", roleSpec("arn:aws:iam::111122223333:role/team-a-reader", 7200), "", false, "caps sessions at 3600 s (requested 7200 s)"},
		{teamA, "other-team", roleSpec("arn:aws:iam::111122223333:role/team-b-reader", 3600), "", false, "none allows role arn:aws:iam::111122223333:role/team-b-reader"},
		{teamB, "no-policy", roleSpec("arn:aws:iam::111122223333:role/team-a-reader", 3600), "", false, "no AssumedRolePolicy selects namespace " + teamB},
		{platform, "by-label", roleSpec("arn:aws:iam::444455556666:role/platform-admin", 43200), "", true, ""},
		{platform, "root-unlock", rootSpec("444455556666", rkv1.TaskPolicyS3UnlockBucketPolicy), "444455556666", true, ""},
		{platform, "root-delete", rootSpec("444455556667", rkv1.TaskPolicyIAMDeleteRootUserCredentials), "444455556667", false, "none allows AssumeRoot on 444455556667 with task policy IAMDeleteRootUserCredentials"},
		{teamA, "root-elsewhere", rootSpec("444455556668", rkv1.TaskPolicyS3UnlockBucketPolicy), "444455556668", false, "none allows AssumeRoot"},
	}
	for _, c := range cases {
		h.create(c.ns, c.name, c.spec)
	}
	for _, c := range cases {
		want := map[bool]metav1.ConditionStatus{true: metav1.ConditionTrue, false: metav1.ConditionFalse}[c.allowed]
		h.eventually(30*time.Second, fmt.Sprintf("%s/%s Ready=%s", c.ns, c.name, want), func() bool {
			cond := condition(h.getIn(c.ns, c.name), rkv1.ConditionReady)
			return cond != nil && cond.Status == want && (c.allowed || cond.Reason == rkv1.ReasonNotPermitted)
		})
	}
	for _, c := range cases {
		h.pokeIn(c.ns, c.name) // a further reconcile, in which a stray call would be made
		ar := h.getIn(c.ns, c.name)
		calls := callsFor(h.sts, c.ns, c.name, c.rootTarget)
		if c.allowed && calls != 1 {
			t.Errorf("%s/%s allowed with %d STS calls, want 1", c.ns, c.name, calls)
		}
		if !c.allowed {
			if calls != 0 {
				t.Errorf("%s/%s denied but made %d STS calls", c.ns, c.name, calls)
			}
			if st := condition(ar, rkv1.ConditionStalled); st.Status != metav1.ConditionTrue || !strings.Contains(st.Message, c.message) {
				t.Errorf("%s/%s Stalled %+v, want a message with %q", c.ns, c.name, st, c.message)
			}
		}
		t.Logf("%-40s %-14s allowed=%-5v calls=%d", c.ns, c.name, c.allowed, calls)
	}

	// Labelling team-b into the platform tier lets its AssumedRoles in, with no other change.
	h.create(teamB, "joins-platform", roleSpec("arn:aws:iam::444455556666:role/platform-reader", 3600))
	h.eventually(30*time.Second, "joins-platform NotPermitted", func() bool {
		c := condition(h.getIn(teamB, "joins-platform"), rkv1.ConditionReady)
		return c != nil && c.Reason == rkv1.ReasonNotPermitted
	})
	relabel(t, teamB, map[string]string{tier: "platform"})
	h.eventually(30*time.Second, "joins-platform Ready after the namespace label", func() bool {
		c := condition(h.getIn(teamB, "joins-platform"), rkv1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionTrue
	})
}

// AWS-side isolation: a role whose trust policy requires kubernetes-namespace=<ns> is granted to
// that namespace only, even where an AssumedRolePolicy would allow it everywhere.
func TestTrustPolicyPinsRoleToNamespace(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	other := h.namespace("other", nil)
	pinned := "arn:aws:iam::111122223333:role/pinned"
	h.sts.SetRole(pinned, ststest.RoleRule{RequireTags: map[string]string{"kubernetes-namespace": h.ns}})
	h.start()
	h.create(h.ns, "mine", roleSpec(pinned, 900))
	h.create(other, "theirs", roleSpec(pinned, 900))
	h.waitCondition("mine", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	h.eventually(30*time.Second, "theirs refused by AWS", func() bool {
		ar := h.getIn(other, "theirs")
		return ar.Status.LastFailure != nil && ar.Status.LastFailure.Code == "AccessDenied"
	})
	if c := condition(h.getIn(other, "theirs"), rkv1.ConditionStalled); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "sts:TagSession") {
		t.Errorf("Stalled %+v", c)
	}
}

// Every AssumeRole parameter of the spec arrives at STS exactly as specified, with the operator's
// tags (kubernetes-cluster too, with --cluster-name).
func TestEveryParameterReachesSTS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.opts.ClusterName = "prod-eu"
	h.start()
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`
	h.assumedRole("full", func(ar *rkv1.AssumedRole) {
		ar.Spec.Region = "eu-west-1"
		ar.Spec.AssumeRole = &rkv1.AssumeRoleSpec{
			RoleArn:           "arn:aws:iam::111122223333:role/full",
			SessionName:       "custom-session",
			DurationSeconds:   ptr.To[int32](1800),
			ExternalID:        "ext-123",
			SourceIdentity:    "pipeline@example.com",
			Policy:            policy,
			PolicyArns:        []string{"arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::111122223333:policy/extra"},
			Tags:              []rkv1.SessionTag{{Key: "team", Value: "payments"}, {Key: "cost center", Value: "42"}},
			TransitiveTagKeys: []string{"team", "kubernetes-namespace"},
		}
	})
	ar := h.waitCondition("full", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	call := h.sts.Calls()[0]
	got := []any{call.Region, call.RoleArn, call.SessionName, call.DurationSeconds, call.ExternalID, call.SourceIdentity, call.Policy, call.PolicyArns, call.Tags, call.TransitiveTagKeys}
	want := []any{"eu-west-1", "arn:aws:iam::111122223333:role/full", "custom-session", int32(1800), "ext-123", "pipeline@example.com", policy,
		[]string{"arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::111122223333:policy/extra"},
		[]ststest.Tag{{Key: "team", Value: "payments"}, {Key: "cost center", Value: "42"}, {Key: "kubernetes-namespace", Value: h.ns}, {Key: "kubernetes-name", Value: "full"}, {Key: "kubernetes-cluster", Value: "prod-eu"}},
		[]string{"team", "kubernetes-namespace"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("STS received\n %v\nwant\n %v", got, want)
	}
	if ar.Status.SourceIdentity != "pipeline@example.com" || ar.Status.AssumedRoleUser.Arn != "arn:aws:sts::111122223333:assumed-role/full/custom-session" {
		t.Errorf("status %+v", ar.Status)
	}
	if got := string(h.secret("full").Data["AWS_REGION"]); got != "eu-west-1" {
		t.Errorf("AWS_REGION %q", got)
	}

	// --session-tags=false sends only the user's tags.
	h2 := newHarness(t, ststest.Options{})
	h2.opts.SessionTags = false
	h2.start()
	h2.assumedRole("untagged", func(ar *rkv1.AssumedRole) {
		ar.Spec.AssumeRole.Tags = []rkv1.SessionTag{{Key: "team", Value: "a"}}
	})
	h2.waitCondition("untagged", rkv1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	if tags := h2.sts.Calls()[0].Tags; len(tags) != 1 || tags[0].Key != "team" {
		t.Errorf("with --session-tags=false the tags were %v", tags)
	}
}

// hostileTemplate grows a value without bound if only output were limited: 40 rounds of base64
// over the session token, and 30 statements that each double what the last one built.
func hostileTemplate() *rkv1.SecretTemplate {
	return &rkv1.SecretTemplate{Data: map[string]string{
		"nested":   "{{ len " + strings.Repeat("(base64 ", 40) + ".SessionToken" + strings.Repeat(")", 40) + " }}",
		"reassign": "{{ $x := .SessionToken }}" + strings.Repeat("{{ $x = base64 $x }}", 30) + "{{ len $x }}",
	}}
}

// A tenant's template built to exhaust the operator's memory costs nothing in a namespace no
// policy selects: it is refused as NotPermitted before it is rendered, however often it is
// reconciled, while an AssumedRole in another namespace keeps rotating on schedule with a Secret
// that never expires. Once a policy allows it, the same template is TemplateInvalid, still with
// no call to AWS.
func TestHostileTemplateCannotStopOtherNamespaces(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{TimeScale: 60}) // 900 s lasts 15 s
	h.opts.RequireAccessPolicy = true
	attacker := h.namespace("attacker", nil)
	h.policy("victim", rkv1.AssumedRolePolicySpec{Namespaces: []string{h.ns}, AllowedRoleArns: []string{"*"}})
	h.start()
	h.create(h.ns, "app", roleSpec("arn:aws:iam::111122223333:role/app", 900))
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)

	bomb := roleSpec("arn:aws:iam::111122223333:role/bomb", 900)
	bomb.Secret.Template = hostileTemplate()
	h.create(attacker, "bomb", bomb)
	notPermitted := func() {
		h.eventually(30*time.Second, "bomb NotPermitted at its generation", func() bool {
			ar := h.getIn(attacker, "bomb")
			c := condition(ar, rkv1.ConditionReady)
			return c != nil && c.Reason == rkv1.ReasonNotPermitted && c.ObservedGeneration == ar.Generation
		})
	}
	notPermitted()

	// Keep the bomb reconciling (each edit is a new generation, and its condition records the
	// generation it was refused at) while app rotates three times.
	seen := map[string]bool{}
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; len(seen) < 4; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("app rotated %d times in 90 s, want 3", len(seen)-1)
		}
		h.changeIn(attacker, "bomb", func(ar *rkv1.AssumedRole) {
			ar.Spec.Secret.Template.Data["round"] = fmt.Sprintf("{{ len (base64 (base64 .SessionToken)) }} %d", i)
		})
		notPermitted()
		c := credsOf(h.secret("app"))
		if c == nil || !time.Now().Before(c.Expiration) {
			t.Fatal("app's Secret expired while the bomb was being reconciled")
		}
		seen[c.AccessKeyID] = true
	}
	if n := callsFor(h.sts, attacker, "bomb", ""); n != 0 {
		t.Errorf("%d STS calls for the bomb", n)
	}

	h.policy("attacker", rkv1.AssumedRolePolicySpec{Namespaces: []string{attacker}, AllowedRoleArns: []string{"*"}})
	h.eventually(30*time.Second, "bomb TemplateInvalid once allowed", func() bool {
		c := condition(h.getIn(attacker, "bomb"), rkv1.ConditionStalled)
		return c != nil && c.Reason == rkv1.ReasonTemplateInvalid && strings.Contains(c.Message, "limit")
	})
	if n := callsFor(h.sts, attacker, "bomb", ""); n != 0 {
		t.Errorf("%d STS calls for the bomb once allowed", n)
	}
}

// AssumedRolePolicies can govern the session name and source identity a namespace sends, which
// role trust policies may test (sts:RoleSessionName, sts:SourceIdentity).
func TestPolicyGovernsSessionNamesAndSourceIdentities(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.opts.RequireAccessPolicy = true
	h.policy("named", rkv1.AssumedRolePolicySpec{Namespaces: []string{h.ns}, AllowedRoleArns: []string{"*"},
		AllowedSessionNames: []string{h.ns + ".*"}, AllowedSourceIdentities: []string{"ci-*"}})
	h.start()
	with := func(mod func(*rkv1.AssumeRoleSpec)) rkv1.AssumedRoleSpec {
		spec := roleSpec("arn:aws:iam::111122223333:role/deployer", 3600)
		mod(spec.AssumeRole)
		return spec
	}
	cases := []struct {
		name    string
		spec    rkv1.AssumedRoleSpec
		allowed bool
		message string
	}{
		{"default-name", with(func(*rkv1.AssumeRoleSpec) {}), true, ""},
		{"claims-admin", with(func(a *rkv1.AssumeRoleSpec) { a.SessionName = "admin" }), false, "allows session names " + h.ns + ".* (requested admin)"},
		{"ci-identity", with(func(a *rkv1.AssumeRoleSpec) { a.SourceIdentity = "ci-main" }), true, ""},
		{"claims-alice", with(func(a *rkv1.AssumeRoleSpec) { a.SourceIdentity = "alice" }), false, "allows source identities ci-* (requested alice)"},
	}
	for _, c := range cases {
		h.create(h.ns, c.name, c.spec)
	}
	for _, c := range cases {
		if c.allowed {
			h.waitCondition(c.name, rkv1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
		} else {
			ar := h.waitCondition(c.name, rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonNotPermitted, 30*time.Second)
			if msg := condition(ar, rkv1.ConditionStalled).Message; !strings.Contains(msg, c.message) {
				t.Errorf("%s: %q lacks %q", c.name, msg, c.message)
			}
		}
		session := c.spec.AssumeRole.SessionName
		if session == "" {
			session = h.ns + "." + c.name
		}
		calls := 0
		for _, call := range h.sts.Calls() {
			if call.Action == "AssumeRole" && call.SessionName == session {
				calls++
			}
		}
		if want := map[bool]int{true: 1, false: 0}[c.allowed]; calls != want {
			t.Errorf("%s: %d STS calls, want %d", c.name, calls, want)
		}
	}
}
