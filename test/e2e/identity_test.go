//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/cluster"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// readyWatch polls AssumedRoles until stopped and records every time one that had been Ready was
// seen not Ready: an interruption of the credentials it serves.
type readyWatch struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	failures []string
	seen     int // AssumedRoles read
}

func watchReady(t *testing.T, ns string, names ...string) *readyWatch {
	t.Helper()
	w := &readyWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			for _, name := range names {
				ar := &rkv1.AssumedRole{}
				if err := admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ar); err != nil {
					continue
				}
				w.mu.Lock()
				w.seen++
				w.mu.Unlock()
				if c := cond(ar, rkv1.ConditionReady); c.Status != metav1.ConditionTrue {
					w.mu.Lock()
					w.failures = append(w.failures, fmt.Sprintf("%s not Ready at %s: %s %s", name, time.Now().Format(time.RFC3339), c.Reason, c.Message))
					w.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(w.end)
	return w
}

func (w *readyWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// check ends the watch and fails the test if any AssumedRole left Ready.
func (w *readyWatch) check(t *testing.T) {
	t.Helper()
	w.end()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.failures {
		t.Error(f)
	}
	if w.seen == 0 {
		t.Error("the Ready watch read no AssumedRole")
	}
	t.Logf("Ready throughout: %d reads of the AssumedRoles", w.seen)
}

// identityRoles creates AssumedRoles for the identity tests: three that the operator's session
// may assume, and one asking for two hours, which a role session cannot chain to.
func identityRoles(t *testing.T, ns string) []string {
	t.Helper()
	names := []string{"reader", "writer", "deployer"}
	for _, n := range names {
		create(t, role(ns, n, func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900) }))
	}
	create(t, role(ns, "long", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](7200) }))
	for _, n := range names {
		waitReady(t, ns, n, 60*time.Second)
	}
	eventually(t, 60*time.Second, "the two-hour AssumedRole refused as role chaining", func() bool {
		return cond(get(t, ns, "long"), rkv1.ConditionReady).Reason == "RoleChainingLimit"
	})
	return names
}

// identityMetric waits until the operator's metrics show its identity.
func identityMetric(t *testing.T, metricsAddr, kind, source, arn string) {
	t.Helper()
	want := fmt.Sprintf(`rolekeeper_operator_identity_info{arn=%q,kind=%q,source=%q}`, arn, kind, source)
	eventually(t, 30*time.Second, want, func() bool {
		m, err := scrape("http://" + metricsAddr + "/metrics")
		if err != nil || m[want] != 1 {
			return false
		}
		n := 0
		for k := range m {
			if strings.HasPrefix(k, "rolekeeper_operator_identity_info{") {
				n++
			}
		}
		return n == 1
	})
}

// renewedBy waits until every named AssumedRole was issued credentials by a call signed with one
// of the operator's own access keys in keys.
func renewedBy(t *testing.T, ns string, names []string, keys func() map[string]bool, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "every AssumedRole issued with the operator's renewed credentials", func() bool {
		own := keys()
		signed := map[string]bool{}
		for _, c := range calls(t) {
			if c.Action == "AssumeRole" && c.Code == "" && own[c.CallerAccessKey] {
				signed[c.SessionName] = true
			}
		}
		for _, n := range names {
			if !signed[ns+"."+n] {
				return false
			}
		}
		return true
	})
}

