package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/access"
	"github.com/rolekeeper/rolekeeper/pkg/patch"
	"github.com/rolekeeper/rolekeeper/pkg/renewal"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

// +kubebuilder:rbac:groups=rolekeeper.io,resources=assumedroles,verbs=get;list;watch
// +kubebuilder:rbac:groups=rolekeeper.io,resources=assumedroles/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=rolekeeper.io,resources=assumedroles/finalizers,verbs=update
// +kubebuilder:rbac:groups=rolekeeper.io,resources=assumedrolepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// STS is the part of pkg/sts the reconciler uses.
type STS interface {
	AssumeRole(ctx context.Context, req sts.AssumeRoleRequest, source *sts.Credentials) (*sts.Result, error)
	AssumeRoot(ctx context.Context, req sts.AssumeRootRequest, source *sts.Credentials) (*sts.Result, error)
	ECRAuthorizationToken(ctx context.Context, req sts.ECRRequest, creds sts.Credentials) ([]sts.ECRLogin, error)
	// OwnIdentity is who the operator's own credentials are (GetCallerIdentity, remembered until
	// the credentials change).
	OwnIdentity(ctx context.Context) (sts.Identity, error)
}

// AssumedRoleReconciler keeps the Secret of each AssumedRole filled with valid credentials.
type AssumedRoleReconciler struct {
	// Client reads from the cache (AssumedRoles, policies, namespaces and owned Secrets) and
	// writes to the API server.
	client.Client
	// APIReader reads past the cache: Secrets the operator does not own are not cached.
	APIReader client.Reader
	STS       STS
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
	Options   Options

	budgetOnce  sync.Once
	issueEvents *rate.Limiter
	// spread counts renewals per second, so that credentials issued together renew apart.
	spread renewal.Spread
}

// scope is what one reconcile knows about one AssumedRole.
type scope struct {
	ar     *rkv1.AssumedRole
	before rkv1.AssumedRoleStatus // the status as read, to patch only what changed
	now    time.Time
	log    logr.Logger

	req    *request
	secret *corev1.Secret // nil when it does not exist
	stamp  stamp          // what the Secret's annotations record; zero without a Secret
	source *sts.Credentials
	// creds are the credentials in the Secret when it holds a complete set. For an image-pull
	// Secret only creds.Expiration is known (from its annotation) and registries holds the logins.
	creds      secretdata.Input
	credsOK    bool
	registries []secretdata.RegistryAuth
	// dueReason and dueMessage say why an issuance is due; empty when nothing is due.
	dueReason, dueMessage string
	// inherited are the transitive session tags the source's session passes on, by lower-case key.
	inherited map[string]sts.Tag
	// called is set once this reconcile called STS: only it knows the outcome.
	called bool
}

// step is one named stage of a reconcile. It returns done=true to end the reconcile with res.
type step func(ctx context.Context, s *scope) (done bool, res ctrl.Result, err error)

