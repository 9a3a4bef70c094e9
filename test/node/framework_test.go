//go:build node

// Package node is the real-node suite: the operator's image, built by `make image`, installed with
// Helm or kustomize into a cluster with a real kubelet node (containerd and runc from Debian), and
// real pods consuming its Secrets. test/node/run.sh (`make test-node`) runs it inside a network
// namespace and a private mount namespace of its own, which down.sh removes afterwards.
package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/internal/image"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/cluster"
	"github.com/rolekeeper/rolekeeper/test/harness"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// The operator's AWS identity at the emulator.
var operatorIdentity = ststest.Principal{AccessKeyID: "AKIAROLEKEEPERNODE01", SecretAccessKey: "rolekeeper-node-secret-000000000000000001", Arn: "arn:aws:iam::000000000000:user/rolekeeper"}

// timeScale of the emulator: a 900 s session lasts 30 s, so a rotation comes every 20 s.
const timeScale = 30

// Images the suite builds and imports; pods use them with imagePullPolicy IfNotPresent.
const (
	pauseImage               = "rolekeeper.local/pause:1"
	consumerImage            = "rolekeeper.local/consumer:1"
	consumerDistrolessImage  = "rolekeeper.local/consumer-distroless:1"
	nodeName                 = "rk-node"
	operatorNamespace        = "rolekeeper-system"
	releaseName              = "rolekeeper"
	leaseName                = "rolekeeper.rolekeeper.io"
	kubernetesServiceAddress = "10.0.0.1"
)

var (
	root      = testenv.Root()
	work      string
	assets    string
	nodeIP    string
	cp        *cluster.ControlPlane
	node      *cluster.Node
	admin     client.Client
	clientset *kubernetes.Clientset
	emulator  *harness.Emulator
	stsURL    string
	scheme    = controllers.NewScheme()
	// operatorImage is what `make image` built, e.g. ghcr.io/rolekeeper/rolekeeper:0a1b2c3, with
	// its manifest digest and its image id (the config's digest, which the kubelet reports).
	operatorImage, operatorTag, operatorDigest, operatorConfigDigest string
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "node setup:", err)
		code = 1
	}
	hold()
	if node != nil {
		node.Stop()
	}
	if cp != nil {
		cp.Stop()
	}
	if emulator != nil {
		emulator.Stop()
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "node: logs in %s\n", work)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	ctrllog.SetLogger(logr.Discard())
	state := os.Getenv("ROLEKEEPER_NODE_STATE")
	nodeIP = os.Getenv("ROLEKEEPER_NODE_IP")
	if state == "" || nodeIP == "" {
		return 1, fmt.Errorf("run the real-node suite through `make test-node` (test/node/run.sh makes its namespaces)")
	}
	work = filepath.Join(state, "work")
	var err error
	if assets, err = testenv.AssetsDir(); err != nil {
		return 1, err
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl", "kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return 1, fmt.Errorf("%s missing in %s: run `make test-node`, which builds it", b, assets)
		}
	}
	if os.Getenv("HELM_BIN") == "" {
		return 1, fmt.Errorf("HELM_BIN is not set: run `make test-node`, which builds Helm")
	}
	archives, err := buildImages()
	if err != nil {
		return 1, err
	}
	if cp, err = cluster.StartWith(assets, filepath.Join(work, "cluster"), cluster.Options{Address: nodeIP, Tokens: cluster.NodeTokens(nodeName)}); err != nil {
		return 1, err
	}
	if admin, err = client.New(cp.Config(cluster.AdminToken), client.Options{Scheme: scheme}); err != nil {
		return 1, err
	}
	if clientset, err = kubernetes.NewForConfig(cp.Config(cluster.AdminToken)); err != nil {
		return 1, err
	}
	registries, err := registryCAs()
	if err != nil {
		return 1, err
	}
	node, err = cluster.StartNode(cp, assets, cluster.NodeOptions{
		Name: nodeName, IP: nodeIP, Bridge: os.Getenv("ROLEKEEPER_NODE_BRIDGE"), PodCIDR: os.Getenv("ROLEKEEPER_NODE_CIDR"),
		CgroupRoot: os.Getenv("ROLEKEEPER_NODE_CGROUP"), SandboxImage: pauseImage, RegistryCAs: registries,
	}, archives...)
	if err != nil {
		return 1, err
	}
	if err := waitClusterReady(); err != nil {
		return 1, err
	}
	// The emulator on the node address, where pods reach it.
	if emulator, err = harness.StartEmulator(filepath.Join(work, "logs"), filepath.Join(work, "bin", "ststest"), nodeIP+":0", "-time-scale", fmt.Sprint(timeScale),
		"-access-key", operatorIdentity.AccessKeyID, "-secret-key", operatorIdentity.SecretAccessKey, "-arn", operatorIdentity.Arn); err != nil {
		return 1, err
	}
	stsURL = emulator.URL
	return m.Run(), nil
}

