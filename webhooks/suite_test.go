package webhooks_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/test/testenv"
	"github.com/rolekeeper/rolekeeper/webhooks"
)

// goldenImage is the sidecar image of pkg/inject/testdata, whose golden files the pods created
// here are compared with.
const goldenImage = "ghcr.io/rolekeeper/rolekeeper:0.2.0"

var (
	cfg      *rest.Config
	k8s      client.Client
	scheme   = controllers.NewScheme()
	injector *webhooks.PodInjector
	wio      *envtest.WebhookInstallOptions
)

// TestMain starts the test control plane with config/webhook/manifests.yaml installed (envtest
// points it at a local server with a certificate it makes) and serves the injector there, so
// the real API server decides which pods reach the webhook and applies its patches.
func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: []string{filepath.Join(testenv.Root(), "config", "webhook", "manifests.yaml")}}
	wio = &env.WebhookInstallOptions
	cfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test control plane:", err)
		os.Exit(1)
	}
	code := run(m)
	_ = env.Stop()
	os.Exit(code)
}

func run(m *testing.M) int {
	var err error
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	injector = webhooks.NewPodInjector(scheme, &webhooks.PodInjector{Reader: k8s, Image: goldenImage, ImagePullPolicy: corev1.PullIfNotPresent})
	srv := webhook.NewServer(webhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir})
	srv.Register(webhooks.PodPath, &webhook.Admission{Handler: injector})
	srv.Register(addContainerPath, &webhook.Admission{Handler: admission.HandlerFunc(addContainer)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Start(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for srv.StartedChecker()(nil) != nil {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "the webhook server did not start")
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, ns := range []string{"payments"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}
