package controllers_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// chained is the spec of an AssumedRole of role name chained from source.
func chained(name, source string) rkv1.AssumedRoleSpec {
	spec := roleSpec("arn:aws:iam::111122223333:role/"+name, 900)
	spec.Source = &rkv1.CredentialSource{AssumedRoleRef: rkv1.LocalAssumedRoleReference{Name: source}}
	return spec
}

// A dependent never signs with source credentials in their last moments: when the source's
// renewal is failing and its credentials are about to expire, the dependent waits, and it issues
// as soon as the source has rotated, woken by the source's new Secret.
func TestChainWaitsForTheSourceToRotate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{TimeScale: 30}) // 900 s lasts 30 s
	h.start()
	h.create(h.ns, "base", roleSpec("arn:aws:iam::111122223333:role/base", 900))
	h.waitCondition("base", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	h.sts.ThrottleNext(1000) // base's renewal fails from now on
	exp := credsOf(h.secret("base")).Expiration
	// The last quarter-minute margin of a 30 s session is 7.5 s.
	lastUsable := exp.Add(-7500 * time.Millisecond)
	h.eventually(40*time.Second, "base's credentials in their last moments", func() bool { return time.Now().After(lastUsable) })
	if c := credsOf(h.secret("base")); c == nil || !c.Expiration.Equal(exp) {
		t.Fatal("base rotated although STS was throttling")
	}

	h.create(h.ns, "dependent", chained("dependent", "base"))
	ar := h.waitCondition("dependent", rkv1.ConditionReady, metav1.ConditionFalse, rkv1.ReasonSourceNotReady, 30*time.Second)
	if msg := condition(ar, rkv1.ConditionReady).Message; !strings.Contains(msg, "too soon to sign with: waiting for it to rotate") {
		t.Errorf("Ready message %q", msg)
	}
	for _, c := range h.sts.Calls() {
		if strings.HasSuffix(c.RoleArn, "/dependent") {
			t.Fatalf("the dependent called STS with credentials about to expire: %+v", c)
		}
	}

	h.sts.ClearFaults()
	base := h.waitCondition("base", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonRenewed, 60*time.Second)
	ar = h.waitCondition("dependent", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	if after := ar.Status.LastIssuedTime.Sub(base.Status.LastIssuedTime.Time); after < 0 || after > 5*time.Second {
		t.Errorf("the dependent issued %v after the source rotated, want right after", after)
	}
	for _, c := range h.sts.Calls() {
		if strings.HasSuffix(c.RoleArn, "/dependent") && c.Caller != base.Status.AssumedRoleUser.Arn {
			t.Errorf("the dependent was signed by %s, want the source's new session", c.Caller)
		}
	}
}

// A source whose latest renewal failed terminally (Ready=False, Stalled) while the credentials
// in its Secret are still valid does not block its dependents; a source that is refused outright
// does.
func TestChainFromAFailingSource(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	h.create(h.ns, "base", roleSpec("arn:aws:iam::111122223333:role/base", 3600))
	h.waitCondition("base", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	h.sts.FailNext(1, "AccessDenied", 403, "User is not authorized to perform: sts:AssumeRole")
	h.annotate("base", rkv1.AnnotationRotate, "r1")
	h.waitCondition("base", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonIssueFailed, 30*time.Second)

	h.create(h.ns, "dependent", chained("dependent", "base"))
	h.waitCondition("dependent", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)

	// A spec the source has no credentials for: its Secret holds the old role's.
	const baseV2 = "arn:aws:iam::111122223333:role/base-v2"
	h.sts.SetRole(baseV2, ststest.RoleRule{Deny: true})
	h.change("base", func(base *rkv1.AssumedRole) { base.Spec.AssumeRole.RoleArn = baseV2 })
	h.waitCondition("base", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonIssueFailed, 30*time.Second)
	h.create(h.ns, "late", chained("late", "base"))
	ar := h.waitCondition("late", rkv1.ConditionReady, metav1.ConditionFalse, rkv1.ReasonSourceNotReady, 30*time.Second)
	if msg := condition(ar, rkv1.ConditionReady).Message; !strings.Contains(msg, "credentials for an earlier spec") {
		t.Errorf("Ready message %q", msg)
	}
}

// Transitive tags that can only fail once the operator's flags or a chain are known are refused
// before any call, saying what to change.
func TestTransitiveTagRulesRefusedBeforeAnyCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	// kubernetes-name marked transitive on a source: every session chained from it inherits the
	// source's name and could not set its own.
	base := roleSpec("arn:aws:iam::111122223333:role/base", 3600)
	base.AssumeRole.TransitiveTagKeys = []string{"kubernetes-name"}
	h.create(h.ns, "base", base)
	h.waitCondition("base", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	h.create(h.ns, "dependent", chained("dependent", "base"))
	ar := h.waitCondition("dependent", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonInvalidSpec, 30*time.Second)
	if msg := condition(ar, rkv1.ConditionStalled).Message; !strings.Contains(msg, "passes kubernetes-name=base on as a transitive tag") ||
		!strings.Contains(msg, "remove kubernetes-name from the transitiveTagKeys of AssumedRole base") {
		t.Errorf("Stalled message %q", msg)
	}

	// kubernetes-cluster transitive, but the operator runs without --cluster-name.
	cluster := roleSpec("arn:aws:iam::111122223333:role/cluster", 3600)
	cluster.AssumeRole.TransitiveTagKeys = []string{"kubernetes-cluster"}
	h.create(h.ns, "cluster", cluster)
	ar = h.waitCondition("cluster", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonInvalidSpec, 30*time.Second)
	if msg := condition(ar, rkv1.ConditionStalled).Message; !strings.Contains(msg, "runs without --cluster-name") {
		t.Errorf("Stalled message %q", msg)
	}

	// kubernetes-namespace transitive is fine: a chain stays in one namespace.
	ns := roleSpec("arn:aws:iam::111122223333:role/ns", 3600)
	ns.AssumeRole.TransitiveTagKeys = []string{"kubernetes-namespace"}
	h.create(h.ns, "ns", ns)
	h.create(h.ns, "ns-dependent", chained("ns-dependent", "ns"))
	h.waitCondition("ns-dependent", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	for _, c := range h.sts.Calls() {
		if strings.HasSuffix(c.RoleArn, "/dependent") || strings.HasSuffix(c.RoleArn, "/cluster") {
			t.Errorf("a call was made for a request AWS would refuse: %+v", c)
		}
	}
}

// ExpiredToken (the signing session rolled over while the call was on its way) is retried with
// the short backoff, and the Secret never expires.
func TestExpiredTokenIsRetriedSoon(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{TimeScale: 30}) // 900 s lasts 30 s
	h.start()
	h.assumedRole("app", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900) })
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	h.sts.FailNext(1, "ExpiredToken", 400, "The security token included in the request is expired")
	var failedAt time.Time
	h.eventually(60*time.Second, "a renewal after an ExpiredToken", func() bool {
		ar := h.get("app")
		if c := credsOf(h.secret("app")); c == nil || !time.Now().Before(c.Expiration) {
			t.Fatal("the Secret expired")
		}
		if f := ar.Status.LastFailure; f != nil && failedAt.IsZero() {
			if f.Code != "ExpiredToken" || !f.Retryable {
				t.Fatalf("lastFailure %+v, want a retryable ExpiredToken", f)
			}
			if c := condition(ar, rkv1.ConditionStalled); c.Status != metav1.ConditionFalse {
				t.Fatalf("Stalled %+v on ExpiredToken", c)
			}
			failedAt = f.Time.Time
		}
		return !failedAt.IsZero() && ar.Status.LastFailure == nil && ar.Status.LastIssuedTime.After(failedAt)
	})
	if retried := h.get("app").Status.LastIssuedTime.Sub(failedAt); retried > 30*time.Second {
		t.Errorf("retried %v after the ExpiredToken, want within 30 s", retried)
	}
}

