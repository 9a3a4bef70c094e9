package webhooks_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/rolekeeper/rolekeeper/pkg/inject"
	"github.com/rolekeeper/rolekeeper/test/atomicdir"
	"github.com/rolekeeper/rolekeeper/test/cluster"
	"github.com/rolekeeper/rolekeeper/webhooks"
)

// TestCertRotation runs the webhook as the manager does with --webhook-cert-secret: cert-controller
// fills the empty Secret with a CA and serving certificate, the Secret reaches the certificate
// directory as the kubelet mounts it (simulated here the way its atomic writer does it), the CA
// goes into the webhook configuration, and only then does the webhook serve: the API server,
// trusting that CA alone, sends it a labelled pod and stores it injected.
func TestCertRotation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "rolekeeper-system")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "rolekeeper-webhook-cert", Namespace: ns}}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	// The envtest-installed configuration would also inject the pod; take it away meanwhile,
	// so that the pod can only have been injected through the certificate made here.
	var installed admissionv1.MutatingWebhookConfiguration
	if err := k8s.Get(ctx, client.ObjectKey{Name: webhooks.ConfigurationName}, &installed); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, &installed); err != nil {
		t.Fatal(err)
	}
	defer func() {
		installed.ResourceVersion = ""
		if err := k8s.Create(context.Background(), &installed); err != nil {
			t.Errorf("restoring the webhook configuration: %v", err)
		}
	}()

	port := cluster.FreePort()
	conf := installed.DeepCopy()
	conf.ObjectMeta = metav1.ObjectMeta{Name: "test-cert-rotation"}
	url := "https://localhost:" + strconv.Itoa(port) + webhooks.PodPath
	conf.Webhooks[0].ClientConfig = admissionv1.WebhookClientConfig{URL: &url}
	if err := k8s.Create(ctx, conf); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k8s.Delete(context.Background(), conf) }()

	certDir := filepath.Join(t.TempDir(), "certs")
	go mountSecret(ctx, t, client.ObjectKeyFromObject(secret), certDir)

	opts := webhooks.Options{Port: port, CertDir: certDir, CertSecret: ns + "/rolekeeper-webhook-cert", Service: ns + "/rolekeeper-webhook",
		CertExtraNames: []string{"localhost"}, Configuration: conf.Name, SidecarImage: goldenImage, SidecarPullPolicy: string(corev1.PullIfNotPresent)}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir})})
	if err != nil {
		t.Fatal(err)
	}
	if err := webhooks.Setup(mgr, opts, "", nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()

	target := namespace(t, "cert-rotation")
	deadline := time.Now().Add(90 * time.Second)
	for {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: target, Labels: map[string]string{inject.LabelAssumedRole: "reader"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
		err := k8s.Create(ctx, pod)
		if err == nil {
			if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != inject.SidecarName {
				t.Fatalf("pod admitted without the sidecar: %+v", pod.Spec)
			}
			break
		}
		if !strings.Contains(err.Error(), "rolekeeper") || time.Now().After(deadline) {
			t.Fatalf("the webhook with cert-controller's certificate did not serve: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("manager stopped: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(conf), conf); err != nil || len(conf.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Fatalf("caBundle not injected (%v)", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("manager: %v", err)
	}
}

// mountSecret copies the Secret's data into dir whenever it changes, as the kubelet updates a
// Secret volume.
func mountSecret(ctx context.Context, t *testing.T, key client.ObjectKey, dir string) {
	seen := ""
	for ctx.Err() == nil {
		var s corev1.Secret
		if err := k8s.Get(ctx, key, &s); err == nil && s.ResourceVersion != seen && len(s.Data) > 0 {
			if err := atomicdir.Write(dir, s.Data); err != nil {
				t.Errorf("mounting the certificate Secret: %v", err)
				return
			}
			seen = s.ResourceVersion
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
