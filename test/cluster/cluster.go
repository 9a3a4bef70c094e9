// Package cluster runs etcd and kube-apiserver (built by hack/build-control-plane.sh) as plain
// processes on loopback, with static bearer tokens and a fixed certificate directory, so that the
// API server can be restarted under running clients. The end-to-end tests and `make demo` use it.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// ServiceCIDR is the range of Service cluster IPs; the kubernetes Service is its first address.
const ServiceCIDR = "10.0.0.0/24"

// Tokens the API server accepts.
const (
	// AdminToken is a cluster administrator (group system:masters).
	AdminToken = "admin-token"
	// OperatorToken is the operator's ServiceAccount identity, so exactly the bindings in
	// config/rbac apply to it.
	OperatorToken = "operator-token"
	// OperatorUser is the user name of OperatorToken.
	OperatorUser = "system:serviceaccount:rolekeeper-system:rolekeeper"
)

const tokens = `admin-token,admin,admin-uid,system:masters
operator-token,system:serviceaccount:rolekeeper-system:rolekeeper,operator-uid,"system:serviceaccounts,system:serviceaccounts:rolekeeper-system"
`

// auditPolicy records the operator's writes, so tests can count them exactly.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["system:serviceaccount:rolekeeper-system:rolekeeper"]
  verbs: [create, update, patch, delete]
