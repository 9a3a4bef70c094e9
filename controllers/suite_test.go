package controllers_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	th "github.com/rolekeeper/rolekeeper/test/harness"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

var (
	cfg    *rest.Config
	k8s    client.Client
	scheme = controllers.NewScheme()
)

var operator = ststest.Principal{
	AccessKeyID:     "AKIAOPERATOR00000001",
	SecretAccessKey: "operatorSecretKey0000000000000000000000001",
	Arn:             "arn:aws:iam::000000000000:user/rolekeeper",
}

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test control plane:", err)
		os.Exit(1)
	}
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	code := 1
	if err == nil {
		code = m.Run()
	}
	_ = env.Stop()
	os.Exit(code)
}

// harness is one test's world: its namespace, an STS emulator, and a manager running the
// reconciler against both.
type harness struct {
	// t is the running test or phase; root is the test, which owns the harness's cleanups.
	t, root *testing.T
	ns      string
	sts     *ststest.Server
	logs    *th.SyncBuffer
	cancel  context.CancelFunc
	done    chan struct{}
	// failStatus, when positive, makes that many status writes fail.
	failStatus atomic.Int32
	opts       controllers.Options
	// extra are further namespaces of this test, watched by its manager.
	extra []string
	// clusterRoles also runs the ClusterAssumedRole reconciler. ClusterAssumedRoles are
	// cluster-scoped, so only one test at a time may run it.
	clusterRoles bool
	// identity is the operator's own AWS identity; default the IAM user operator.
	identity ststest.Principal
	// stsMod adjusts the operator's STS client options.
	stsMod func(*sts.Options)
	// lagSecrets makes the reconciler see Secrets as its cache saw them that long ago.
	lagSecrets time.Duration
	// metrics are the manager's metrics, registered in registry.
	metrics  *controllers.Metrics
	registry *prometheus.Registry
	// beforeSecretWrite, when set, runs before each Secret create, update and delete the
	// reconciler sends, to play someone else's write landing just before it.
	beforeSecretWrite func(verb string, s *corev1.Secret)

	mu sync.Mutex
	// reconciles counts the finished reconciles of each AssumedRole, across restarts.
	reconciles map[client.ObjectKey]int
	// lastStart is when the latest finished reconcile of each AssumedRole started.
	lastStart map[client.ObjectKey]time.Time
	// sent counts the events the reconciler sent, by reason.
	sent map[string]int
	// liveReads counts the reconciler's reads past the cache.
	liveReads atomic.Int64
	// rec is the running AssumedRole reconciler.
	rec *controllers.AssumedRoleReconciler
}

// newHarness creates a namespace and an emulator; start runs the manager.
func newHarness(t *testing.T, emu ststest.Options) *harness {
	t.Helper()
	ns := th.Namespace(t, k8s, fmt.Sprintf("t-%s-%d", testName(t.Name(), 36), time.Now().UnixNano()%100000), nil)
	emu.Principals = append(emu.Principals, operator)
	h := &harness{t: t, root: t, ns: ns, sts: ststest.New(emu).Start(), logs: &th.SyncBuffer{}, identity: operator,
		reconciles: map[client.ObjectKey]int{}, lastStart: map[client.ObjectKey]time.Time{}, sent: map[string]int{}}
	h.opts = controllers.Options{Region: "us-east-1", RequireAccessPolicy: false, SessionTags: true, MaxConcurrentReconciles: 2}
	t.Cleanup(func() {
		h.stop()
		h.sts.Close()
		if t.Failed() {
			t.Logf("manager log:\n%s", h.logs.String())
		}
	})
	return h
}

// testName turns a test's name into at most n characters of a DNS label, keeping its end (where
// subtests differ). Namespaces are kept short so that "<namespace>.<name>" session names are
// not cut.
func testName(name string, n int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	out := b.String()
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Trim(out, "-")
}

