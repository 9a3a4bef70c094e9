//go:build node

package node

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rolekeeper/rolekeeper/pkg/credserver"
	"github.com/rolekeeper/rolekeeper/pkg/inject"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/webhooks"
)

// sidecarPod is a pod of the consumer image without a shell, with aws-sdk-go-v2's default
// configuration and nothing about credentials: only the emulator's endpoint. With assumedRole
// set it carries the label that opts it into the credentials sidecar.
func sidecarPod(ns, name, assumedRole string) string {
	labels := "{}"
	if assumedRole != "" {
		labels = fmt.Sprintf("{%s: %s}", inject.LabelAssumedRole, assumedRole)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: %s}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: consumer
    image: %s
    imagePullPolicy: IfNotPresent
    env:
    - {name: AWS_ENDPOINT_URL_STS, value: %q}
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, name, ns, labels, consumerDistrolessImage, stsURL)
}

// webhookServed matches the count of admission requests a manager's webhook server answered.
var webhookServed = regexp.MustCompile(`(?m)^controller_runtime_webhook_requests_total\{code="200",webhook="` + regexp.QuoteMeta(webhooks.PodPath) + `"\} (\d+)`)

// webhookAdmissions is how many pod admission requests the operator's pods answered, from their
// metrics.
func webhookAdmissions(pods []corev1.Pod) int {
	total := 0
	for _, p := range pods {
		_, body := httpGet(fmt.Sprintf("http://%s/metrics", net.JoinHostPort(p.Status.PodIP, "8080")), "")
		if m := webhookServed.FindStringSubmatch(body); m != nil {
			n, _ := strconv.Atoi(m[1])
			total += n
		}
	}
	return total
}

// imageFile reports whether the operator's image archive holds an executable regular file at p.
func imageFile(t *testing.T, p string) bool {
	t.Helper()
	img, err := tarball.ImageFromPath(filepath.Join(work, "image", "rolekeeper.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := mutate.Extract(img)
	defer func() { _ = fs.Close() }()
	tr := tar.NewReader(fs)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if path.Clean("/"+h.Name) == p {
			return h.Typeflag == tar.TypeReg && h.Mode&0o111 != 0
		}
	}
}

func envOf(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

// checkInjected checks that the stored pod has what docs/credentials-sidecar.md says: the
// operator's image as a native sidecar serving Secret secretName, and the consumer pointed at it
// with the AssumedRole's region.
func checkInjected(t *testing.T, p *corev1.Pod, secretName, region string) {
	t.Helper()
	if len(p.Spec.InitContainers) != 1 || p.Spec.InitContainers[0].Name != inject.SidecarName {
		t.Fatalf("pod %s has init containers %v, want the sidecar %s", p.Name, p.Spec.InitContainers, inject.SidecarName)
	}
	sc := p.Spec.InitContainers[0]
	if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("the sidecar is not a native sidecar (restartPolicy %v)", sc.RestartPolicy)
	}
	if sc.Image != operatorImage || !slices.Equal(sc.Command, []string{inject.Binary, "serve-credentials"}) {
		t.Errorf("the sidecar runs %s %v, want the operator's image %s with %s serve-credentials", sc.Image, sc.Command, operatorImage, inject.Binary)
	}
	var secretVolume string
	for _, v := range p.Spec.Volumes {
		if v.Name == inject.SecretVolume && v.Secret != nil {
			secretVolume = v.Secret.SecretName
		}
	}
	if secretVolume != secretName {
		t.Errorf("the sidecar's volume mounts Secret %q, want the AssumedRole's %q", secretVolume, secretName)
	}
	env := envOf(p.Spec.Containers[0])
	want := map[string]string{
		inject.EnvFullURI:       fmt.Sprintf("http://127.0.0.1:%d%s", credserver.DefaultPort, credserver.CredentialsPath),
		inject.EnvTokenFile:     credserver.DefaultTokenFile,
		inject.EnvRegion:        region,
		inject.EnvDefaultRegion: region,
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("the consumer's %s is %q, want %q", k, env[k], v)
		}
	}
	for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		for _, e := range c.Env {
			if strings.Contains(e.Name, "TOKEN") && e.Name != inject.EnvTokenFile {
				t.Errorf("container %s has %s in its spec: the token must be only in the file", c.Name, e.Name)
			}
		}
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.Name == inject.SidecarName && cs.ImageID != operatorConfigDigest {
			t.Errorf("the sidecar runs image id %q, want the built image's %s", cs.ImageID, operatorConfigDigest)
		}
	}
}

