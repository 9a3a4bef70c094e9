package controllers

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// Pure setters of AssumedRole status. Each takes the facts it needs and sets the three
// conditions consistently (kstatus: Ready summarises, Issuing is "reconciling", Stalled is
// "failed"), each with the object's generation.

func setCondition(ar *rkv1.AssumedRole, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&ar.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: ar.Generation,
	})
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// issuedFacts describes the credentials in the Secret.
type issuedFacts struct {
	secretName     string
	issuedAt       time.Time
	expiration     time.Time
	renewalTime    time.Time
	assumedRoleArn string
	assumedRoleID  string
	sourceIdentity string
	packedSize     *int32
	// reason is ReasonIssued, ReasonRenewed, or "" when nothing was issued in this reconcile (the
	// Secret was found up to date).
	reason string
}

// setIssued records credentials that are in the Secret and current for the spec.
func setIssued(ar *rkv1.AssumedRole, f issuedFacts) {
	st := &ar.Status
	st.SecretName = f.secretName
	st.Expiration = timePtr(f.expiration)
	st.RenewalTime = timePtr(f.renewalTime)
	st.LastIssuedTime = timePtr(f.issuedAt)
	if f.reason != "" {
		// Fields STS returns only at issue time are kept from the issuing reconcile.
		st.AssumedRoleUser = nil
		if f.assumedRoleArn != "" || f.assumedRoleID != "" {
			st.AssumedRoleUser = &rkv1.AssumedRoleUser{Arn: f.assumedRoleArn, AssumedRoleID: f.assumedRoleID}
		}
		st.SourceIdentity = f.sourceIdentity
		st.PackedPolicySize = f.packedSize
		st.FailedAttempts = 0
		st.LastFailure = nil
	}
	st.ObservedGeneration = ar.Generation
	reason := f.reason
	if reason == "" {
		reason = rkv1.ReasonIssued
		if c := meta.FindStatusCondition(st.Conditions, rkv1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
			reason = c.Reason
		}
	}
	setCondition(ar, rkv1.ConditionReady, metav1.ConditionTrue, reason,
		fmt.Sprintf("credentials in Secret %s are valid until %s; renewal at %s%s", f.secretName, rfc3339(f.expiration), rfc3339(f.renewalTime), restartNote(st.RolloutRestart)))
	setCondition(ar, rkv1.ConditionIssuing, metav1.ConditionFalse, rkv1.ReasonUpToDate, "credentials are current")
	setCondition(ar, rkv1.ConditionStalled, metav1.ConditionFalse, rkv1.ReasonUpToDate, "")
}

// failureFacts describes a failed issuance.
type failureFacts struct {
	code, message string
	retryable     bool
	at, retryAt   time.Time
	// dueReason says why an issuance was attempted (the Issuing reason).
	dueReason string
	// validUntil is the expiry of credentials still in the Secret and current for the spec; zero
	// when there are none.
	validUntil time.Time
	// reason is the Ready and Stalled reason: ReasonIssueFailed unless the cause has its own.
	reason string
}

// setIssueFailed records a failed call to STS. Retryable failures keep Ready=True while the
// Secret still holds valid credentials for the spec; terminal ones set Stalled.
func setIssueFailed(ar *rkv1.AssumedRole, f failureFacts) {
	if f.reason == "" {
		f.reason = rkv1.ReasonIssueFailed
	}
	st := &ar.Status
	st.FailedAttempts++
	st.LastFailure = &rkv1.IssueFailure{Code: f.code, Message: f.message, Time: timePtr(f.at), Generation: ar.Generation, Retryable: f.retryable}
	st.RenewalTime = timePtr(f.retryAt)
	attempt := fmt.Sprintf("attempt %d failed with %s: %s", st.FailedAttempts, f.code, f.message)
	if f.retryable {
		setCondition(ar, rkv1.ConditionIssuing, metav1.ConditionTrue, f.dueReason, fmt.Sprintf("%s; retrying at %s", attempt, rfc3339(f.retryAt)))
		setCondition(ar, rkv1.ConditionStalled, metav1.ConditionFalse, rkv1.ReasonIssueFailed, "")
	} else {
		setCondition(ar, rkv1.ConditionIssuing, metav1.ConditionFalse, f.reason, attempt)
		setCondition(ar, rkv1.ConditionStalled, metav1.ConditionTrue, f.reason,
			fmt.Sprintf("%s; retrying at %s or when the spec changes", attempt, rfc3339(f.retryAt)))
	}
	if f.retryable && !f.validUntil.IsZero() && f.at.Before(f.validUntil) {
		setCondition(ar, rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssueFailed,
			fmt.Sprintf("credentials in Secret %s remain valid until %s; renewal is failing (%s) and retries at %s", st.SecretName, rfc3339(f.validUntil), f.code, rfc3339(f.retryAt)))
		return
	}
	setCondition(ar, rkv1.ConditionReady, metav1.ConditionFalse, f.reason, attempt)
}

// setBlocked records that issuing cannot proceed for a reason outside AWS: NotPermitted,
// SecretConflict, InvalidSpec (stalled) or SourceNotReady (waiting, not stalled).
func setBlocked(ar *rkv1.AssumedRole, reason, message string, stalled bool) {
	setCondition(ar, rkv1.ConditionReady, metav1.ConditionFalse, reason, message)
	if stalled {
		setCondition(ar, rkv1.ConditionIssuing, metav1.ConditionFalse, reason, message)
		setCondition(ar, rkv1.ConditionStalled, metav1.ConditionTrue, reason, message)
		return
	}
	setCondition(ar, rkv1.ConditionIssuing, metav1.ConditionTrue, reason, message)
	setCondition(ar, rkv1.ConditionStalled, metav1.ConditionFalse, reason, "")
}

func timePtr(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.UTC().Truncate(time.Second))
	return &mt
}
