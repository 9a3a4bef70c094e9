package controllers

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
	// APIReader reads past the cache: Secrets the operator does not own are not cached, and a
	// cache that lags the operator's own last write is not trusted with a call to STS.
	APIReader client.Reader
	STS       STS
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
	Options   Options

	budgetOnce  sync.Once
	issueEvents *rate.Limiter
	// spread counts renewals per second, so that credentials issued together renew apart.
	spread renewal.Spread
	// written is the issue time of the credentials this process last wrote into each
	// AssumedRole's Secret, until the cache shows them: a cached Secret issued earlier is a
	// cache that has not caught up.
	written sync.Map // types.NamespacedName → time.Time
	// sourced is set once an AssumedRole with spec.source has been indexed (indexSource), and
	// never cleared: until then no AssumedRole has dependents to wake.
	sourced atomic.Bool
}

// scope is what one reconcile knows about one AssumedRole.
type scope struct {
	key    types.NamespacedName
	ar     *rkv1.AssumedRole
	before rkv1.AssumedRoleStatus // the status as read, to patch only what changed
	now    time.Time
	log    logr.Logger

	req    *request
	secret *corev1.Secret // nil when it does not exist
	stamp  secretdata.Stamp
	// issued is true when the Secret's stamp says when its credentials were issued.
	issued bool
	source *sts.Credentials
	// creds are the credentials in the Secret when it holds a complete set. For an image-pull
	// Secret only creds.Expiration is known (from its stamp) and registries holds the logins.
	creds      secretdata.Input
	credsOK    bool
	registries []secretdata.RegistryAuth
	// cached is true when secret is the cache's compact copy: keys, expiry and a digest of the
	// data, no credential values.
	cached bool
	// dueReason and dueMessage say why an issuance is due; empty when nothing is due.
	dueReason, dueMessage string
	// called is set once this reconcile called STS: only it knows the outcome.
	called bool
}

// step is one named stage of a reconcile; its outcome says whether the reconcile goes on.
type step func(ctx context.Context, s *scope) outcome

// Reconcile brings one AssumedRole's Secret and status up to date.
func (r *AssumedRoleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ar := &rkv1.AssumedRole{}
	if err := r.Get(ctx, req.NamespacedName, ar); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ar.DeletionTimestamp.IsZero() {
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil // the Secret goes with it through its owner reference
	}
	s := &scope{key: req.NamespacedName, ar: ar, before: *ar.Status.DeepCopy(), now: r.Clock.Now(), log: ctrl.LoggerFrom(ctx)}
	// The access check comes first: everything after it costs more than a lookup, and an
	// AssumedRole no policy allows must not cost the operator anything else.
	o := r.run(ctx, s, r.checkAccess, r.resolveRequest, r.checkTemplate, r.checkIdentity, r.loadSecret, r.decide, r.resolveSource, r.issue)
	if err := r.patchStatus(ctx, s); err != nil && o.err == nil {
		if apierrors.IsConflict(err) {
			// Decided on a stale copy of the AssumedRole; decide again on the current one.
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		o = failed(err)
	}
	return o.result(r.Clock.Now())
}

// forget drops what this process remembers of a deleted AssumedRole.
func (r *AssumedRoleReconciler) forget(key types.NamespacedName) {
	r.spread.Forget(key.String())
	r.written.Delete(key)
}

// run runs the steps until one ends the reconcile, and records why issuing is blocked when one
// says so.
func (r *AssumedRoleReconciler) run(ctx context.Context, s *scope, steps ...step) outcome {
	for _, st := range steps {
		o := st(ctx, s)
		if o.next {
			continue
		}
		if b := o.blocked; b != nil {
			prev := meta.FindStatusCondition(s.ar.Status.Conditions, rkv1.ConditionReady)
			setBlocked(s.ar, b.reason, b.message, b.stalled)
			if prev == nil || prev.Reason != b.reason || prev.Message != b.message {
				r.event(s.ar, corev1.EventTypeWarning, b.reason, "Check", "%s", b.message)
			}
		}
		return o
	}
	return outcome{}
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
	// cache sees it through the watch), and decoding the whole of it would cost more than the
	// rest of the write.
	target := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: s.ar.Namespace, Name: s.ar.Name}}
	target.SetGroupVersionKind(rkv1.GroupVersion.WithKind("AssumedRole"))
	return r.Status().Patch(ctx, target, p)
}

