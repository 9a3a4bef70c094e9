//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/harness"
	"github.com/rolekeeper/rolekeeper/test/minio"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

func role(ns, name string, mod func(*rkv1.AssumedRole)) *rkv1.AssumedRole {
	ar := &rkv1.AssumedRole{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/" + name}},
	}
	if mod != nil {
		mod(ar)
	}
	return ar
}

func creds(t *testing.T, ns, name string) secretdata.Input {
	t.Helper()
	s := secret(t, ns, name)
	if s == nil {
		t.Fatalf("Secret %s/%s is gone", ns, name)
	}
	in, ok := secretdata.Credentials(s.Data)
	if !ok {
		t.Fatalf("Secret %s/%s holds incomplete credentials: keys %v", ns, name, keys(s.Data))
	}
	return in
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The ClusterRole and Role in config/rbac grant exactly the verbs the operator uses, no more.
func TestRBACGrantsOnlyWhatTheOperatorUses(t *testing.T) {
	want := map[string]string{
		"rolekeeper.io/assumedroles":                   "create,delete,get,list,patch,watch", // created and patched by ClusterAssumedRoles
		"rolekeeper.io/assumedroles/status":            "get,patch,update",
		"rolekeeper.io/assumedroles/finalizers":        "update", // owner references that block deletion
		"rolekeeper.io/assumedrolepolicies":            "get,list,watch",
		"rolekeeper.io/clusterassumedroles":            "get,list,watch",
		"rolekeeper.io/clusterassumedroles/status":     "get,patch,update",
		"rolekeeper.io/clusterassumedroles/finalizers": "update",
		"/secrets":             "create,delete,get,list,update,watch", // delete: only to change an owned Secret's type
		"/namespaces":          "get,list,watch",
		"events.k8s.io/events": "create,patch",
		"apps/deployments":     "get,patch", // get: restart only workloads whose pods use the Secret
		"apps/statefulsets":    "get,patch",
		"apps/daemonsets":      "get,patch",
	}
	got := map[string]string{}
	var cr rbacv1.ClusterRole
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &cr); err != nil {
		t.Fatal(err)
	}
	for _, rule := range cr.Rules {
		verbs := append([]string(nil), rule.Verbs...)
		sort.Strings(verbs)
		for _, g := range rule.APIGroups {
			for _, r := range rule.Resources {
				got[g+"/"+r] = strings.Join(verbs, ",")
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ClusterRole grants\n %v\nthe operator uses\n %v", got, want)
	}
	var le rbacv1.Role
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: "rolekeeper-system", Name: "rolekeeper-leader-election"}, &le); err != nil {
		t.Fatal(err)
	}
	leWant := "[{[get list watch create update patch delete] [coordination.k8s.io] [leases] [] []} {[create patch] [] [events] [] []}]"
	if fmt.Sprint(le.Rules) != leWant {
		t.Errorf("leader election Role grants %v", le.Rules)
	}
}

