//go:build node

package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/cluster"
)

// operatorSecret is the operator's own AWS identity, as a cluster without IRSA or Pod Identity
// gives it: a Secret in its namespace, read into the environment.
const operatorSecret = "rolekeeper-aws"

// operatorSelector selects the operator's pods, from Helm and from config/default alike.
var operatorSelector = client.MatchingLabels{"app.kubernetes.io/name": "rolekeeper"}

// helmValues points the chart at an STS endpoint (also ECR's) and gives the operator its identity
// from operatorSecret; everything else is the chart's default (two replicas, leader election,
// probes, metrics Service).
func helmValues(t *testing.T, endpoint string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	values := fmt.Sprintf(`aws:
  stsEndpoint: %s
operator:
  extraArgs: ["--ecr-endpoint=%s"]
env:
- {name: AWS_ACCESS_KEY_ID, valueFrom: {secretKeyRef: {name: %[3]s, key: AWS_ACCESS_KEY_ID}}}
- {name: AWS_SECRET_ACCESS_KEY, valueFrom: {secretKeyRef: {name: %[3]s, key: AWS_SECRET_ACCESS_KEY}}}
`, endpoint, endpoint, operatorSecret)
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// operatorIdentitySecret creates a namespace and the operator's credentials Secret in it, as an
// administrator does before installing.
func operatorIdentitySecret(t *testing.T, ns string, id ststest.Principal) {
	t.Helper()
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %s}
---
apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: %s}
stringData: {AWS_ACCESS_KEY_ID: %s, AWS_SECRET_ACCESS_KEY: %s}
`, ns, operatorSecret, ns, id.AccessKeyID, id.SecretAccessKey))
}

// helmInstall installs charts/rolekeeper with the built image, as README's install section says,
// plus the emulator's values.
func helmInstall(t *testing.T) {
	t.Helper()
	operatorIdentitySecret(t, operatorNamespace, operatorIdentity)
	helm(t, "install", releaseName, "charts/rolekeeper", "-n", operatorNamespace, "--create-namespace",
		"--set", "image.tag="+operatorTag, "-f", helmValues(t, stsURL), "--wait", "--timeout", "3m")
}

func helmUninstall(t *testing.T) {
	t.Helper()
	helm(t, "uninstall", releaseName, "-n", operatorNamespace, "--wait", "--timeout", "2m")
}

// withOperator makes sure the operator is installed with Helm for a test that needs it running,
// and leaves it installed for the next such test; TestHelmUninstallKeepsAssumedRoles ends it.
func withOperator(t *testing.T) {
	t.Helper()
	if out, err := runErr(os.Getenv("HELM_BIN"), "status", releaseName, "-n", operatorNamespace); err == nil && strings.Contains(out, "STATUS: deployed") {
		return
	}
	helmInstall(t)
	operatorPods(t, 2)
}

// operatorPods waits until want operator pods run, all Ready, and returns them.
func operatorPods(t *testing.T, want int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, 3*time.Minute, fmt.Sprintf("%d Ready operator pods", want), func() bool {
		var list corev1.PodList
		if err := admin.List(context.Background(), &list, client.InNamespace(operatorNamespace), operatorSelector); err != nil {
			return false
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) {
				pods = append(pods, p)
			}
		}
		return len(pods) == want && len(list.Items) == want
	})
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// checkOperator proves an installed operator works as a user meets it: its pods run the built
// image under the rolekeeper ServiceAccount with in-cluster configuration and pass their probes,
// one holds the leader Lease and renews it, an AssumedRole gets its Secret written by the pod's
// own identity from a pod address, and the metrics answer through the Service.
func checkOperator(t *testing.T, service string) {
	t.Helper()
	ctx := context.Background()
	pods := operatorPods(t, 2)
	for _, p := range pods {
		c := p.Spec.Containers[0]
		if c.Image != operatorImage {
			t.Errorf("pod %s runs %s, want the built %s", p.Name, c.Image, operatorImage)
		}
		if p.Spec.ServiceAccountName != "rolekeeper" {
			t.Errorf("pod %s runs as ServiceAccount %q", p.Name, p.Spec.ServiceAccountName)
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Errorf("pod %s has no liveness or readiness probe", p.Name)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount != 0 {
				t.Errorf("pod %s restarted %d times", p.Name, cs.RestartCount)
			}
			if cs.ImageID != operatorConfigDigest {
				t.Errorf("pod %s runs image id %q, want the built image's %s", p.Name, cs.ImageID, operatorConfigDigest)
			}
		}
		for _, e := range c.Env {
			if e.Name == "KUBECONFIG" {
				t.Errorf("pod %s has KUBECONFIG: the operator must use in-cluster configuration", p.Name)
			}
		}
	}

	// Leader election: one replica holds the Lease and keeps renewing it.
	var first time.Time
	var holder string
	eventually(t, time.Minute, "the leader Lease held and renewed", func() bool {
		var l coordinationv1.Lease
		if admin.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: leaseName}, &l) != nil || l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil {
			return false
		}
		holder = *l.Spec.HolderIdentity
		if first.IsZero() {
			first = l.Spec.RenewTime.Time
			return false
		}
		return l.Spec.RenewTime.After(first)
	})
	if leaderPod(t, pods, holder) == nil {
		t.Errorf("the Lease holder %q is none of the operator's pods", holder)
	}

	// An AssumedRole issued by the pod, with the pod's own ServiceAccount token.
	ns := namespace(t, fmt.Sprintf("smoke-%d", time.Now().UnixNano()%100000))
	assumedRole(t, ns, "app", long, "")
	if s := secret(t, ns, "app"); s == nil || len(s.Data["AWS_SESSION_TOKEN"]) == 0 {
		t.Fatalf("no credentials in Secret %s/app", ns)
	}
	writer := secretCreator(t, ns, "app")
	if writer.user != cluster.OperatorUser || !podAddress(pods, writer.ip) {
		t.Errorf("Secret %s/app created by %q from %s; want %s from an operator pod (%s)", ns, writer.user, writer.ip, cluster.OperatorUser, podIPs(pods))
	}

	// Metrics through the Service: its cluster IP, which kube-proxy sends to a pod.
	var svc corev1.Service
	if err := admin.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: service}, &svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "both pods in the metrics Service's endpoints", func() bool {
		var slices discoveryv1.EndpointSliceList
		if admin.List(ctx, &slices, client.InNamespace(operatorNamespace), client.MatchingLabels{discoveryv1.LabelServiceName: service}) != nil {
			return false
		}
		ready := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		return ready == 2
	})
	url := fmt.Sprintf("http://%s/metrics", net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(svc.Spec.Ports[0].Port)))
	// The leader is the replica that called STS; the Service reaches it within a few tries.
	eventually(t, time.Minute, "the leader's STS metric through "+url, func() bool {
		code, body := httpGet(url, "")
		return code == 200 && strings.Contains(body, `rolekeeper_sts_requests_total{code="OK",operation="AssumeRole"}`)
	})
	// GOMAXPROCS comes from the container's CPU request rounded up (50m: one), not from the
	// node's cores (two here).
	code, body := httpGet(url, "")
	if procs := metricLine(body, "go_sched_gomaxprocs_threads"); code != 200 || procs != "go_sched_gomaxprocs_threads 1" {
		t.Errorf("the operator's GOMAXPROCS: %q (HTTP %d), want 1 from its CPU request", procs, code)
	}
}

// metricLine is the sample line of an unlabelled metric in a Prometheus text exposition.
func metricLine(body, name string) string {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}

func leaderPod(t *testing.T, pods []corev1.Pod, holder string) *corev1.Pod {
	t.Helper()
	for i := range pods {
		if strings.HasPrefix(holder, pods[i].Name+"_") {
			return &pods[i]
		}
	}
	return nil
}

func podAddress(pods []corev1.Pod, ip string) bool {
	for _, p := range pods {
		if p.Status.PodIP == ip {
			return true
		}
	}
	return false
}

func podIPs(pods []corev1.Pod) string {
	var ips []string
	for _, p := range pods {
		ips = append(ips, p.Status.PodIP)
	}
	return strings.Join(ips, ", ")
}

type auditWriter struct{ user, ip string }

// secretCreator reads the API server's audit log for who created a Secret, and from where.
func secretCreator(t *testing.T, ns, name string) auditWriter {
	t.Helper()
	f, err := os.Open(filepath.Join(cp.Dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Verb           string
			User           struct{ Username string }
			SourceIPs      []string
			ObjectRef      struct{ Resource, Namespace, Name string }
			ResponseStatus struct{ Code int }
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Verb != "create" || ev.ObjectRef.Resource != "secrets" || ev.ObjectRef.Namespace != ns || ev.ResponseStatus.Code != 201 {
			continue
		}
		ip := ""
		if len(ev.SourceIPs) > 0 {
			ip = ev.SourceIPs[0]
		}
		return auditWriter{ev.User.Username, ip}
	}
	t.Fatalf("no create of Secret %s/%s in the audit log", ns, name)
	return auditWriter{}
}

// gone reports whether obj no longer exists.
func gone(obj client.Object) bool {
	err := admin.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
	return apierrors.IsNotFound(err)
}

// `helm install` of charts/rolekeeper with the image `make image` built: the operator runs
// in-cluster under its ServiceAccount, passes its probes, holds the leader Lease, issues through
// its pod identity and serves metrics through its Service; `helm uninstall` removes every object
// the chart made, and the replicas release the Lease on their way out.
func TestHelmInstall(t *testing.T) {
	if _, err := runErr(os.Getenv("HELM_BIN"), "status", releaseName, "-n", operatorNamespace); err == nil {
		helmUninstall(t)
	}
	helmInstall(t)
	checkOperator(t, releaseName+"-metrics")
	if out := helm(t, "list", "-n", operatorNamespace, "-q"); strings.TrimSpace(out) != releaseName {
		t.Errorf("helm list: %q", out)
	}

	helmUninstall(t)
	uninstalled := time.Now()
	chartObjects := []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: releaseName}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: releaseName + "-metrics"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "rolekeeper"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: releaseName + "-manager"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: releaseName + "-manager"}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: releaseName + "-leader-election"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: releaseName + "-leader-election"}},
	}
	for _, o := range chartObjects {
		if !gone(o) {
			t.Errorf("%T %s left after helm uninstall", o, o.GetName())
		}
	}
	eventually(t, time.Minute, "the operator's pods gone", func() bool {
		var list corev1.PodList
		return admin.List(context.Background(), &list, client.InNamespace(operatorNamespace), operatorSelector) == nil && len(list.Items) == 0
	})
	// Helm removes the leader-election Role while the pods stop, so the leader cannot release the
	// Lease (docs/operations.md says so): it stays, no longer renewed, until it expires.
	var l coordinationv1.Lease
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: leaseName}, &l); err != nil {
		t.Errorf("the Lease: %v", err)
	} else if l.Spec.RenewTime == nil || l.Spec.RenewTime.After(uninstalled) {
		t.Errorf("the Lease was renewed after helm uninstall: %v", l.Spec.RenewTime)
	}
	// The CRDs stay (Helm never deletes what it installed from crds/), and so do AssumedRoles:
	// TestHelmUninstallKeepsAssumedRoles checks what docs/operations.md says about that.
	var crd rkv1.AssumedRoleList
	if err := admin.List(context.Background(), &crd); err != nil {
		t.Errorf("the AssumedRole CRD is gone after helm uninstall: %v", err)
	}
	if gone(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}) {
		t.Errorf("helm uninstall removed the namespace")
	}
}

// The same for `kubectl apply -k config/default`, through an overlay that sets what every
// installation sets (the image tag, the operator's identity) and the emulator's endpoints; the
// namespace's restricted Pod Security admits the operator's pods. `kubectl delete -k` removes it
// all, the CRDs included.
func TestKustomizeInstall(t *testing.T) {
	if out, err := runErr(os.Getenv("HELM_BIN"), "status", releaseName, "-n", operatorNamespace); err == nil && strings.Contains(out, "STATUS: deployed") {
		helmUninstall(t)
	}
	overlay := t.TempDir()
	base, err := filepath.Rel(overlay, filepath.Join(root, "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf(`resources:
- %s
- identity.yaml
images:
- {name: ghcr.io/rolekeeper/rolekeeper, newTag: %q}
patches:
- target: {kind: Deployment, name: rolekeeper}
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: "--sts-endpoint=%s"}
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: "--ecr-endpoint=%s"}
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {name: AWS_ACCESS_KEY_ID, valueFrom: {secretKeyRef: {name: %[5]s, key: AWS_ACCESS_KEY_ID}}}
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {name: AWS_SECRET_ACCESS_KEY, valueFrom: {secretKeyRef: {name: %[5]s, key: AWS_SECRET_ACCESS_KEY}}}
`, base, operatorTag, stsURL, stsURL, operatorSecret)
	identity := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: %s}
stringData: {AWS_ACCESS_KEY_ID: %s, AWS_SECRET_ACCESS_KEY: %s}
`, operatorSecret, operatorNamespace, operatorIdentity.AccessKeyID, operatorIdentity.SecretAccessKey)
	for name, content := range map[string]string{"kustomization.yaml": kustomization, "identity.yaml": identity} {
		if err := os.WriteFile(filepath.Join(overlay, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kubectl(t, "apply", "-k", overlay)
	kubectl(t, "-n", operatorNamespace, "rollout", "status", "deployment/rolekeeper", "--timeout=3m")
	checkOperator(t, "rolekeeper-metrics")

	kubectl(t, "delete", "-k", overlay, "--wait", "--timeout=3m")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}
	eventually(t, 2*time.Minute, "the namespace gone", func() bool { return gone(ns) })
	var list rkv1.AssumedRoleList
	if err := admin.List(context.Background(), &list); err == nil {
		t.Errorf("the AssumedRole CRD is still served after kubectl delete -k")
	}
	for _, o := range []client.Object{&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "rolekeeper-manager"}}} {
		if !gone(o) {
			t.Errorf("%T %s left after kubectl delete -k", o, o.GetName())
		}
	}
}