// hold keeps the cluster up for a look inside when ROLEKEEPER_NODE_HOLD=1: it prints how to
// enter the namespaces and waits until the file it names is removed.
func hold() {
	if os.Getenv("ROLEKEEPER_NODE_HOLD") != "1" {
		return
	}
	f := filepath.Join(work, "holding")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		return
	}
	fmt.Fprintf(os.Stderr, "node: holding; enter with `nsenter -t %d -n -m`, KUBECONFIG=%s; rm %s to tear down\n",
		os.Getpid(), filepath.Join(cp.Dir, cluster.AdminToken+".kubeconfig"), f)
	for {
		if _, err := os.Stat(f); err != nil {
			return
		}
		time.Sleep(time.Second)
	}
}

// buildImages builds the images the suite imports into containerd: the operator's with `make
// image`, exactly as README says, and the pause and consumer images from the programs in this
// directory with internal/image.
func buildImages() ([]string, error) {
	dir := filepath.Join(work, "image")
	out, err := makeImage(dir)
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(out)
	if len(fields) != 2 || !strings.HasPrefix(fields[1], "sha256:") {
		return nil, fmt.Errorf("make image printed %q, want the tag and the digest", out)
	}
	operatorImage, operatorDigest = fields[0], fields[1]
	operatorTag = operatorImage[strings.LastIndex(operatorImage, ":")+1:]
	built, err := tarball.ImageFromPath(filepath.Join(dir, "rolekeeper.tar"), nil)
	if err != nil {
		return nil, err
	}
	id, err := built.ConfigName()
	if err != nil {
		return nil, err
	}
	operatorConfigDigest = id.String()

	bins := filepath.Join(work, "bin")
	for _, pkg := range []string{"./test/node/pause", "./test/node/consumer", "./hack/ststest"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bins, filepath.Base(pkg)), pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s: %w\n%s", pkg, err, out)
		}
	}
	read := func(p string) []byte {
		b, rerr := os.ReadFile(p)
		if rerr != nil && err == nil {
			err = rerr
		}
		return b
	}
	ca, busybox := read(image.CABundle), read("/bin/busybox")
	pause, consumer := read(filepath.Join(bins, "pause")), read(filepath.Join(bins, "consumer"))
	if err != nil {
		return nil, err
	}
	shell := image.Layer{CreatedBy: "busybox-static as /bin/sh and /bin/cat", Files: []image.File{
		{Path: "/bin", Dir: true}, {Path: "/bin/busybox", Data: busybox, Mode: 0o755},
		{Path: "/bin/sh", Link: "busybox"}, {Path: "/bin/cat", Link: "busybox"},
	}}
	user := fmt.Sprint(image.NonRoot)
	specs := map[string]image.Spec{
		pauseImage:              {Layers: []image.Layer{image.Binary("/pause", pause)}, Entrypoint: []string{"/pause"}},
		consumerImage:           {Layers: []image.Layer{image.Base(ca), shell, image.Binary("/consumer", consumer)}, Entrypoint: []string{"/consumer"}, User: user},
		consumerDistrolessImage: {Layers: []image.Layer{image.Base(ca), image.Binary("/consumer", consumer)}, Entrypoint: []string{"/consumer"}, User: user},
	}
	archives := []string{filepath.Join(dir, "rolekeeper.tar")}
	for ref, spec := range specs {
		spec.OS, spec.Arch, spec.Created = "linux", "amd64", time.Unix(0, 0)
		spec.Env = []string{"PATH=/bin"}
		img, err := image.Build(spec)
		if err != nil {
			return nil, err
		}
		archive := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
		if err := image.WriteTarball(img, ref, archive); err != nil {
			return nil, err
		}
		if ref == pauseImage {
			archives = append([]string{archive}, archives...)
		} else {
			archives = append(archives, archive)
		}
	}
	return archives, nil
}