// Scenario 1: config/samples applied as they are all become Ready; scenario 2: kubectl wait works.
func TestSamplesBecomeReadyAndKubectlWaits(t *testing.T) {
	namespace(t, "demo")
	operator(t, replicaA, stsURL, "--watch-namespaces=demo", "--leader-elect", "--leader-election-id=e2e-samples")
	if out, err := kubectl("admin", "apply", "-k", filepath.Join(testenv.Root(), "config", "samples")); err != nil {
		t.Fatalf("kubectl apply -k config/samples: %v\n%s", err, out)
	}
	out, err := kubectl("admin", "wait", "--for=condition=Ready", "assumedrole/reader", "assumedrole/deployer", "assumedrole/unlock-bucket", "assumedrole/ecr-pull", "-n", "demo", "--timeout=90s")
	if err != nil {
		t.Fatalf("kubectl wait: %v\n%s", err, out)
	}
	t.Logf("kubectl wait:\n%s", out)
	// The ClusterAssumedRole sample fans out to demo once it is labelled.
	t.Cleanup(func() { _, _ = kubectl("admin", "delete", "clusterassumedrole/shared-reader") })
	if out, err := kubectl("admin", "label", "namespace", "demo", "rolekeeper.io/shared-reader=enabled"); err != nil {
		t.Fatalf("kubectl label: %v\n%s", err, out)
	}
	out, err = kubectl("admin", "wait", "--for=condition=Ready", "clusterassumedrole/shared-reader", "--timeout=90s")
	if err != nil {
		t.Fatalf("kubectl wait clusterassumedrole: %v\n%s", err, out)
	}
	if out, err = kubectl("admin", "get", "clusterassumedroles"); err != nil || !strings.Contains(out, "shared-reader") {
		t.Errorf("kubectl get clusterassumedroles: %v\n%s", err, out)
	}
	t.Logf("kubectl get clusterassumedroles:\n%s", out)
	if in := creds(t, "demo", "shared-reader"); !time.Now().Before(in.Expiration) {
		t.Error("shared-reader: expired credentials")
	}
	pull := &corev1.Secret{}
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: "ecr-pull"}, pull); err != nil || pull.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("ecr-pull Secret: %v, type %q", err, pull.Type)
	}
	for _, name := range []string{"reader", "deployer", "unlock-bucket"} { // ecr-pull holds no AWS credentials
		in := creds(t, "demo", name)
		if !time.Now().Before(in.Expiration) {
			t.Errorf("%s: expired credentials", name)
		}
	}
	out, err = kubectl("admin", "get", "assumedroles", "-n", "demo")
	if err != nil || !strings.Contains(out, "arn:aws:iam::111122223333:role/reader") || strings.Count(out, "True") != 5 {
		t.Errorf("kubectl get assumedroles:\n%s", out)
	}
	t.Logf("kubectl get assumedroles:\n%s", out)
}

