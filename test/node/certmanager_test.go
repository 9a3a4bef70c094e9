//go:build node

package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rolekeeper/rolekeeper/pkg/inject"
	"github.com/rolekeeper/rolekeeper/webhooks"
)

// standInCRD is a cert-manager.io/v1 kind that only stores what it is given: the test does
// cert-manager's part itself (the self-signed issuer and the CA injector), so the chart's
// cert-manager mode runs on the node without cert-manager.
func standInCRD(kind, plural string) string {
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: %[2]s.cert-manager.io}
spec:
  group: cert-manager.io
  names: {kind: %[1]s, listKind: %[1]sList, plural: %[2]s, singular: %[3]s}
  scope: Namespaced
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
`, kind, plural, strings.ToLower(kind))
}

// chartCertificate is what the test reads of the chart's Certificate and Issuer.
type chartCertificate struct {
	Spec struct {
		SecretName string   `json:"secretName"`
		DNSNames   []string `json:"dnsNames"`
		IssuerRef  struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// servingCert is a key and a self-signed certificate for the webhook's names, as cert-manager's
// selfSigned issuer makes them: the certificate is its own CA (ca.crt is the certificate).
type servingCert struct {
	certPEM, keyPEM []byte
	der             []byte
}

func selfSigned(t *testing.T, dnsNames []string) servingCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return servingCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		der:     der,
	}
}

// servedCertificate is the leaf certificate an operator pod's webhook server presents on its
// container port named webhook, or nil.
func servedCertificate(p corev1.Pod) []byte {
	var port int32
	for _, cp := range p.Spec.Containers[0].Ports {
		if cp.Name == "webhook" {
			port = cp.ContainerPort
		}
	}
	if port == 0 {
		return nil
	}
	// Unverified: the handshake only reads the certificate the pod presents; nothing is sent.
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(p.Status.PodIP, fmt.Sprint(port)), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil
	}
	defer func() { _ = conn.Close() }()
	if certs := conn.ConnectionState().PeerCertificates; len(certs) > 0 {
		return certs[0].Raw
	}
	return nil
}

// TestWebhookCertManagerMode installs the chart with webhook.certManager.enabled, the test doing
// cert-manager's part: it issues the chart's Certificate from its self-signed Issuer into the
// Certificate's Secret and injects the CA into the webhook configuration named by the
// inject-ca-from annotation. The operator's pods serve the webhook with that certificate. A
// renewal (a new key and certificate, the caBundle holding only the new one) is picked up by
// every operator pod from its volume without a restart: while the Secret still holds the old
// certificate a labelled pod is refused on TLS; once the pods serve the new one it is injected.
func TestWebhookCertManagerMode(t *testing.T) {
	ctx := context.Background()
	if out, err := runErr(os.Getenv("HELM_BIN"), "status", releaseName, "-n", operatorNamespace); err == nil && strings.Contains(out, "STATUS: deployed") {
		helmUninstall(t)
	}
	apply(t, standInCRD("Issuer", "issuers")+"---\n"+standInCRD("Certificate", "certificates"))
	certSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: releaseName + "-webhook-cert"}}
	t.Cleanup(func() {
		// The chart's default install, which the next tests make, creates this Secret itself.
		if out, err := runErr(os.Getenv("HELM_BIN"), "uninstall", releaseName, "-n", operatorNamespace, "--wait", "--timeout", "2m"); err != nil {
			t.Errorf("helm uninstall: %v\n%s", err, out)
		}
		if err := admin.Delete(ctx, certSecret); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
		if out, err := runErr(filepath.Join(assets, "kubectl"), "delete", "crd", "issuers.cert-manager.io", "certificates.cert-manager.io", "--ignore-not-found"); err != nil {
			t.Errorf("deleting the stand-in CRDs: %v\n%s", err, out)
		}
	})
	operatorIdentitySecret(t, operatorNamespace, operatorIdentity)
	// No --wait: the pods cannot start before cert-manager (here, the test) fills the Secret.
	helm(t, "install", releaseName, "charts/rolekeeper", "-n", operatorNamespace, "--create-namespace",
		"--set", "image.tag="+operatorTag, "--set", "webhook.certManager.enabled=true", "-f", helmValues(t, stsURL))

	// What the chart asks of cert-manager.
	var cert chartCertificate
	if err := json.Unmarshal([]byte(kubectl(t, "-n", operatorNamespace, "get", "certificates.cert-manager.io", certSecret.Name, "-o", "json")), &cert); err != nil {
		t.Fatal(err)
	}
	svc := releaseName + "-webhook." + operatorNamespace + ".svc"
	if cert.Spec.SecretName != certSecret.Name || len(cert.Spec.DNSNames) == 0 || cert.Spec.DNSNames[0] != svc ||
		cert.Spec.IssuerRef.Kind != "Issuer" || cert.Spec.IssuerRef.Name != releaseName+"-webhook" {
		t.Fatalf("the chart's Certificate: %+v; want secretName %s, first DNS name %s, the chart's Issuer", cert.Spec, certSecret.Name, svc)
	}
	issuer := kubectl(t, "-n", operatorNamespace, "get", "issuers.cert-manager.io", cert.Spec.IssuerRef.Name, "-o", "jsonpath={.spec.selfSigned}")
	if strings.TrimSpace(issuer) != "{}" {
		t.Fatalf("the chart's Issuer is not selfSigned: %q", issuer)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := admin.Get(ctx, client.ObjectKey{Name: releaseName + "-credentials"}, &mwc); err != nil {
		t.Fatal(err)
	}
	from := mwc.Annotations["cert-manager.io/inject-ca-from"]
	if from != operatorNamespace+"/"+certSecret.Name || len(mwc.Webhooks) != 1 || len(mwc.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Fatalf("the webhook configuration: inject-ca-from %q, %d webhooks; want the Certificate %s/%s and no CA of the chart's own", from, len(mwc.Webhooks), operatorNamespace, certSecret.Name)
	}

	// cert-manager's part: the Secret of the Certificate, and its CA in the caBundle.
	issue := func(c servingCert) {
		t.Helper()
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: cert.Spec.SecretName}}
		err := admin.Get(ctx, client.ObjectKeyFromObject(s), s)
		s.Type = corev1.SecretTypeTLS
		s.Data = map[string][]byte{"tls.crt": c.certPEM, "tls.key": c.keyPEM, "ca.crt": c.certPEM}
		switch {
		case apierrors.IsNotFound(err):
			err = admin.Create(ctx, s)
		case err == nil:
			err = admin.Update(ctx, s)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	injectCA := func(c servingCert) {
		t.Helper()
		var m admissionregistrationv1.MutatingWebhookConfiguration
		if err := admin.Get(ctx, client.ObjectKey{Name: releaseName + "-credentials"}, &m); err != nil {
			t.Fatal(err)
		}
		m.Webhooks[0].ClientConfig.CABundle = c.certPEM
		if err := admin.Update(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	serving := func(pods []corev1.Pod, c servingCert) bool {
		for _, p := range pods {
			if !bytes.Equal(servedCertificate(p), c.der) {
				return false
			}
		}
		return true
	}

	first := selfSigned(t, cert.Spec.DNSNames)
	issue(first)
	injectCA(first)
	pods := operatorPods(t, 2)
	if !serving(pods, first) {
		t.Fatal("the operator's pods do not serve the certificate in the Secret")
	}
	ns := namespace(t, "certmanager")
	assumedRole(t, ns, "app", long, "")
	pod := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(pod, []byte(sidecarPod(ns, "consumer", "app")), 0o644); err != nil {
		t.Fatal(err)
	}
	// A server-side dry run of a labelled pod: admitted and injected, or the API server's refusal.
	admit := func() (bool, string) {
		out, err := runErr(filepath.Join(assets, "kubectl"), "create", "--dry-run=server", "-o", "json", "-f", pod)
		var p corev1.Pod
		return err == nil && json.Unmarshal([]byte(out), &p) == nil && len(p.Spec.InitContainers) == 1 && p.Spec.InitContainers[0].Name == inject.SidecarName, out
	}
	// Ready pods reach the Service once kube-proxy has their endpoints, a moment later.
	eventually(t, time.Minute, "a labelled pod injected with cert-manager's certificate", func() bool {
		ok, _ := admit()
		return ok
	})

	// Renewal: the caBundle first, so that the old certificate is refused while it is served.
	second := selfSigned(t, cert.Spec.DNSNames)
	injectCA(second)
	var refusal string
	eventually(t, time.Minute, "a labelled pod refused while the old certificate is served", func() bool {
		ok, out := admit()
		refusal = out
		return !ok && strings.Contains(out, fmt.Sprintf("failed calling webhook %q", webhooks.WebhookName)) && strings.Contains(out, "x509")
	})
	if !serving(pods, first) {
		t.Fatal("the operator's pods changed certificate before the Secret did")
	}
	renewed := time.Now()
	issue(second)
	eventually(t, 2*time.Minute, "every operator pod serving the renewed certificate", func() bool { return serving(pods, second) })
	reloaded := time.Since(renewed)
	eventually(t, time.Minute, "a labelled pod injected with the renewed certificate", func() bool {
		ok, _ := admit()
		return ok
	})
	after := operatorPods(t, 2)
	for _, p := range after {
		if !slices.ContainsFunc(pods, func(q corev1.Pod) bool { return q.UID == p.UID }) || p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("operator pod %s was replaced or restarted (%d restarts) for the renewal", p.Name, p.Status.ContainerStatuses[0].RestartCount)
		}
	}
	t.Logf("old certificate refused: %s; renewed certificate served by both pods %v after the Secret changed", tail(strings.TrimSpace(refusal), 1), reloaded.Round(100*time.Millisecond))
}