- level: None
`

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	// Dir holds the data, certificates, kubeconfigs, the audit log and process logs.
	Dir       string
	URL       string
	Etcd      *Process
	APIServer *Process
	bins      string
	args      []string
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() int { return FreePorts(1)[0] }

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment ago. Each port's
// listener stays open until all are chosen: one closed at once can be handed out again at the
// next pick, and two processes told the same port fail to start (etcd's client and peer URLs).
func FreePorts(n int) []int {
	ports := make([]int, n)
	for i := range ports {
		l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		defer func() { _ = l.Close() }()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// Options change how the API server runs. The zero value is the loopback control plane of the
// end-to-end tests: no ServiceAccount admission (no controller creates ServiceAccounts there) and
// no endpoints for the kubernetes Service.
type Options struct {
	// Address to bind and advertise instead of 127.0.0.1: a real node's pods reach the API server
	// there through the kubernetes Service, whose endpoints the API server then keeps (lease
	// reconciler). It also turns on what pods need: ServiceAccount admission and the Node
	// authorizer.
	Address string
	// Tokens are more lines for the static token file (token,user,uid,"group,...").
	Tokens []string
}

// Start runs etcd and kube-apiserver from the binaries in assets, with state under dir, and waits
// until the API server is ready.
func Start(assets, dir string) (*ControlPlane, error) { return StartWith(assets, dir, Options{}) }

// StartWith is Start with options.
func StartWith(assets, dir string, o Options) (*ControlPlane, error) {
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		return nil, err
	}
	allTokens := tokens
	for _, t := range o.Tokens {
		allTokens += t + "\n"
	}
	for name, content := range map[string]string{"tokens.csv": allTokens, "audit-policy.yaml": auditPolicy} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	ports := FreePorts(3)
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	addr := "127.0.0.1"
	if o.Address != "" {
		addr = o.Address
	}
	c := &ControlPlane{Dir: dir, URL: fmt.Sprintf("https://%s:%d", addr, apiPort), bins: assets}
	c.Etcd, err = StartProcess(filepath.Join(dir, "logs"), "etcd", filepath.Join(assets, "etcd"), nil, "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort), "--unsafe-no-fsync")
	if err != nil {
		return nil, err
	}
	c.args = []string{
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address", addr, "--secure-port", fmt.Sprint(apiPort),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--audit-policy-file", filepath.Join(dir, "audit-policy.yaml"),
		"--audit-log-path", filepath.Join(dir, "audit.log"),
		"--audit-log-format", "json",
		"--audit-log-maxsize", "0",
		"--service-cluster-ip-range", ServiceCIDR,
		"--service-account-issuer", c.URL,
		// The discovery document's jwks_uri names this host, reachable on loopback.
		"--external-hostname", "127.0.0.1",
		"--service-account-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
	}
	if o.Address == "" {
		c.args = append(c.args, "--endpoint-reconciler-type", "none", "--authorization-mode", "RBAC", "--disable-admission-plugins", "ServiceAccount")
	} else {
		// The Node's name resolves nowhere; logs and exec go to its InternalIP.
		c.args = append(c.args, "--advertise-address", o.Address, "--authorization-mode", "Node,RBAC", "--kubelet-preferred-address-types", "InternalIP")
	}
	if err := c.StartAPIServer(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// StartAPIServer (re)starts kube-apiserver with the same address, certificates and tokens.
func (c *ControlPlane) StartAPIServer() error {
	var err error
	if c.APIServer, err = StartProcess(filepath.Join(c.Dir, "logs"), "kube-apiserver", filepath.Join(c.bins, "kube-apiserver"), nil, c.args...); err != nil {
		return err
	}
	tr, err := rest.TransportFor(c.Config(AdminToken))
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if c.APIServer.Exited() {
			return fmt.Errorf("kube-apiserver exited; log: %s", c.APIServer.Log)
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, c.URL+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver did not become ready; log: %s", c.APIServer.Log)
}

// CAFile writes the CA that signed the API server's self-signed serving certificate (the last
// certificate of cert-dir/apiserver.crt) to its own file and returns its path: what clients that
// verify the server trust, and what pods get as kube-root-ca.crt.
func (c *ControlPlane) CAFile() (string, error) {
	chain, err := os.ReadFile(filepath.Join(c.Dir, "certs", "apiserver.crt"))
	if err != nil {
		return "", err
	}
	var last *pem.Block
	for rest := chain; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		last = b
	}
	if last == nil {
		return "", fmt.Errorf("no certificate in %s/certs/apiserver.crt", c.Dir)
	}
	path := filepath.Join(c.Dir, "certs", "ca.crt")
	return path, os.WriteFile(path, pem.EncodeToMemory(last), 0o644)
}

// Stop ends kube-apiserver and etcd.
func (c *ControlPlane) Stop() {
	if c.APIServer != nil {
		c.APIServer.Stop()
	}
	if c.Etcd != nil {
		c.Etcd.Stop()
	}
}

// Config is a client configuration for a token.
func (c *ControlPlane) Config(token string) *rest.Config {
	// No client-side rate limit (QPS < 0): it would cap the load tests and measurements at its
	// own rate; the API server still applies priority and fairness.
	return &rest.Config{Host: c.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: -1}
}

// Kubeconfig writes a kubeconfig for a token and returns its path.
func (c *ControlPlane) Kubeconfig(token string) (string, error) { return c.KubeconfigFor(token, token) }

// KubeconfigFor writes a kubeconfig named name for a bearer token (for example a ServiceAccount
// token from the TokenRequest API) and returns its path.
func (c *ControlPlane) KubeconfigFor(name, token string) (string, error) {
	path := filepath.Join(c.Dir, name+".kubeconfig")
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: rolekeeper, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: rolekeeper, context: {cluster: rolekeeper, user: u}}]
current-context: rolekeeper
`, c.URL, token)
	return path, os.WriteFile(path, []byte(doc), 0o600)
}

// Process is a child process whose output goes to a log file.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	done chan struct{}
}

// StartProcess runs bin with args, appending env to this process's environment, logging to a
// new file in logDir.
func StartProcess(logDir, name, bin string, env []string, args ...string) (*Process, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	log := filepath.Join(logDir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(context.Background(), bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, err
	}
	p := &Process{Name: name, Cmd: cmd, Log: log, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = f.Close(); close(p.done) }()
	return p, nil
}

// Signal sends sig and waits up to 30 s for the process to end, then kills it.
func (p *Process) Signal(sig syscall.Signal) {
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Stop ends the process with SIGTERM.
func (p *Process) Stop() { p.Signal(syscall.SIGTERM) }

// Kill ends the process with SIGKILL.
func (p *Process) Kill() { p.Signal(syscall.SIGKILL) }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns what the process logged so far.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}
