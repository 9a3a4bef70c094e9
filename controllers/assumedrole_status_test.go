package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type want struct{ ready, issuing, stalled metav1.ConditionStatus }

func conds(ar *rkv1.AssumedRole) want {
	get := func(t string) metav1.ConditionStatus {
		if c := meta.FindStatusCondition(ar.Status.Conditions, t); c != nil {
			if c.ObservedGeneration != ar.Generation {
				return "stale"
			}
			return c.Status
		}
		return ""
	}
	return want{get(rkv1.ConditionReady), get(rkv1.ConditionIssuing), get(rkv1.ConditionStalled)}
}

func TestStatusSetters(t *testing.T) {
	T, F := metav1.ConditionTrue, metav1.ConditionFalse
	issued := issuedFacts{secretName: "s", issuedAt: t0, expiration: t0.Add(time.Hour), renewalTime: t0.Add(40 * time.Minute), reason: rkv1.ReasonIssued, packedSize: ptr.To[int32](7)}
	cases := []struct {
		name   string
		apply  func(ar *rkv1.AssumedRole)
		want   want
		reason string
		// msgs are the messages of Ready, Issuing and Stalled: what users read.
		msgs  [3]string
		check func(t *testing.T, ar *rkv1.AssumedRole)
	}{
		{"issued", func(ar *rkv1.AssumedRole) { setIssued(ar, issued) }, want{T, F, F}, rkv1.ReasonIssued, [3]string{"credentials in Secret s are valid until 2026-11-22T13:00:00Z; renewal at 2026-11-22T12:40:00Z", "credentials are current", ""}, func(t *testing.T, ar *rkv1.AssumedRole) {
			if ar.Status.ObservedGeneration != 3 || *ar.Status.PackedPolicySize != 7 || !ar.Status.Expiration.Time.Equal(t0.Add(time.Hour)) {
				t.Errorf("status %+v", ar.Status)
			}
		}},
		{"retryable failure with valid credentials keeps Ready", func(ar *rkv1.AssumedRole) {
			setIssued(ar, issued)
			setIssueFailed(ar, failureFacts{code: "Throttling", message: "Rate exceeded", retryable: true, at: t0.Add(41 * time.Minute), retryAt: t0.Add(41*time.Minute + 5*time.Second), dueReason: rkv1.ReasonRenewalDue, validUntil: t0.Add(time.Hour)})
		}, want{T, T, F}, rkv1.ReasonIssueFailed, [3]string{
			"credentials in Secret s remain valid until 2026-11-22T13:00:00Z; renewal is failing (Throttling) and retries at 2026-11-22T12:41:05Z",
			"attempt 1 failed with Throttling: Rate exceeded; retrying at 2026-11-22T12:41:05Z", ""}, func(t *testing.T, ar *rkv1.AssumedRole) {
			if ar.Status.FailedAttempts != 1 || ar.Status.LastFailure.Code != "Throttling" || !ar.Status.RenewalTime.Time.Equal(t0.Add(41*time.Minute+5*time.Second)) {
				t.Errorf("status %+v", ar.Status)
			}
			if c := meta.FindStatusCondition(ar.Status.Conditions, rkv1.ConditionIssuing); c.Reason != rkv1.ReasonRenewalDue {
				t.Errorf("Issuing reason %s", c.Reason)
			}
		}},
		{"retryable failure without credentials", func(ar *rkv1.AssumedRole) {
			setIssueFailed(ar, failureFacts{code: "ServiceUnavailable", retryable: true, at: t0, retryAt: t0.Add(5 * time.Second), dueReason: rkv1.ReasonSecretMissing})
		}, want{F, T, F}, rkv1.ReasonIssueFailed, [3]string{"attempt 1 failed with ServiceUnavailable: ", "attempt 1 failed with ServiceUnavailable: ; retrying at 2026-11-22T12:00:05Z", ""}, nil},
		{"retryable failure after expiry", func(ar *rkv1.AssumedRole) {
			setIssueFailed(ar, failureFacts{code: "Throttling", retryable: true, at: t0.Add(2 * time.Hour), retryAt: t0.Add(2 * time.Hour), validUntil: t0.Add(time.Hour)})
		}, want{F, T, F}, rkv1.ReasonIssueFailed, [3]string{"attempt 1 failed with Throttling: ", "attempt 1 failed with Throttling: ; retrying at 2026-11-22T14:00:00Z", ""}, nil},
		{"terminal failure stalls", func(ar *rkv1.AssumedRole) {
			setIssued(ar, issued)
			setIssueFailed(ar, failureFacts{code: "AccessDenied", at: t0, retryAt: t0.Add(10 * time.Minute), validUntil: t0.Add(time.Hour)})
		}, want{F, F, T}, rkv1.ReasonIssueFailed, [3]string{"attempt 1 failed with AccessDenied: ", "attempt 1 failed with AccessDenied: ",
			"attempt 1 failed with AccessDenied: ; retrying at 2026-11-22T12:10:00Z or when the spec changes"}, nil},
		{"success after failures clears them", func(ar *rkv1.AssumedRole) {
			setIssueFailed(ar, failureFacts{code: "Throttling", retryable: true, at: t0, retryAt: t0})
			setIssueFailed(ar, failureFacts{code: "Throttling", retryable: true, at: t0, retryAt: t0})
			f := issued
			f.reason = rkv1.ReasonRenewed
			setIssued(ar, f)
		}, want{T, F, F}, rkv1.ReasonRenewed, [3]string{"credentials in Secret s are valid until 2026-11-22T13:00:00Z; renewal at 2026-11-22T12:40:00Z", "credentials are current", ""}, func(t *testing.T, ar *rkv1.AssumedRole) {
			if ar.Status.FailedAttempts != 0 || ar.Status.LastFailure != nil {
				t.Errorf("status %+v", ar.Status)
			}
		}},
		{"verified up to date keeps the Ready reason", func(ar *rkv1.AssumedRole) {
			f := issued
			f.reason = rkv1.ReasonRenewed
			setIssued(ar, f)
			f.reason = ""
			setIssued(ar, f)
		}, want{T, F, F}, rkv1.ReasonRenewed, [3]string{"credentials in Secret s are valid until 2026-11-22T13:00:00Z; renewal at 2026-11-22T12:40:00Z", "credentials are current", ""}, nil},
		{"not permitted stalls", func(ar *rkv1.AssumedRole) { setBlocked(ar, rkv1.ReasonNotPermitted, "no", true) }, want{F, F, T}, rkv1.ReasonNotPermitted, [3]string{"no", "no", "no"}, nil},
		{"source not ready waits", func(ar *rkv1.AssumedRole) { setBlocked(ar, rkv1.ReasonSourceNotReady, "wait", false) }, want{F, T, F}, rkv1.ReasonSourceNotReady, [3]string{"wait", "wait", ""}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			c.apply(ar)
			if got := conds(ar); got != c.want {
				t.Errorf("conditions Ready/Issuing/Stalled = %v, want %v", got, c.want)
			}
			if r := meta.FindStatusCondition(ar.Status.Conditions, rkv1.ConditionReady).Reason; r != c.reason {
				t.Errorf("Ready reason %s, want %s", r, c.reason)
			}
			for i, typ := range []string{rkv1.ConditionReady, rkv1.ConditionIssuing, rkv1.ConditionStalled} {
				if got := meta.FindStatusCondition(ar.Status.Conditions, typ).Message; got != c.msgs[i] {
					t.Errorf("%s message\n got %q\nwant %q", typ, got, c.msgs[i])
				}
			}
			if c.check != nil {
				c.check(t, ar)
			}
		})
	}
}

// Setting the same facts twice changes nothing, so a steady reconcile writes no status.
func TestStatusSettersAreIdempotent(t *testing.T) {
	ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	f := issuedFacts{secretName: "s", issuedAt: t0, expiration: t0.Add(time.Hour), renewalTime: t0.Add(40 * time.Minute), reason: rkv1.ReasonIssued}
	setIssued(ar, f)
	before := ar.DeepCopy()
	f.reason = ""
	setIssued(ar, f)
	// patchStatus writes only when this comparison fails.
	if !equality.Semantic.DeepEqual(before.Status, ar.Status) {
		t.Errorf("second set changed status:\n%+v\n%+v", before.Status, ar.Status)
	}
}