// The operator runs as a web identity: a projected ServiceAccount token that the cluster's own
// issuer signed, exchanged by the SDK's default chain (AssumeRoleWithWebIdentity), and verified
// by the emulator against the keys the API server publishes. The token is short-lived and
// replaced as the kubelet replaces it; the operator's session is refreshed with the new token
// and no AssumedRole leaves Ready.
func TestWebIdentityOperator(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "e2e-web-identity")
	allowAll(t, ns)

	// Publish the issuer's discovery document and keys to anonymous readers, as IAM reads them
	// (docs/operations.md), and register the issuer with the emulator as an IAM OIDC provider.
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-service-account-issuer-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:unauthenticated"}},
	}
	if err := admin.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Delete(ctx, binding) })
	ca, err := os.ReadFile(filepath.Join(cp.Dir, "certs", "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	emu(t, http.MethodPost, "/_ststest/oidc-provider", ststest.OIDCProvider{URL: cp.URL, ClientIDs: []string{"sts.amazonaws.com"}, CAPEM: ca})
	const operatorRole = "arn:aws:iam::000000000000:role/rolekeeper-web-identity"
	emu(t, http.MethodPost, "/_ststest/role?arn="+operatorRole, ststest.RoleRule{WebIdentity: &ststest.WebIdentityTrust{
		Issuer: cp.URL, Audience: "sts.amazonaws.com", Subjects: []string{cluster.OperatorUser}}})

	// The kubelet's part: a token from TokenRequest in a file, replaced at 80% of its lifetime.
	// TokenRequest's shortest lifetime is ten minutes; the emulator's time scale makes it 20 s.
	tokenFile := filepath.Join(t.TempDir(), "token")
	var tokenMu sync.Mutex
	var tokens []string
	refresh := func() {
		secs := int64(600)
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}, ExpirationSeconds: &secs}}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "rolekeeper-system", Name: "rolekeeper"}}
		if err := admin.SubResource("token").Create(ctx, sa, tr); err != nil {
			t.Errorf("TokenRequest: %v", err)
			return
		}
		tmp := tokenFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(tr.Status.Token), 0o600); err != nil || os.Rename(tmp, tokenFile) != nil {
			t.Errorf("writing the token: %v", err)
		}
		tokenMu.Lock()
		tokens = append(tokens, tr.Status.Token)
		tokenMu.Unlock()
	}
	refresh()
	stopRefresh := make(chan struct{})
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		for {
			select {
			case <-stopRefresh:
				return
			case <-time.After(600 * time.Second * 8 / 10 / timeScale):
				refresh()
			}
		}
	}()
	t.Cleanup(func() { close(stopRefresh); <-refreshed })

	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	op := operatorWithEnv(t, operatorKubeconfig(t), []string{"AWS_ROLE_ARN=" + operatorRole, "AWS_WEB_IDENTITY_TOKEN_FILE=" + tokenFile, "AWS_ROLE_SESSION_NAME=rolekeeper"},
		stsURL, "--identity=web-identity", "--watch-namespaces="+ns, "--metrics-bind-address="+metricsAddr)

	names := identityRoles(t, ns)
	session := "arn:aws:sts::000000000000:assumed-role/rolekeeper-web-identity/rolekeeper"
	identityMetric(t, metricsAddr, "role-session", "web-identity", session)
	watch := watchReady(t, ns, names...)

	// The operator's own session (one hour, two minutes here) is refreshed a minute before it
	// expires: by then the first token has expired, so the SDK must read the file again.
	exchanges := func() (ok map[string]bool, failed []ststest.Call) {
		ok = map[string]bool{}
		for _, c := range calls(t) {
			if c.Action != "AssumeRoleWithWebIdentity" {
				continue
			}
			if c.Code != "" {
				failed = append(failed, c)
			} else {
				ok[c.TokenID] = true
			}
		}
		return ok, failed
	}
	eventually(t, 3*time.Minute, "the operator's session refreshed with a newer token", func() bool {
		ok, _ := exchanges()
		return len(ok) >= 2
	})
	// The AssumedRoles are then issued with the refreshed session.
	renewedBy(t, ns, names, func() map[string]bool {
		keys := map[string]bool{}
		all := calls(t)
		for _, c := range all {
			if c.Action == "AssumeRoleWithWebIdentity" && c.Code == "" {
				keys[c.IssuedAccessKey] = true
			}
		}
		for _, c := range all { // drop the first session's key: only the refreshed ones count
			if c.Action == "AssumeRoleWithWebIdentity" && c.Code == "" {
				delete(keys, c.IssuedAccessKey)
				break
			}
		}
		return keys
	}, 2*time.Minute)
	watch.check(t)
	ok, failed := exchanges()
	if len(failed) > 0 {
		t.Errorf("web identity exchanges failed: %+v", failed)
	}
	t.Logf("AssumeRoleWithWebIdentity succeeded with %d distinct tokens", len(ok))
	identityMetric(t, metricsAddr, "role-session", "web-identity", session)

	// Neither the token nor the session's secrets reach the operator's log.
	out := op.Output()
	if !strings.Contains(out, `"operator AWS identity"`) || !strings.Contains(out, `"source":"web-identity"`) {
		t.Errorf("the log does not name the operator's identity:\n%s", tail(out, 20))
	}
	tokenMu.Lock()
	defer tokenMu.Unlock()
	for _, tok := range tokens {
		if strings.Contains(out, tok[len(tok)-40:]) {
			t.Fatal("the operator logged its web identity token")
		}
	}
}

