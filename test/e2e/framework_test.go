//go:build e2e

// Package e2e runs the built rolekeeper binary as a separate process against a real control
// plane (kube-apiserver and etcd built by hack/build-control-plane.sh) with the shipped CRDs and
// RBAC, and real STS peers: MinIO and the ststest emulator as a process.
package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/cluster"
	"github.com/rolekeeper/rolekeeper/test/harness"
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
	cp       *cluster.ControlPlane
	admin    client.Client
	emulator *harness.Emulator
	stsURL   string
	scheme   = controllers.NewScheme()
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		code = 1
	}
	if cp != nil {
		cp.Stop()
	}
	if emulator != nil {
		emulator.Stop()
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: logs kept in %s\n", work)
	} else {
		_ = os.RemoveAll(work)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	ctrllog.SetLogger(logr.Discard()) // the tests' own informers; the operator logs to its files
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
	if cp, err = cluster.Start(assets, filepath.Join(work, "cluster")); err != nil {
		return 1, err
	}
	if admin, err = client.New(cp.Config(cluster.AdminToken), client.Options{Scheme: scheme}); err != nil {
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
	emulator, err = harness.StartEmulator(filepath.Join(work, "logs"), bins["ststest"], "127.0.0.1:0", "-time-scale", fmt.Sprint(timeScale),
		"-access-key", replicaA.AccessKeyID, "-secret-key", replicaA.SecretAccessKey, "-arn", replicaA.Arn,
		"-principal", replicaB.AccessKeyID+":"+replicaB.SecretAccessKey+":"+replicaB.Arn)
	if err != nil {
		return 1, err
	}
	stsURL = emulator.URL
	return m.Run(), nil
}

func kubectl(who string, args ...string) (string, error) {
	kc, err := cp.Kubeconfig(who + "-token")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bins["kubectl"], args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kc)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func startProcess(name, bin string, env []string, args ...string) (*cluster.Process, error) {
	return cluster.StartProcess(filepath.Join(work, "logs"), name, bin, env, args...)
}

func freePort() int { return cluster.FreePort() }

// operator runs the rolekeeper binary as its ServiceAccount with the given AWS identity.
func operator(t *testing.T, identity ststest.Principal, endpoint string, args ...string) *cluster.Process {
	t.Helper()
	return operatorAs(t, operatorKubeconfig(t), identity, endpoint, args...)
}

// operatorKubeconfig is a kubeconfig that authenticates as the operator's ServiceAccount.
func operatorKubeconfig(t *testing.T) string {
	t.Helper()
	kc, err := cp.Kubeconfig(cluster.OperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// operatorAs runs the rolekeeper binary with the given kubeconfig and AWS identity.
func operatorAs(t *testing.T, kc string, identity ststest.Principal, endpoint string, args ...string) *cluster.Process {
	t.Helper()
	return operatorWithEnv(t, kc, keyEnv(identity), endpoint, args...)
}

// keyEnv is the environment that gives the operator identity's access keys.
func keyEnv(identity ststest.Principal) []string {
	return []string{"AWS_ACCESS_KEY_ID=" + identity.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + identity.SecretAccessKey}
}

// operatorWithEnv runs the rolekeeper binary with the given kubeconfig and AWS environment (the
// variables that choose its identity); shared config files and instance metadata are off.
func operatorWithEnv(t *testing.T, kc string, awsEnv []string, endpoint string, args ...string) *cluster.Process {
	t.Helper()
	env := append([]string{
		"KUBECONFIG=" + kc,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
	}, awsEnv...)
	all := append([]string{"--region=us-east-1", "--sts-endpoint=" + endpoint, "--ecr-endpoint=" + endpoint, "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--leader-election-namespace=rolekeeper-system"}, args...)
	p, err := startProcess("rolekeeper", bins["rolekeeper"], env, all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("operator log %s:\n%s", p.Log, tail(p.Output(), 60))
		}
	})
	return p
}

func tail(s string, lines int) string { return harness.Tail(s, lines) }

// namespace creates a namespace for one test.
func namespace(t *testing.T, name string) string {
	t.Helper()
	return harness.Namespace(t, admin, name, nil)
}

func allowAll(t *testing.T, ns string) {
	t.Helper()
	harness.AllowAll(t, admin, ns)
}

func create(t *testing.T, ar *rkv1.AssumedRole) {
	t.Helper()
	harness.Create(t, admin, ar)
}

func get(t *testing.T, ns, name string) *rkv1.AssumedRole {
	t.Helper()
	return harness.AssumedRole(t, admin, ns, name)
}

func secret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	return harness.Secret(t, admin, ns, name)
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	harness.Eventually(t, timeout, what, cond)
}

func waitReady(t *testing.T, ns, name string, timeout time.Duration) *rkv1.AssumedRole {
	t.Helper()
	return harness.WaitReady(t, admin, ns, name, timeout)
}

func cond(ar *rkv1.AssumedRole, typ string) metav1.Condition {
	if c := harness.Condition(ar, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// withMetrics adds a plain-HTTP metrics address to an operator's arguments and returns the URL
// to scrape.
func withMetrics(args ...string) ([]string, string) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	return append(args, "--metrics-bind-address="+addr), "http://" + addr + "/metrics"
}

// drained waits until the operator behind url has finished at least n reconciles of AssumedRoles
// and has none queued or running: everything it was given so far it has looked at and acted on.
// Reconciles waiting for a later time (a renewal, a backoff) are not queued.
func drained(t *testing.T, url string, n int) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("%d reconciles and an empty queue at %s", n, url), func() bool {
		done, busy, err := reconcileState(url)
		return err == nil && done >= n && !busy
	})
}

// reconcileState is how many reconciles of AssumedRoles the operator behind url has finished, and
// whether any is queued or running.
func reconcileState(url string) (done int, busy bool, err error) {
	m, err := scrape(url)
	if err != nil {
		return 0, false, err
	}
	for k, v := range m {
		if strings.HasPrefix(k, `controller_runtime_reconcile_total{controller="assumedrole",`) {
			done += int(v)
		}
	}
	busy = m[`workqueue_depth{controller="assumedrole",name="assumedrole"}`] > 0 || m[`controller_runtime_active_workers{controller="assumedrole"}`] > 0
	return done, busy, nil
}

// emu calls the emulator's control API.
func emu(t *testing.T, method, path string, body any) []byte {
	t.Helper()
	return emulator.Control(t, method, path, body)
}

func calls(t *testing.T) []ststest.Call {
	t.Helper()
	return emulator.Calls(t)
}

// callsFor counts the calls for an AssumedRole by its default session name.
func callsFor(all []ststest.Call, ns, name string) int { return harness.CallsFor(all, "", ns, name) }

// operatorWrites counts the operator's write requests in a namespace from the audit log, by
// resource ("secrets", "assumedroles/status"), successful or not.
func operatorWrites(t *testing.T, ns string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(cp.Dir, "audit.log"))
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
