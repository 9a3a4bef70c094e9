package controllers_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// A minute of STS throttling: the old credentials stay in the Secret and valid, the backoff shows
// in status, calls are spaced out (no hot loop), and recovery needs no one.
func TestThrottlingKeepsOldCredentialsAndRecovers(t *testing.T) {
	t.Parallel()
	// 3600 s at time scale 20 lasts 180 s; renewing at 90% remaining makes renewal due after
	// about 15 s, leaving the old credentials valid well past a minute of failures.
	h := newHarness(t, ststest.Options{TimeScale: 20})
	h.start()
	h.assumedRole("app", func(ar *rkv1.AssumedRole) {
		ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](3600)
		ar.Spec.Renewal = &rkv1.RenewalSpec{RenewBeforePercentage: ptr.To[int32](90)}
	})
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	original := credsOf(h.secret("app"))
	h.sts.ThrottleNext(1000)

	var ar *rkv1.AssumedRole
	h.eventually(60*time.Second, "a failed renewal", func() bool { ar = h.get("app"); return ar.Status.FailedAttempts > 0 })
	failingSince := time.Now()
	callsAtFirstFailure := h.sts.CallCount("AssumeRole")
	if f := ar.Status.LastFailure; f == nil || f.Code != "Throttling" || !f.Retryable {
		t.Fatalf("lastFailure %+v", f)
	}
	ready := condition(ar, rkv1.ConditionReady)
	if ready.Status != metav1.ConditionTrue || ready.Reason != rkv1.ReasonIssueFailed || !strings.Contains(ready.Message, "remain valid until") {
		t.Errorf("Ready while old credentials are valid: %+v", ready)
	}
	if c := condition(ar, rkv1.ConditionIssuing); c.Status != metav1.ConditionTrue || c.Reason != rkv1.ReasonRenewalDue || !strings.Contains(c.Message, "retrying at") {
		t.Errorf("Issuing during backoff: %+v", c)
	}
	if c := condition(ar, rkv1.ConditionStalled); c.Status != metav1.ConditionFalse {
		t.Errorf("Stalled on a retryable error: %+v", c)
	}
	if !ar.Status.RenewalTime.After(ar.Status.LastFailure.Time.Time) {
		t.Errorf("renewalTime %v is not the next retry after the failure at %v", ar.Status.RenewalTime, ar.Status.LastFailure.Time)
	}

	for time.Since(failingSince) < time.Minute {
		if c := credsOf(h.secret("app")); c == nil || c.AccessKeyID != original.AccessKeyID || !time.Now().Before(c.Expiration) {
			t.Fatal("the Secret changed or expired while STS was throttling")
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Backoff of 5, 10, 20, 40 s: at most 4 more attempts in the minute after the first failure.
	during := h.sts.CallCount("AssumeRole") - callsAtFirstFailure
	if during > 4 {
		t.Errorf("%d attempts in a minute of throttling: backoff is not holding", during)
	}
	ar = h.get("app")
	if ar.Status.FailedAttempts < 2 {
		t.Errorf("failedAttempts %d after a minute", ar.Status.FailedAttempts)
	}

	h.sts.ClearFaults()
	ar = h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonRenewed, 90*time.Second)
	if ar.Status.FailedAttempts != 0 || ar.Status.LastFailure != nil {
		t.Errorf("after recovery: failedAttempts %d lastFailure %+v", ar.Status.FailedAttempts, ar.Status.LastFailure)
	}
	if c := credsOf(h.secret("app")); c.AccessKeyID == original.AccessKeyID {
		t.Error("recovered without new credentials")
	}
	t.Logf("%d attempts during the minute of throttling", during)
}