func (h *harness) stsClient() *sts.Client {
	opts := sts.Options{Endpoint: h.sts.URL, ECREndpoint: h.sts.URL, MaxAttempts: 1, QPS: 1000, Burst: 1000, Timeout: 5 * time.Second, Observe: h.metrics.ObserveSTS}
	if h.stsMod != nil {
		h.stsMod(&opts)
	}
	id := h.identity
	return sts.New(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id.AccessKeyID, id.SecretAccessKey, id.SessionToken)}, opts)
}

// statusFailingClient fails status writes while the harness asks it to, and runs the harness's
// hook before Secret writes.
type statusFailingClient struct {
	client.Client
	h *harness
}

func (c statusFailingClient) Status() client.SubResourceWriter {
	return statusFailingWriter{c.Client.Status(), c.h}
}

func (c statusFailingClient) hook(verb string, obj client.Object) {
	if s, ok := obj.(*corev1.Secret); ok && c.h.beforeSecretWrite != nil {
		c.h.beforeSecretWrite(verb, s)
	}
}

func (c statusFailingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.hook("create", obj)
	return c.Client.Create(ctx, obj, opts...)
}

func (c statusFailingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.hook("update", obj)
	return c.Client.Update(ctx, obj, opts...)
}

func (c statusFailingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.hook("delete", obj)
	return c.Client.Delete(ctx, obj, opts...)
}

// laggingSecrets serves Secrets as the cache held them lag ago: a cache that has not yet seen
// the operator's own last write. Every version the informer delivers is kept with its arrival
// time.
type laggingSecrets struct {
	client.Client
	lag     time.Duration
	mu      sync.Mutex
	history map[client.ObjectKey][]secretVersion
}

type secretVersion struct {
	at     time.Time
	secret *corev1.Secret // nil once deleted
}

func (l *laggingSecrets) record(obj any, deleted bool) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	v := secretVersion{at: time.Now()}
	if !deleted {
		v.secret = s.DeepCopy()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key := client.ObjectKeyFromObject(s)
	l.history[key] = append(l.history[key], v)
}

func (l *laggingSecrets) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return l.Client.Get(ctx, key, obj, opts...)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var seen *corev1.Secret
	for _, v := range l.history[key] {
		if time.Since(v.at) >= l.lag {
			seen = v.secret
		}
	}
	if seen == nil {
		return apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
	}
	seen.DeepCopyInto(s)
	return nil
}

type statusFailingWriter struct {
	client.SubResourceWriter
	h *harness
}