// A pod from the consumer image without a shell or cat, which cannot use credential_process
// (TestCredentialProcessConsumer), labelled with its AssumedRole: the webhook the chart installs,
// served by the operator's pods with cert-controller's certificate, injects the sidecar from the
// operator's image; the sidecar serves the Secret the kubelet mounts, and the SDK's default
// chain signs every call with it across three rotations, without a restart. An unlabelled pod
// is never sent to the webhook; a labelled one is refused, naming rolekeeper, while the
// operator is down.
func TestCredentialsSidecar(t *testing.T) {
	withOperator(t)
	ctx := context.Background()
	ns := namespace(t, "sidecar")

	// The chart's webhook, with the default certificates: cert-controller in the operator has
	// filled the Secret and the caBundle; the sidecar's binary is where the injection runs it.
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := admin.Get(ctx, client.ObjectKey{Name: releaseName + "-credentials"}, &mwc); err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) != 1 || mwc.Webhooks[0].Name != webhooks.WebhookName || mwc.Webhooks[0].ClientConfig.Service == nil ||
		mwc.Webhooks[0].ClientConfig.Service.Name != releaseName+"-webhook" || len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Fatalf("the webhook configuration does not send to the operator's Service with an injected CA: %+v", mwc.Webhooks)
	}
	if s := secret(t, operatorNamespace, releaseName+"-webhook-cert"); s == nil || len(s.Data["tls.crt"]) == 0 || len(s.Data["ca.crt"]) == 0 {
		t.Fatal("cert-controller has not filled the webhook's certificate Secret")
	}
	if !imageFile(t, inject.Binary) {
		t.Fatalf("the operator's image has no executable %s, which the sidecar runs", inject.Binary)
	}

	// A Secret name and region of its own, so that the pod shows the webhook read the AssumedRole.
	const region, secretName = "eu-west-1", "app-credentials"
	assumedRole(t, ns, "app", short, fmt.Sprintf("  region: %s\n  secret: {name: %s}\n", region, secretName))
	secrets := watchSecret(t, ns, secretName)
	operators := operatorPods(t, 2)
	admitted := webhookAdmissions(operators)
	apply(t, sidecarPod(ns, "consumer", "app"))
	eventually(t, 30*time.Second, "an operator pod's webhook answering the pod's admission", func() bool {
		return webhookAdmissions(operators) > admitted
	})
	pod := waitPodRunning(t, ns, "consumer")
	checkInjected(t, pod, secretName, region)
	volume := watchVolume(t, pod, inject.SecretVolume)

	// The token: in the pod's in-memory volume (the test shares the kubelet's mount namespace),
	// nowhere in the pod as the API server has it, nor in events or logs.
	tokenFile := filepath.Join(node.Dir, "kubelet", "pods", string(pod.UID), "volumes", "kubernetes.io~empty-dir", inject.TokenVolume, path.Base(credserver.DefaultTokenFile))
	token, err := os.ReadFile(tokenFile)
	if err != nil || len(token) != 43 {
		t.Fatalf("the sidecar's token file %s: %d bytes, %v", tokenFile, len(token), err)
	}

	// Three rotations, each used by the consumer through the sidecar.
	var all []ststest.Call
	var keys, used []string
	firstUse := map[string]time.Time{}
	eventually(t, 3*time.Minute, "the consumer signing with four successive credentials", func() bool {
		all = calls(t)
		keys = issuedKeys(all, ns, "app")
		used, firstUse = keys[:0:0], map[string]time.Time{}
		for _, c := range all {
			if c.Action == "GetCallerIdentity" && slices.Contains(keys, c.CallerAccessKey) && firstUse[c.CallerAccessKey].IsZero() {
				firstUse[c.CallerAccessKey] = c.Time
				used = append(used, c.CallerAccessKey)
			}
		}
		return len(used) >= 4
	})
	log := podLog(t, ns, "consumer")
	lines := strings.Split(strings.TrimSpace(log), "\n")
	var failures []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "ok ") {
			failures = append(failures, l)
		}
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d calls failed (ExpiredToken among them: %d), first: %s", len(failures), len(lines), strings.Count(log, "ExpiredToken"), failures[0])
	}
	// Every rotation was picked up: the keys used are successive issues, in order.
	start := slices.Index(keys, used[0])
	if !slices.Equal(used, keys[start:start+len(used)]) {
		t.Errorf("the consumer used %d keys out of issue order or skipped one", len(used))
	}
	signed := 0
	for _, c := range all {
		if c.Action == "GetCallerIdentity" && slices.Contains(keys, c.CallerAccessKey) {
			signed++
			if c.Code != "" || c.Region != region {
				t.Errorf("a call with the AssumedRole's credentials: code %q, signed for region %q (want %s)", c.Code, c.Region, region)
			}
		}
	}
	var p corev1.Pod
	if err := admin.Get(ctx, client.ObjectKeyFromObject(pod), &p); err != nil {
		t.Fatal(err)
	}
	if p.UID != pod.UID || p.Status.ContainerStatuses[0].RestartCount != 0 || p.Status.InitContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the pod was replaced or restarted (consumer %d, sidecar %d restarts)", p.Status.ContainerStatuses[0].RestartCount, p.Status.InitContainerStatuses[0].RestartCount)
	}
	var delays []string
	for _, k := range used[1:] {
		written, mounted := secrets.at(k), volume.at(k)
		if written.IsZero() || mounted.IsZero() {
			t.Errorf("a rotation: Secret updated at %v, seen in the sidecar's volume at %v", written, mounted)
			continue
		}
		delays = append(delays, fmt.Sprintf("%v (kubelet %v, then sidecar and SDK %v)", firstUse[k].Sub(written).Round(100*time.Millisecond),
			mounted.Sub(written).Round(100*time.Millisecond), firstUse[k].Sub(mounted).Round(100*time.Millisecond)))
	}
	t.Logf("%d calls by the consumer, all signed, %d at STS with %d keys; rotation → first call with the new key: %s",
		len(lines), signed, len(used), strings.Join(delays, ", "))

	podJSON := kubectl(t, "-n", ns, "get", "pod", "consumer", "-o", "json")
	events := kubectl(t, "-n", ns, "get", "events", "-o", "json")
	sidecarLog, err := clientset.CoreV1().Pods(ns).GetLogs("consumer", &corev1.PodLogOptions{Container: inject.SidecarName}).Do(ctx).Raw()
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"the pod": podJSON, "the events": events, "the sidecar's log": string(sidecarLog), "the consumer's log": log} {
		if strings.Contains(text, string(token)) {
			t.Errorf("the token is in %s", what)
		}
	}
	if !strings.Contains(string(sidecarLog), "serving the AWS container credentials protocol") {
		t.Errorf("the sidecar's log does not say it serves:\n%s", tail(string(sidecarLog), 5))
	}

	// The operator down: its webhook is unreachable. A labelled pod is refused (failurePolicy
	// Fail) with the webhook's name; an unlabelled one is never sent to it and is admitted as is.
	if err := admin.Delete(ctx, &p); err != nil {
		t.Fatal(err)
	}
	scale := func(n int) {
		kubectl(t, "-n", operatorNamespace, "scale", "deployment/"+releaseName, fmt.Sprintf("--replicas=%d", n))
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			scale(2)
			operatorPods(t, 2)
		}
	})
	down := time.Now()
	scale(0)
	eventually(t, time.Minute, "the operator's pods gone", func() bool {
		var list corev1.PodList
		return admin.List(ctx, &list, client.InNamespace(operatorNamespace), operatorSelector) == nil && len(list.Items) == 0
	})
	refused := filepath.Join(t.TempDir(), "refused.yaml")
	if err := os.WriteFile(refused, []byte(sidecarPod(ns, "refused", "app")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runErr(filepath.Join(assets, "kubectl"), "create", "-f", refused)
	if err == nil || !strings.Contains(out, fmt.Sprintf("failed calling webhook %q", webhooks.WebhookName)) {
		t.Errorf("a labelled pod with the webhook down: %v\n%s\nwant a refusal naming %s", err, out, webhooks.WebhookName)
	}
	if !gone(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refused"}}) {
		t.Error("the refused pod exists")
	}
	apply(t, sidecarPod(ns, "unlabelled", ""))
	var plain corev1.Pod
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "unlabelled"}, &plain); err != nil {
		t.Fatal(err)
	}
	if len(plain.Spec.InitContainers) != 0 || slices.ContainsFunc(plain.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "rolekeeper-") }) ||
		len(plain.Spec.Containers[0].Env) != 1 {
		t.Errorf("the unlabelled pod was changed: init containers %v, volumes %v, env %v", plain.Spec.InitContainers, plain.Spec.Volumes, plain.Spec.Containers[0].Env)
	}
	t.Logf("operator down: %s", strings.TrimSpace(out))

	// Back up: the webhook serves again (a server-side dry run of the labelled pod is injected),
	// and a leader holds the Lease for the tests after this one.
	scale(2)
	operatorPods(t, 2)
	restored = true
	if err := os.WriteFile(refused, []byte(sidecarPod(ns, "again", "app")), 0o644); err != nil {
		t.Fatal(err)
	}
	// Ready pods reach the Service once kube-proxy has their endpoints, a moment later.
	var again corev1.Pod
	eventually(t, time.Minute, "a labelled pod injected again (server-side dry run)", func() bool {
		out, err := runErr(filepath.Join(assets, "kubectl"), "create", "--dry-run=server", "-o", "json", "-f", refused)
		again = corev1.Pod{}
		return err == nil && json.Unmarshal([]byte(out), &again) == nil && len(again.Spec.InitContainers) == 1 && again.Spec.InitContainers[0].Name == inject.SidecarName
	})
	eventually(t, time.Minute, "a leader among the new operator pods", func() bool {
		l, _ := leader(t)
		return l != nil
	})
	t.Logf("operator scaled to 0 and back, webhook serving and leader elected: %v", time.Since(down).Round(100*time.Millisecond))
}