// The operator runs as an IAM Roles Anywhere session from a certificate the test mints, in a
// directory laid out as a Secret volume. The certificate is renewed mid-run (as cert-manager
// renews it) and the old one revoked: the operator signs its next CreateSession with the new one
// without a restart, and no AssumedRole leaves Ready.
func TestRolesAnywhereOperator(t *testing.T) {
	ns := namespace(t, "e2e-roles-anywhere")
	allowAll(t, ns)
	ca, err := ststest.NewCA("rolekeeper e2e CA")
	if err != nil {
		t.Fatal(err)
	}
	const (
		anchor       = "arn:aws:rolesanywhere:us-east-1:000000000000:trust-anchor/6a1b2c3d-0000-4000-8000-000000000001"
		profile      = "arn:aws:rolesanywhere:us-east-1:000000000000:profile/6a1b2c3d-0000-4000-8000-000000000002"
		operatorRole = "arn:aws:iam::000000000000:role/rolekeeper-roles-anywhere"
	)
	emu(t, http.MethodPost, "/_ststest/trust-anchor", ststest.TrustAnchor{Arn: anchor, CAPEM: ca.PEM})
	emu(t, http.MethodPost, "/_ststest/profile", ststest.RolesAnywhereProfile{Arn: profile, RoleArns: []string{operatorRole}})
	emu(t, http.MethodPost, "/_ststest/role?arn="+operatorRole, ststest.RoleRule{RolesAnywhereSubjects: []string{"rolekeeper"}})

	dir := filepath.Join(t.TempDir(), "roles-anywhere")
	issue := func() *ststest.Leaf {
		leaf, err := ca.Issue("rolekeeper", time.Now().Add(24*time.Hour), false)
		if err != nil {
			t.Fatal(err)
		}
		if err := ststest.WriteVolume(dir, map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.PEM}); err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	first := issue()

	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	op := operatorWithEnv(t, operatorKubeconfig(t), nil, stsURL, "--identity=roles-anywhere",
		"--roles-anywhere-trust-anchor-arn="+anchor, "--roles-anywhere-profile-arn="+profile, "--roles-anywhere-role-arn="+operatorRole,
		"--roles-anywhere-certificate="+filepath.Join(dir, "tls.crt"), "--roles-anywhere-private-key="+filepath.Join(dir, "tls.key"),
		"--roles-anywhere-endpoint="+stsURL, "--watch-namespaces="+ns, "--metrics-bind-address="+metricsAddr)

	names := identityRoles(t, ns)
	identityMetric(t, metricsAddr, "role-session", "roles-anywhere", "arn:aws:sts::000000000000:assumed-role/rolekeeper-roles-anywhere/"+first.Serial)
	watch := watchReady(t, ns, names...)

	// Renewal: a new certificate and key in the volume, then the old certificate revoked.
	second := issue()
	sessionsOf := func(serial string) (keys map[string]bool, failed []ststest.Call) {
		keys = map[string]bool{}
		for _, c := range calls(t) {
			if c.Action != "CreateSession" {
				continue
			}
			if c.Code != "" {
				failed = append(failed, c)
			} else if c.CertificateSerial == serial {
				keys[c.IssuedAccessKey] = true
			}
		}
		return keys, failed
	}
	// The operator's session (one hour, two minutes here) is refreshed a minute before it expires.
	eventually(t, 3*time.Minute, "a CreateSession signed with the renewed certificate", func() bool {
		keys, _ := sessionsOf(second.Serial)
		return len(keys) > 0
	})
	emu(t, http.MethodPost, "/_ststest/revoke?serial="+first.Serial+"&on=true", nil)
	renewedBy(t, ns, names, func() map[string]bool { keys, _ := sessionsOf(second.Serial); return keys }, 2*time.Minute)
	identityMetric(t, metricsAddr, "role-session", "roles-anywhere", "arn:aws:sts::000000000000:assumed-role/rolekeeper-roles-anywhere/"+second.Serial)
	watch.check(t)
	if _, failed := sessionsOf(""); len(failed) > 0 {
		t.Errorf("CreateSession calls failed: %+v", failed)
	}
	firstKeys, _ := sessionsOf(first.Serial)
	secondKeys, _ := sessionsOf(second.Serial)
	t.Logf("CreateSession: %d sessions from the first certificate, %d from the renewed one", len(firstKeys), len(secondKeys))
	if out := op.Output(); strings.Contains(out, "PRIVATE KEY") || !strings.Contains(out, `"source":"roles-anywhere"`) {
		t.Errorf("the log shows key material or does not name the identity:\n%s", tail(out, 20))
	}
}

