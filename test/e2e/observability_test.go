package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/garpd/garpd/test/lab"
)

// Labels Prometheus adds to every scraped series, or to histograms.
var scrapeLabels = []string{"instance", "job", "le"}

var (
	metricName  = regexp.MustCompile(`\bgarpd_[a-z0-9_]+\b`)
	selector    = regexp.MustCompile(`\b(garpd_[a-z0-9_]+)\s*\{([^}]*)\}`)
	matcherName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	grouping    = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	legendLabel = regexp.MustCompile(`\{\{([a-zA-Z_][a-zA-Z0-9_]*)\}\}`) // Grafana legends: {{node}}
	ruleLabel   = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// exported is what an agent exports: per metric family, its label names.
type exported map[string]map[string]bool

// families parses a scrape into the metric families and their labels.
func (m metricsText) families(t *testing.T) exported {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(m)))
	if err != nil {
		t.Fatalf("parse the metrics: %v", err)
	}
	ex := exported{}
	for name, f := range fams {
		labels := map[string]bool{}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				labels[l.GetName()] = true
			}
		}
		ex[name] = labels
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				ex[name+suffix] = labels
			}
		}
	}
	return ex
}

// check returns what expr (a PromQL expression, a legend or an
// annotation) names that the agent does not export.
func (ex exported) check(expr string) []string {
	var bad []string
	all := map[string]bool{}
	for _, labels := range ex {
		for l := range labels {
			all[l] = true
		}
	}
	for _, l := range scrapeLabels {
		all[l] = true
	}
	for _, name := range metricName.FindAllString(expr, -1) {
		if _, ok := ex[name]; !ok {
			bad = append(bad, "metric "+name)
		}
	}
	for _, m := range selector.FindAllStringSubmatch(expr, -1) {
		for _, l := range matcherName.FindAllStringSubmatch(m[2], -1) {
			if labels, ok := ex[m[1]]; ok && !labels[l[1]] && !slices.Contains(scrapeLabels, l[1]) {
				bad = append(bad, fmt.Sprintf("label %s on %s", l[1], m[1]))
			}
		}
	}
	var names []string
	for _, m := range grouping.FindAllStringSubmatch(expr, -1) {
		names = append(names, strings.Split(m[1], ",")...)
	}
	for _, re := range []*regexp.Regexp{legendLabel, ruleLabel} {
		for _, m := range re.FindAllStringSubmatch(expr, -1) {
			names = append(names, m[1])
		}
	}
	for _, l := range names {
		if l = strings.TrimSpace(l); l != "" && !all[l] {
			bad = append(bad, "label "+l)
		}
	}
	return bad
}

// The dashboard and the alert rules name only metrics and labels an agent
// exports (checked against a running dynamic-mode agent with a health
// check), and promtool accepts the rules.
func TestDashboardsAndAlertsNameExportedMetrics(t *testing.T) {
	rules := filepath.Join(repoRoot(), "deploy", "prometheus", "garpd-rules.yaml")
	if promtool, err := exec.LookPath("promtool"); err != nil {
		t.Errorf("promtool is not installed (apt-get install prometheus): the rules are not checked")
	} else if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	} else if out, err := exec.Command(promtool, "test", "rules", strings.TrimSuffix(rules, ".yaml")+".test.yaml").CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}

	l := newLab(t, 2)
	check := "health:\n  checks:\n    - {name: router, exec: [\"true\"], interval: 500ms, timeout: 500ms}\n" +
		"garp:\n  verify:\n    targets: [192.0.2.1]\n" // verification's metrics too
	for _, n := range l.Nodes {
		if _, err := n.StartGarpd(garpdBin, dynConfig(l, n.Name, vips6, check)); err != nil {
			t.Fatal(err)
		}
	}
	waitSpread(t, l, vips6, 30*time.Second, map[string]int{"n1": 3, "n2": 3})
	// A wave puts a sample into the wave histogram (its only writer).
	if _, err := lab.Exec(l.Node("n1").NS, garpdBin, "announce", "--agent", "127.0.0.1:9497"); err != nil {
		t.Fatal(err)
	}
	// Verification's per-VIP series exist once each held VIP was probed:
	// within a round (1 s) of the takeover.
	var ex exported
	waitFor(t, 20*time.Second, "n1's first verification round", func() (bool, string) {
		ex = scrape(t, l.Node("n1")).families(t)
		return ex["garpd_vip_unverified"] != nil, "no garpd_vip_unverified yet"
	})

	var exprs []string
	raw, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert       string
				Expr        string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Fatal(err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			for _, a := range r.Annotations {
				exprs = append(exprs, a)
			}
		}
	}
	dash, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "grafana", "garpd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr, LegendFormat string }
		}
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr, tg.LegendFormat)
		}
	}
	if len(rf.Groups) == 0 || len(d.Panels) == 0 {
		t.Fatalf("%d rule groups, %d panels: nothing to check", len(rf.Groups), len(d.Panels))
	}
	for _, e := range exprs {
		if bad := ex.check(e); len(bad) > 0 {
			t.Errorf("%q names what the agent does not export: %s", e, strings.Join(bad, ", "))
		}
	}
	// The check itself: a name that is not exported is caught.
	if bad := ex.check(`sum by (nodename) (garpd_vrrp_stat{famly="ipv4"})`); len(bad) != 2 {
		t.Errorf("the checker missed a misspelt metric or label: %v", bad)
	}
	if !ex["garpd_node_info"]["node"] {
		t.Errorf("garpd_node_info{node} is not exported: dashboards cannot name nodes")
	}
}
