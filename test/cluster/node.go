package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// A real node: Debian's containerd and runc, the CNI bridge plugin, and the kubelet,
// kube-controller-manager, kube-scheduler and kube-proxy built by hack/build-control-plane.sh
// (WITH_NODE=1). StartNode must run inside the network and mount namespaces that test/node/run.sh
// creates: every address here is inside that network namespace, and what the kubelet and
// containerd mount or write outside their own directories stays in that mount namespace.

// NodeOptions say where the node lives.
type NodeOptions struct {
	// Name is the Node's name; IP its address on the bridge (not loopback: the kubelet refuses
	// that), which is also the pods' gateway.
	Name, IP string
	// Bridge is the Linux bridge that holds IP; pods are attached to it.
	Bridge string
	// PodCIDR is the range pod addresses come from (it contains IP).
	PodCIDR string
	// CgroupRoot is the kubelet's cgroup root: pods' cgroups are created under it, so that they can
	// be found and removed afterwards. It must exist in every cgroup hierarchy.
	CgroupRoot string
	// SandboxImage is the pause image, imported before pods start.
	SandboxImage string
	// RegistryCAs maps a registry host to the CA file containerd trusts for it.
	RegistryCAs map[string]string
}

// Node is a running node and the controllers that make Deployments and Services work.
type Node struct {
	NodeOptions
	Dir        string
	Socket     string
	Containerd *Process
	Kubelet    *Process
	Controller *Process
	Scheduler  *Process
	Proxy      *Process
}

// Node tokens: the kubelet authenticates as its Node (the Node authorizer applies), the other
// components as administrators.
const (
	kubeletToken    = "kubelet-token"
	controllerToken = "controller-manager-token"
	schedulerToken  = "scheduler-token"
	proxyToken      = "proxy-token"
)

// NodeTokens are the token file lines StartNode's components use; pass them in Options.Tokens.
func NodeTokens(nodeName string) []string {
	return []string{
		fmt.Sprintf(`%s,system:node:%s,kubelet-uid,system:nodes`, kubeletToken, nodeName),
		controllerToken + ",system:kube-controller-manager,kcm-uid,system:masters",
		schedulerToken + ",system:kube-scheduler,scheduler-uid,system:masters",
		proxyToken + ",system:kube-proxy,proxy-uid,system:masters",
	}
}

