// Package monitoring reads the alert rules and the Grafana dashboard that rolekeeper ships
// (config/prometheus, config/grafana; the Helm chart carries copies), for the tests that check
// them: promtool unit tests here, a real Prometheus scraping the operator in test/e2e.
package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// Paths of the shipped files, relative to the repository root, and of the chart's copies.
const (
	RulesFile          = "config/prometheus/rolekeeper.rules.yaml"
	RulesTestFile      = "config/prometheus/rolekeeper.rules.test.yaml"
	DashboardFile      = "config/grafana/rolekeeper-dashboard.json"
	ChartRulesFile     = "charts/rolekeeper/files/rolekeeper.rules.yaml"
	ChartDashboardFile = "charts/rolekeeper/files/rolekeeper-dashboard.json"
)

// Rule is one alerting rule.
type Rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// Rules reads the alerting rules of RulesFile.
func Rules() ([]Rule, error) {
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), RulesFile))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []Rule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", RulesFile, err)
	}
	var out []Rule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// Query is one panel query of the dashboard.
type Query struct {
	Panel string // the panel's title
	RefID string
	Expr  string // as Grafana sends it when every namespace is selected
}

// Key names the query in test tables: "panel title/refId".
func (q Query) Key() string { return q.Panel + "/" + q.RefID }

// DashboardQueries reads every panel query of DashboardFile, with the dashboard's variables
// replaced by what Grafana sends for "All" (their allValue).
func DashboardQueries() ([]Query, error) {
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), DashboardFile))
	if err != nil {
		return nil, err
	}
	var dash struct {
		Templating struct {
			List []struct {
				Name     string `json:"name"`
				Type     string `json:"type"`
				AllValue string `json:"allValue"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		return nil, fmt.Errorf("%s: %w", DashboardFile, err)
	}
	var vars []string
	for _, v := range dash.Templating.List {
		if v.Type == "query" {
			vars = append(vars, "$"+v.Name, v.AllValue)
		}
	}
	replace := strings.NewReplacer(vars...)
	var out []Query
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			return nil, fmt.Errorf("panel %q has no query", p.Title)
		}
		for _, t := range p.Targets {
			if t.Expr == "" || t.RefID == "" {
				return nil, fmt.Errorf("panel %q has a target without expr or refId", p.Title)
			}
			out = append(out, Query{Panel: p.Title, RefID: t.RefID, Expr: replace.Replace(t.Expr)})
		}
	}
	return out, nil
}