// Reconcile brings one AssumedRole's Secret and status up to date.
func (r *AssumedRoleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ar := &rkv1.AssumedRole{}
	if err := r.Get(ctx, req.NamespacedName, ar); err != nil {
		if apierrors.IsNotFound(err) {
			r.spread.Forget(req.String())
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ar.DeletionTimestamp.IsZero() {
		r.spread.Forget(req.String())
		return ctrl.Result{}, nil // the Secret goes with it through its owner reference
	}
	s := &scope{ar: ar, before: *ar.Status.DeepCopy(), now: r.Clock.Now(), log: ctrl.LoggerFrom(ctx)}
	// The access check comes first: everything after it costs more than a lookup, and an
	// AssumedRole no policy allows must not cost the operator anything else.
	res, err := r.run(ctx, s, r.checkAccess, r.resolveRequest, r.checkTemplate, r.checkIdentity, r.loadSecret, r.decide, r.resolveSource, r.issue)
	perr := r.patchStatus(ctx, s)
	if apierrors.IsConflict(perr) && err == nil {
		// Decided on a stale copy of the AssumedRole; decide again on the current one.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return ctrl.Result{}, err // never together with a requeue delay: the delay would be dropped
	}
	return res, nil
}

func (r *AssumedRoleReconciler) run(ctx context.Context, s *scope, steps ...step) (ctrl.Result, error) {
	for _, st := range steps {
		if done, res, err := st(ctx, s); done || err != nil {
			return res, err
		}
	}
	return ctrl.Result{}, nil
}

// patchStatus writes status when it changed. A reconcile that decided from a stale cached copy
// must not overwrite newer status, so the patch carries the resourceVersion it was based on.
// Only a reconcile that has just called STS writes without that check, because what it records
// about the call (the credentials' metadata, or the failure that sets the backoff) is known only
// to it; it replaces the status whole, since a difference computed against a cached copy that
// missed the last write would leave fields of that write in place (a failedAttempts of the
// failure before a recovery, say).
func (r *AssumedRoleReconciler) patchStatus(ctx context.Context, s *scope) error {
	if equality.Semantic.DeepEqual(s.before, s.ar.Status) {
		return nil
	}
	var p client.Patch = patch.Status{Before: &s.before, After: &s.ar.Status, ResourceVersion: s.ar.ResourceVersion}
	if s.called {
		p = patch.WholeStatus{Status: &s.ar.Status}
	}
	// The API server answers with the metadata only: nothing reads the object it wrote (the
	// cache sees it through the watch), and decoding the whole of it is a large share of the
	// operator's cost per issuance.
	target := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: s.ar.Namespace, Name: s.ar.Name}}
	target.SetGroupVersionKind(rkv1.GroupVersion.WithKind("AssumedRole"))
	return r.Status().Patch(ctx, target, p)
}

// resolveRequest builds the STS request from the spec and the operator's options.
func (r *AssumedRoleReconciler) resolveRequest(_ context.Context, s *scope) (bool, ctrl.Result, error) {
	req, err := buildRequest(s.ar, r.Options)
	s.req = req
	if err != nil {
		r.block(s, rkv1.ReasonInvalidSpec, "the request cannot be sent to AWS: "+err.Error(), true)
		return true, ctrl.Result{}, nil //nolint:nilerr // an invalid spec is reported in status; retrying cannot help until it changes
	}
	return false, ctrl.Result{}, nil
}

// checkTemplate renders spec.secret.template with stand-in credentials of the longest real sizes,
// so a template that cannot render is reported before any call to AWS and the Secret stays as
// it was. Rendering is bounded in memory and work (pkg/secretdata), and runs only for
// AssumedRoles some policy allows.
func (r *AssumedRoleReconciler) checkTemplate(_ context.Context, s *scope) (bool, ctrl.Result, error) {
	if s.ar.Spec.Secret.Template == nil {
		return false, ctrl.Result{}, nil
	}
	if _, err := secretdata.RenderTemplates(s.ar.Spec.Secret.Template.Data, templateValues(s, secretdata.StandIn(s.now))); err != nil {
		r.block(s, rkv1.ReasonTemplateInvalid, "spec.secret.template: "+sts.Redact(err.Error()), true)
		return true, ctrl.Result{}, nil
	}
	return false, ctrl.Result{}, nil
}

func templateValues(s *scope, c secretdata.Input) secretdata.TemplateValues {
	v := secretdata.TemplateValues{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
		Expiration: c.Expiration, Region: s.req.region, Profile: s.ar.Spec.Secret.Profile}
	if v.Profile == "" {
		v.Profile = "default"
	}
	if s.req.role != nil {
		v.RoleArn = s.req.role.RoleArn
	}
	return v
}

