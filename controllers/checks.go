package controllers

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

// issueInput is what the issue checks look at: the Secret as found and what the spec asks for.
type issueInput struct {
	secretName string
	secret     *corev1.Secret // nil when it does not exist
	stamp      secretdata.Stamp
	// issued is true when the stamp says when the credentials were issued.
	issued bool
	// credsOK is true when the Secret holds a complete set of credentials (for an image-pull
	// Secret: parseable logins and an expiry).
	credsOK bool
	// expiration is when the credentials in the Secret expire.
	expiration time.Time
	// requestHash is the hash of the request the spec asks for.
	requestHash string
	// rotate is the AssumedRole's rolekeeper.io/rotate annotation.
	rotate string
	// renewal is when the credentials in the Secret are due for renewal.
	renewal time.Time
	now     time.Time
}

// An issueCheck is one reason to issue credentials now. When it fires, reason becomes the
// Issuing condition's reason and message says what it found.
type issueCheck func(in issueInput) (reason, message string, fire bool)

// issueChecks are asked in order, and the first that fires decides, as cert-manager's issuing
// policies are. Later checks may assume that earlier ones did not fire.
var issueChecks = []issueCheck{secretMissing, keysMissing, requestChanged, rotationRequested, renewalDue}

func secretMissing(in issueInput) (string, string, bool) {
	return rkv1.ReasonSecretMissing, fmt.Sprintf("Secret %s does not exist", in.secretName), in.secret == nil
}

// keysMissing fires when the Secret lacks one of the credential keys, or the annotation that
// says when they were issued. Derived keys (credentials, config, templates) and other
// annotations are repaired from the credentials without calling AWS, not re-issued.
func keysMissing(in issueInput) (string, string, bool) {
	return rkv1.ReasonKeysMissing, fmt.Sprintf("Secret %s lacks complete credentials or the annotation of their issue time", in.secretName), !in.credsOK || !in.issued
}

func requestChanged(in issueInput) (string, string, bool) {
	return rkv1.ReasonRequestChanged, "the spec asks for a different request than the one the credentials were issued for", in.stamp.RequestHash != in.requestHash
}

func rotationRequested(in issueInput) (string, string, bool) {
	return rkv1.ReasonRotationRequested, fmt.Sprintf("annotation %s changed to %q", rkv1.AnnotationRotate, in.rotate), in.rotate != "" && in.rotate != in.stamp.Rotate
}

func renewalDue(in issueInput) (string, string, bool) {
	return rkv1.ReasonRenewalDue, fmt.Sprintf("renewal was due at %s; credentials expire at %s", rfc3339(in.renewal), rfc3339(in.expiration)), !in.now.Before(in.renewal)
}

// firstDue asks the issue checks in order; due is false when none fires.
func firstDue(in issueInput) (reason, message string, due bool) {
	for _, check := range issueChecks {
		if reason, message, fire := check(in); fire {
			return reason, message, true
		}
	}
	return "", "", false
}

// backoffInput is what the backoff gate looks at: the status, which records the last failure
// and its retry time, and the spec as it is now.
type backoffInput struct {
	status     rkv1.AssumedRoleStatus
	generation int64
	rotate     string
	now        time.Time
}

// A backoffRelease lets a due issuance go ahead despite the backoff after a failure; message
// says why.
type backoffRelease func(in backoffInput) (message string, release bool)

// backoffReleases are asked in order; when none releases, the issuance waits for the retry time.
var backoffReleases = []backoffRelease{noFailure, specChanged, newRotationRequest, backoffOver}

func noFailure(in backoffInput) (string, bool) {
	return "the last issuance did not fail", in.status.FailedAttempts == 0 || in.status.LastFailure == nil || in.status.RenewalTime == nil
}

// specChanged: a failure of one spec says nothing about the next.
func specChanged(in backoffInput) (string, bool) {
	return "the spec changed since the failure", in.status.LastFailure.Generation != in.generation
}

// newRotationRequest: a new rotate value is how a user retries after fixing the cause in AWS.
func newRotationRequest(in backoffInput) (string, bool) {
	return fmt.Sprintf("%s changed since the failure", rkv1.AnnotationRotate), in.rotate != in.status.RotateRequest
}

func backoffOver(in backoffInput) (string, bool) {
	return "the retry time has come", !in.now.Before(in.status.RenewalTime.Time)
}

// heldBack reports whether a backoff holds the issuance back, and until when.
func heldBack(in backoffInput) (until time.Time, held bool) {
	for _, release := range backoffReleases {
		if _, ok := release(in); ok {
			return time.Time{}, false
		}
	}
	return in.status.RenewalTime.Time, true
}
