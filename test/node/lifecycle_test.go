//go:build node

package node

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// leader returns the operator pod that holds the Lease, and the holder identity.
func leader(t *testing.T) (*corev1.Pod, string) {
	t.Helper()
	var l coordinationv1.Lease
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: leaseName}, &l); err != nil || l.Spec.HolderIdentity == nil {
		return nil, ""
	}
	var list corev1.PodList
	if err := admin.List(context.Background(), &list, client.InNamespace(operatorNamespace), operatorSelector); err != nil {
		return nil, ""
	}
	return leaderPod(t, list.Items, *l.Spec.HolderIdentity), *l.Spec.HolderIdentity
}

// reconcileDone matches the count of AssumedRole reconciles that ended without an error (most end
// with a requeue at the renewal time).
var reconcileDone = regexp.MustCompile(`(?m)^controller_runtime_reconcile_total\{controller="assumedrole",result="(?:success|requeue|requeue_after)"\} (\d+)`)

// reconciled is how many AssumedRole reconciles a pod's manager finished, from its metrics.
func reconciled(p *corev1.Pod) int {
	code, body := httpGet(fmt.Sprintf("http://%s/metrics", net.JoinHostPort(p.Status.PodIP, "8080")), "")
	if code != 200 {
		return 0
	}
	total := 0
	for _, m := range reconcileDone.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	return total
}

// newLeaderCaughtUp waits until a leader other than previous holds the Lease and its manager has
// reconciled as many AssumedRoles as the cluster has, and returns it.
func newLeaderCaughtUp(t *testing.T, previous string) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	eventually(t, 2*time.Minute, "a new leader that reconciled every AssumedRole", func() bool {
		var holder string
		var all rkv1.AssumedRoleList
		p, holder = leader(t)
		return p != nil && holder != previous && p.Status.PodIP != "" && admin.List(context.Background(), &all) == nil && reconciled(p) >= len(all.Items)
	})
	return p
}

// Killing the leader's container (the kubelet restarts it) and deleting the leader's pod (the
// ReplicaSet replaces it) lose nothing: each new leader reads the Secrets, makes no STS call for
// valid credentials and writes no Secret.
func TestKillOperator(t *testing.T) {
	withOperator(t)
	ctx := context.Background()
	ns := namespace(t, "restart")
	names := []string{"a", "b", "c"}
	versions := map[string]string{}
	for _, name := range names {
		assumedRole(t, ns, name, long, "")
		versions[name] = secret(t, ns, name).ResourceVersion
	}
	before := calls(t)
	unchanged := func(what string) {
		t.Helper()
		after := calls(t)
		for _, name := range names {
			if n, m := callsFor(before, "AssumeRole", ns, name), callsFor(after, "AssumeRole", ns, name); n != m {
				t.Errorf("%s: %d STS calls for %s, was %d", what, m, name, n)
			}
			if v := secret(t, ns, name).ResourceVersion; v != versions[name] {
				t.Errorf("%s: Secret %s was written", what, name)
			}
		}
	}

	// 1. SIGKILL of the leader's container, as an OOM kill would do; the kubelet restarts it.
	p, holder := leader(t)
	if p == nil {
		t.Fatal("no leader")
	}
	id := p.Status.ContainerStatuses[0].ContainerID
	if _, err := node.Ctr("tasks", "kill", "--signal", "SIGKILL", strings.TrimPrefix(id, "containerd://")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "the killed container restarted by the kubelet", func() bool {
		var q corev1.Pod
		return admin.Get(ctx, client.ObjectKeyFromObject(p), &q) == nil && q.Status.ContainerStatuses[0].RestartCount > 0 && podReady(&q)
	})
	next := newLeaderCaughtUp(t, holder)
	unchanged("after the container kill")
	t.Logf("container of %s killed; %s leads and reconciled %d AssumedRoles without an STS call", p.Name, next.Name, reconciled(next))

	// 2. The leader's pod deleted: the kubelet stops it, the ReplicaSet makes another.
	_, holder = leader(t)
	if err := admin.Delete(ctx, next); err != nil {
		t.Fatal(err)
	}
	operatorPods(t, 2)
	last := newLeaderCaughtUp(t, holder)
	unchanged("after the pod deletion")
	t.Logf("pod %s deleted; %s leads, no STS call, no write", next.Name, last.Name)
}

