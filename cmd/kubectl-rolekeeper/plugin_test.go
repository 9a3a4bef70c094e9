package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/harness"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// The plugin runs against the envtest control plane, with the operator's reconciler running
// in-process against the STS emulator, so what it prints is checked against what the operator
// really did.

const ns = "plugin"

var (
	kubeconfig string
	k8s        client.Client
	emulator   *ststest.Server
	principal  = ststest.Principal{AccessKeyID: "AKIAPLUGINTEST000001", SecretAccessKey: "plugin-test-secret-0000000000000000000001", Arn: "arn:aws:iam::000000000000:user/rolekeeper"}
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test control plane:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	user, err := env.AddUser(envtest.User{Name: "plugin-admin", Groups: []string{"system:masters"}}, nil)
	if err == nil {
		var raw []byte
		if raw, err = user.KubeConfig(); err == nil {
			kubeconfig = filepath.Join(os.TempDir(), fmt.Sprintf("kubectl-rolekeeper-test-%d.kubeconfig", os.Getpid()))
			err = os.WriteFile(kubeconfig, raw, 0o600)
			defer func() { _ = os.Remove(kubeconfig) }()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if k8s, err = client.New(cfg, client.Options{Scheme: controllers.NewScheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	emulator = ststest.New(ststest.Options{Principals: []ststest.Principal{principal}}).Start()
	defer emulator.Close()
	stop, err := startOperator(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the operator:", err)
		return 1
	}
	defer stop()
	return m.Run()
}

// startOperator runs the AssumedRole reconciler in-process, watching namespace ns, with
// --require-access-policy, and creates that namespace with a policy allowing roles app*.
func startOperator(cfg *rest.Config) (func(), error) {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, err
	}
	policy := &rkv1.AssumedRolePolicy{ObjectMeta: metav1.ObjectMeta{Name: "plugin-apps"}, Spec: rkv1.AssumedRolePolicySpec{
		Namespaces: []string{ns}, AllowedRoleArns: []string{"arn:aws:iam::111122223333:role/app*"}, MaxDurationSeconds: ptr.To[int32](3600)}}
	if err := k8s.Create(ctx, policy); err != nil {
		return nil, err
	}
	opCfg := rest.CopyConfig(cfg)
	opCfg.Wrap(controllers.WatchTransport)
	mgr, err := ctrl.NewManager(opCfg, ctrl.Options{
		Scheme:                 controllers.NewScheme(),
		Cache:                  controllers.CacheOptions([]string{ns}),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, err
	}
	stsClient := sts.New(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(principal.AccessKeyID, principal.SecretAccessKey, "")},
		sts.Options{Endpoint: emulator.URL, MaxAttempts: 1, QPS: 100, Burst: 100, Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(ctx)
	r := &controllers.AssumedRoleReconciler{Client: mgr.GetClient(), STS: stsClient, Options: controllers.Options{
		Region: "us-east-1", RequireAccessPolicy: true, SessionTags: true, MaxConcurrentReconciles: 2, WatchNamespaces: []string{ns}}}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// kubectlRolekeeper runs the plugin with args, as kubectl would, and returns its output.
func kubectlRolekeeper(ctx context.Context, out io.Writer, args ...string) error {
	cmd := newRootCommand(out, clock.RealClock{})
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	return cmd.ExecuteContext(ctx)
}

func runPlugin(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out harness.SyncBuffer
	err := kubectlRolekeeper(context.Background(), &out, args...)
	noCredentials(t, out.String())
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runPlugin(t, args...)
	if err != nil {
		t.Fatalf("kubectl rolekeeper %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// credentialValues are every credential in the namespace's Secrets.
func credentialValues(t *testing.T) []string {
	t.Helper()
	var list corev1.SecretList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list.Items {
		if c, ok := secretdata.Credentials(s.Data); ok {
			out = append(out, c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
		}
	}
	return out
}

func noCredentials(t *testing.T, output string) {
	t.Helper()
	for _, v := range credentialValues(t) {
		if strings.Contains(output, v) {
			t.Fatalf("the plugin printed a credential value:\n%s", output)
		}
	}
}

var createOnce sync.Once

// scenario creates, once, three AssumedRoles in ns and waits for the operator's verdicts: "app"
// is issued, "app-denied" is refused by STS (AccessDenied, Stalled), "other" is refused by the
// policies (NotPermitted).
func scenario(t *testing.T) {
	t.Helper()
	createOnce.Do(func() {
		emulator.SetRole("arn:aws:iam::111122223333:role/app-denied", ststest.RoleRule{Deny: true})
		for name, role := range map[string]string{"app": "app", "app-denied": "app-denied", "other": "other"} {
			ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: rkv1.AssumedRoleSpec{
				AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/" + role, DurationSeconds: ptr.To[int32](1800)},
				Renewal:    &rkv1.RenewalSpec{RenewBefore: &metav1.Duration{Duration: 10 * time.Minute}}}}
			if err := k8s.Create(context.Background(), ar); err != nil {
				t.Fatal(err)
			}
		}
	})
	waitFor(t, "app", func(ar *rkv1.AssumedRole) bool {
		return condition(ar, rkv1.ConditionReady).Status == metav1.ConditionTrue
	})
	waitFor(t, "app-denied", func(ar *rkv1.AssumedRole) bool { return ar.Status.LastFailure != nil })
	waitFor(t, "other", func(ar *rkv1.AssumedRole) bool {
		return condition(ar, rkv1.ConditionReady).Reason == rkv1.ReasonNotPermitted
	})
}

func get(t *testing.T, name string) *rkv1.AssumedRole {
	t.Helper()
	ar := &rkv1.AssumedRole{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ar); err != nil {
		t.Fatal(err)
	}
	return ar
}

func waitFor(t *testing.T, name string, cond func(*rkv1.AssumedRole) bool) *rkv1.AssumedRole {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ar := get(t, name)
		if cond(ar) {
			return ar
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s/%s; status %+v", ns, name, ar.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