// Scenario 1 against MinIO: the sample's inline session policy is enforced by a real peer. The
// operator signs as a MinIO IAM user created through MinIO's admin API.
func TestSessionPolicyEnforcedByMinIO(t *testing.T) {
	m := minio.Start(t)
	ctx := context.Background()
	user := ststest.Principal{AccessKeyID: "rolekeeper-e2e", SecretAccessKey: "rolekeeper-e2e-secret-key"}
	userPolicy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::demo-bucket","arn:aws:s3:::demo-bucket/*","arn:aws:s3:::other-bucket","arn:aws:s3:::other-bucket/*"]}]}`
	if err := m.AddUser(ctx, user.AccessKeyID, user.SecretAccessKey, userPolicy); err != nil {
		t.Fatal(err)
	}
	if err := m.MakeBuckets(ctx, "demo-bucket", "other-bucket"); err != nil {
		t.Fatal(err)
	}

	ns := namespace(t, "minio-e2e")
	allowAll(t, ns)
	operator(t, user, m.URL, "--watch-namespaces="+ns, "--leader-elect", "--leader-election-id=e2e-minio")
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), "config", "samples", "rolekeeper_v1alpha1_assumedrole.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sample rkv1.AssumedRole
	if err := yaml.Unmarshal(raw, &sample); err != nil {
		t.Fatal(err)
	}
	sample.Namespace = ns
	create(t, &sample)
	waitReady(t, ns, sample.Name, 60*time.Second)

	in := creds(t, ns, sample.Name)
	session := aws.Credentials{AccessKeyID: in.AccessKeyID, SecretAccessKey: in.SecretAccessKey, SessionToken: in.SessionToken}
	if code, body, err := m.S3(ctx, session, http.MethodPut, "/demo-bucket/from-rolekeeper.txt", []byte("hello")); err != nil || code != http.StatusOK {
		t.Fatalf("write allowed by the sample's session policy: %d %s %v", code, body, err)
	}
	code, body, err := m.S3(ctx, session, http.MethodPut, "/other-bucket/from-rolekeeper.txt", []byte("hello"))
	if err != nil || code != http.StatusForbidden || !strings.Contains(string(body), "AccessDenied") {
		t.Fatalf("write outside the session policy: %d %s %v; want 403 AccessDenied", code, body, err)
	}
	userCreds := aws.Credentials{AccessKeyID: user.AccessKeyID, SecretAccessKey: user.SecretAccessKey}
	if code, _, _ := m.S3(ctx, userCreds, http.MethodPut, "/other-bucket/as-user.txt", []byte("x")); code != http.StatusOK {
		t.Errorf("the operator's own identity cannot write other-bucket (%d): the refusal above proves nothing", code)
	}
}

// Scenario 3: STS down for longer than a backoff cycle. The Secret stays intact and valid, Ready
// explains, and recovery re-issues without anyone acting.
func TestSTSOutageKeepsSecretsAndRecovers(t *testing.T) {
	ns := namespace(t, "outage")
	allowAll(t, ns)
	operator(t, replicaA, stsURL, "--watch-namespaces="+ns, "--leader-elect", "--leader-election-id=e2e-outage")
	// 3600 s lasts 120 s; renewing with 85% left makes renewal due after about 15 s.
	create(t, role(ns, "app", func(ar *rkv1.AssumedRole) {
		ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](3600)
		ar.Spec.Renewal = &rkv1.RenewalSpec{RenewBeforePercentage: ptr.To[int32](85)}
	}))
	waitReady(t, ns, "app", 60*time.Second)
	before := creds(t, ns, "app")
	emu(t, http.MethodPost, "/_ststest/down?on=true", nil)
	defer emu(t, http.MethodPost, "/_ststest/down?on=false", nil)

	var ar *rkv1.AssumedRole
	eventually(t, 90*time.Second, "two failed attempts", func() bool {
		ar = get(t, ns, "app")
		if in := creds(t, ns, "app"); in.AccessKeyID != before.AccessKeyID || !time.Now().Before(in.Expiration) {
			t.Fatalf("the Secret changed or expired during the outage")
		}
		return ar.Status.FailedAttempts >= 2
	})
	ready := cond(ar, rkv1.ConditionReady)
	if ready.Status != metav1.ConditionTrue || ready.Reason != rkv1.ReasonIssueFailed || !strings.Contains(ready.Message, "remain valid until") {
		t.Errorf("Ready during the outage: %+v", ready)
	}
	if f := ar.Status.LastFailure; f == nil || f.Code != "NetworkError" || !f.Retryable {
		t.Errorf("lastFailure %+v", ar.Status.LastFailure)
	}
	t.Logf("during the outage: Ready=%s %q", ready.Status, ready.Message)

	emu(t, http.MethodPost, "/_ststest/down?on=false", nil)
	eventually(t, 90*time.Second, "recovery", func() bool {
		ar = get(t, ns, "app")
		return cond(ar, rkv1.ConditionReady).Reason == rkv1.ReasonRenewed && ar.Status.FailedAttempts == 0
	})
	if creds(t, ns, "app").AccessKeyID == before.AccessKeyID {
		t.Error("recovered without new credentials")
	}
}

// Scenario 4: SIGKILL the operator while rotations are in flight, then restart it. No Secret is
// lost or half-written, each rotation costs at most the call in flight plus one, and Secrets that
// were valid and not due are not re-issued.
func TestKillMidRotation(t *testing.T) {
	ns := namespace(t, "kill")
	allowAll(t, ns)
	args := []string{"--watch-namespaces=" + ns, "--leader-elect", "--leader-election-id=e2e-kill"}
	op := operator(t, replicaA, stsURL, args...)
	names := []string{"a", "b", "c", "d", "e"}
	for _, n := range names {
		create(t, role(ns, n, nil))
	}
	for _, n := range names {
		waitReady(t, ns, n, 60*time.Second)
	}
	before := map[string]string{}
	for _, n := range names {
		before[n] = secret(t, ns, n).ResourceVersion
	}
	base := calls(t)

	emu(t, http.MethodPost, "/_ststest/latency?d=3s", nil)
	rotated := []string{"a", "b", "c"}
	for _, n := range rotated {
		harness.Annotate(t, admin, ns, n, rkv1.AnnotationRotate, "kill-test")
	}
	eventually(t, 30*time.Second, "the three rotations in flight", func() bool { return emulator.InFlight(t) >= len(rotated) })
	op.Kill()
	if !op.Exited() {
		t.Fatal("the operator survived SIGKILL")
	}
	// Every Secret is whole while no operator runs.
	for _, n := range names {
		creds(t, ns, n)
	}
	emu(t, http.MethodPost, "/_ststest/latency?d=0s", nil)
	eventually(t, 30*time.Second, "the killed calls answered", func() bool { return emulator.InFlight(t) == 0 })
	restarted, metrics := withMetrics(args...)
	operator(t, replicaA, stsURL, restarted...)

	for _, n := range rotated {
		eventually(t, 90*time.Second, n+" rotated", func() bool {
			s := secret(t, ns, n)
			return s != nil && s.Annotations[rkv1.AnnotationRotate] == "kill-test" && cond(get(t, ns, n), rkv1.ConditionReady).Status == metav1.ConditionTrue
		})
	}
	drained(t, metrics, len(names)) // the restarted operator has looked at every AssumedRole
	after := calls(t)
	for _, n := range names {
		creds(t, ns, n)
		extra := callsFor(after, ns, n) - callsFor(base, ns, n)
		switch {
		case n == "d" || n == "e":
			if extra != 0 || secret(t, ns, n).ResourceVersion != before[n] {
				t.Errorf("%s was valid and not asked to rotate, but got %d calls (Secret rewritten: %v)", n, extra, secret(t, ns, n).ResourceVersion != before[n])
			}
		case extra < 1 || extra > 2:
			t.Errorf("%s: %d calls for one rotation, want the one in flight and at most one more", n, extra)
		}
		t.Logf("%s: %d calls after the kill", n, extra)
	}
}

// Scenario 5: the API server restarts while the operator runs; the operator reconnects and keeps
// rotating.
func TestAPIServerRestart(t *testing.T) {
	ns := namespace(t, "apiserver-restart")
	allowAll(t, ns)
	// A renew deadline longer than the API server's restart: the leader keeps its lease. (With
	// the default 10 s, a longer outage makes it exit, and Kubernetes restarts it.)
	op := operator(t, replicaA, stsURL, "--watch-namespaces="+ns, "--leader-elect", "--leader-election-id=e2e-apiserver",
		"--leader-election-lease-duration=60s", "--leader-election-renew-deadline=45s", "--leader-election-retry-period=2s")
	create(t, role(ns, "app", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900) })) // 30 s
	waitReady(t, ns, "app", 60*time.Second)

	cp.APIServer.Stop()
	time.Sleep(4 * time.Second)
	if err := cp.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	first := creds(t, ns, "app").AccessKeyID
	seen := map[string]bool{first: true}
	eventually(t, 90*time.Second, "two rotations after the restart", func() bool {
		in := creds(t, ns, "app")
		seen[in.AccessKeyID] = true
		return len(seen) >= 3
	})
	if op.Exited() {
		t.Fatal("the operator exited")
	}
	if ar := get(t, ns, "app"); !ar.Status.LastIssuedTime.After(restarted) {
		t.Errorf("last issued %v, before the restart at %v", ar.Status.LastIssuedTime, restarted)
	}
}

// Scenario 6: two replicas with leader election. Only the leader calls STS; when it is killed the
// other takes over within the lease duration and rotation continues.
func TestLeaderElectionFailover(t *testing.T) {
	ns := namespace(t, "leader")
	allowAll(t, ns)
	const lease, retry = 8 * time.Second, time.Second
	args := []string{"--watch-namespaces=" + ns, "--leader-elect", "--leader-election-id=e2e-leader",
		"--leader-election-lease-duration=" + lease.String(), "--leader-election-renew-deadline=6s", "--leader-election-retry-period=" + retry.String()}
	holder := func() string {
		var lease coordinationv1.Lease
		if err := admin.Get(context.Background(), client.ObjectKey{Namespace: "rolekeeper-system", Name: "e2e-leader"}, &lease); err != nil {
			return ""
		}
		return ptr.Deref(lease.Spec.HolderIdentity, "")
	}
	a := operator(t, replicaA, stsURL, args...)
	eventually(t, 30*time.Second, "replica A leading", func() bool { return holder() != "" })
	b := operator(t, replicaB, stsURL, args...)
	create(t, role(ns, "app", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900) })) // 30 s
	waitReady(t, ns, "app", 60*time.Second)
	eventually(t, 60*time.Second, "a rotation", func() bool { return callsFor(calls(t), ns, "app") >= 2 })

	keysUsed := func() map[string]int {
		out := map[string]int{}
		for _, c := range calls(t) {
			if c.SessionName == ns+".app" {
				out[c.CallerAccessKey]++
			}
		}
		return out
	}
	used := keysUsed()
	if len(used) != 1 {
		t.Fatalf("calls signed by %v: both replicas called STS", used)
	}
	leader, follower, followerKey := a, b, replicaB.AccessKeyID
	if used[replicaB.AccessKeyID] > 0 {
		leader, follower, followerKey = b, a, replicaA.AccessKeyID
	}
	oldHolder := holder()
	killed := time.Now()
	leader.Kill()
	eventually(t, 30*time.Second, "a new lease holder", func() bool { h := holder(); return h != "" && h != oldHolder })
	takeover := time.Since(killed)
	t.Logf("takeover after %v", takeover)
	// client-go's bound: a candidate notices the last renewal up to one jittered retry period
	// (retry × 2.2) late, waits the lease duration from then, and acts at its next try.
	if bound := lease + 2*retry*22/10; takeover > bound {
		t.Errorf("takeover took %v, more than the lease duration plus two jittered retry periods (%v)", takeover, bound)
	}
	eventually(t, 60*time.Second, "rotation by the new leader", func() bool { return keysUsed()[followerKey] > 0 })
	waitReady(t, ns, "app", 30*time.Second)
	if follower.Exited() {
		t.Error("the new leader exited")
	}
}

// Scenario 7: bad input through kubectl is refused with the CRD's message; AWS-side refusals show
// as Stalled with the AWS code; nothing else in the namespace is affected.
func TestBadInput(t *testing.T) {
	ns := namespace(t, "bad-input")
	allowAll(t, ns)
	args, metrics := withMetrics("--watch-namespaces="+ns, "--leader-elect", "--leader-election-id=e2e-bad")
	operator(t, replicaA, stsURL, args...)
	refused := map[string]string{
		"roleArn: arn:aws:iam::111122223333:user/bob":                                                      "roleArn must be an IAM role ARN",
		"roleArn: arn:aws:iam::111122223333:role/x\n    durationSeconds: 60":                               "spec.assumeRole.durationSeconds",
		"roleArn: arn:aws:iam::111122223333:role/x\n    tags: [{key: kubernetes-namespace, value: other}]": "are reserved",
		"roleArn: arn:aws:iam::111122223333:role/x\n    sourceIdentity: aws:me":                            "sourceIdentity must not start with aws:",
	}
	i := 0
	for spec, want := range refused {
		i++
		doc := fmt.Sprintf("apiVersion: rolekeeper.io/v1alpha1\nkind: AssumedRole\nmetadata: {name: bad-%d, namespace: %s}\nspec:\n  assumeRole:\n    %s\n", i, ns, spec)
		file := filepath.Join(work, fmt.Sprintf("bad-%d.yaml", i))
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := kubectl("admin", "apply", "-f", file)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("kubectl apply of\n%s\nexit %v, output %q; want a refusal with %q", doc, err, out, want)
		}
	}

	emu(t, http.MethodPost, "/_ststest/role?arn=arn:aws:iam::111122223333:role/denied", ststest.RoleRule{Deny: true})
	create(t, role(ns, "denied", nil))
	create(t, role(ns, "malformed", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.Policy = `{"Statement":"allow everything"}` }))
	create(t, role(ns, "fine", nil))
	for name, code := range map[string]string{"denied": "AccessDenied", "malformed": "MalformedPolicyDocument"} {
		var ar *rkv1.AssumedRole
		eventually(t, 60*time.Second, name+" stalled", func() bool {
			ar = get(t, ns, name)
			return cond(ar, rkv1.ConditionStalled).Status == metav1.ConditionTrue
		})
		if ar.Status.LastFailure == nil || ar.Status.LastFailure.Code != code || !strings.Contains(cond(ar, rkv1.ConditionStalled).Message, code) {
			t.Errorf("%s: Stalled %+v, lastFailure %+v; want code %s", name, cond(ar, rkv1.ConditionStalled), ar.Status.LastFailure, code)
		}
	}
	waitReady(t, ns, "fine", 30*time.Second)
	// A further reconcile of each refused AssumedRole, in which a hot loop would call again.
	done, _, err := reconcileState(metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"denied", "malformed"} {
		harness.Annotate(t, admin, ns, name, "test.rolekeeper.io/poke", "1")
	}
	drained(t, metrics, done+2)
	all := calls(t)
	if n := callsFor(all, ns, "denied") + callsFor(all, ns, "malformed"); n != 2 {
		t.Errorf("%d calls for the two refused AssumedRoles after a further reconcile of each, want one each (no hot loop)", n)
	}
}

// config/default renders with kustomize and the API server accepts all of it.
func TestDefaultManifestsApply(t *testing.T) {
	rendered, err := kubectl("admin", "kustomize", filepath.Join(testenv.Root(), "config", "default"))
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v\n%s", err, rendered)
	}
	for _, kind := range []string{"kind: CustomResourceDefinition", "kind: Deployment", "kind: ClusterRole", "kind: ServiceAccount", "readOnlyRootFilesystem: true", "runAsNonRoot: true", "--leader-elect"} {
		if !strings.Contains(rendered, kind) {
			t.Errorf("rendered config/default lacks %q", kind)
		}
	}
	file := filepath.Join(work, "default.yaml")
	if err := os.WriteFile(file, []byte(rendered), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl("admin", "apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", file); err != nil {
		t.Fatalf("server-side dry run of config/default: %v\n%s", err, out)
	}
}

// The Helm chart renders, the API server accepts all of it, its RBAC equals config/rbac, and its
// values reach the operator's flags.
func TestHelmChartApplies(t *testing.T) {
	helm := os.Getenv("HELM_BIN")
	if helm == "" {
		t.Fatal("HELM_BIN is not set: run `make test-e2e`, which builds Helm from its Go module")
	}
	chart := filepath.Join(testenv.Root(), "charts", "rolekeeper")
	render := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(helm, append([]string{"template", "rolekeeper", chart, "--namespace", "rolekeeper-system", "--include-crds"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm template %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	rendered := render("--set", "aws.region=eu-west-1", "--set", "operator.clusterName=prod", "--set", "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/rolekeeper")
	for _, want := range []string{"--region=eu-west-1", "--cluster-name=prod", "eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/rolekeeper", "kind: CustomResourceDefinition", "readOnlyRootFilesystem: true"} {
		if !strings.Contains(rendered, want) {
			t.Errorf("chart output lacks %q", want)
		}
	}
	file := filepath.Join(work, "chart.yaml")
	if err := os.WriteFile(file, []byte(rendered), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl("admin", "apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", file); err != nil {
		t.Fatalf("server-side dry run of the chart: %v\n%s", err, out)
	}
	for _, want := range []string{"kind: MutatingWebhookConfiguration", "--webhook-port=9443", "--sidecar-image=ghcr.io/rolekeeper/rolekeeper:", "--webhook-cert-secret=rolekeeper-system/rolekeeper-webhook-cert"} {
		if !strings.Contains(rendered, want) {
			t.Errorf("chart output lacks the credentials webhook's %q", want)
		}
	}
	if cm := render("--set", "webhook.certManager.enabled=true"); !strings.Contains(cm, "cert-manager.io/inject-ca-from: rolekeeper-system/rolekeeper-webhook-cert") || strings.Contains(cm, "--webhook-cert-secret") {
		t.Error("webhook.certManager.enabled=true does not hand the certificate to cert-manager")
	}
	if !strings.Contains(render("--set", "serviceMonitor.enabled=true"), "kind: ServiceMonitor") {
		t.Error("serviceMonitor.enabled=true renders no ServiceMonitor")
	}

	var chartRole rbacv1.ClusterRole
	for _, doc := range strings.Split(rendered, "\n---") {
		if strings.Contains(doc, "kind: ClusterRole\n") && strings.Contains(doc, "name: rolekeeper-manager\n") {
			if err := yaml.Unmarshal([]byte(doc), &chartRole); err != nil {
				t.Fatal(err)
			}
		}
	}
	var shipped rbacv1.ClusterRole
	raw, _ := os.ReadFile(filepath.Join(testenv.Root(), "config", "rbac", "role.yaml"))
	if err := yaml.Unmarshal(raw, &shipped); err != nil {
		t.Fatal(err)
	}
	if a, b := ruleSet(chartRole.Rules), ruleSet(shipped.Rules); a != b {
		t.Errorf("the chart's ClusterRole\n %s\ndiffers from config/rbac\n %s", a, b)
	}
}

func ruleSet(rules []rbacv1.PolicyRule) string {
	var out []string
	for _, r := range rules {
		verbs := append([]string(nil), r.Verbs...)
		sort.Strings(verbs)
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				out = append(out, g+"/"+res+":"+strings.Join(verbs, ","))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