// Garbage collection by kube-controller-manager: deleting an AssumedRole deletes its Secret; a
// namespace that stops matching a ClusterAssumedRole loses its AssumedRole and with it the
// Secret; deleting the ClusterAssumedRole removes the rest.
func TestGarbageCollection(t *testing.T) {
	withOperator(t)
	ctx := context.Background()
	ns := namespace(t, "gc")
	assumedRole(t, ns, "single", short, "")
	if err := admin.Delete(ctx, getAR(t, ns, "single")); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "Secret gc/single deleted with its AssumedRole", func() bool { return secret(t, ns, "single") == nil })

	label := map[string]string{"rolekeeper.io/node-gc": "on"}
	fan := []string{namespace(t, "gc-a"), namespace(t, "gc-b")}
	for _, n := range fan {
		var nsObj corev1.Namespace
		if err := admin.Get(ctx, client.ObjectKey{Name: n}, &nsObj); err != nil {
			t.Fatal(err)
		}
		nsObj.Labels = label
		if err := admin.Update(ctx, &nsObj); err != nil {
			t.Fatal(err)
		}
	}
	apply(t, `apiVersion: rolekeeper.io/v1alpha1
kind: ClusterAssumedRole
metadata: {name: node-gc}
spec:
  namespaceSelector: {matchLabels: {rolekeeper.io/node-gc: "on"}}
  template:
    spec:
      assumeRole: {roleArn: "arn:aws:iam::111122223333:role/shared"}
`)
	car := &rkv1.ClusterAssumedRole{ObjectMeta: metav1.ObjectMeta{Name: "node-gc"}}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), car) })
	for _, n := range fan {
		waitReady(t, n, "node-gc", 2*time.Minute)
		if secret(t, n, "node-gc") == nil {
			t.Fatalf("no Secret in %s", n)
		}
	}

	// gc-a stops matching.
	var a corev1.Namespace
	if err := admin.Get(ctx, client.ObjectKey{Name: fan[0]}, &a); err != nil {
		t.Fatal(err)
	}
	a.Labels = nil
	if err := admin.Update(ctx, &a); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the AssumedRole and Secret gone from the namespace that stopped matching", func() bool {
		return gone(&rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: fan[0], Name: "node-gc"}}) && secret(t, fan[0], "node-gc") == nil
	})
	if secret(t, fan[1], "node-gc") == nil {
		t.Fatalf("the Secret in %s, which still matches, is gone", fan[1])
	}

	// The ClusterAssumedRole deleted: its AssumedRoles go by their owner references, then their
	// Secrets by theirs.
	if err := admin.Delete(ctx, car); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "everything of the ClusterAssumedRole gone", func() bool {
		return gone(car) && gone(&rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: fan[1], Name: "node-gc"}}) && secret(t, fan[1], "node-gc") == nil
	})
}

// `helm uninstall` with AssumedRoles present does what docs/operations.md says: the operator goes,
// the CRDs, AssumedRoles and Secrets stay untouched (the credentials stay valid until they
// expire); installing again takes the Secrets over without an STS call; with no operator running,
// deleting an AssumedRole deletes its Secret, and deleting the CRDs deletes the rest.
func TestHelmUninstallKeepsAssumedRoles(t *testing.T) {
	withOperator(t)
	ctx := context.Background()
	ns := namespace(t, "uninstall")
	assumedRole(t, ns, "kept", long, "")
	assumedRole(t, ns, "by-crd", long, "")
	versions := secret(t, ns, "kept").ResourceVersion
	before := callsFor(calls(t), "AssumeRole", ns, "kept")

	helmUninstall(t)
	eventually(t, time.Minute, "the operator's pods gone", func() bool {
		var list corev1.PodList
		return admin.List(ctx, &list, client.InNamespace(operatorNamespace), operatorSelector) == nil && len(list.Items) == 0
	})
	ar := getAR(t, ns, "kept")
	if s := secret(t, ns, "kept"); s == nil || s.ResourceVersion != versions || !meta.IsStatusConditionTrue(ar.Status.Conditions, rkv1.ConditionReady) {
		t.Fatalf("after helm uninstall the Secret is %v and the AssumedRole Ready is %v; want both untouched", s != nil, meta.IsStatusConditionTrue(ar.Status.Conditions, rkv1.ConditionReady))
	}

	helmInstall(t)
	p := newLeaderCaughtUp(t, "")
	if n := callsFor(calls(t), "AssumeRole", ns, "kept"); n != before {
		t.Errorf("the new installation made %d STS calls for valid credentials", n-before)
	}
	if s := secret(t, ns, "kept"); s == nil || s.ResourceVersion != versions {
		t.Errorf("the new installation wrote the Secret")
	}
	t.Logf("reinstalled: %s leads without an STS call", p.Name)

	helmUninstall(t)
	if err := admin.Delete(ctx, getAR(t, ns, "kept")); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the Secret deleted with its AssumedRole while no operator runs", func() bool { return secret(t, ns, "kept") == nil })

	// Removing everything, as docs/operations.md says: the CRDs, and with them every AssumedRole
	// and, through the garbage collector, every Secret.
	kubectl(t, "delete", "crd", "assumedroles.rolekeeper.io", "clusterassumedroles.rolekeeper.io", "assumedrolepolicies.rolekeeper.io", "--wait", "--timeout=2m")
	eventually(t, time.Minute, "the last Secret deleted with the CRDs", func() bool { return secret(t, ns, "by-crd") == nil })
}
