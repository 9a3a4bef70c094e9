//go:build node

package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ecrHost is the registry the image-pull AssumedRole logs in to. Inside the suite's namespaces it
// resolves to the node (the private /etc/hosts of up.sh), where the test serves a registry over
// TLS with a certificate from its own CA, which containerd trusts for this host only.
const ecrHost = "111122223333.dkr.ecr.us-east-1.amazonaws.com"

// registryCAs writes a CA and a serving certificate for ecrHost under work/registry and maps the
// host to the node address, before containerd starts; it returns the CA for containerd.
func registryCAs() (map[string]string, error) {
	dir := filepath.Join(work, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rolekeeper node registry CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ecrHost}, DNSNames: []string{ecrHost},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"ca.crt":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			return nil, err
		}
	}
	hosts, err := os.OpenFile(filepath.Join(os.Getenv("ROLEKEEPER_NODE_STATE"), "hosts"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = hosts.Close() }()
	if _, err := fmt.Fprintf(hosts, "%s %s\n", nodeIP, ecrHost); err != nil {
		return nil, err
	}
	return map[string]string{ecrHost: filepath.Join(dir, "ca.crt")}, nil
}

// ecrRegistry serves an in-memory registry (go-containerregistry's) holding the consumer image as
// ecrHost/consumer:1, on the node address port 443. Every request must carry a Basic login the
// STS emulator issued through GetAuthorizationToken for ecrHost, checked by the emulator itself.
func ecrRegistry(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	// Push the consumer image over loopback, where no login is asked.
	local := httptest.NewServer(reg)
	defer local.Close()
	consumer, err := tarball.ImageFromPath(filepath.Join(work, "image", "rolekeeper.local_consumer_1.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// An image ID of its own: once the kubelet has pulled an image ID with credentials, it pulls
	// again (to verify) for pods that use that ID under another name without them, and the
	// imported consumer image cannot be pulled from anywhere.
	cf, err := consumer.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config.DeepCopy()
	cfg.Labels = map[string]string{"rolekeeper.io/node-test": "ecr"}
	img, err := mutate.Config(consumer, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(local.URL, "http://")+"/consumer:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	pulls := &atomic.Int32{}
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		check, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, stsURL+"/v2/", nil)
		check.Host = ecrHost
		check.Header.Set("Authorization", r.Header.Get("Authorization"))
		resp, err := http.DefaultClient.Do(check)
		if err == nil {
			_ = resp.Body.Close()
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			w.Header().Set("WWW-Authenticate", `Basic realm="https://`+ecrHost+`/",service="ecr.amazonaws.com"`)
			http.Error(w, "Not Authorized", http.StatusUnauthorized)
			return
		}
		if strings.Contains(r.URL.Path, "/manifests/") {
			pulls.Add(1)
		}
		reg.ServeHTTP(w, r)
	})
	cert, err := tls.LoadX509KeyPair(filepath.Join(work, "registry", "tls.crt"), filepath.Join(work, "registry", "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", net.JoinHostPort(nodeIP, "443"), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: front, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ecrHost + "/consumer:1", pulls
}

// pullPod is a pod that always pulls img, with the image-pull Secret pullSecret when not empty.
func pullPod(ns, podName, img, pullSecret string) string {
	secrets := ""
	if pullSecret != "" {
		secrets = fmt.Sprintf("  imagePullSecrets: [{name: %s}]\n", pullSecret)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  terminationGracePeriodSeconds: 1
%s  containers:
  - {name: consumer, image: %s, imagePullPolicy: Always, env: [{name: INTERVAL, value: 10s}]}
`, podName, ns, secrets, img)
}

// The image-pull Secret the operator writes from ECR GetAuthorizationToken is what the kubelet
// pulls with: a pod that names it pulls over TLS from a registry that accepts only the
// emulator's ECR tokens, and the same pod without it is refused.
func TestECRImagePullSecret(t *testing.T) {
	withOperator(t)
	ctx := context.Background()
	img, pulls := ecrRegistry(t)
	ns := namespace(t, "ecr")
	assumedRole(t, ns, "ecr-pull", long, `  secret:
    type: kubernetes.io/dockerconfigjson
    ecr: {registryIds: ["111122223333"], region: us-east-1}
`)
	if s := secret(t, ns, "ecr-pull"); s == nil || s.Type != corev1.SecretTypeDockerConfigJson || !strings.Contains(string(s.Data[corev1.DockerConfigJsonKey]), ecrHost) {
		t.Fatalf("no image-pull Secret for %s", ecrHost)
	}
	apply(t, pullPod(ns, "with-secret", img, "ecr-pull"))
	apply(t, pullPod(ns, "without-secret", img, ""))
	waitPodRunning(t, ns, "with-secret")
	if pulls.Load() == 0 {
		t.Fatal("the pod runs, but no logged-in request fetched a manifest")
	}

	var p corev1.Pod
	eventually(t, time.Minute, "the pod without the Secret refused by the registry", func() bool {
		if admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "without-secret"}, &p) != nil || len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && strings.Contains(w.Message, "401 Unauthorized")
	})
	t.Logf("without the Secret: %s", p.Status.ContainerStatuses[0].State.Waiting.Message)
}
