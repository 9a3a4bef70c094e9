// Command demo runs rolekeeper locally with nothing but the binaries `make demo` builds: a
// control plane (kube-apiserver and etcd), the STS emulator with a time scale, and the operator
// with the shipped CRDs and RBAC. It applies config/samples, waits for them to be Ready, shows the
// Secrets (values redacted) and rotations as they happen, and cleans up on Ctrl-C or after
// -duration.
//
//	go run ./hack/demo -time-scale 60 -duration 2m
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/cluster"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// Options of a demo run.
type Options struct {
	// TimeScale divides session lifetimes: 60 turns an hour into a minute.
	TimeScale float64
	// Duration ends the demo after this long once everything is Ready; 0 waits for Ctrl-C.
	Duration time.Duration
	// Rotations ends the demo after this many rotations have been shown; 0 means no limit.
	Rotations int
	// Out receives the progress.
	Out io.Writer
}

func main() {
	opts := Options{Out: os.Stdout}
	flag.Float64Var(&opts.TimeScale, "time-scale", 60, "divide session lifetimes by this, so rotations happen within minutes")
	flag.DurationVar(&opts.Duration, "duration", 0, "stop after this long once Ready (0: run until Ctrl-C)")
	flag.IntVar(&opts.Rotations, "rotations", 0, "stop after showing this many rotations (0: no limit)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, opts)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const demoNamespace = "demo"

var operatorKey = ststest.Principal{AccessKeyID: "AKIAROLEKEEPERDEMO01", SecretAccessKey: "rolekeeper-demo-secret-key-000000000000", Arn: "arn:aws:iam::000000000000:role/rolekeeper"}

// Run performs the demo until ctx ends, the duration passes or enough rotations were shown.
func Run(ctx context.Context, opts Options) error {
	say := func(format string, a ...any) { _, _ = fmt.Fprintf(opts.Out, "==> "+format+"\n", a...) }
	assets, err := testenv.AssetsDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rolekeeper-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	say("starting etcd and kube-apiserver (%s)", filepath.Base(assets))
	cp, err := cluster.Start(assets, dir)
	if err != nil {
		return err
	}
	defer cp.Stop()
	admin, err := client.New(cp.Config(cluster.AdminToken), client.Options{Scheme: controllers.NewScheme()})
	if err != nil {
		return err
	}
	root := testenv.Root()
	say("installing config/crd and config/rbac")
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rolekeeper-system"}}); err != nil {
		return err
	}
	for _, dir := range []string{"config/crd/bases", "config/rbac"} {
		if err := applyDir(ctx, admin, filepath.Join(root, dir)); err != nil {
			return err
		}
	}
	if err := waitFor(ctx, 60*time.Second, func() bool {
		return admin.List(ctx, &rkv1.AssumedRoleList{}) == nil
	}); err != nil {
		return fmt.Errorf("the AssumedRole API did not become available: %w", err)
	}

	emu := ststest.New(ststest.Options{Principals: []ststest.Principal{operatorKey}, TimeScale: opts.TimeScale}).Start()
	defer emu.Close()
	say("STS emulator on %s; sessions last 1/%g of their real duration", emu.URL, opts.TimeScale)

	say("starting the operator as its ServiceAccount (config/rbac), STS endpoint %s", emu.URL)
	opCtx, stopOperator := context.WithCancel(ctx)
	defer stopOperator()
	opDone, err := startOperator(opCtx, cp, emu.URL)
	if err != nil {
		return err
	}

	say("applying an allow-all AssumedRolePolicy for namespace %s and config/samples", demoNamespace)
	// Labelled so that the ClusterAssumedRole sample fans out to it.
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNamespace, Labels: map[string]string{"rolekeeper.io/shared-reader": "enabled"}}}); err != nil {
		return err
	}
	if err := admin.Create(ctx, &rkv1.AssumedRolePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: demoNamespace + "-allow-all"},
		Spec: rkv1.AssumedRolePolicySpec{Namespaces: []string{demoNamespace}, AllowedRoleArns: []string{"*"},
			AllowedRootTargets: []string{"*"}, AllowedTaskPolicies: []rkv1.RootTaskPolicy{rkv1.TaskPolicyS3UnlockBucketPolicy}},
	}); err != nil {
		return err
	}
	if err := applyDir(ctx, admin, filepath.Join(root, "config", "samples")); err != nil {
		return err
	}

	var list rkv1.AssumedRoleList
	lastReport := ""
	if err := waitFor(ctx, 2*time.Minute, func() bool {
		if admin.List(ctx, &list, client.InNamespace(demoNamespace)) != nil {
			return false
		}
		ready, states := 0, []string{}
		for i := range list.Items {
			c := meta.FindStatusCondition(list.Items[i].Status.Conditions, rkv1.ConditionReady)
			state := "pending"
			if c != nil {
				state = string(c.Status) + "/" + c.Reason
				if c.Status == metav1.ConditionTrue {
					ready++
				}
			}
			states = append(states, list.Items[i].Name+"="+state)
		}
		if report := strings.Join(states, " "); report != lastReport {
			say("waiting for Ready: %s", report)
			lastReport = report
		}
		// ClusterAssumedRoles are Ready once their AssumedRoles exist and are Ready.
		var cars rkv1.ClusterAssumedRoleList
		if admin.List(ctx, &cars) != nil {
			return false
		}
		for i := range cars.Items {
			if !meta.IsStatusConditionTrue(cars.Items[i].Status.Conditions, rkv1.ConditionReady) {
				return false
			}
		}
		return len(list.Items) > 0 && ready == len(list.Items)
	}); err != nil {
		return fmt.Errorf("the samples did not become Ready: %w", err)
	}
	say("all %d AssumedRoles are Ready", len(list.Items))
	printTable(opts.Out, list.Items)
	for i := range list.Items {
		if err := printSecret(ctx, opts.Out, admin, &list.Items[i]); err != nil {
			return err
		}
	}

	say("watching rotations (time scale %g)%s", opts.TimeScale, map[bool]string{true: "; Ctrl-C stops", false: ""}[opts.Duration == 0])
	issued := map[string]string{}
	for i := range list.Items {
		issued[list.Items[i].Name] = list.Items[i].Status.LastIssuedTime.String()
	}
	var deadline <-chan time.Time
	if opts.Duration > 0 {
		deadline = time.After(opts.Duration)
	}
	rotations := 0
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			say("interrupted; shutting down")
			return shutdown(stopOperator, opDone)
		case <-deadline:
			say("duration reached after %d rotations; shutting down", rotations)
			return shutdown(stopOperator, opDone)
		case err := <-opDone:
			return fmt.Errorf("the operator stopped: %w", err)
		case <-tick.C:
		}
		if err := admin.List(ctx, &list, client.InNamespace(demoNamespace)); err != nil {
			continue
		}
		for i := range list.Items {
			ar := &list.Items[i]
			if ar.Status.LastIssuedTime == nil || issued[ar.Name] == ar.Status.LastIssuedTime.String() {
				continue
			}
			issued[ar.Name] = ar.Status.LastIssuedTime.String()
			rotations++
			say("rotated %s: new credentials in Secret %s, valid until %s, next renewal %s",
				ar.Name, ar.Status.SecretName, ar.Status.Expiration.UTC().Format(time.TimeOnly), ar.Status.RenewalTime.UTC().Format(time.TimeOnly))
			if opts.Rotations > 0 && rotations >= opts.Rotations {
				say("%d rotations shown; shutting down", rotations)
				return shutdown(stopOperator, opDone)
			}
		}
	}
}