// checkAccess refuses requests no AssumedRolePolicy allows, before any call to AWS and before
// anything else is done with the spec.
func (r *AssumedRoleReconciler) checkAccess(ctx context.Context, s *scope) (bool, ctrl.Result, error) {
	if !r.Options.RequireAccessPolicy {
		return false, ctrl.Result{}, nil
	}
	var policies rkv1.AssumedRolePolicyList
	if err := r.List(ctx, &policies); err != nil {
		return true, ctrl.Result{}, err
	}
	var ns corev1.Namespace
	if err := r.Get(ctx, client.ObjectKey{Name: s.ar.Namespace}, &ns); err != nil {
		return true, ctrl.Result{}, err
	}
	d := access.Evaluate(policies.Items, access.Namespace{Name: ns.Name, Labels: ns.Labels}, AccessRequest(s.ar))
	if !d.Allowed {
		r.block(s, rkv1.ReasonNotPermitted, d.Message, true)
		return true, ctrl.Result{}, nil // a policy or namespace change re-queues through the watches
	}
	return false, ctrl.Result{}, nil
}

// checkIdentity refuses, before any call, a session AWS would refuse because of who the operator
// is. Signed by a role session (IRSA, EKS Pod Identity, an instance profile), every AssumeRole is
// role chaining, which AWS caps at one hour. The identity is remembered, so this asks STS only
// when the operator's credentials have changed.
func (r *AssumedRoleReconciler) checkIdentity(ctx context.Context, s *scope) (bool, ctrl.Result, error) {
	role := s.req.role
	if role == nil || role.Chained || role.DurationSeconds <= sts.MaxChainedDurationSeconds {
		return false, ctrl.Result{}, nil
	}
	id, err := r.STS.OwnIdentity(ctx)
	if err != nil || !id.RoleSession() {
		return false, ctrl.Result{}, nil //nolint:nilerr // not knowing who the operator is blocks nothing: AWS has the last word on the call
	}
	r.block(s, rkv1.ReasonRoleChainingLimit, fmt.Sprintf("spec.assumeRole.durationSeconds is %d, but the operator's own AWS identity %s is a role session (IRSA, EKS Pod Identity or an instance profile), so every AssumeRole it makes is role chaining, which AWS limits to %d s: set durationSeconds to %d or less",
		role.DurationSeconds, id.Arn, sts.MaxChainedDurationSeconds, sts.MaxChainedDurationSeconds), true)
	return true, ctrl.Result{}, nil
}

// loadSecret finds the target Secret and refuses to touch one this AssumedRole does not own.
func (r *AssumedRoleReconciler) loadSecret(ctx context.Context, s *scope) (bool, ctrl.Result, error) {
	secret, owned, err := r.getSecret(ctx, s.ar)
	if err != nil {
		return true, ctrl.Result{}, err
	}
	if secret != nil && !owned {
		return r.secretConflict(s)
	}
	r.setSecret(s, secret)
	return false, ctrl.Result{}, nil
}

// setSecret records the Secret (nil when it does not exist) and what it holds.
func (r *AssumedRoleReconciler) setSecret(s *scope, secret *corev1.Secret) {
	s.secret, s.stamp, s.creds, s.credsOK, s.registries = secret, stamp{}, secretdata.Input{}, false, nil
	if secret == nil {
		return
	}
	s.stamp = stampOf(secret)
	switch {
	case secret.Type != secretType(s.ar):
		// Issued for the other kind of Secret; the next issuance replaces it.
	case s.req.ecr != nil:
		auths, err := secretdata.ParseDockerConfigJSON(secret.Data[secretdata.KeyDockerConfigJSON])
		exp, expErr := time.Parse(time.RFC3339, secret.Annotations[rkv1.AnnotationExpiration])
		s.registries, s.creds.Expiration, s.credsOK = auths, exp, err == nil && expErr == nil
	default:
		s.creds, s.credsOK = secretdata.Credentials(secret.Data)
	}
}

