package controllers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

// current is the input of a Secret that holds current credentials, renewal due in ten minutes.
func current() issueInput {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return issueInput{
		secretName: "reader", secret: &corev1.Secret{}, issued: true, credsOK: true,
		stamp:       secretdata.Stamp{IssuedAt: now.Add(-30 * time.Minute), RequestHash: "h1", Rotate: "r1"},
		expiration:  now.Add(30 * time.Minute),
		requestHash: "h1", rotate: "r1",
		renewal: now.Add(10 * time.Minute), now: now,
	}
}

// Each issue check fires alone for its cause, and the first that fires decides.
func TestIssueChecks(t *testing.T) {
	cases := map[string]struct {
		mod     func(in *issueInput)
		reason  string
		message string
	}{
		"issues nothing while the Secret holds current credentials": {func(*issueInput) {}, "", ""},
		"issues when the Secret does not exist": {func(in *issueInput) { in.secret, in.issued, in.credsOK = nil, false, false },
			rkv1.ReasonSecretMissing, "Secret reader does not exist"},
		"issues when the Secret has no AWS_SESSION_TOKEN": {func(in *issueInput) { in.credsOK = false },
			rkv1.ReasonKeysMissing, "Secret reader lacks complete credentials or the annotation of their issue time"},
		"issues when the issue time annotation is gone": {func(in *issueInput) { in.issued = false },
			rkv1.ReasonKeysMissing, "Secret reader lacks complete credentials or the annotation of their issue time"},
		"issues when the spec asks for another request": {func(in *issueInput) { in.requestHash = "h2" },
			rkv1.ReasonRequestChanged, "the spec asks for a different request than the one the credentials were issued for"},
		"issues when rolekeeper.io/rotate takes a new value": {func(in *issueInput) { in.rotate = "r2" },
			rkv1.ReasonRotationRequested, `annotation rolekeeper.io/rotate changed to "r2"`},
		"does not issue when rolekeeper.io/rotate is removed": {func(in *issueInput) { in.rotate = "" }, "", ""},
		"issues when the renewal time has come": {func(in *issueInput) { in.now = in.renewal },
			rkv1.ReasonRenewalDue, "renewal was due at 2026-12-01T12:10:00Z; credentials expire at 2026-12-01T12:30:00Z"},
		"names the Secret missing before anything else": {func(in *issueInput) {
			in.secret, in.credsOK, in.requestHash, in.rotate, in.now = nil, false, "h2", "r2", in.renewal
		}, rkv1.ReasonSecretMissing, "Secret reader does not exist"},
		"names a changed request before a rotation request": {func(in *issueInput) { in.requestHash, in.rotate = "h2", "r2" },
			rkv1.ReasonRequestChanged, "the spec asks for a different request than the one the credentials were issued for"},
	}
	for sentence, c := range cases {
		t.Run(sentence, func(t *testing.T) {
			in := current()
			c.mod(&in)
			reason, message, due := firstDue(in)
			if due != (c.reason != "") || reason != c.reason || message != c.message {
				t.Errorf("got due=%v %s %q, want %s %q", due, reason, message, c.reason, c.message)
			}
		})
	}
}

// A failure's backoff holds a due issuance back until its retry time, unless something that
// makes a retry worthwhile happened.
func TestBackoffGate(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	retry := metav1.NewTime(now.Add(30 * time.Second))
	failing := func() backoffInput {
		return backoffInput{
			status:     rkv1.AssumedRoleStatus{FailedAttempts: 2, RenewalTime: &retry, RotateRequest: "r1", LastFailure: &rkv1.IssueFailure{Code: "Throttling", Generation: 4}},
			generation: 4, rotate: "r1", now: now,
		}
	}
	cases := map[string]struct {
		mod  func(in *backoffInput)
		held bool
	}{
		"holds back until the retry time after a failure":    {func(*backoffInput) {}, true},
		"lets it go when the last issuance did not fail":     {func(in *backoffInput) { in.status.FailedAttempts, in.status.LastFailure = 0, nil }, false},
		"lets it go when the spec changed since the failure": {func(in *backoffInput) { in.generation = 5 }, false},
		"lets it go when a new rotation is requested":        {func(in *backoffInput) { in.rotate = "r2" }, false},
		"lets it go at the retry time":                       {func(in *backoffInput) { in.now = retry.Time }, false},
	}
	for sentence, c := range cases {
		t.Run(sentence, func(t *testing.T) {
			in := failing()
			c.mod(&in)
			until, held := heldBack(in)
			if held != c.held || (held && !until.Equal(retry.Time)) {
				t.Errorf("held=%v until %v, want held=%v", held, until, c.held)
			}
		})
	}
}