// checkAccess refuses requests no AssumedRolePolicy allows, before any call to AWS and before
// anything else is done with the spec. A policy or namespace change re-queues through the
// watches. Every reconcile asks it, and access.Evaluate only reads: the policies and the
// namespace are the cache's own objects, not copies (nothing here may change them).
func (r *AssumedRoleReconciler) checkAccess(ctx context.Context, s *scope) outcome {
	if !r.Options.RequireAccessPolicy {
		return proceed()
	}
	var policies rkv1.AssumedRolePolicyList
	if err := r.List(ctx, &policies, client.UnsafeDisableDeepCopy); err != nil {
		return failed(err)
	}
	var ns corev1.Namespace
	if err := r.Get(ctx, client.ObjectKey{Name: s.ar.Namespace}, &ns, client.UnsafeDisableDeepCopy); err != nil {
		return failed(err)
	}
	if d := access.Evaluate(policies.Items, access.Namespace{Name: ns.Name, Labels: ns.Labels}, AccessRequest(s.ar)); !d.Allowed {
		return stalled(rkv1.ReasonNotPermitted, d.Message)
	}
	return proceed()
}

// resolveRequest builds the STS request from the spec and the operator's options. A request
// that cannot be built stalls until the spec changes.
func (r *AssumedRoleReconciler) resolveRequest(_ context.Context, s *scope) outcome {
	req, err := buildRequest(s.ar, r.Options)
	s.req = req
	if err != nil {
		return stalled(rkv1.ReasonInvalidSpec, "the request cannot be sent to AWS: "+err.Error())
	}
	return proceed()
}

// checkTemplate renders spec.secret.template with stand-in credentials of the longest real sizes,
// so a template that cannot render is reported before any call to AWS and the Secret stays as
// it was. Rendering is bounded in memory and work (pkg/secretdata), and runs only for
// AssumedRoles some policy allows.
func (r *AssumedRoleReconciler) checkTemplate(_ context.Context, s *scope) outcome {
	if s.ar.Spec.Secret.Template == nil {
		return proceed()
	}
	if _, err := secretdata.RenderTemplates(s.ar.Spec.Secret.Template.Data, templateValues(s, secretdata.StandIn(s.now))); err != nil {
		return stalled(rkv1.ReasonTemplateInvalid, "spec.secret.template: "+sts.Redact(err.Error()))
	}
	return proceed()
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

// checkIdentity refuses, before any call, a session AWS would refuse because of who the operator
// is. Signed by a role session (IRSA, EKS Pod Identity, an instance profile), every AssumeRole is
// role chaining, which AWS caps at one hour. The identity is remembered, so this asks STS only
// when the operator's credentials have changed; not knowing who the operator is blocks
// nothing, since AWS has the last word on the call.
func (r *AssumedRoleReconciler) checkIdentity(ctx context.Context, s *scope) outcome {
	role := s.req.role
	if role == nil || role.Chained || role.DurationSeconds <= sts.MaxChainedDurationSeconds {
		return proceed()
	}
	if id, err := r.STS.OwnIdentity(ctx); err == nil && id.RoleSession() {
		return stalled(rkv1.ReasonRoleChainingLimit, fmt.Sprintf("spec.assumeRole.durationSeconds is %d, but the operator's own AWS identity %s is a role session (IRSA, EKS Pod Identity or an instance profile), so every AssumeRole it makes is role chaining, which AWS limits to %d s: set durationSeconds to %d or less",
			role.DurationSeconds, id.Arn, sts.MaxChainedDurationSeconds, sts.MaxChainedDurationSeconds))
	}
	return proceed()
}

// loadSecret finds the target Secret and refuses to touch one this AssumedRole does not own. A
// cached copy whose data is not what the operator wrote (someone edited it, or it predates the
// recorded digests) cannot be judged from the digest alone: it is read past the cache.
func (r *AssumedRoleReconciler) loadSecret(ctx context.Context, s *scope) outcome {
	secret, owned, err := r.getSecret(ctx, s.ar)
	if err != nil {
		return failed(err)
	}
	if secret != nil && !owned {
		return r.secretConflict(s)
	}
	if secret != nil && !vouched(secret) {
		if secret, err = r.readSecret(ctx, s.ar); err != nil {
			return failed(err)
		}
	}
	r.setSecret(s, secret)
	return proceed()
}

// vouched reports whether a Secret can be judged as it is: it is not the cache's compact copy,
// or its data is, by digest, the data the operator wrote.
func vouched(secret *corev1.Secret) bool {
	note, ok := secret.Annotations[annotationCachedNote]
	if !ok {
		return true
	}
	digest, _, _ := parseCacheNote(note)
	return digest != "" && digest == secret.Annotations[rkv1.AnnotationDataDigest]
}

// readSecret reads the target Secret past the cache; nil when it does not exist.
func (r *AssumedRoleReconciler) readSecret(ctx context.Context, ar *rkv1.AssumedRole) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ar.Namespace, Name: secretName(ar)}, secret)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return secret, err
}