// A two-hop chain issues and rotates, each hop signed by the previous one's session; a source
// that is not ready yet makes its dependents wait and then issue by themselves; a cycle is refused.
func TestRoleChaining(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{TimeScale: 120}) // 3600 s lasts 30 s
	h.start()
	hop := func(name, source string) rkv1.AssumedRoleSpec {
		spec := roleSpec("arn:aws:iam::111122223333:role/"+name, 3600)
		if source != "" {
			spec.Source = &rkv1.CredentialSource{AssumedRoleRef: rkv1.LocalAssumedRoleReference{Name: source}}
		}
		return spec
	}
	h.phase("the last hop applied first waits for its source", func(t *testing.T) {
		h.create(h.ns, "hop2", hop("hop2", "hop1"))
		h.waitCondition("hop2", rkv1.ConditionReady, metav1.ConditionFalse, rkv1.ReasonSourceNotReady, 30*time.Second)
	})
	h.phase("each hop is called with its source's session", func(t *testing.T) {
		h.create(h.ns, "hop1", hop("hop1", "base"))
		h.create(h.ns, "base", hop("base", ""))
		for _, name := range []string{"base", "hop1", "hop2"} {
			h.waitCondition(name, rkv1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
		}
		callers := map[string]string{}
		for _, c := range h.sts.Calls() {
			callers[c.RoleArn[strings.LastIndex(c.RoleArn, "/")+1:]] = c.Caller
		}
		base, hop1 := h.get("base"), h.get("hop1")
		if callers["base"] != operator.Arn || callers["hop1"] != base.Status.AssumedRoleUser.Arn || callers["hop2"] != hop1.Status.AssumedRoleUser.Arn {
			t.Errorf("callers %v", callers)
		}
	})
	h.phase("the chain keeps rotating", func(t *testing.T) {
		first := credsOf(h.secret("hop2")).AccessKeyID
		seen := map[string]bool{first: true}
		h.eventually(90*time.Second, "hop2 rotated twice", func() bool {
			if c := credsOf(h.secret("hop2")); c != nil {
				seen[c.AccessKeyID] = true
			}
			return len(seen) >= 3
		})
	})
	h.phase("a cycle is refused without a call", func(t *testing.T) {
		h.create(h.ns, "loop-a", hop("loop-a", "loop-b"))
		h.create(h.ns, "loop-b", hop("loop-b", "loop-a"))
		ar := h.waitCondition("loop-a", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonInvalidSpec, 30*time.Second)
		if msg := condition(ar, rkv1.ConditionStalled).Message; !strings.Contains(msg, "cycle: loop-a -> loop-b -> loop-a") {
			t.Errorf("cycle message %q", msg)
		}
		for _, c := range h.sts.Calls() {
			if strings.HasSuffix(c.RoleArn, "/loop-a") || strings.HasSuffix(c.RoleArn, "/loop-b") {
				t.Errorf("a call was made for a cycle: %+v", c)
			}
		}
	})
}