// secretConflict reports a target Secret this AssumedRole does not own; it is left untouched.
func (r *AssumedRoleReconciler) secretConflict(s *scope) (bool, ctrl.Result, error) {
	r.block(s, rkv1.ReasonSecretConflict, fmt.Sprintf("Secret %s exists and is not owned by this AssumedRole; it is left untouched. Delete it or set spec.secret.name to another name", secretName(s.ar)), true)
	return true, ctrl.Result{RequeueAfter: time.Minute}, nil // foreign Secrets are not watched
}

// check is one named reason to issue credentials now.
type check struct {
	reason string
	due    func(r *AssumedRoleReconciler, s *scope) (bool, string)
}

// issueChecks are asked in order; the first that fires becomes the Issuing reason.
var issueChecks = []check{
	{rkv1.ReasonSecretMissing, func(_ *AssumedRoleReconciler, s *scope) (bool, string) {
		return s.secret == nil, fmt.Sprintf("Secret %s does not exist", secretName(s.ar))
	}},
	{rkv1.ReasonKeysMissing, func(_ *AssumedRoleReconciler, s *scope) (bool, string) {
		_, issuedOK := issuedAt(s.secret)
		return !s.credsOK || !issuedOK, fmt.Sprintf("Secret %s lacks complete credentials or their annotations", secretName(s.ar))
	}},
	{rkv1.ReasonRequestChanged, func(_ *AssumedRoleReconciler, s *scope) (bool, string) {
		return s.secret.Annotations[rkv1.AnnotationRequestHash] != s.req.hash, "the spec asks for a different request than the one the credentials were issued for"
	}},
	{rkv1.ReasonRotationRequested, func(_ *AssumedRoleReconciler, s *scope) (bool, string) {
		want := s.ar.Annotations[rkv1.AnnotationRotate]
		return want != "" && want != s.secret.Annotations[rkv1.AnnotationRotate], fmt.Sprintf("annotation %s changed to %q", rkv1.AnnotationRotate, want)
	}},
	{rkv1.ReasonRenewalDue, func(_ *AssumedRoleReconciler, s *scope) (bool, string) {
		at := s.renewalTime()
		return !s.now.Before(at), fmt.Sprintf("renewal was due at %s; credentials expire at %s", rfc3339(at), rfc3339(s.creds.Expiration))
	}},
}

func issuedAt(secret *corev1.Secret) (time.Time, bool) {
	if secret == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, secret.Annotations[rkv1.AnnotationIssuedAt])
	return t, err == nil
}

// renewalTime is when the credentials in the Secret are due for renewal: the renewal slot
// recorded at issue makes it the time chosen then.
func (s *scope) renewalTime() time.Time {
	return renewal.Time(s.stamp.issuedAt, s.creds.Expiration, RenewalPolicy(s.ar), renewal.Seed(string(s.ar.UID), s.stamp.slot))
}

// spreadKey names an AssumedRole in the renewal spread.
func spreadKey(ar *rkv1.AssumedRole) string { return ar.Namespace + "/" + ar.Name }

// decide asks the checks; when nothing is due it repairs derived keys without calling AWS and
// schedules the next renewal.
func (r *AssumedRoleReconciler) decide(ctx context.Context, s *scope) (bool, ctrl.Result, error) {
	if !r.due(s) {
		return r.upToDate(ctx, s)
	}
	return r.waitForBackoff(s)
}

// due asks the checks in order and records the first that fires.
func (r *AssumedRoleReconciler) due(s *scope) bool {
	s.dueReason, s.dueMessage = "", ""
	for _, c := range issueChecks {
		if due, msg := c.due(r, s); due {
			s.dueReason, s.dueMessage = c.reason, msg
			return true
		}
	}
	return false
}