// The chart and config/ run the operator with each keyless identity as the tests above run it:
// web identity from a projected ServiceAccount token (audience sts.amazonaws.com) named by
// AWS_WEB_IDENTITY_TOKEN_FILE, Roles Anywhere from a mounted Secret at the flags' paths.
func TestIdentityManifests(t *testing.T) {
	const role = "arn:aws:iam::111122223333:role/rolekeeper"
	kustomize := func(dir string) string {
		out, err := kubectl("admin", "kustomize", filepath.Join(testenv.Root(), "config", dir))
		if err != nil {
			t.Fatalf("kubectl kustomize config/%s: %v\n%s", dir, err, out)
		}
		return out
	}
	for _, c := range []struct {
		name, rendered, identity string
	}{
		{"chart web identity", helmTemplate(t, "rolekeeper-system", "--set", "aws.identity=web-identity", "--set", "aws.webIdentity.roleArn="+role), "web-identity"},
		{"config/web-identity", kustomize("web-identity"), "web-identity"},
		{"chart roles anywhere", helmTemplate(t, "rolekeeper-system", "--set", "aws.identity=roles-anywhere",
			"--set", "aws.rolesAnywhere.trustAnchorArn=arn:aws:rolesanywhere:us-east-1:111122223333:trust-anchor/0b1c",
			"--set", "aws.rolesAnywhere.profileArn=arn:aws:rolesanywhere:us-east-1:111122223333:profile/0b1d",
			"--set", "aws.rolesAnywhere.roleArn="+role), "roles-anywhere"},
		{"config/roles-anywhere", kustomize("roles-anywhere"), "roles-anywhere"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := managerDeployment(t, c.rendered)
			pod := d.Spec.Template.Spec
			ctr := pod.Containers[0]
			args := strings.Join(ctr.Args, " ")
			if !strings.Contains(args, "--identity="+c.identity) {
				t.Fatalf("args %v lack --identity=%s", ctr.Args, c.identity)
			}
			mounted := func(file string) *corev1.Volume {
				for _, m := range ctr.VolumeMounts {
					if strings.HasPrefix(file, m.MountPath+"/") {
						for i := range pod.Volumes {
							if pod.Volumes[i].Name == m.Name {
								return &pod.Volumes[i]
							}
						}
					}
				}
				return nil
			}
			switch c.identity {
			case "web-identity":
				env := map[string]string{}
				for _, e := range ctr.Env {
					env[e.Name] = e.Value
				}
				if env["AWS_ROLE_ARN"] != role {
					t.Errorf("AWS_ROLE_ARN %q, want %q", env["AWS_ROLE_ARN"], role)
				}
				v := mounted(env["AWS_WEB_IDENTITY_TOKEN_FILE"])
				if v == nil || v.Projected == nil || len(v.Projected.Sources) != 1 || v.Projected.Sources[0].ServiceAccountToken == nil {
					t.Fatalf("AWS_WEB_IDENTITY_TOKEN_FILE %q is not in a projected ServiceAccount token volume: %+v", env["AWS_WEB_IDENTITY_TOKEN_FILE"], v)
				}
				sat := v.Projected.Sources[0].ServiceAccountToken
				if sat.Audience != "sts.amazonaws.com" || filepath.Base(env["AWS_WEB_IDENTITY_TOKEN_FILE"]) != sat.Path || sat.ExpirationSeconds == nil || *sat.ExpirationSeconds < 600 {
					t.Errorf("projected token %+v, want audience sts.amazonaws.com at %s", sat, env["AWS_WEB_IDENTITY_TOKEN_FILE"])
				}
			case "roles-anywhere":
				for _, f := range []string{"/var/run/secrets/rolekeeper.io/roles-anywhere/tls.crt", "/var/run/secrets/rolekeeper.io/roles-anywhere/tls.key"} {
					if v := mounted(f); v == nil || v.Secret == nil || v.Secret.SecretName != "rolekeeper-roles-anywhere" {
						t.Errorf("%s is not in the Secret volume rolekeeper-roles-anywhere: %+v", f, v)
					}
				}
				for _, flag := range []string{"--roles-anywhere-trust-anchor-arn=arn:aws:rolesanywhere:", "--roles-anywhere-profile-arn=arn:aws:rolesanywhere:", "--roles-anywhere-role-arn=" + role} {
					if !strings.Contains(args, flag) {
						t.Errorf("args %v lack %s", ctr.Args, flag)
					}
				}
			}
		})
	}
	// The chart names what is missing.
	helm := os.Getenv("HELM_BIN")
	out, err := exec.Command(helm, "template", "rolekeeper", filepath.Join(testenv.Root(), "charts", "rolekeeper"), "--set", "aws.identity=web-identity").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "aws.webIdentity.roleArn is required with aws.identity=web-identity") {
		t.Errorf("the chart without a web identity role: %v\n%s", err, out)
	}
}

// managerDeployment finds the operator's Deployment in rendered manifests.
func managerDeployment(t *testing.T, rendered string) *appsv1.Deployment {
	t.Helper()
	for _, doc := range strings.Split(rendered, "\n---") {
		if !strings.Contains(doc, "kind: Deployment") {
			continue
		}
		d := &appsv1.Deployment{}
		if err := yaml.Unmarshal([]byte(doc), d); err != nil {
			t.Fatal(err)
		}
		if d.Kind == "Deployment" && len(d.Spec.Template.Spec.Containers) > 0 {
			return d
		}
	}
	t.Fatal("no Deployment in the rendered manifests")
	return nil
}
