//go:build e2e

// Package e2e runs the built rolekeeper binary as a separate process against a real control
// plane (kube-apiserver and etcd built by hack/build-control-plane.sh) with the shipped CRDs and
// RBAC, and real STS peers: MinIO and the ststest emulator as a process.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// Identities the emulator accepts: two operator replicas, told apart by their keys.
var (
	replicaA = ststest.Principal{AccessKeyID: "AKIAREPLICAA00000001", SecretAccessKey: "replica-a-secret-000000000000000000000001", Arn: "arn:aws:iam::000000000000:role/rolekeeper-a"}
	replicaB = ststest.Principal{AccessKeyID: "AKIAREPLICAB00000001", SecretAccessKey: "replica-b-secret-000000000000000000000001", Arn: "arn:aws:iam::000000000000:role/rolekeeper-b"}
)

// timeScale of the emulator process: 900 s sessions last 30 s, 3600 s sessions two minutes.
const timeScale = 30

var (
	work     string // scratch directory, kept (and printed) when a test fails
	bins     = map[string]string{}
	cluster  *controlPlane
	admin    client.Client
	emulator *process
	stsURL   string
	scheme   = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		code = 1
	}
	if cluster != nil {
		cluster.stop()
	}
	if emulator != nil {
		emulator.stop()
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: logs kept in %s\n", work)
	} else {
		_ = os.RemoveAll(work)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	_ = clientgoscheme.AddToScheme(scheme)
	_ = rkv1.AddToScheme(scheme)
	var err error
	if work, err = os.MkdirTemp("", "rolekeeper-e2e-"); err != nil {
		return 1, err
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		return 1, err
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
		bins[b] = filepath.Join(assets, b)
		if _, err := os.Stat(bins[b]); err != nil {
			return 1, fmt.Errorf("%s missing in %s: run `make test-e2e`, which builds it", b, assets)
		}
	}
	root := testenv.Root()
	for name, pkg := range map[string]string{"rolekeeper": ".", "ststest": "./hack/ststest"} {
		bins[name] = filepath.Join(work, "bin", name)
		cmd := exec.Command("go", "build", "-o", bins[name], pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return 1, fmt.Errorf("building %s: %w\n%s", pkg, err, out)
		}
	}
	if cluster, err = startControlPlane(filepath.Join(work, "cluster")); err != nil {
		return 1, err
	}
	if admin, err = client.New(cluster.config("admin-token"), client.Options{Scheme: scheme}); err != nil {
		return 1, err
	}
	// The shipped manifests, applied as a cluster administrator would.
	if out, err := kubectl("admin", "create", "namespace", "rolekeeper-system"); err != nil {
		return 1, fmt.Errorf("%w: %s", err, out)
	}
	for _, dir := range []string{"config/crd", "config/rbac"} {
		if out, err := kubectl("admin", "apply", "-k", filepath.Join(root, dir)); err != nil {
			return 1, fmt.Errorf("kubectl apply -k %s: %w\n%s", dir, err, out)
		}
	}
	if out, err := kubectl("admin", "wait", "--for=condition=Established", "crd/assumedroles.rolekeeper.io", "crd/assumedrolepolicies.rolekeeper.io", "--timeout=60s"); err != nil {
		return 1, fmt.Errorf("%w: %s", err, out)
	}
	emulator, err = startProcess("ststest", bins["ststest"], nil, "-addr", "127.0.0.1:0", "-time-scale", fmt.Sprint(timeScale),
		"-access-key", replicaA.AccessKeyID, "-secret-key", replicaA.SecretAccessKey, "-arn", replicaA.Arn,
		"-principal", replicaB.AccessKeyID+":"+replicaB.SecretAccessKey+":"+replicaB.Arn,
		"-url-file", filepath.Join(work, "ststest.url"))
	if err != nil {
		return 1, err
	}
	for i := 0; i < 100 && stsURL == ""; i++ {
		b, _ := os.ReadFile(filepath.Join(work, "ststest.url"))
		stsURL = string(b)
		time.Sleep(100 * time.Millisecond)
	}
	if stsURL == "" {
		return 1, fmt.Errorf("the emulator did not start")
	}
	return m.Run(), nil
}

// controlPlane is etcd and kube-apiserver run directly, so the API server can be restarted with
// the same address, certificates and credentials while the operator keeps running.
type controlPlane struct {
	dir       string
	etcd      *process
	apiserver *process
	args      []string
	url       string
}

// auditPolicy records the operator's writes, so tests count them exactly.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["system:serviceaccount:rolekeeper-system:rolekeeper"]
  verbs: [create, update, patch, delete]