// upToDate is the outcome when the Secret holds current credentials: keys someone edited are
// repaired from them, status records them, and the reconcile sleeps until their renewal time.
func (r *AssumedRoleReconciler) upToDate(ctx context.Context, s *scope) (bool, ctrl.Result, error) {
	if err := r.repairSecret(ctx, s); err != nil {
		return true, ctrl.Result{}, err
	}
	at := s.renewalTime()
	r.spread.Observe(spreadKey(s.ar), at)
	setIssued(s.ar, issuedFacts{secretName: s.secret.Name, issuedAt: s.stamp.issuedAt, expiration: s.creds.Expiration, renewalTime: at})
	s.ar.Status.RotateRequest = s.secret.Annotations[rkv1.AnnotationRotate]
	return true, requeueAt(at, s.now), nil
}

// requeueAt asks to be woken at t. A time already past (a renewal due by the time a slow call
// returned) wakes it at once rather than never: controller-runtime ignores a delay that is not
// positive.
func requeueAt(t, now time.Time) ctrl.Result {
	return ctrl.Result{RequeueAfter: max(t.Sub(now), time.Second)}
}

// waitForBackoff holds an issuance back while a backoff from a failure of the same spec is in
// force. A changed spec or a new manual rotation request goes ahead at once, whatever made the
// issuance due (a rotation request is how a user retries after fixing the cause in AWS).
func (r *AssumedRoleReconciler) waitForBackoff(s *scope) (bool, ctrl.Result, error) {
	st := s.ar.Status
	if st.FailedAttempts == 0 || st.LastFailure == nil || st.LastFailure.Generation != s.ar.Generation ||
		st.RenewalTime == nil || s.ar.Annotations[rkv1.AnnotationRotate] != st.RotateRequest {
		return false, ctrl.Result{}, nil
	}
	if wait := st.RenewalTime.Sub(s.now); wait > 0 {
		return true, ctrl.Result{RequeueAfter: wait}, nil
	}
	return false, ctrl.Result{}, nil
}

// issue calls STS and writes the credentials into the Secret.
func (r *AssumedRoleReconciler) issue(ctx context.Context, s *scope) (bool, ctrl.Result, error) {
	if done, res, err := r.confirmDue(ctx, s); done || err != nil {
		return true, res, err
	}
	var res *sts.Result
	var err error
	s.called = true
	if s.req.role != nil {
		res, err = r.STS.AssumeRole(ctx, *s.req.role, s.source)
	} else {
		res, err = r.STS.AssumeRoot(ctx, *s.req.root, s.source)
	}
	s.ar.Status.RotateRequest = s.ar.Annotations[rkv1.AnnotationRotate]
	if err != nil {
		return true, r.recordFailure(s, err), nil
	}
	normalize(res)
	if s.req.ecr != nil {
		if err := r.ecrLogin(ctx, s, res); err != nil {
			return true, r.recordFailure(s, err), nil
		}
	}
	first := s.secret == nil && s.before.LastIssuedTime == nil
	slot, at := r.spread.Place(spreadKey(s.ar), res.IssuedAt, res.Credentials.Expiration, RenewalPolicy(s.ar), string(s.ar.UID))
	if err := r.writeSecret(ctx, s, res, slot); err != nil {
		r.spread.Forget(spreadKey(s.ar)) // relearnt from the Secret on the next reconcile
		if errors.Is(err, errSecretTaken) {
			s.log.Info("discarded issued credentials: the Secret is taken", "secret", secretName(s.ar))
			return r.secretConflict(s)
		}
		var terr *templateError
		if errors.As(err, &terr) {
			// The issued credentials did not fit the template where the stand-ins did (a session
			// token longer than any seen): nothing is written, and nothing more is issued until
			// the template changes.
			r.block(s, rkv1.ReasonTemplateInvalid, "spec.secret.template: "+terr.msg, true)
			return true, ctrl.Result{}, nil
		}
		return true, ctrl.Result{}, fmt.Errorf("writing Secret %s after a successful %s: %w", secretName(s.ar), operation(s.req), err)
	}
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
	return true, requeueAt(at, r.Clock.Now()), nil
}