// AccessDenied is terminal: Stalled with the AWS code, one call, no hot loop; a spec change is
// tried at once despite the backoff.
func TestAccessDeniedStallsWithoutHotLoop(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.sts.SetRole("arn:aws:iam::111122223333:role/locked", ststest.RoleRule{DenyTagSession: true})
	h.start()
	h.assumedRole("locked", nil)
	h.phase("AccessDenied stalls after one call", func(t *testing.T) {
		ar := h.waitCondition("locked", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonIssueFailed, 30*time.Second)
		if f := ar.Status.LastFailure; f == nil || f.Code != "AccessDenied" || f.Retryable || !strings.Contains(f.Message, "sts:TagSession") {
			t.Errorf("lastFailure %+v", f)
		}
		if c := condition(ar, rkv1.ConditionReady); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "AccessDenied") {
			t.Errorf("Ready %+v", c)
		}
		if wait := time.Until(ar.Status.RenewalTime.Time); wait < 9*time.Minute {
			t.Errorf("next retry in %v, want the slow retry of 10 minutes", wait)
		}
		h.poke("locked")
		if n := h.sts.CallCount("AssumeRole"); n != 1 {
			t.Errorf("%d calls after AccessDenied and a further reconcile, want 1", n)
		}
	})
	h.phase("a spec change is tried at once despite the backoff", func(t *testing.T) {
		// Without session tags the role may be assumed.
		h.sts.SetRole("arn:aws:iam::111122223333:role/locked", ststest.RoleRule{})
		h.change("locked", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](1800) })
		h.waitCondition("locked", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
		if n := h.sts.CallCount("AssumeRole"); n != 2 {
			t.Errorf("%d calls, want 2", n)
		}
		if failed := h.recorded(rkv1.ReasonIssueFailed); failed != 1 {
			t.Errorf("%d IssueFailed events, want 1", failed)
		}
	})
}

// A Secret of the target name that the AssumedRole does not own stays byte-for-byte unchanged,
// and no credentials are requested for it.
func TestForeignSecretIsLeftUntouched(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: h.ns, Labels: map[string]string{"app": "other"}, Annotations: map[string]string{"note": "mine"}},
		Data:       map[string][]byte{"password": []byte("hunter2")},
	}
	if err := k8s.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	before := h.secret("taken")
	h.start()
	h.assumedRole("wants-taken", func(ar *rkv1.AssumedRole) { ar.Spec.Secret.Name = "taken" })
	ar := h.waitCondition("wants-taken", rkv1.ConditionReady, metav1.ConditionFalse, rkv1.ReasonSecretConflict, 30*time.Second)
	if c := condition(ar, rkv1.ConditionStalled); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "not owned by this AssumedRole") {
		t.Errorf("Stalled %+v", c)
	}
	// Another AssumedRole's Secret is just as foreign.
	h.assumedRole("owner", nil)
	h.waitCondition("owner", rkv1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	ownerSecret := h.secret("owner")
	h.assumedRole("intruder", func(ar *rkv1.AssumedRole) { ar.Spec.Secret.Name = "owner" })
	h.waitCondition("intruder", rkv1.ConditionReady, metav1.ConditionFalse, rkv1.ReasonSecretConflict, 30*time.Second)

	// Further reconciles of both, once the conflicts are known.
	h.poke("wants-taken")
	h.poke("intruder")
	after := h.secret("taken")
	if after.ResourceVersion != before.ResourceVersion || !bytes.Equal(after.Data["password"], []byte("hunter2")) || len(after.Data) != 1 ||
		fmt.Sprint(after.Labels) != fmt.Sprint(before.Labels) || fmt.Sprint(after.Annotations) != fmt.Sprint(before.Annotations) || len(after.OwnerReferences) != 0 {
		t.Errorf("the foreign Secret changed:\nbefore %+v\nafter  %+v", before, after)
	}
	if s := h.secret("owner"); s.ResourceVersion != ownerSecret.ResourceVersion {
		t.Error("another AssumedRole's Secret was written")
	}
	// An unlabelled Secret is not cached, so finding it costs one discarded call (the create
	// fails); once the conflict is known, reconciles ask the API server first and call nothing.
	// A labelled Secret of another AssumedRole is in the cache and costs no call at all.
	if n := h.sts.CallCount("AssumeRole"); n != 2 {
		t.Errorf("%d AssumeRole calls after further reconciles of the conflicts, want 2 (owner's, and the one discarded for wants-taken)", n)
	}
	if c := condition(h.get("wants-taken"), rkv1.ConditionReady); c.Reason != rkv1.ReasonSecretConflict {
		t.Errorf("wants-taken Ready reason %s after a further reconcile", c.Reason)
	}
}