func shutdown(stop context.CancelFunc, done <-chan error) error {
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// startOperator runs the manager in-process as the operator's ServiceAccount, wired as main.go
// wires it.
func startOperator(ctx context.Context, cp *cluster.ControlPlane, endpoint string) (<-chan error, error) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	cfg := cp.Config(cluster.OperatorToken)
	cfg.Wrap(controllers.WatchTransport)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 controllers.NewScheme(),
		Cache:                  controllers.CacheOptions(nil),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, err
	}
	stsClient := sts.New(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(operatorKey.AccessKeyID, operatorKey.SecretAccessKey, "")},
		sts.Options{Region: "us-east-1", Endpoint: endpoint, ECREndpoint: endpoint})
	opts := controllers.Options{Region: "us-east-1", RequireAccessPolicy: true, SessionTags: true, ClusterName: "demo", MaxConcurrentReconciles: 4}
	r := &controllers.AssumedRoleReconciler{Client: mgr.GetClient(), STS: stsClient, Options: opts}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		return nil, err
	}
	if err := (&controllers.ClusterAssumedRoleReconciler{Client: mgr.GetClient(), Options: opts}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return done, nil
}

// applyDir creates every object in the YAML files of dir (kustomization.yaml excepted).
func applyDir(ctx context.Context, c client.Client, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if err := c.Create(ctx, u); err != nil {
				return fmt.Errorf("%s: %s %s: %w", file, u.GetKind(), u.GetName(), err)
			}
		}
	}
	return nil
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

func printTable(out io.Writer, items []rkv1.AssumedRole) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(w, "NAME\tROLE\tSECRET\tREADY\tEXPIRES")
	for _, ar := range items {
		role := ""
		switch {
		case ar.Spec.AssumeRole != nil:
			role = ar.Spec.AssumeRole.RoleArn
		case ar.Spec.AssumeRoot != nil:
			role = "AssumeRoot " + ar.Spec.AssumeRoot.TargetPrincipal
		}
		ready := meta.FindStatusCondition(ar.Status.Conditions, rkv1.ConditionReady)
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", ar.Name, role, ar.Status.SecretName, ready.Status, ar.Status.Expiration.UTC().Format(time.RFC3339))
	}
	_ = w.Flush()
}

// printSecret lists the Secret's keys. Values that are credentials are never printed.
func printSecret(ctx context.Context, out io.Writer, c client.Client, ar *rkv1.AssumedRole) error {
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: ar.Namespace, Name: ar.Status.SecretName}, &s); err != nil {
		return err
	}
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	_, _ = fmt.Fprintf(out, "Secret %s/%s:\n", s.Namespace, s.Name)
	for _, k := range keys {
		shown := fmt.Sprintf("(%d bytes, redacted)", len(s.Data[k]))
		if k == "AWS_REGION" || k == "AWS_DEFAULT_REGION" || k == "AWS_CREDENTIAL_EXPIRATION" {
			shown = string(s.Data[k])
		}
		_, _ = fmt.Fprintf(out, "  %-26s %s\n", k, shown)
	}
	return nil
}