- level: None
`

// Static bearer tokens: an administrator, and the operator's ServiceAccount identity, so that
// exactly the bindings in config/rbac apply to it.
const tokens = `admin-token,admin,admin-uid,system:masters
operator-token,system:serviceaccount:rolekeeper-system:rolekeeper,operator-uid,"system:serviceaccounts,system:serviceaccounts:rolekeeper-system"
`

func freePort() int {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func startControlPlane(dir string) (*controlPlane, error) {
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "audit-policy.yaml"), []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort := freePort(), freePort(), freePort()
	c := &controlPlane{dir: dir, url: fmt.Sprintf("https://127.0.0.1:%d", apiPort)}
	c.etcd, err = startProcess("etcd", bins["etcd"], nil, "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort), "--unsafe-no-fsync")
	if err != nil {
		return nil, err
	}
	c.args = []string{
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(apiPort), "--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--audit-policy-file", filepath.Join(dir, "audit-policy.yaml"),
		"--audit-log-path", filepath.Join(dir, "audit.log"),
		"--audit-log-format", "json",
		"--audit-log-maxsize", "0",
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--disable-admission-plugins", "ServiceAccount",
		"--service-account-issuer", c.url,
		"--service-account-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
	}
	return c, c.startAPIServer()
}

func (c *controlPlane) startAPIServer() error {
	var err error
	if c.apiserver, err = startProcess("kube-apiserver", bins["kube-apiserver"], nil, c.args...); err != nil {
		return err
	}
	tr, err := rest.TransportFor(c.config("admin-token"))
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, c.url+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver did not become ready; log: %s", c.apiserver.log)
}

func (c *controlPlane) stop() {
	if c.apiserver != nil {
		c.apiserver.stop()
	}
	if c.etcd != nil {
		c.etcd.stop()
	}
}

func (c *controlPlane) config(token string) *rest.Config {
	return &rest.Config{Host: c.url, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
}

// kubeconfig writes a kubeconfig for a token and returns its path.
func (c *controlPlane) kubeconfig(token string) string {
	path := filepath.Join(c.dir, token+".kubeconfig")
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: e2e, context: {cluster: e2e, user: u}}]
current-context: e2e
`, c.url, token)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		panic(err)
	}
	return path
}

func kubectl(who string, args ...string) (string, error) {
	cmd := exec.Command(bins["kubectl"], args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.kubeconfig(who+"-token"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// process is a child process whose output goes to a log file under work.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProcess(name, bin string, env []string, args ...string) (*process, error) {
	log := filepath.Join(work, "logs", fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = f.Close(); close(p.done) }()
	return p, nil
}

func (p *process) signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) stop() { p.signal(syscall.SIGTERM) }
func (p *process) kill() { p.signal(syscall.SIGKILL) }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// operator runs the rolekeeper binary as its ServiceAccount with the given AWS identity.
func operator(t *testing.T, identity ststest.Principal, endpoint string, args ...string) *process {
	t.Helper()
	env := []string{
		"KUBECONFIG=" + cluster.kubeconfig("operator-token"),
		"AWS_ACCESS_KEY_ID=" + identity.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + identity.SecretAccessKey,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
	}
	all := append([]string{"--region=us-east-1", "--sts-endpoint=" + endpoint, "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--leader-election-namespace=rolekeeper-system"}, args...)
	p, err := startProcess("rolekeeper", bins["rolekeeper"], env, all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("operator log %s:\n%s", p.log, tail(p.output(), 60))
		}
	})
	return p
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// namespace creates a namespace for one test.
func namespace(t *testing.T, name string) string {
	t.Helper()
	if err := admin.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func allowAll(t *testing.T, ns string) {
	t.Helper()
	p := &rkv1.AssumedRolePolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + ns}, Spec: rkv1.AssumedRolePolicySpec{Namespaces: []string{ns}, AllowedRoleArns: []string{"*"}}}
	if err := admin.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func create(t *testing.T, ar *rkv1.AssumedRole) {
	t.Helper()
	if err := admin.Create(context.Background(), ar); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, ns, name string) *rkv1.AssumedRole {
	t.Helper()
	ar := &rkv1.AssumedRole{}
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ar); err != nil {
		t.Fatal(err)
	}
	return ar
}

func secret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		return nil
	}
	return s
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func waitReady(t *testing.T, ns, name string, timeout time.Duration) *rkv1.AssumedRole {
	t.Helper()
	var ar *rkv1.AssumedRole
	eventually(t, timeout, ns+"/"+name+" Ready", func() bool {
		ar = get(t, ns, name)
		c := meta.FindStatusCondition(ar.Status.Conditions, rkv1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == ar.Generation
	})
	return ar
}

func cond(ar *rkv1.AssumedRole, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(ar.Status.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// emu calls the emulator's control API.
func emu(t *testing.T, method, path string, body any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&buf).Encode(body)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, stsURL+path, &buf)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out.String())
	}
	return out.Bytes()
}

func calls(t *testing.T) []ststest.Call {
	t.Helper()
	var out []ststest.Call
	if err := json.Unmarshal(emu(t, http.MethodGet, "/_ststest/calls", nil), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// callsFor counts the calls for an AssumedRole by its default session name.
func callsFor(all []ststest.Call, ns, name string) int {
	n := 0
	for _, c := range all {
		if c.SessionName == ns+"."+name {
			n++
		}
	}
	return n
}

// operatorWrites counts the operator's write requests in a namespace from the audit log, by
// resource ("secrets", "assumedroles/status"), successful or not.
func operatorWrites(t *testing.T, ns string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(cluster.dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	out := map[string]int{}
	dec := json.NewDecoder(f)
	for {
		var ev struct {
			Stage     string
			Verb      string
			ObjectRef struct {
				Resource, Subresource, Namespace string
			}
		}
		if err := dec.Decode(&ev); err != nil {
			break
		}
		if ev.Stage != "ResponseComplete" || ev.ObjectRef.Namespace != ns {
			continue
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		out[res]++
		out["total"]++
	}
	return out
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