// makeImage runs `make image` into dir and returns what it printed last: the tag and digest.
func makeImage(dir string) (string, error) {
	cmd := exec.Command("make", "--no-print-directory", "image", "IMAGE_DIR="+dir)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("make image: %w\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "rolekeeper.digest"))
	return strings.TrimSpace(string(b)), err
}

// waitClusterReady waits for what pods need: the Node Ready, the default ServiceAccount, the root
// CA ConfigMap, and the kubernetes Service answering at its cluster IP through kube-proxy.
func waitClusterReady() error {
	ctx := context.Background()
	steps := []struct {
		what string
		p    *cluster.Process
		ok   func() bool
	}{
		{"the Node Ready", node.Kubelet, func() bool {
			var n corev1.Node
			if admin.Get(ctx, client.ObjectKey{Name: nodeName}, &n) != nil {
				return false
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					return c.Status == corev1.ConditionTrue
				}
			}
			return false
		}},
		{"the default ServiceAccount", node.Controller, func() bool {
			return admin.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{}) == nil
		}},
		{"kube-root-ca.crt", node.Controller, func() bool {
			return admin.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kube-root-ca.crt"}, &corev1.ConfigMap{}) == nil
		}},
		{"the kubernetes Service through kube-proxy", node.Proxy, func() bool {
			code, _ := httpGet(fmt.Sprintf("https://%s:443/readyz", kubernetesServiceAddress), cluster.AdminToken)
			return code == http.StatusOK
		}},
	}
	for _, s := range steps {
		deadline := time.Now().Add(2 * time.Minute)
		for !s.ok() {
			if s.p.Exited() {
				return fmt.Errorf("%s exited while waiting for %s; log %s:\n%s", s.p.Name, s.what, s.p.Log, tail(s.p.Output(), 40))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("timed out waiting for %s; logs in %s", s.what, filepath.Join(cp.Dir, "logs"))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return nil
}

// httpGet fetches url (with a bearer token when not empty) and returns the status and body.
func httpGet(url, token string) (int, string) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: insecureTransport}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// run runs a command from the repository root with the administrator's kubeconfig.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	kc, err := cp.Kubeconfig(cluster.AdminToken)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kc, "HELM_CACHE_HOME="+filepath.Join(work, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(work, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(work, "helm", "data"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, filepath.Join(assets, "kubectl"), args...)
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, os.Getenv("HELM_BIN"), args...)
}

// apply creates or updates objects from YAML with kubectl.
func apply(t *testing.T, manifest string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", f)
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	harness.Eventually(t, timeout, what, cond)
}

func tail(s string, lines int) string { return harness.Tail(s, lines) }

// namespace creates a namespace for one test (or takes the one the test made before installing
// into it) with an AssumedRolePolicy that allows every role in it, and deletes both when the test
// ends.
func namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := admin.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	policy := &rkv1.AssumedRolePolicy{ObjectMeta: metav1.ObjectMeta{Name: "node-" + name}, Spec: rkv1.AssumedRolePolicySpec{Namespaces: []string{name}, AllowedRoleArns: []string{"*"}}}
	if err := admin.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.Delete(ctx, policy)
		_ = admin.Delete(ctx, ns)
	})
	eventually(t, time.Minute, "the default ServiceAccount in "+name, func() bool {
		return admin.Get(ctx, client.ObjectKey{Namespace: name, Name: "default"}, &corev1.ServiceAccount{}) == nil
	})
	return name
}

func getAR(t *testing.T, ns, name string) *rkv1.AssumedRole {
	t.Helper()
	return harness.AssumedRole(t, admin, ns, name)
}

func waitReady(t *testing.T, ns, name string, timeout time.Duration) *rkv1.AssumedRole {
	t.Helper()
	return harness.WaitReady(t, admin, ns, name, timeout)
}

// secret returns the Secret, or nil when it does not exist.
func secret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	return harness.Secret(t, admin, ns, name)
}

func calls(t *testing.T) []ststest.Call {
	t.Helper()
	return emulator.Calls(t)
}

// callsFor counts the emulator's calls of an action for an AssumedRole.
func callsFor(all []ststest.Call, action, ns, name string) int {
	return harness.CallsFor(all, action, ns, name)
}

// insecureTransport is for the test's own requests inside the namespace: the kubernetes Service's
// readiness (with the administrator's token) and metrics. No keep-alive: each request through a
// Service is a new connection, which kube-proxy may send to another pod.
var insecureTransport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true} //nolint:gosec // a test cluster's self-signed certificate