// StartNode starts containerd, the kubelet, kube-controller-manager, kube-scheduler and kube-proxy
// against c; the caller waits for the Node to be Ready. importFirst are image archives imported
// into containerd before the kubelet starts (the pause image at least).
func StartNode(c *ControlPlane, assets string, o NodeOptions, importFirst ...string) (*Node, error) {
	dir := filepath.Join(c.Dir, "node")
	n := &Node{NodeOptions: o, Dir: dir, Socket: filepath.Join(dir, "containerd.sock")}
	for _, d := range []string{"cni/net.d", "cni/ipam", "containerd", "kubelet", "pod-logs", "volume-plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	kubeconfigs := map[string]string{}
	for _, tok := range []string{kubeletToken, controllerToken, schedulerToken, proxyToken} {
		kc, err := c.Kubeconfig(tok)
		if err != nil {
			return nil, err
		}
		kubeconfigs[tok] = kc
	}
	files := map[string]string{
		"containerd.toml":                  n.containerdConfig(),
		"cni/net.d/10-rolekeeper.conflist": n.cniConfig(),
		"kubelet.yaml":                     n.kubeletConfig(),
		"kube-proxy.yaml":                  n.proxyConfig(kubeconfigs[proxyToken]),
		"resolv.conf":                      "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	ca, err := c.CAFile()
	if err != nil {
		return nil, err
	}
	logs := filepath.Join(c.Dir, "logs")
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if n.Containerd, err = StartProcess(logs, "containerd", "containerd", env, "--config", filepath.Join(dir, "containerd.toml")); err != nil {
		return nil, err
	}
	if err := waitFor(60*time.Second, "containerd", n.Containerd, func() bool {
		_, err := n.Ctr("version")
		return err == nil
	}); err != nil {
		n.Stop()
		return nil, err
	}
	for _, archive := range importFirst {
		if err := n.Import(archive); err != nil {
			n.Stop()
			return nil, err
		}
	}
	start := []struct {
		p    **Process
		name string
		args []string
	}{
		{&n.Kubelet, "kubelet", []string{"--config", filepath.Join(dir, "kubelet.yaml"), "--kubeconfig", kubeconfigs[kubeletToken],
			"--root-dir", filepath.Join(dir, "kubelet"), "--hostname-override", o.Name, "--node-ip", o.IP}},
		{&n.Controller, "kube-controller-manager", []string{"--kubeconfig", kubeconfigs[controllerToken], "--leader-elect=false", "--secure-port=0",
			"--use-service-account-credentials=false", "--root-ca-file", ca, "--service-account-private-key-file", filepath.Join(c.Dir, "sa.key"),
			"--cluster-cidr", o.PodCIDR, "--service-cluster-ip-range", ServiceCIDR, "--concurrent-gc-syncs=5",
			"--flex-volume-plugin-dir", filepath.Join(dir, "volume-plugins")}},
		{&n.Scheduler, "kube-scheduler", []string{"--kubeconfig", kubeconfigs[schedulerToken], "--leader-elect=false", "--secure-port=0"}},
		{&n.Proxy, "kube-proxy", []string{"--config", filepath.Join(dir, "kube-proxy.yaml")}},
	}
	for _, s := range start {
		if *s.p, err = StartProcess(logs, s.name, filepath.Join(assets, s.name), env, s.args...); err != nil {
			n.Stop()
			return nil, err
		}
	}
	return n, nil
}

// waitFor polls cond until it holds, p exits or the timeout passes.
func waitFor(timeout time.Duration, what string, p *Process, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited; log %s:\n%s", what, p.Log, p.Output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v; log %s", what, timeout, p.Log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// Healthy reports whether the kubelet answers its healthz endpoint.
func (n *Node) Healthy() bool {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://127.0.0.1:10248/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Ctr runs Debian's ctr against this node's containerd, in the namespace the kubelet uses.
func (n *Node) Ctr(args ...string) (string, error) {
	cmd := exec.CommandContext(context.Background(), "ctr", append([]string{"--address", n.Socket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Import loads an image archive (docker-save or OCI) into containerd for the kubelet.
func (n *Node) Import(archive string) error {
	_, err := n.Ctr("images", "import", "--no-unpack=false", archive)
	return err
}

// Stop ends the node's processes in reverse order of start. Pods' containers end with
// containerd's shims; test/node/down.sh removes whatever is left (processes, cgroups).
func (n *Node) Stop() {
	for _, p := range []*Process{n.Proxy, n.Scheduler, n.Controller, n.Kubelet, n.Containerd} {
		if p != nil {
			p.Stop()
		}
	}
}

func (n *Node) containerdConfig() string {
	var registries strings.Builder
	for host, ca := range n.RegistryCAs {
		fmt.Fprintf(&registries, "  [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.%q.tls]\n    ca_file = %q\n", host, ca)
	}
	// restrict_oom_score_adj: this machine lacks CAP_SYS_RESOURCE; without it runc cannot lower
	// a sandbox's oom_score_adj and every sandbox fails. Every path is under the node's directory.
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
%[8]s`, filepath.Join(n.Dir, "containerd", "root"), filepath.Join(n.Dir, "containerd", "state"), n.Socket,
		filepath.Join(n.Dir, "containerd", "opt"), n.SandboxImage, filepath.Join(n.Dir, "containerd", "runc"),
		filepath.Join(n.Dir, "cni", "net.d"), registries.String())
}

func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "rolekeeper", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "rangeStart": %q, "gateway": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}}
]}
`, n.Bridge, filepath.Join(n.Dir, "cni", "ipam"), n.PodCIDR, rangeStart(n.PodCIDR), n.IP)
}

// rangeStart leaves the first ten addresses of a /24 to the node.
func rangeStart(cidr string) string {
	prefix := cidr[:strings.LastIndex(cidr, ".")]
	return prefix + ".10"
}

func (n *Node) kubeletConfig() string {
	// syncFrequency and Watch: a changed Secret reaches mounted volumes within seconds, not the
	// default minute. Image garbage collection and eviction are off: the imported images cannot
	// be pulled again, and the shared disk of the build machine is not this node's to police.
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %q
containerRuntimeEndpoint: unix://%s
address: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
syncFrequency: 5s
configMapAndSecretChangeDetectionStrategy: Watch
podLogsDir: %q
volumePluginDir: %q
resolvConf: %q
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "0%%", nodefs.inodesFree: "0%%", imagefs.available: "0%%"}
serializeImagePulls: false
protectKernelDefaults: false
`, n.CgroupRoot, n.Socket, n.IP, filepath.Join(n.Dir, "pod-logs"), filepath.Join(n.Dir, "volume-plugins"), filepath.Join(n.Dir, "resolv.conf"))
}

func (n *Node) proxyConfig(kubeconfig string) string {
	// masqueradeAll: a pod that reaches another pod through a Service gets the reply through the
	// node, without the bridge netfilter hooks. conntrack zeros: leave the kernel's settings.
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: %q}
hostnameOverride: %s
clusterCIDR: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {masqueradeAll: true, syncPeriod: 10s, minSyncPeriod: 0s}
`, kubeconfig, n.Name, n.PodCIDR, n.IP)
}
