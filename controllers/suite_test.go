package controllers_test

import (
	"bytes"
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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
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
	t      *testing.T
	ns     string
	sts    *ststest.Server
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan struct{}
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
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newHarness creates a namespace and an emulator; start runs the manager.
func newHarness(t *testing.T, emu ststest.Options) *harness {
	t.Helper()
	ns := fmt.Sprintf("t-%s-%d", testName(t.Name(), 36), time.Now().UnixNano()%100000)
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	emu.Principals = append(emu.Principals, operator)
	h := &harness{t: t, ns: ns, sts: ststest.New(emu).Start(), logs: &syncBuffer{}, identity: operator}
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
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(append([]string{h.ns}, h.extra...)),
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
	r := &controllers.AssumedRoleReconciler{Client: statusFailingClient{c, h}, STS: h.stsClient(), Options: h.opts}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
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
	go func() {
		defer close(h.done)
		if err := mgr.Start(ctx); err != nil {
			h.t.Errorf("manager: %v", err)
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

// namespace creates a further namespace for this test (before start) and returns its name.
func (h *harness) namespace(suffix string, labels map[string]string) string {
	h.t.Helper()
	name := h.ns + "-" + suffix
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
		h.t.Fatal(err)
	}
	h.extra = append(h.extra, name)
	return name
}

// create creates an AssumedRole in any namespace of the test.
func (h *harness) create(ns, name string, spec rkv1.AssumedRoleSpec) {
	h.t.Helper()
	ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if err := k8s.Create(context.Background(), ar); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) getIn(ns, name string) *rkv1.AssumedRole {
	h.t.Helper()
	ar := &rkv1.AssumedRole{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ar); err != nil {
		h.t.Fatal(err)
	}
	return ar
}

// policy creates a cluster-scoped AssumedRolePolicy removed when the test ends.
func (h *harness) policy(name string, spec rkv1.AssumedRolePolicySpec) {
	h.t.Helper()
	p := &rkv1.AssumedRolePolicy{ObjectMeta: metav1.ObjectMeta{Name: h.ns + "-" + name}, Spec: spec}
	if err := k8s.Create(context.Background(), p); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
}

func (h *harness) allowAll() {
	h.t.Helper()
	p := &rkv1.AssumedRolePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-" + h.ns},
		Spec:       rkv1.AssumedRolePolicySpec{Namespaces: []string{h.ns}, AllowedRoleArns: []string{"*"}},
	}
	if err := k8s.Create(context.Background(), p); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
}

func (h *harness) assumedRole(name string, mod func(*rkv1.AssumedRole)) *rkv1.AssumedRole {
	h.t.Helper()
	ar := &rkv1.AssumedRole{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec:       rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/" + name}},
	}
	if mod != nil {
		mod(ar)
	}
	if err := k8s.Create(context.Background(), ar); err != nil {
		h.t.Fatal(err)
	}
	return ar
}

func (h *harness) get(name string) *rkv1.AssumedRole {
	h.t.Helper()
	ar := &rkv1.AssumedRole{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: h.ns, Name: name}, ar); err != nil {
		h.t.Fatal(err)
	}
	return ar
}

// annotate sets one annotation on an AssumedRole of the test's namespace.
func (h *harness) annotate(name, key, value string) {
	h.t.Helper()
	ar := h.get(name)
	if ar.Annotations == nil {
		ar.Annotations = map[string]string{}
	}
	ar.Annotations[key] = value
	if err := k8s.Update(context.Background(), ar); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) secret(name string) *corev1.Secret {
	h.t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: h.ns, Name: name}, s); err != nil {
		return nil
	}
	return s
}

// eventually polls cond every 100 ms until it holds or timeout passes.
func (h *harness) eventually(timeout time.Duration, what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func condition(ar *rkv1.AssumedRole, typ string) *metav1.Condition {
	return meta.FindStatusCondition(ar.Status.Conditions, typ)
}

func (h *harness) waitCondition(name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *rkv1.AssumedRole {
	h.t.Helper()
	var ar *rkv1.AssumedRole
	h.eventually(timeout, fmt.Sprintf("%s %s=%s (%s)", name, typ, status, reason), func() bool {
		ar = h.get(name)
		c := condition(ar, typ)
		return c != nil && c.Status == status && (reason == "" || c.Reason == reason) && c.ObservedGeneration == ar.Generation
	})
	return ar
}

// eventCount counts the events of the test's namespace with the given reason.
func (h *harness) eventCount(reason string) int {
	h.t.Helper()
	n := 0
	for _, e := range h.events() {
		if strings.HasPrefix(e, reason+": ") {
			n++
		}
	}
	return n
}

func (h *harness) events() []string {
	h.t.Helper()
	var list corev1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(h.ns)); err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	return out
}

// configController lets each test run its own manager with the same controller name.
func configController() ctrlconfig.Controller {
	return ctrlconfig.Controller{SkipNameValidation: ptr.To(true)}
}
