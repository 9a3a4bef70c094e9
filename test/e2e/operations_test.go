//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/test/monitoring"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// helmTemplate renders the chart as release "rolekeeper" in namespace.
func helmTemplate(t *testing.T, namespace string, args ...string) string {
	t.Helper()
	helm := os.Getenv("HELM_BIN")
	if helm == "" {
		t.Fatal("HELM_BIN is not set: run `make test-e2e`, which builds Helm from its Go module")
	}
	chart := filepath.Join(testenv.Root(), "charts", "rolekeeper")
	out, err := exec.Command(helm, append([]string{"template", "rolekeeper", chart, "--namespace", namespace}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// applyManifests applies YAML as the administrator and deletes it when the test ends.
func applyManifests(t *testing.T, name, manifests string) {
	t.Helper()
	file := filepath.Join(work, name+".yaml")
	if err := os.WriteFile(file, []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl("admin", "apply", "-f", file); err != nil {
		t.Fatalf("kubectl apply of %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { _, _ = kubectl("admin", "delete", "--ignore-not-found", "-f", file) })
}

// serviceAccountToken creates a ServiceAccount (and its namespace, if missing) and returns a
// token for it from the TokenRequest API.
func serviceAccountToken(t *testing.T, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	out, err := kubectl("admin", "create", "token", name, "-n", ns, "--duration=2h")
	if err != nil {
		t.Fatalf("kubectl create token %s/%s: %v\n%s", ns, name, err, out)
	}
	return strings.TrimSpace(out)
}

// sample is one element of a Prometheus instant vector.
type sample struct {
	Labels map[string]string
	Value  float64
}

func (s sample) String() string { return fmt.Sprintf("%v=%v", s.Labels, s.Value) }

// prometheus is a Prometheus server (Debian's package) run as a process on loopback with its
// own data directory, scraping the operator and evaluating the shipped rules file.
type prometheus struct{ url string }

func startPrometheus(t *testing.T, target, tokenFile string) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed: .ci/run installs Debian's prometheus package (apt-get install prometheus)")
	}
	dir := filepath.Join(work, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
- job_name: rolekeeper
  scheme: https
  tls_config: {insecure_skip_verify: true}
  authorization: {credentials_file: %q}
  static_configs: [{targets: [%q]}]
`, filepath.Join(testenv.Root(), monitoring.RulesFile), tokenFile, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	// A long lookback lets a query at a later time see the last samples as they are now: "what
	// the alerts say if nothing changes from here".
	p, err := startProcess("prometheus", bin, nil, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--query.lookback-delta=30m", "--web.console.templates="+dir, "--web.console.libraries="+dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("prometheus log %s:\n%s", p.Log, tail(p.Output(), 30))
		}
	})
	prom := &prometheus{url: "http://" + addr}
	eventually(t, 60*time.Second, "Prometheus ready", func() bool {
		resp, err := http.Get(prom.url + "/-/ready")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return prom
}

// query evaluates expr at time at (zero: now).
func (p *prometheus) query(t *testing.T, expr string, at time.Time) []sample {
	t.Helper()
	q := url.Values{"query": {expr}}
	if !at.IsZero() {
		q.Set("time", strconv.FormatInt(at.Unix(), 10))
	}
	resp, err := http.Get(p.url + "/api/v1/query?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Status, Error string
		Data          struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := jsonDecode(resp, &body); err != nil {
		t.Fatal(err)
	}
	if body.Status != "success" || body.Data.ResultType != "vector" {
		t.Fatalf("query %q: %s %s (result type %q)", expr, body.Status, body.Error, body.Data.ResultType)
	}
	out := make([]sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		v, _ := strconv.ParseFloat(fmt.Sprint(r.Value[1]), 64)
		out = append(out, sample{Labels: r.Metric, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].Labels) < fmt.Sprint(out[j].Labels) })
	return out
}

// expectation is what a query must return: exactly the listed label sets (only the listed labels
// are compared), or at least them with includes; and values that pass value.
type expectation struct {
	series   []map[string]string
	includes bool
	value    func(float64) bool
	// idle are series that may be NaN: a quantile over a window in which they had no calls.
	idle []map[string]string
}

func (e expectation) check(got []sample) string {
	matched := make([]bool, len(got))
	for _, want := range e.series {
		found := false
		for i, s := range got {
			if !matched[i] && subset(want, s.Labels) {
				matched[i], found = true, true
				break
			}
		}
		if !found {
			return fmt.Sprintf("no series with %v", want)
		}
	}
	for i, s := range got {
		if !matched[i] && !e.includes {
			return fmt.Sprintf("unexpected series %v", s)
		}
		if e.value != nil && !e.value(s.Value) && (!math.IsNaN(s.Value) || !slices.ContainsFunc(e.idle, func(l map[string]string) bool { return subset(l, s.Labels) })) {
			return fmt.Sprintf("unexpected value in %v", s)
		}
	}
	return ""
}

func subset(want, labels map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

var (
	positive = func(v float64) bool { return v > 0 }
	finite   = func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 }
	one      = func(v float64) bool { return v == 1 }
)

// A real Prometheus scrapes the operator's secure metrics endpoint (with a token bound to the
// chart's metrics-reader ClusterRole; without one, or with another identity, the endpoint
// refuses) and evaluates the shipped rules. Every dashboard query and every alert expression,
// read from the files that ship, returns the series the scenario should produce: "steady" is
// healthy and appears in no alert; "revoked" was issued, then its role refused the operator
// (AccessDenied): Stalled, not Ready, renewal failing.
func TestDashboardAndAlertsOnPrometheus(t *testing.T) {
	ns := namespace(t, "observed")
	allowAll(t, ns)
	applyManifests(t, "metrics-auth", helmTemplate(t, "rolekeeper-system", "--show-only", "templates/metrics-auth.yaml",
		"--set", "metrics.secure=true", "--set", "metrics.readers[0].name=prometheus", "--set", "metrics.readers[0].namespace=monitoring"))
	tokenFile := filepath.Join(work, "prometheus.token")
	if err := os.WriteFile(tokenFile, []byte(serviceAccountToken(t, "monitoring", "prometheus")), 0o600); err != nil {
		t.Fatal(err)
	}
	nobody := serviceAccountToken(t, "monitoring", "nobody")

	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	op := operator(t, replicaA, stsURL, "--watch-namespaces="+ns, "--metrics-secure", "--metrics-bind-address="+metricsAddr)
	secureScrapesAreAuthorized(t, metricsAddr, tokenFile, nobody)
	prom := startPrometheus(t, metricsAddr, tokenFile)

	// One issuance at a time, each seen by Prometheus, so that the counters are seen to rise (a
	// counter's series starts at its first value).
	calls := func(code string, n float64) {
		eventually(t, 60*time.Second, fmt.Sprintf("Prometheus sees %v %s calls", n, code), func() bool {
			s := prom.query(t, `rolekeeper_sts_requests_total{operation="AssumeRole",code="`+code+`"}`, time.Time{})
			return len(s) == 1 && s[0].Value == n
		})
	}
	create(t, role(ns, "steady", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](3600) }))
	waitReady(t, ns, "steady", 30*time.Second)
	calls("OK", 1)
	create(t, role(ns, "revoked", nil))
	waitReady(t, ns, "revoked", 30*time.Second)
	calls("OK", 2)
	emu(t, http.MethodPost, "/_ststest/role?arn=arn:aws:iam::111122223333:role/revoked", map[string]any{"Deny": true})
	rotate(t, ns, "revoked")
	calls("AccessDenied", 1)
	rotate(t, ns, "revoked")
	calls("AccessDenied", 2)
	ar := get(t, ns, "revoked")
	if cond(ar, rkv1.ConditionStalled).Status != metav1.ConditionTrue || ar.Status.FailedAttempts != 2 {
		t.Fatalf("revoked: Stalled %+v, failedAttempts %d", cond(ar, rkv1.ConditionStalled), ar.Status.FailedAttempts)
	}
	eventually(t, 30*time.Second, "Prometheus sees revoked Stalled and steady Ready", func() bool {
		return len(prom.query(t, `rolekeeper_assumedrole_stalled{name="revoked"} == 1`, time.Time{})) == 1 &&
			len(prom.query(t, `rolekeeper_assumedrole_ready{name="steady"} == 1`, time.Time{})) == 1
	})

	revoked := map[string]string{"namespace": ns, "name": "revoked"}
	steady := map[string]string{"namespace": ns, "name": "steady"}
	controllers := []map[string]string{{"controller": "assumedrole"}, {"controller": "clusterassumedrole"}}
	// The operator's one GetCallerIdentity at start-up: its rate is zero once Prometheus scrapes.
	identityCall := map[string]string{"operation": "GetCallerIdentity"}
	dashboard := map[string]expectation{
		"AssumedRoles by state/A":  {series: []map[string]string{{}}, value: one},
		"AssumedRoles by state/B":  {series: []map[string]string{{}}, value: one},
		"AssumedRoles by state/C":  {series: []map[string]string{{}}, value: one},
		"AssumedRoles by state/D":  {series: []map[string]string{{}}, value: one},
		"Not Ready or Stalled/A":   {series: []map[string]string{revoked}},
		"Not Ready or Stalled/B":   {series: []map[string]string{revoked}},
		"Time to expiry/A":         {series: []map[string]string{steady, revoked}},
		"Time to next renewal/A":   {series: []map[string]string{steady, revoked}},
		"Issuances and failures/A": {series: []map[string]string{{"operation": "AssumeRole"}}, value: positive},
		"Issuances and failures/B": {series: []map[string]string{{"operation": "AssumeRole", "code": "AccessDenied"}}, value: positive},
		// The operator's own GetCallerIdentity at start-up is an STS call, not an issuance.
		"STS calls by operation and code/A": {series: []map[string]string{{"operation": "AssumeRole", "code": "OK"}, {"operation": "AssumeRole", "code": "AccessDenied"}, {"operation": "GetCallerIdentity", "code": "OK"}}, value: finite},
		"STS latency by operation/A":        {series: []map[string]string{{"operation": "AssumeRole"}, identityCall}, value: finite, idle: []map[string]string{identityCall}},
		"STS latency by operation/B":        {series: []map[string]string{{"operation": "AssumeRole"}, identityCall}, value: finite, idle: []map[string]string{identityCall}},
		// A queue's depth is exported once it has had an item; there is no ClusterAssumedRole here.
		"Workqueue depth/A":      {series: []map[string]string{{"controller": "assumedrole"}}, includes: true, value: finite},
		"Reconciles by result/A": {series: []map[string]string{{"controller": "assumedrole", "result": "success"}}, includes: true, value: finite},
		"Reconcile errors/A":     {series: controllers, value: finite},
	}
	queries, err := monitoring.DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		want, ok := dashboard[q.Key()]
		if !ok {
			t.Errorf("dashboard query %s has no expectation in this test: %s", q.Key(), q.Expr)
			continue
		}
		delete(dashboard, q.Key())
		if msg := want.check(prom.query(t, q.Expr, time.Time{})); msg != "" {
			t.Errorf("dashboard %s: %s\n  query: %s\n  got:   %v", q.Key(), msg, q.Expr, prom.query(t, q.Expr, time.Time{}))
		}
	}
	for key := range dashboard {
		t.Errorf("the dashboard has no query %s", key)
	}

	// Alerts now, and evaluated 10 minutes ahead on the series as they are now (the operator
	// stops moving anything): "steady" is then overdue and about to expire; "revoked" has its
	// next attempt scheduled, so it is not overdue.
	later := time.Now().Add(10 * time.Minute)
	none := expectation{}
	type alertCase struct {
		at   time.Time
		want expectation
	}
	alerts := map[string][]alertCase{
		"RolekeeperCredentialsExpiringSoon": {{want: expectation{series: []map[string]string{revoked}}}, {at: later, want: expectation{series: []map[string]string{steady, revoked}}}},
		"RolekeeperAssumedRoleNotReady":     {{want: expectation{series: []map[string]string{revoked}}}},
		"RolekeeperAssumedRoleStalled":      {{want: expectation{series: []map[string]string{revoked}}}},
		"RolekeeperSTSErrors":               {{want: expectation{series: []map[string]string{{"operation": "AssumeRole", "code": "AccessDenied"}}, value: positive}}},
		"RolekeeperRenewalOverdue":          {{want: none}, {at: later, want: expectation{series: []map[string]string{steady}}}},
		"RolekeeperOperatorAbsent":          {{want: none}},
	}
	rules, err := monitoring.Rules()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		cases, ok := alerts[r.Alert]
		if !ok {
			t.Errorf("alert %s has no expectation in this test", r.Alert)
			continue
		}
		for _, c := range cases {
			if msg := c.want.check(prom.query(t, r.Expr, c.at)); msg != "" {
				t.Errorf("alert %s at %v: %s\n  expr: %s", r.Alert, c.at, msg, r.Expr)
			}
		}
	}
	// Prometheus itself loaded the rules file and holds the alerts for "revoked" as pending or
	// firing (their `for` has not passed yet).
	for _, name := range []string{"RolekeeperCredentialsExpiringSoon", "RolekeeperAssumedRoleNotReady", "RolekeeperAssumedRoleStalled"} {
		eventually(t, 30*time.Second, name+" in ALERTS", func() bool {
			return expectation{series: []map[string]string{revoked}}.check(prom.query(t, `ALERTS{alertname="`+name+`"}`, time.Time{})) == ""
		})
	}

	// The operator goes away: the absent alert's expression fires.
	op.Stop()
	eventually(t, 30*time.Second, "RolekeeperOperatorAbsent's expression to fire once the operator is gone", func() bool {
		for _, r := range rules {
			if r.Alert == "RolekeeperOperatorAbsent" {
				return len(prom.query(t, r.Expr, time.Time{})) == 1
			}
		}
		return false
	})
}

func rotate(t *testing.T, ns, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, rkv1.AnnotationRotate, time.Now().Format(time.RFC3339Nano))
	if err := admin.Patch(context.Background(), &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// secureScrapesAreAuthorized: --metrics-secure serves HTTPS; no token is 401, a token without
// the metrics-reader binding is 403, the bound token gets the metrics.
func secureScrapesAreAuthorized(t *testing.T, addr, tokenFile, unboundToken string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the operator's certificate is self-signed
	scrape := func(token string) (int, string) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		return resp.StatusCode, string(body)
	}
	eventually(t, 60*time.Second, "the secure metrics endpoint to answer", func() bool { code, _ := scrape(""); return code != 0 })
	if code, body := scrape(""); code != http.StatusUnauthorized {
		t.Errorf("unauthenticated scrape: %d %s; want 401", code, body)
	}
	if code, body := scrape(unboundToken); code != http.StatusForbidden {
		t.Errorf("scrape by an identity without metrics-reader: %d %s; want 403", code, body)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := scrape(string(token)); code != http.StatusOK || !strings.Contains(body, "# TYPE rest_client_requests_total counter") {
		t.Errorf("scrape with the metrics-reader token: %d, body %.200q", code, body)
	}
	plain, err := http.Get("http://" + addr + "/metrics")
	if err == nil {
		_ = plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Error("the secure endpoint also serves plain HTTP")
		}
	}
}

// With operator.watchNamespaces the chart grants Secrets, AssumedRoles, events and restarts by
// Roles in exactly those namespaces; only cluster-scoped reads and ClusterAssumedRole status stay
// cluster-wide. The operator, running as that ServiceAccount, works in its namespaces (including a
// ClusterAssumedRole fanning out) and the API server refuses it everywhere else.
func TestRBACScopedToWatchedNamespaces(t *testing.T) {
	const release = "rolekeeper-scoped"
	for _, n := range []string{release, "scoped-a", "scoped-b", "scoped-c"} {
		namespace(t, n)
	}
	rendered := helmTemplate(t, release, "--set", "operator.watchNamespaces={scoped-a,scoped-b}",
		"--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml", "--show-only", "templates/rbac-scoped.yaml")
	roles := map[string][]rbacv1.PolicyRule{} // "ClusterRole name" or "Role namespace/name"
	for _, doc := range strings.Split(rendered, "\n---") {
		var obj struct {
			Kind     string
			Metadata metav1.ObjectMeta
			Rules    []rbacv1.PolicyRule
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		switch obj.Kind {
		case "ClusterRole":
			roles["ClusterRole "+obj.Metadata.Name] = obj.Rules
		case "Role":
			roles["Role "+obj.Metadata.Namespace+"/"+obj.Metadata.Name] = obj.Rules
		}
	}
	var names []string
	for k := range roles {
		names = append(names, k)
	}
	sort.Strings(names)
	if got := strings.Join(names, ", "); got != "ClusterRole rolekeeper-manager-cluster, Role rolekeeper-scoped/rolekeeper-leader-election, Role scoped-a/rolekeeper-manager, Role scoped-b/rolekeeper-manager" {
		t.Fatalf("the scoped chart renders %s", got)
	}
	if got, want := ruleSet(roles["ClusterRole rolekeeper-manager-cluster"]), "/namespaces:get,list,watch rolekeeper.io/assumedrolepolicies:get,list,watch rolekeeper.io/clusterassumedroles/finalizers:update rolekeeper.io/clusterassumedroles/status:get,patch,update rolekeeper.io/clusterassumedroles:get,list,watch"; got != want {
		t.Errorf("cluster-wide rules\n %s\nwant only the cluster-scoped\n %s", got, want)
	}
	var shipped rbacv1.ClusterRole
	raw, _ := os.ReadFile(filepath.Join(testenv.Root(), "config", "rbac", "role.yaml"))
	if err := yaml.Unmarshal(raw, &shipped); err != nil {
		t.Fatal(err)
	}
	union := append(append([]rbacv1.PolicyRule(nil), roles["ClusterRole rolekeeper-manager-cluster"]...), roles["Role scoped-a/rolekeeper-manager"]...)
	if a, b := ruleSet(union), ruleSet(shipped.Rules); a != b {
		t.Errorf("cluster-wide and namespace rules together\n %s\ndiffer from config/rbac\n %s", a, b)
	}
	applyManifests(t, "scoped-rbac", rendered)

	token := serviceAccountToken(t, release, "rolekeeper")
	kc, err := cp.KubeconfigFor("scoped-operator", token)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"scoped-a", "scoped-b", "scoped-c"} {
		allowAll(t, n)
		create(t, role(n, "app", nil))
	}
	ctx := context.Background()
	for _, n := range []string{"scoped-a", "scoped-c"} {
		if err := admin.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"e2e-scoped":"yes"}}}`))); err != nil {
			t.Fatal(err)
		}
	}
	car := &rkv1.ClusterAssumedRole{ObjectMeta: metav1.ObjectMeta{Name: "scoped-shared"}, Spec: rkv1.ClusterAssumedRoleSpec{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"e2e-scoped": "yes"}},
		Template:          rkv1.AssumedRoleTemplate{Spec: role("", "shared", nil).Spec}}}
	if err := admin.Create(ctx, car); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), car) })

	op := operatorAs(t, kc, replicaA, stsURL, "--watch-namespaces=scoped-a,scoped-b", "--leader-elect", "--leader-election-id=e2e-scoped", "--leader-election-namespace="+release)
	waitReady(t, "scoped-a", "app", 60*time.Second)
	waitReady(t, "scoped-b", "app", 30*time.Second)
	waitReady(t, "scoped-a", "scoped-shared", 30*time.Second)
	eventually(t, 30*time.Second, "ClusterAssumedRole status written", func() bool {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(car), car); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(car.Status.Conditions, rkv1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionTrue && car.Status.SelectedNamespaces == 1 && car.Status.ReadyNamespaces == 1
	})
	if ar := get(t, "scoped-c", "app"); len(ar.Status.Conditions) != 0 || secret(t, "scoped-c", "app") != nil {
		t.Errorf("the AssumedRole in the unwatched namespace was served: %+v", ar.Status)
	}
	var shared rkv1.AssumedRole
	if err := admin.Get(ctx, client.ObjectKey{Namespace: "scoped-c", Name: "scoped-shared"}, &shared); !apierrors.IsNotFound(err) {
		t.Errorf("the ClusterAssumedRole created an AssumedRole in the unwatched namespace: %v", err)
	}

	// The API server refuses the operator's identity outside its namespaces.
	as, err := client.New(cp.Config(token), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]error{
		"get a Secret in scoped-c":              as.Get(ctx, client.ObjectKey{Namespace: "scoped-c", Name: "app"}, &corev1.Secret{}),
		"list Secrets in all namespaces":        as.List(ctx, &corev1.SecretList{}),
		"list Secrets in kube-system":           as.List(ctx, &corev1.SecretList{}, client.InNamespace("kube-system")),
		"create a Secret in scoped-c":           as.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "scoped-c", Name: "x"}}),
		"create an AssumedRole in scoped-c":     as.Create(ctx, role("scoped-c", "x", nil)),
		"update AssumedRole status in scoped-c": as.Status().Update(ctx, get(t, "scoped-c", "app")),
		"patch a Deployment in scoped-c": as.Patch(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "scoped-c", Name: "x"}},
			client.RawPatch(types.MergePatchType, []byte(`{}`))),
		"create an AssumedRolePolicy": as.Create(ctx, &rkv1.AssumedRolePolicy{ObjectMeta: metav1.ObjectMeta{Name: "scoped-x"},
			Spec: rkv1.AssumedRolePolicySpec{Namespaces: []string{"scoped-c"}, AllowedRoleArns: []string{"*"}}}),
		"label a namespace": as.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "scoped-c"}}, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`))),
	}
	for what, err := range refused {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s as the scoped operator: %v; want Forbidden", what, err)
		}
	}
	if err := as.List(ctx, &corev1.SecretList{}, client.InNamespace("scoped-a")); err != nil {
		t.Errorf("listing Secrets in a watched namespace: %v", err)
	}
	if strings.Contains(strings.ToLower(op.Output()), "forbidden") {
		t.Errorf("the scoped operator was refused something it tried:\n%s", tail(op.Output(), 40))
	}
}

// The chart's PrometheusRule holds the rules of the shipped rules file and its dashboard
// ConfigMap the shipped dashboard, both off by default.
func TestChartShipsRulesAndDashboard(t *testing.T) {
	root := testenv.Root()
	if out := helmTemplate(t, "rolekeeper-system"); strings.Contains(out, "kind: PrometheusRule") || strings.Contains(out, "grafana_dashboard") {
		t.Error("the PrometheusRule or the dashboard is rendered by default")
	}
	rendered := helmTemplate(t, "rolekeeper-system", "--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true",
		"--show-only", "templates/prometheusrule.yaml", "--show-only", "templates/grafana-dashboard.yaml")
	var rule struct {
		Spec map[string]any
	}
	var dashboard corev1.ConfigMap
	for _, doc := range strings.Split(rendered, "\n---") {
		switch {
		case strings.Contains(doc, "kind: PrometheusRule"):
			if err := yaml.Unmarshal([]byte(doc), &rule); err != nil {
				t.Fatal(err)
			}
		case strings.Contains(doc, "kind: ConfigMap"):
			if err := yaml.Unmarshal([]byte(doc), &dashboard); err != nil {
				t.Fatal(err)
			}
		}
	}
	var shipped map[string]any
	raw, _ := os.ReadFile(filepath.Join(root, monitoring.RulesFile))
	if err := yaml.Unmarshal(raw, &shipped); err != nil {
		t.Fatal(err)
	}
	if a, b := fmt.Sprint(rule.Spec), fmt.Sprint(shipped); a != b || len(rule.Spec) == 0 {
		t.Errorf("the PrometheusRule spec\n %s\ndiffers from %s\n %s", a, monitoring.RulesFile, b)
	}
	raw, _ = os.ReadFile(filepath.Join(root, monitoring.DashboardFile))
	if got := dashboard.Data["rolekeeper-dashboard.json"]; strings.TrimSpace(got) != strings.TrimSpace(string(raw)) || dashboard.Labels["grafana_dashboard"] != "1" {
		t.Errorf("the dashboard ConfigMap (labels %v) does not hold %s", dashboard.Labels, monitoring.DashboardFile)
	}
}