func (w statusFailingWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if w.h.failStatus.Add(-1) >= 0 {
		return fmt.Errorf("injected status write failure")
	}
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// start runs a manager with production cache settings, watching only the harness namespace.
func (h *harness) start() {
	h.t.Helper()
	logger := zap.New(zap.WriteTo(h.logs), zap.UseDevMode(false))
	opCfg := rest.CopyConfig(cfg)
	opCfg.Wrap(controllers.WatchTransport)
	mgr, err := ctrl.NewManager(opCfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(append([]string{h.ns}, h.extra...)),
		MapperProvider:         controllers.NewRESTMapper,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 logger,
		Controller:             configController(),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctrl.LoggerInto(context.Background(), logger))
	c := mgr.GetClient()
	if h.lagSecrets > 0 {
		lagging := &laggingSecrets{Client: c, lag: h.lagSecrets, history: map[client.ObjectKey][]secretVersion{}}
		inf, err := mgr.GetCache().GetInformer(ctx, &corev1.Secret{})
		if err != nil {
			h.t.Fatal(err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { lagging.record(o, false) },
			UpdateFunc: func(_, o any) { lagging.record(o, false) },
			DeleteFunc: func(o any) { lagging.record(o, true) },
		}); err != nil {
			h.t.Fatal(err)
		}
		c = lagging
	}
	h.metrics, h.registry = controllers.NewMetrics(mgr.GetClient()), prometheus.NewRegistry()
	if err := h.metrics.Register(h.registry); err != nil {
		h.t.Fatal(err)
	}
	r := &controllers.AssumedRoleReconciler{
		Client:    statusFailingClient{c, h},
		STS:       h.stsClient(),
		Options:   h.opts,
		APIReader: countingReader{mgr.GetAPIReader(), &h.liveReads},
		Recorder:  countingRecorder{mgr.GetEventRecorder("rolekeeper"), h},
	}
	done := func(req reconcile.Request, started time.Time) {
		h.mu.Lock()
		h.reconciles[req.NamespacedName]++
		if started.After(h.lastStart[req.NamespacedName]) {
			h.lastStart[req.NamespacedName] = started
		}
		h.mu.Unlock()
	}
	h.rec = r
	if err := r.SetupObservedWithManager(ctx, mgr, done); err != nil {
		h.t.Fatal(err)
	}
	if h.clusterRoles {
		opts := h.opts
		opts.WatchNamespaces = append([]string{h.ns}, h.extra...)
		if err := (&controllers.ClusterAssumedRoleReconciler{Client: mgr.GetClient(), Options: opts}).SetupWithManager(mgr); err != nil {
			h.t.Fatal(err)
		}
	}
	h.cancel, h.done = cancel, make(chan struct{})
	root := h.root
	go func() {
		defer close(h.done)
		if err := mgr.Start(ctx); err != nil {
			root.Errorf("manager: %v", err)
		}
	}()
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

// tb is the running test or phase, with cleanups deferred to the end of the whole test: an object
// created in one phase stays for the next.
func (h *harness) tb() testing.TB { return rooted{h.t, h.root} }

type rooted struct {
	testing.TB
	root testing.TB
}

func (r rooted) Cleanup(f func()) { r.root.Cleanup(f) }

// phase runs one step of a multi-step story as a subtest, so that a failure names the step; the
// story stops at the first failed step.
func (h *harness) phase(name string, step func(t *testing.T)) {
	h.t.Helper()
	outer := h.t
	if !outer.Run(name, func(t *testing.T) {
		h.t = t
		defer func() { h.t = outer }()
		step(t)
	}) {
		outer.FailNow()
	}
}

// namespace creates a further namespace for this test (before start) and returns its name.
func (h *harness) namespace(suffix string, labels map[string]string) string {
	h.t.Helper()
	name := th.Namespace(h.tb(), k8s, h.ns+"-"+suffix, labels)
	h.extra = append(h.extra, name)
	return name
}

// create creates an AssumedRole in any namespace of the test.
func (h *harness) create(ns, name string, spec rkv1.AssumedRoleSpec) {
	h.t.Helper()
	th.Create(h.tb(), k8s, &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec})
}

// assumedRole creates an AssumedRole of the test's namespace for role/<name>, changed by mod.
func (h *harness) assumedRole(name string, mod func(*rkv1.AssumedRole)) *rkv1.AssumedRole {
	h.t.Helper()
	ar := &rkv1.AssumedRole{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec:       rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/" + name}},
	}
	if mod != nil {
		mod(ar)
	}
	th.Create(h.tb(), k8s, ar)
	return ar
}

func (h *harness) getIn(ns, name string) *rkv1.AssumedRole {
	h.t.Helper()
	return th.AssumedRole(h.tb(), k8s, ns, name)
}

func (h *harness) get(name string) *rkv1.AssumedRole {
	h.t.Helper()
	return th.AssumedRole(h.tb(), k8s, h.ns, name)
}

// change applies mutate to the AssumedRole as it is now and writes it, again on a conflict: the
// operator may write status between the read and the write (a step that waited for a Secret
// does not wait for the status written after it).
func (h *harness) change(name string, mutate func(*rkv1.AssumedRole)) { h.changeIn(h.ns, name, mutate) }

func (h *harness) changeIn(ns, name string, mutate func(*rkv1.AssumedRole)) {
	h.t.Helper()
	th.Change(h.tb(), k8s, ns, name, mutate)
}

// policy creates a cluster-scoped AssumedRolePolicy, named after the test, removed when it ends.
func (h *harness) policy(name string, spec rkv1.AssumedRolePolicySpec) {
	h.t.Helper()
	th.Policy(h.tb(), k8s, h.ns+"-"+name, spec)
}

// allowAll lets the test's namespace assume every role.
func (h *harness) allowAll() {
	h.t.Helper()
	th.AllowAll(h.tb(), k8s, h.ns)
}

// annotate sets one annotation on an AssumedRole of the test's namespace.
func (h *harness) annotate(name, key, value string) {
	h.t.Helper()
	th.Annotate(h.tb(), k8s, h.ns, name, key, value)
}

// secret is a Secret of the test's namespace, nil when it does not exist.
func (h *harness) secret(name string) *corev1.Secret {
	h.t.Helper()
	return th.Secret(h.tb(), k8s, h.ns, name)
}

func (h *harness) eventually(timeout time.Duration, what string, cond func() bool) {
	h.t.Helper()
	th.Eventually(h.tb(), timeout, what, cond)
}

func condition(ar *rkv1.AssumedRole, typ string) *metav1.Condition { return th.Condition(ar, typ) }

func (h *harness) waitCondition(name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *rkv1.AssumedRole {
	h.t.Helper()
	return th.WaitCondition(h.tb(), k8s, h.ns, name, typ, status, reason, timeout)
}

// eventCount counts the events of the test's namespace with the given reason that reached the
// API server; recorded counts those the reconciler sent, without waiting for their delivery.
func (h *harness) eventCount(reason string) int {
	h.t.Helper()
	return th.EventCount(h.tb(), k8s, h.ns, reason)
}

func (h *harness) events() []string {
	h.t.Helper()
	return th.Events(h.tb(), k8s, h.ns)
}

// reconciled is how many reconciles of an AssumedRole of the test's namespace have finished.
func (h *harness) reconciled(name string) int { return h.reconciledIn(h.ns, name) }

func (h *harness) reconciledIn(ns, name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reconciles[client.ObjectKey{Namespace: ns, Name: name}]
}

// waitReconciled waits until a reconcile of name finishes after the count was seen at before:
// the positive signal that the operator looked at the AssumedRole again.
func (h *harness) waitReconciled(name string, before int, timeout time.Duration) {
	h.t.Helper()
	h.eventually(timeout, fmt.Sprintf("a reconcile of %s after the %d so far", name, before), func() bool { return h.reconciled(name) > before })
}

// poke changes an annotation the operator ignores and waits until a reconcile of name that
// started after the change has finished: from then on, whatever the operator was going to do
// about the state the test sees has been done, and "nothing happened" can be asserted.
func (h *harness) poke(name string) { h.pokeIn(h.ns, name) }

func (h *harness) pokeIn(ns, name string) {
	h.t.Helper()
	sent := time.Now()
	th.Annotate(h.tb(), k8s, ns, name, "test.rolekeeper.io/poke", sent.Format(time.RFC3339Nano))
	key := client.ObjectKey{Namespace: ns, Name: name}
	h.eventually(20*time.Second, "a reconcile of "+key.String()+" after the poke", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.lastStart[key].After(sent)
	})
}

// recorded counts the events with the given reason the reconciler has sent, delivered or not.
func (h *harness) recorded(reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent[reason]
}

// countingRecorder counts the events the reconciler sends before handing them on.
type countingRecorder struct {
	events.EventRecorder
	h *harness
}

func (c countingRecorder) Eventf(regarding, related runtime.Object, typ, reason, action, note string, args ...any) {
	c.h.mu.Lock()
	c.h.sent[reason]++
	c.h.mu.Unlock()
	c.EventRecorder.Eventf(regarding, related, typ, reason, action, note, args...)
}

// countingReader counts the reads the reconciler makes past its cache.
type countingReader struct {
	client.Reader
	n *atomic.Int64
}

func (c countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.n.Add(1)
	return c.Reader.Get(ctx, key, obj, opts...)
}

func (c countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.n.Add(1)
	return c.Reader.List(ctx, list, opts...)
}

// configController lets each test run its own manager with the same controller name.
func configController() ctrlconfig.Controller {
	return ctrlconfig.Controller{SkipNameValidation: ptr.To(true)}
}

func relabel(t *testing.T, ns string, labels map[string]string) {
	t.Helper()
	var n corev1.Namespace
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: ns}, &n); err != nil {
		t.Fatal(err)
	}
	n.Labels = labels
	if err := k8s.Update(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
}
