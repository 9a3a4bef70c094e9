package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// promtool returns the path of promtool (Debian's prometheus package; .ci/run installs it). CI
// must have it; a developer machine without it skips, saying so.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("ROLEKEEPER_REQUIRE_TOOLS") == "1" {
			t.Fatal("promtool is not installed; .ci/run installs Debian's prometheus package")
		}
		t.Skip("SKIPPED: promtool is not installed (apt-get install prometheus); the alert rules are not tested")
	}
	return path
}

// The rules are valid and every unit test in the promtool test file passes: each alert fires on
// the series that should fire it and is silent on the healthy ones beside them.
func TestAlertRulesWithPromtool(t *testing.T) {
	bin := promtool(t)
	root := testenv.Root()
	for _, args := range [][]string{{"check", "rules", RulesFile}, {"test", "rules", RulesTestFile}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Every alert has a unit test, a summary, a description, a severity and a runbook section.
func TestEveryAlertIsTestedAndDocumented(t *testing.T) {
	rules, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatal("no alerts")
	}
	tests, err := os.ReadFile(filepath.Join(testenv.Root(), RulesTestFile))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllSubmatch(ops, -1) {
		headings[strings.ToLower(string(m[1]))] = true
	}
	for _, r := range rules {
		if !regexp.MustCompile(`alertname: ` + r.Alert + `\n\s+eval_time: \S+\n\s+exp_alerts:\n\s+- exp_labels`).Match(tests) {
			t.Errorf("%s: no promtool test expects it to fire", r.Alert)
		}
		if !strings.Contains(string(tests), "{alertname: "+r.Alert+", eval_time:") {
			t.Errorf("%s: no promtool test expects it to stay silent", r.Alert)
		}
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: needs a severity, a summary and a description", r.Alert)
		}
		anchor := strings.ToLower(r.Alert)
		if r.Annotations["runbook_url"] != "https://github.com/rolekeeper/rolekeeper/blob/main/docs/operations.md#"+anchor || !headings[anchor] {
			t.Errorf("%s: runbook_url %q; want a section %q in docs/operations.md and a link to it", r.Alert, r.Annotations["runbook_url"], r.Alert)
		}
	}
}

// The Helm chart ships the same rules and dashboard as config/ (`make manifests` copies them).
func TestChartCopiesAreIdentical(t *testing.T) {
	root := testenv.Root()
	for src, dst := range map[string]string{RulesFile: ChartRulesFile, DashboardFile: ChartDashboardFile} {
		a, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(root, dst))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run `make manifests`", dst, src)
		}
	}
}

// The dashboard has the panels an operator needs, and each panel query parses.
func TestDashboardQueriesParse(t *testing.T) {
	queries, err := DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	panels := map[string]bool{}
	for _, q := range queries {
		panels[q.Panel] = true
		if strings.Contains(q.Expr, "$") {
			t.Errorf("%s: an unresolved variable in %q", q.Key(), q.Expr)
		}
	}
	for _, want := range []string{"AssumedRoles by state", "Not Ready or Stalled", "Time to expiry", "Time to next renewal", "Issuances and failures",
		"STS calls by operation and code", "STS latency by operation", "Workqueue depth", "Reconcile errors"} {
		if !panels[want] {
			t.Errorf("dashboard lacks the panel %q", want)
		}
	}
	// promtool checks each query's syntax through a rules file made of them.
	bin := promtool(t)
	var doc strings.Builder
	doc.WriteString("groups:\n- name: dashboard\n  rules:\n")
	for i, q := range queries {
		expr, _ := json.Marshal(q.Expr) // a JSON string is a YAML string
		fmt.Fprintf(&doc, "  - record: dashboard_query_%d\n    expr: %s\n", i, expr)
	}
	file := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(file, []byte(doc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("dashboard queries do not parse: %v\n%s", err, out)
	}
}