// setSecret records the Secret (nil when it does not exist) and what it holds. Of a vouched
// compact copy only the presence of the credentials (or the registry login) is known, from its
// cache note, and their expiry, from the stamp.
func (r *AssumedRoleReconciler) setSecret(s *scope, secret *corev1.Secret) {
	s.secret, s.stamp, s.issued, s.creds, s.credsOK, s.registries, s.cached = secret, secretdata.Stamp{}, false, secretdata.Input{}, false, nil, false
	if secret == nil {
		return
	}
	s.stamp, s.issued = secretdata.ParseStamp(secret.Annotations)
	note, cached := secret.Annotations[annotationCachedNote]
	_, noteCreds, noteLogin := parseCacheNote(note)
	s.cached = cached
	switch {
	case secret.Type != secretType(s.ar):
		// Issued for the other kind of Secret; the next issuance replaces it.
	case s.req.ecr != nil:
		var err error
		present := noteLogin
		if !s.cached {
			var data []byte
			if data, present = secret.Data[secretdata.KeyDockerConfigJSON]; present {
				s.registries, err = secretdata.ParseDockerConfigJSON(data)
			}
		}
		s.creds.Expiration, s.credsOK = s.stamp.Expiration, present && err == nil && !s.stamp.Expiration.IsZero()
	case s.cached:
		s.creds.Expiration, s.credsOK = s.stamp.Expiration, noteCreds && !s.stamp.Expiration.IsZero()
	default:
		s.creds, s.credsOK = secretdata.Credentials(secret.Data)
	}
}

// secretConflict reports a target Secret this AssumedRole does not own; it is left untouched,
// and looked at again in a minute, since Secrets the operator does not own are not watched.
func (r *AssumedRoleReconciler) secretConflict(s *scope) outcome {
	return stalled(rkv1.ReasonSecretConflict, fmt.Sprintf("Secret %s exists and is not owned by this AssumedRole; it is left untouched. Delete it or set spec.secret.name to another name", secretName(s.ar))).
		recheckAt(s.now.Add(time.Minute))
}

// renewalTime is when the credentials in the Secret are due for renewal: the renewal slot
// recorded at issue makes it the time chosen then.
func (s *scope) renewalTime() time.Time {
	return renewal.Time(s.stamp.IssuedAt, s.creds.Expiration, RenewalPolicy(s.ar), renewal.Seed(string(s.ar.UID), s.stamp.Slot))
}

// firstIssue is true when nothing was ever issued for this AssumedRole: rollout restarts and the
// Renewed reason are for re-issues.
func (s *scope) firstIssue() bool { return s.secret == nil && s.before.LastIssuedTime == nil }

// issueInput is what the issue checks are asked about.
func (s *scope) issueInput() issueInput {
	in := issueInput{secretName: secretName(s.ar), secret: s.secret, stamp: s.stamp, issued: s.issued, credsOK: s.credsOK,
		expiration: s.creds.Expiration, requestHash: s.req.hash, rotate: s.ar.Annotations[rkv1.AnnotationRotate], now: s.now}
	if s.secret != nil {
		in.renewal = s.renewalTime()
	}
	return in
}

// due asks the issue checks and records the first that fires.
func (s *scope) due() bool {
	var due bool
	s.dueReason, s.dueMessage, due = firstDue(s.issueInput())
	return due
}

// decide asks the issue checks. When nothing is due, the Secret is repaired if need be and the
// reconcile sleeps until the renewal time; when an issuance is due but a failure's backoff holds
// it back, until the retry time.
func (r *AssumedRoleReconciler) decide(ctx context.Context, s *scope) outcome {
	if !s.due() {
		return r.upToDate(ctx, s)
	}
	in := backoffInput{status: s.ar.Status, generation: s.ar.Generation, rotate: s.ar.Annotations[rkv1.AnnotationRotate], now: s.now}
	if until, held := heldBack(in); held {
		return sleepUntil(until)
	}
	return proceed()
}

// upToDate is the outcome when the Secret holds current credentials: keys someone edited are
// repaired from them, status records them, and the reconcile sleeps until their renewal time.
func (r *AssumedRoleReconciler) upToDate(ctx context.Context, s *scope) outcome {
	if err := r.repairSecret(ctx, s); err != nil {
		return failed(err)
	}
	at := s.renewalTime()
	r.spread.Observe(s.key.String(), at)
	setIssued(s.ar, issuedFacts{secretName: s.secret.Name, issuedAt: s.stamp.IssuedAt, expiration: s.creds.Expiration, renewalTime: at})
	s.ar.Status.RotateRequest = s.stamp.Rotate
	return sleepUntil(at)
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