// Steady state: zero STS calls and zero API writes from the moment the status is written until
// one second before the renewal time.
func TestSteadyStateMakesNoCallsOrWrites(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{TimeScale: 45}) // 900 s lasts 20 s
	h.start()
	h.assumedRole("quiet", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900) })
	ar := h.waitCondition("quiet", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	secret := h.secret("quiet")
	calls := h.sts.CallCount("")
	until := ar.Status.RenewalTime.Add(-time.Second)
	if time.Until(until) < 5*time.Second {
		t.Fatalf("renewal at %v leaves too short a window", ar.Status.RenewalTime)
	}
	for time.Now().Before(until) {
		if got := h.get("quiet"); got.ResourceVersion != ar.ResourceVersion {
			t.Fatalf("the AssumedRole was written in steady state: %+v", got.Status)
		}
		if got := h.secret("quiet"); got.ResourceVersion != secret.ResourceVersion {
			t.Fatal("the Secret was written in steady state")
		}
		if n := h.sts.CallCount(""); n != calls {
			t.Fatalf("%d STS calls in steady state", n-calls)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// And the renewal does come.
	h.waitCondition("quiet", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonRenewed, 30*time.Second)
}

// A reconcile with nothing to do reads everything from the cache: no read reaches the API server
// past it, and nothing is called or written.
func TestSteadyStateReconcilesReadOnlyTheCache(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	h.assumedRole("app", nil)
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	h.poke("app") // the cache has caught up with the operator's own writes once this reconcile ran
	reads, calls, secret := h.liveReads.Load(), h.sts.CallCount(""), h.secret("app")
	before := h.reconciled("app")
	for range 3 {
		h.poke("app")
	}
	if n := h.reconciled("app") - before; n < 3 {
		t.Fatalf("%d reconciles after three pokes", n)
	}
	if n := h.liveReads.Load() - reads; n != 0 {
		t.Errorf("%d reads past the cache in reconciles with nothing to do", n)
	}
	if n := h.sts.CallCount("") - calls; n != 0 {
		t.Errorf("%d STS calls in reconciles with nothing to do", n)
	}
	if h.secret("app").ResourceVersion != secret.ResourceVersion {
		t.Error("the Secret was written in a reconcile with nothing to do")
	}
}

// No access key, secret key or session token appears in the manager's log, in events, or in
// conditions, even when an AWS error message carries them.
func TestNoCredentialMaterialInLogsEventsOrConditions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	h.assumedRole("app", nil)
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	creds := credsOf(h.secret("app"))
	h.sts.FailNext(1, "AccessDenied", 403, fmt.Sprintf("denied for %s with %s and secret %s", creds.AccessKeyID, creds.SessionToken, creds.SecretAccessKey))
	h.change("app", func(ar *rkv1.AssumedRole) { ar.Annotations = map[string]string{rkv1.AnnotationRotate: "1"} })
	ar := h.waitCondition("app", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonIssueFailed, 30*time.Second)
	if !strings.Contains(ar.Status.LastFailure.Message, "[REDACTED]") {
		t.Errorf("the failure message was not redacted: %q", ar.Status.LastFailure.Message)
	}
	h.eventually(10*time.Second, "the IssueFailed event", func() bool { return h.eventCount(rkv1.ReasonIssueFailed) >= 1 })
	var surfaces []string
	surfaces = append(surfaces, h.logs.String())
	surfaces = append(surfaces, h.events()...)
	var list rkv1.AssumedRoleList
	if err := k8s.List(context.Background(), &list, client.InNamespace(h.ns)); err != nil {
		t.Fatal(err)
	}
	for _, a := range list.Items {
		surfaces = append(surfaces, fmt.Sprintf("%+v", a.Status))
	}
	for _, s := range surfaces {
		for _, secret := range []string{creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken, operator.SecretAccessKey} {
			if strings.Contains(s, secret) {
				t.Fatalf("credential material in:\n%s", s)
			}
		}
	}
}

// Without an allowing AssumedRolePolicy nothing reaches STS; a policy created later issues.
func TestNotPermittedUntilAPolicyAllows(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.opts.RequireAccessPolicy = true
	h.start()
	h.assumedRole("app", nil)
	ar := h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionFalse, rkv1.ReasonNotPermitted, 30*time.Second)
	if c := condition(ar, rkv1.ConditionStalled); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "no AssumedRolePolicy selects namespace "+h.ns) {
		t.Errorf("Stalled %+v", c)
	}
	h.poke("app")
	if n := h.sts.CallCount(""); n != 0 {
		t.Errorf("%d STS calls while not permitted, after a further reconcile", n)
	}
	h.allowAll()
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	if notPermitted := h.recorded(rkv1.ReasonNotPermitted); notPermitted != 1 {
		t.Errorf("%d NotPermitted events, want 1", notPermitted)
	}
}