// confirmDue reads the Secret past the cache right before STS is called, and asks the checks
// again on it. The cache can lag the operator's own last write: a status write retried a moment
// after an issuance, or a policy or namespace event right after one, would otherwise find the old
// Secret, call STS a second time and roll the workloads again. A Secret of that name found to
// be someone else's stops the issuance before anything is sent to AWS.
func (r *AssumedRoleReconciler) confirmDue(ctx context.Context, s *scope) (bool, ctrl.Result, error) {
	live := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: s.ar.Namespace, Name: secretName(s.ar)}, live)
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return true, ctrl.Result{}, err
	case !metav1.IsControlledBy(live, s.ar):
		return r.secretConflict(s)
	}
	r.setSecret(s, live)
	if r.due(s) {
		return false, ctrl.Result{}, nil
	}
	return r.upToDate(ctx, s)
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

// normalize keeps the times of an issuance in whole seconds, as the Secret stores them. Every
// later reconcile computes the renewal time from the Secret; computing it here from finer values
// could land on another second, and the next reconcile would rewrite status to "correct" it.
func normalize(res *sts.Result) {
	res.IssuedAt = res.IssuedAt.UTC().Truncate(time.Second)
	res.Credentials.Expiration = res.Credentials.Expiration.UTC().Truncate(time.Second)
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

// recordFailure sets status for a failed call and returns when to retry. The old Secret is not
// touched.
func (r *AssumedRoleReconciler) recordFailure(s *scope, err error) ctrl.Result {
	code, retryable := sts.Code(err), sts.IsRetryable(err)
	if code == "" {
		code = sts.CodeUnknown
	}
	message := failureMessage(err, s.req)
	prev := s.ar.Status.LastFailure
	backoff := renewal.Backoff(s.ar.Status.FailedAttempts+1, retryable, string(s.ar.UID))
	retryAt := s.now.Add(backoff).Truncate(time.Second)
	var validUntil time.Time
	if s.credsOK && s.secret.Annotations[rkv1.AnnotationRequestHash] == s.req.hash {
		validUntil = s.creds.Expiration
	}
	setIssueFailed(s.ar, failureFacts{code: code, message: message, retryable: retryable, at: s.now, retryAt: retryAt, dueReason: s.dueReason, validUntil: validUntil, reason: failureReason(err)})
	if prev == nil || prev.Code != code {
		r.event(s.ar, corev1.EventTypeWarning, rkv1.ReasonIssueFailed, "Issue", "%s failed with %s: %s", failedOperation(err, s.req), code, message)
	}
	s.log.Info("issuing failed", "code", code, "retryable", retryable, "attempt", s.ar.Status.FailedAttempts, "retryAt", rfc3339(retryAt), "message", message)
	return ctrl.Result{RequeueAfter: retryAt.Sub(s.now)}
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

// block records a reason issuing cannot proceed, with an event on the transition.
func (r *AssumedRoleReconciler) block(s *scope, reason, message string, stalled bool) {
	prev := meta.FindStatusCondition(s.ar.Status.Conditions, rkv1.ConditionReady)
	setBlocked(s.ar, reason, message, stalled)
	if prev == nil || prev.Reason != reason || prev.Message != message {
		r.event(s.ar, corev1.EventTypeWarning, reason, "Check", "%s", message)
	}
}

// Issued and Renewed events are budgeted: IssueEventsPerSecond, with bursts of IssueEventBurst.
// Warnings (failures, refusals, conflicts) are never held back.
const (
	IssueEventsPerSecond = 5
	IssueEventBurst      = 20
)

func (r *AssumedRoleReconciler) issueEventBudget() *rate.Limiter {
	r.budgetOnce.Do(func() { r.issueEvents = rate.NewLimiter(IssueEventsPerSecond, IssueEventBurst) })
	return r.issueEvents
}

func (r *AssumedRoleReconciler) event(ar *rkv1.AssumedRole, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(ar, nil, typ, reason, action, note, args...)
	}
}
