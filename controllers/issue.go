package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/renewal"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

// issue calls STS (and ECR for an image-pull Secret), writes the credentials into the Secret and
// records the issuance, or the failure.
func (r *AssumedRoleReconciler) issue(ctx context.Context, s *scope) outcome {
	if o := r.confirmDue(ctx, s); !o.next {
		return o
	}
	first := s.firstIssue()
	res, err := r.call(ctx, s)
	if err != nil {
		return r.recordFailure(s, err)
	}
	at, o := r.store(ctx, s, res)
	if !o.next {
		return o
	}
	r.recordIssued(ctx, s, res, at, first)
	return sleepUntil(at)
}

// confirmDue makes sure the decision to call STS was not taken on a cache that lags this
// process's own last write: a status write retried a moment after an issuance, or a policy or
// namespace event right after one, would find the old Secret in the cache, call STS a second
// time and roll the workloads again. When the cached Secret is older than what this process
// last wrote (or missing although it wrote one), the Secret is read past the cache and the checks
// are asked again on it. A cache that shows the last write, or a process that has written
// nothing (after a start its cache was listed afresh), needs no read: a read for every issuance
// would cost the API server about as much again as the issuance's own writes.
func (r *AssumedRoleReconciler) confirmDue(ctx context.Context, s *scope) outcome {
	last, wrote := r.written.Load(s.key)
	if !wrote || (s.secret != nil && !s.stamp.IssuedAt.Before(last.(time.Time))) {
		return proceed()
	}
	live := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: s.ar.Namespace, Name: secretName(s.ar)}, live)
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return failed(err)
	case !metav1.IsControlledBy(live, s.ar):
		return r.secretConflict(s)
	}
	r.setSecret(s, live)
	if s.due() {
		return proceed()
	}
	return r.upToDate(ctx, s)
}

// call asks STS for the session, and ECR for a login with it when the Secret is an image-pull
// Secret. Times come back in whole seconds, as the Secret stores them.
func (r *AssumedRoleReconciler) call(ctx context.Context, s *scope) (*sts.Result, error) {
	s.called = true
	s.ar.Status.RotateRequest = s.ar.Annotations[rkv1.AnnotationRotate]
	var res *sts.Result
	var err error
	if s.req.role != nil {
		res, err = r.STS.AssumeRole(ctx, *s.req.role, s.source)
	} else {
		res, err = r.STS.AssumeRoot(ctx, *s.req.root, s.source)
	}
	if err != nil {
		return nil, err
	}
	normalize(res)
	if s.req.ecr != nil {
		if err := r.ecrLogin(ctx, s, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// normalize keeps the times of an issuance in whole seconds, as the Secret stores them. Every
// later reconcile computes the renewal time from the Secret; computing it here from finer values
// could land on another second, and the next reconcile would rewrite status to "correct" it.
func normalize(res *sts.Result) {
	res.IssuedAt = res.IssuedAt.UTC().Truncate(time.Second)
	res.Credentials.Expiration = res.Credentials.Expiration.UTC().Truncate(time.Second)
}

// ecrLogin exchanges the fresh session for an ECR login token. The Secret then expires with
// whichever ends first, the token or the session: a token is never valid longer than the
// credentials that requested it.
func (r *AssumedRoleReconciler) ecrLogin(ctx context.Context, s *scope, res *sts.Result) error {
	logins, err := r.STS.ECRAuthorizationToken(ctx, *s.req.ecr, res.Credentials)
	if err != nil {
		return err
	}
	s.registries = s.registries[:0]
	for _, l := range logins {
		s.registries = append(s.registries, secretdata.RegistryAuth{Server: l.Server, Username: l.Username, Password: l.Password})
		if exp := l.ExpiresAt.UTC().Truncate(time.Second); exp.Before(res.Credentials.Expiration) {
			res.Credentials.Expiration = exp
		}
	}
	return nil
}

// store places the renewal in the spread (the slot goes into the Secret's stamp) and writes the
// Secret. When the write fails the placement is given back, to be relearnt from the Secret.
func (r *AssumedRoleReconciler) store(ctx context.Context, s *scope, res *sts.Result) (time.Time, outcome) {
	key := s.key.String()
	slot, at := r.spread.Place(key, res.IssuedAt, res.Credentials.Expiration, RenewalPolicy(s.ar), string(s.ar.UID))
	// Recorded before the write: the cache may show the write before writeSecret returns, and
	// the event that shows it is what forgets the record (caughtUp).
	prev, wrote := r.written.Swap(s.key, res.IssuedAt)
	err := r.writeSecret(ctx, s, res, slot)
	if err == nil {
		return at, proceed()
	}
	if wrote {
		r.written.CompareAndSwap(s.key, res.IssuedAt, prev)
	} else {
		r.written.CompareAndDelete(s.key, res.IssuedAt)
	}
	r.spread.Forget(key)
	var terr *templateError
	switch {
	case errors.Is(err, errSecretTaken):
		s.log.Info("discarded issued credentials: the Secret is taken", "secret", secretName(s.ar))
		return at, r.secretConflict(s)
	case errors.As(err, &terr):
		// The issued credentials did not fit the template where the stand-ins did (a session
		// token longer than any seen): nothing is written, and nothing more is issued until the
		// template changes.
		return at, stalled(rkv1.ReasonTemplateInvalid, "spec.secret.template: "+terr.msg)
	}
	return at, failed(fmt.Errorf("writing Secret %s after a successful %s: %w", secretName(s.ar), operation(s.req), err))
}

// recordIssued records an issuance that is in the Secret: rollout restarts after a rotation,
// status, an event when the issuance is news, and a log line.
func (r *AssumedRoleReconciler) recordIssued(ctx context.Context, s *scope, res *sts.Result, at time.Time, first bool) {
	reason := rkv1.ReasonRenewed
	if first {
		reason = rkv1.ReasonIssued
	} else {
		s.ar.Status.RolloutRestart = r.restartTargets(ctx, s.ar, res.IssuedAt)
	}
	setIssued(s.ar, issuedFacts{
		secretName: secretName(s.ar), issuedAt: res.IssuedAt, expiration: res.Credentials.Expiration, renewalTime: at,
		assumedRoleArn: res.AssumedRoleArn, assumedRoleID: res.AssumedRoleID, sourceIdentity: res.SourceIdentity,
		packedSize: res.PackedPolicySize, reason: reason,
	})
	// A routine renewal is not news (status and metrics show it); an event for each would add a
	// write per issuance across every AssumedRole, every hour. Other issuances are announced
	// within a budget shared by all AssumedRoles, so that thousands applied at once do not double
	// the writes they cost; status records every issuance.
	if routine := s.dueReason == rkv1.ReasonRenewalDue && s.before.FailedAttempts == 0; !routine && r.issueEventBudget().Allow() {
		r.event(s.ar, corev1.EventTypeNormal, reason, "Issue", "%s: credentials in Secret %s valid until %s (%s)", operation(s.req), secretName(s.ar), rfc3339(res.Credentials.Expiration), s.dueReason)
	}
	s.log.Info("issued credentials", "reason", s.dueReason, "secret", secretName(s.ar), "expiration", rfc3339(res.Credentials.Expiration), "renewal", rfc3339(at))
}

// recordFailure records a failed call in status, with an event when the code is new, and sleeps
// until the retry time. The old Secret is not touched.
func (r *AssumedRoleReconciler) recordFailure(s *scope, err error) outcome {
	code, retryable := sts.Code(err), sts.IsRetryable(err)
	if code == "" {
		code = sts.CodeUnknown
	}
	message := failureMessage(err, s.req)
	prev := s.ar.Status.LastFailure
	backoff := renewal.Backoff(s.ar.Status.FailedAttempts+1, retryable, string(s.ar.UID))
	retryAt := s.now.Add(backoff).Truncate(time.Second)
	var validUntil time.Time
	if s.credsOK && s.stamp.RequestHash == s.req.hash {
		validUntil = s.creds.Expiration
	}
	setIssueFailed(s.ar, failureFacts{code: code, message: message, retryable: retryable, at: s.now, retryAt: retryAt, dueReason: s.dueReason, validUntil: validUntil, reason: failureReason(err)})
	if prev == nil || prev.Code != code {
		r.event(s.ar, corev1.EventTypeWarning, rkv1.ReasonIssueFailed, "Issue", "%s failed with %s: %s", failedOperation(err, s.req), code, message)
	}
	s.log.Info("issuing failed", "code", code, "retryable", retryable, "attempt", s.ar.Status.FailedAttempts, "retryAt", rfc3339(retryAt), "message", message)
	return sleepUntil(retryAt)
}

// failedOperation names the AWS operation that failed: the STS call, or ECR's
// GetAuthorizationToken after it.
func failedOperation(err error, r *request) string {
	var e *sts.Error
	if errors.As(err, &e) && e.Operation != "" {
		return e.Operation
	}
	return operation(r)
}

func operation(r *request) string {
	if r.role != nil {
		return "AssumeRole"
	}
	return "AssumeRoot"
}

// failureMessage explains an STS failure without credential material, with a hint for the
// common AWS-side causes.
func failureMessage(err error, req *request) string {
	var e *sts.Error
	if !errors.As(err, &e) {
		return sts.Redact(err.Error())
	}
	msg := e.Message
	if e.RequestID != "" {
		msg += " (request id " + e.RequestID + ")"
	}
	switch e.Code {
	case "AccessDenied":
		hint := "check that the role's trust policy allows the operator's identity"
		if req.sentTags {
			hint += " and sts:TagSession (the operator sends session tags " + TagNamespace + " and " + TagName + ")"
		}
		msg += "; " + hint
	case "RegionDisabledException":
		msg += "; activate STS in this region for the account, or set spec.region to an active region"
	case "PackedPolicyTooLarge":
		msg += "; the limit is shared by the session policy, the session tags (the operator adds " + TagNamespace + " and " + TagName + ") and the transitive tags the signing session passes on (an EKS Pod Identity session brings six, about three quarters of the limit): shorten the policy, use fewer or shorter tags, or set disableSessionTags on the operator's pod identity association"
	case "AccessDeniedException":
		if e.Operation == "GetAuthorizationToken" {
			msg += "; the role's identity policy must allow ecr:GetAuthorizationToken (and ecr:BatchGetImage, ecr:GetDownloadUrlForLayer on the repositories to pull)"
		}
	case "ExpiredToken":
		msg += "; the credentials that signed the call had expired (the operator's own session rolled over, or spec.source rotated): retrying with fresh ones"
	case "InvalidClientTokenId":
		msg += "; the identity that signs the call (the operator's, or spec.source) is not valid"
	}
	if transitiveConflict(e) {
		if req.role != nil && req.role.Chained {
			msg += "; the source's session passes transitive session tags that this request sets to other values, which AWS refuses: change the source's transitiveTagKeys or these tags"
		} else {
			msg += "; the operator's own session carries transitive session tags that this request sets to other values, which AWS refuses. EKS Pod Identity adds six, kubernetes-namespace among them: set disableSessionTags on the operator's pod identity association (or run the operator with --session-tags=false, losing the namespace tag)"
		}
	}
	return msg
}

// transitiveConflict reports AWS's refusal to change a transitive tag the signing session
// carries. AWS documents that transitive tags cannot be overridden in later sessions, not the
// error it answers with; this matches a parameter error whose message speaks of transitive tags,
// which is what the emulator answers and what AWS is reported to answer.
func transitiveConflict(e *sts.Error) bool {
	return (e.Code == "InvalidParameterValue" || e.Code == "ValidationError") && strings.Contains(strings.ToLower(e.Message), "transitive")
}

// failureReason is the condition reason of a failed call: IssueFailed, or a reason of its own
// for causes a user must act on in a particular way.
func failureReason(err error) string {
	var e *sts.Error
	switch {
	case !errors.As(err, &e):
		return rkv1.ReasonIssueFailed
	case e.Code == sts.CodeRegionUnknown:
		return rkv1.ReasonRegionUnknown
	case transitiveConflict(e):
		return rkv1.ReasonTransitiveTagConflict
	}
	return rkv1.ReasonIssueFailed
}
