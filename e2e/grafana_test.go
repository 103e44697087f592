package e2e

// The Grafana dashboard (deploy/grafana/dashboards/obsproxy.json), its
// provisioning, and the Prometheus rules (deploy/prometheus): every query
// parses, every datasource is the provisioned one, and every metric name they
// query exists in the exposition of a real obsproxy in front of a real uvicorn
// worker.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// dashboardFile is the dashboard, relative to the repository root.
const dashboardFile = "deploy/grafana/dashboards/obsproxy.json"

// specMetrics are the metric names of the spec (section 6), fixed by
// contract: the dashboard shows every one of them.
var specMetrics = []string{
	"obsproxy_active_connections", "obsproxy_connections", "obsproxy_connections_accepted_total",
	"obsproxy_in_flight_requests", "obsproxy_requests_total", "obsproxy_request_duration_seconds",
	"obsproxy_streams_active", "obsproxy_upstream_errors_total", "obsproxy_retries_total",
	"obsproxy_oldest_in_flight_seconds", "obsproxy_worker_up", "obsproxy_workers",
	"obsproxy_worker_uptime_seconds", "obsproxy_worker_started_total", "obsproxy_worker_stopped_total",
	"obsproxy_pool_uptime_seconds", "obsproxy_health_status", "obsproxy_probe_duration_seconds",
	"obsproxy_probes_total", "obsproxy_uptime_seconds", "obsproxy_build_info",
	// Section 9, the workers' own metrics.
	"obsproxy_worker_metrics_up", "obsproxy_worker_metrics_fetch_duration_seconds", "obsproxy_worker_metrics_errors_total",
}

// prometheusSynthetic are series that Prometheus records itself for every
// scrape target; no exposition carries them.
var prometheusSynthetic = map[string]string{
	"up": "recorded by Prometheus for each scrape (1 when the scrape succeeded)",
}

// exposedOnlyWithTLS are obsproxy metrics that exist only while the public
// listener serves TLS (spec section 11), so not on the plain obsproxy of
// TestGrafanaMetricsExist; the TLS tests (e2e/tls_test.go,
// e2e/tlsreload_test.go, e2e/acme_test.go) scrape them there.
var exposedOnlyWithTLS = map[string]string{
	"obsproxy_tls_certificate_not_after_seconds": "one series per certificate in use",
}

// promQuery is one query found in the dashboard or the rules.
type promQuery struct {
	where string // e.g. `panel "Requests/s" A`, `variable worker`, `rule ObsproxyWorkerStuck`
	expr  string
	// variable: a Grafana variable query (label_values(...)), not PromQL.
	variable bool
}

func loadDashboard(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, dashboardFile))
	require.NoError(t, err)
	var d map[string]any
	require.NoError(t, json.Unmarshal(raw, &d), dashboardFile)
	return d
}

// dashboardQueries returns every query of the dashboard: the expr of every
// panel target (rows' nested panels included) and annotation, and the query
// of every templating variable.
func dashboardQueries(t *testing.T, d map[string]any) []promQuery {
	t.Helper()
	var out []promQuery
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				where = fmt.Sprintf("panel %q", title)
			}
			if name, ok := v["name"].(string); ok {
				where = fmt.Sprintf("annotation %q", name)
			}
			if ref, ok := v["refId"].(string); ok {
				where += " " + ref
			}
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					out = append(out, promQuery{where: where, expr: s})
					continue
				}
				walk(where, x)
			}
		case []any:
			for _, x := range v {
				walk(where, x)
			}
		}
	}
	walk("dashboard", d["panels"])
	walk("dashboard", d["annotations"])
	templating, _ := d["templating"].(map[string]any)
	vars, _ := templating["list"].([]any)
	for _, v := range vars {
		v := v.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		q := v["query"]
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		s, ok := q.(string)
		require.True(t, ok, "variable %v: no query string", v["name"])
		out = append(out, promQuery{where: fmt.Sprintf("variable %v", v["name"]), expr: s, variable: true})
	}
	require.NotEmpty(t, out, "no query in %s", dashboardFile)
	return out
}

// ruleQueries returns the expr of every rule in the rule files of
// deploy/prometheus/prometheus.yml.
func ruleQueries(t *testing.T) []promQuery {
	t.Helper()
	pc := loadComposePromConfig(t, "deploy/prometheus/prometheus.yml")
	var out []promQuery
	for _, f := range pc.RuleFiles {
		matches, err := filepath.Glob(filepath.Join(repoRoot, "deploy/prometheus", f))
		require.NoError(t, err)
		require.NotEmpty(t, matches, "rule file %s", f)
		for _, m := range matches {
			raw, err := os.ReadFile(m)
			require.NoError(t, err)
			var rf struct {
				Groups []struct {
					Rules []struct {
						Alert, Record, Expr string
					}
				}
			}
			require.NoError(t, yaml.Unmarshal(raw, &rf), m)
			for _, g := range rf.Groups {
				for _, r := range g.Rules {
					out = append(out, promQuery{where: "rule " + r.Alert + r.Record, expr: r.Expr})
				}
			}
		}
	}
	return out
}

var (
	promStringRe   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	grafanaVarRe   = regexp.MustCompile(`\$(\{[^}]*\}|\w+)`)
	promBracesRe   = regexp.MustCompile(`\{[^}]*\}`)
	promBracketsRe = regexp.MustCompile(`\[[^\]]*\]`)
	promGroupingRe = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promTokenRe    = regexp.MustCompile(`[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?[A-Za-z]*|[A-Za-z_:][A-Za-z0-9_:]*`)
	labelValuesRe  = regexp.MustCompile(`^\s*label_values\((.*)\)\s*$`)
	promKeywords   = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "offset": true, "and": true, "or": true, "unless": true, "atan2": true,
		"inf": true, "nan": true, "start": true, "end": true,
	}
)

// promqlMetricNames returns the metric names a PromQL expression selects, in
// order of appearance: the identifiers left once string literals, Grafana
// variables, label matchers, ranges and grouping clauses are taken out, that
// are neither keywords nor followed by "(" (functions and aggregations).
func promqlMetricNames(expr string) []string {
	s := promStringRe.ReplaceAllString(expr, `""`)
	s = grafanaVarRe.ReplaceAllString(s, "")
	s = promBracesRe.ReplaceAllString(s, " ")
	s = promBracketsRe.ReplaceAllString(s, " ")
	s = promGroupingRe.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promTokenRe.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if c := tok[0]; c >= '0' && c <= '9' || c == '.' || promKeywords[strings.ToLower(tok)] {
			continue
		}
		if next := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(next, "(") {
			continue
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out
}

// variableSelector returns the PromQL part of a Grafana Prometheus variable
// query: the series selector of label_values(selector, label), "" for
// label_values(label), else the query itself.
func variableSelector(q string) string {
	m := labelValuesRe.FindStringSubmatch(q)
	if m == nil {
		return q
	}
	args := m[1]
	comma := strings.LastIndex(args, ",")
	if comma < 0 {
		return ""
	}
	return strings.TrimSpace(args[:comma])
}

// names returns the metric names q selects.
func (q promQuery) names() []string {
	if q.variable {
		return promqlMetricNames(variableSelector(q.expr))
	}
	return promqlMetricNames(q.expr)
}

func TestGrafanaPromQLNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		expr string
		want []string
	}{
		{"bare name", `obsproxy_in_flight_requests`, []string{"obsproxy_in_flight_requests"}},
		{"matchers, variables, grouping", `sum by (worker) (rate(obsproxy_requests_total{instance=~"$instance", code=~"5.."}[$__rate_interval]))`, []string{"obsproxy_requests_total"}},
		{"histogram bucket", `histogram_quantile(0.95, sum by (worker, le) (rate(obsproxy_request_duration_seconds_bucket{worker=~"$worker"}[5m])))`, []string{"obsproxy_request_duration_seconds_bucket"}},
		{"numbers, two selectors", `2 * sum by (instance) (a{status="healthy"}) + sum without(status) (b)`, []string{"a", "b"}},
		{"vector matching, offset, bool, exponent", `x / on(instance) group_left(version) y offset 5m > bool 1e3`, []string{"x", "y"}},
		{"range", `max_over_time(obsproxy_oldest_in_flight_seconds[2m]) > 30`, []string{"obsproxy_oldest_in_flight_seconds"}},
		{"parentheses inside a label value", `up{job="obsproxy"} == 0 or absent(z{label="a b (c)"})`, []string{"up", "z"}},
		{"formatted variable, subquery", `rate(process_cpu_seconds_total{instance=~"${instance:regex}"}[1m:10s])`, []string{"process_cpu_seconds_total"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, promqlMetricNames(tc.expr), tc.expr)
		})
	}
	for q, want := range map[string][]string{
		`label_values(obsproxy_worker_up{instance=~"$instance"}, worker)`: {"obsproxy_worker_up"},
		`label_values(obsproxy_build_info, instance)`:                     {"obsproxy_build_info"},
		`label_values(instance)`:                                          nil,
	} {
		assert.Equal(t, want, promQuery{expr: q, variable: true}.names(), q)
	}
}

func TestGrafanaDashboard(t *testing.T) {
	d := loadDashboard(t)
	uid := provisionedDatasource(t).UID
	assert.NotEmpty(t, d["uid"], "a fixed dashboard uid keeps its URL stable")
	assert.NotEmpty(t, d["title"])

	// Every datasource reference is the provisioned Prometheus, by uid, or
	// Grafana's own (the built-in annotations).
	var refs int
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "datasource" {
					ds, ok := x.(map[string]any)
					if assert.True(t, ok, "datasource %v: name it by {type, uid}", x) {
						refs++
						if ds["type"] != "grafana" {
							assert.Equal(t, map[string]any{"type": "prometheus", "uid": uid}, ds)
						}
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d)
	assert.Greater(t, refs, 10)

	ids := map[float64]bool{}
	panels, _ := d["panels"].([]any)
	require.NotEmpty(t, panels)
	for _, p := range panels {
		p := p.(map[string]any)
		id, _ := p["id"].(float64)
		assert.False(t, ids[id], "panel id %v used twice", id)
		ids[id] = true
		grid, _ := p["gridPos"].(map[string]any)
		require.NotNil(t, grid, "panel %v has no gridPos", p["title"])
		assert.LessOrEqual(t, grid["x"].(float64)+grid["w"].(float64), 24.0, "panel %v is wider than the grid", p["title"])
		if p["type"] == "row" {
			continue
		}
		targets, _ := p["targets"].([]any)
		assert.NotEmpty(t, targets, "panel %v queries nothing", p["title"])
		for _, tg := range targets {
			expr, _ := tg.(map[string]any)["expr"].(string)
			assert.NotEmpty(t, expr, "panel %v: a target without expr", p["title"])
		}
	}
}

// grafanaDatasource is one provisioned datasource.
type grafanaDatasource struct {
	Name, Type, UID, URL, Access string
}

func provisionedDatasource(t *testing.T) grafanaDatasource {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy/grafana/provisioning/datasources/prometheus.yml"))
	require.NoError(t, err)
	var f struct{ Datasources []grafanaDatasource }
	require.NoError(t, yaml.Unmarshal(raw, &f))
	require.Len(t, f.Datasources, 1)
	ds := f.Datasources[0]
	require.NotEmpty(t, ds.UID, "the dashboards name the datasource by a fixed uid")
	return ds
}

func TestGrafanaProvisioning(t *testing.T) {
	c := loadCompose(t)
	name, grafana := c.serviceWithImage(t, "grafana/grafana:")
	env := grafana.Environment

	t.Run("datasource is the compose Prometheus", func(t *testing.T) {
		ds := provisionedDatasource(t)
		assert.Equal(t, "prometheus", ds.Type)
		assert.Equal(t, "proxy", ds.Access, "Grafana's server queries Prometheus; the browser cannot reach it")
		host, port, err := net.SplitHostPort(strings.TrimPrefix(ds.URL, "http://"))
		require.NoError(t, err, "datasource url %q", ds.URL)
		prom, ok := c.Services[host]
		require.True(t, ok, "datasource url %q names no service", ds.URL)
		listen, _ := cmdFlag(prom.Command, "--web.listen-address")
		assert.Equal(t, port, composeAddrPort(t, orDefault(listen, ":9090")), "datasource url %q", ds.URL)
	})

	t.Run("provisioning and dashboards are mounted from the repository", func(t *testing.T) {
		assert.Equal(t, "deploy/grafana/provisioning", grafana.bindSource("/etc/grafana/provisioning"))
		raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy/grafana/provisioning/dashboards/obsproxy.yml"))
		require.NoError(t, err)
		var f struct {
			Providers []struct {
				Type    string
				Options struct{ Path string }
			}
		}
		require.NoError(t, yaml.Unmarshal(raw, &f))
		require.Len(t, f.Providers, 1)
		assert.Equal(t, "file", f.Providers[0].Type)
		src := grafana.bindSource(f.Providers[0].Options.Path)
		require.NotEmpty(t, src, "the provider's path %s is not mounted from the repository", f.Providers[0].Options.Path)
		assert.Equal(t, path.Dir(dashboardFile), src)

		home := env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
		require.NotEmpty(t, home)
		assert.Equal(t, dashboardFile, grafana.bindSource(home), "the home dashboard")
	})

	t.Run("anonymous read-only, no password", func(t *testing.T) {
		assert.Equal(t, "true", env["GF_AUTH_ANONYMOUS_ENABLED"])
		assert.Equal(t, "Viewer", env["GF_AUTH_ANONYMOUS_ORG_ROLE"])
		assert.Equal(t, "true", env["GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION"], "no admin account, so no admin password")
		assert.Equal(t, "true", env["GF_AUTH_DISABLE_LOGIN_FORM"])
		assert.Equal(t, "false", env["GF_AUTH_BASIC_ENABLED"])
		for svc, s := range c.Services {
			for k := range s.Environment {
				assert.NotContains(t, strings.ToUpper(k), "PASSWORD", "%s sets %s", svc, k)
			}
		}
		for _, spec := range grafana.Ports {
			assert.True(t, parseComposePort(t, spec).loopback(), "%s publishes %q beyond loopback", name, spec)
		}
	})
}

func TestGrafanaQueriesParse(t *testing.T) {
	// promtool parses every query as a recording rule, once the Grafana
	// variables are replaced by what Grafana sends: a duration for the
	// $__interval family, a regex matching everything for the others.
	promtool, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool is missing: run scripts/deps.sh (Debian package prometheus)")
	intervalRe := regexp.MustCompile(`\$__(rate_)?interval|\$__range`)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, q := range dashboardQueries(t, loadDashboard(t)) {
		expr := q.expr
		if q.variable {
			if expr = variableSelector(expr); expr == "" {
				continue
			}
		}
		expr = intervalRe.ReplaceAllString(expr, "1m")
		expr = grafanaVarRe.ReplaceAllString(expr, ".*")
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: expr})
	}
	raw, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	require.NoError(t, os.WriteFile(file, raw, 0o644))
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	require.NoError(t, err, "promtool check rules (the dashboard's queries):\n%s\n%s", out, raw)
	assert.Contains(t, string(out), fmt.Sprintf("SUCCESS: %d rules found", len(rules)))
}

// exposedFamilies scrapes obsproxy's /metrics: family name -> type.
func exposedFamilies(t *testing.T, in *instance) map[string]dto.MetricType {
	t.Helper()
	mfs, err := in.metrics(t).Gather()
	require.NoError(t, err)
	out := map[string]dto.MetricType{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetType()
	}
	return out
}

// familyOf maps a queried series name to the family that exposes it: itself,
// or a histogram's (summary's) family for a _bucket, _sum or _count series.
func familyOf(name string, families map[string]dto.MetricType) (string, bool) {
	if _, ok := families[name]; ok {
		return name, true
	}
	for suffix, types := range map[string][]dto.MetricType{
		"_bucket": {dto.MetricType_HISTOGRAM},
		"_sum":    {dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY},
		"_count":  {dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY},
	} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if typ, ok := families[base]; ok && slices.Contains(types, typ) {
				return base, true
			}
		}
	}
	return "", false
}

func TestGrafanaMetricsExist(t *testing.T) {
	dash := dashboardQueries(t, loadDashboard(t))
	rules := ruleQueries(t)
	where := map[string][]string{} // metric name -> queries naming it
	for _, q := range append(dash, rules...) {
		for _, n := range q.names() {
			where[n] = append(where[n], q.where)
		}
	}
	names := make([]string, 0, len(where))
	for n := range where {
		names = append(names, n)
	}
	slices.Sort(names)

	// A real obsproxy in front of a real uvicorn worker, and one request
	// through it: nothing else is opened (no stream, no failure). The
	// workers' own metrics are on, so that the panels of the example app's
	// and the workers' process metrics find their series.
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w}, "OBSPROXY_WORKER_METRICS_PATH=/metrics")
	before := exposedFamilies(t, in)
	code, _ := in.get(t, "/")
	require.Equal(t, http.StatusOK, code)
	var after map[string]dto.MetricType
	eventually(t, 5*time.Second, func() bool {
		after = exposedFamilies(t, in)
		_, ok := after["obsproxy_requests_total"]
		return ok
	}, "the request counted in obsproxy_requests_total")

	var missing, suffixed, withTraffic, synthetic []string
	dashFamilies := map[string]bool{}
	for _, n := range names {
		if why, ok := prometheusSynthetic[n]; ok {
			synthetic = append(synthetic, fmt.Sprintf("%s (%s; in %s)", n, why, strings.Join(where[n], ", ")))
			continue
		}
		if why, ok := exposedOnlyWithTLS[n]; ok {
			synthetic = append(synthetic, fmt.Sprintf("%s (only with TLS: %s; in %s)", n, why, strings.Join(where[n], ", ")))
			continue
		}
		family, ok := familyOf(n, after)
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (in %s)", n, strings.Join(where[n], ", ")))
			continue
		}
		if family != n {
			suffixed = append(suffixed, n+" -> "+family)
		}
		if _, ok := before[family]; !ok {
			withTraffic = append(withTraffic, family)
		}
		for _, q := range dash {
			if slices.Contains(q.names(), n) {
				dashFamilies[family] = true
			}
		}
	}
	t.Logf("queried metric names: %d", len(names))
	t.Logf("histogram series mapped to their family: %v", suffixed)
	t.Logf("families absent before the first request, present after it: %v", withTraffic)
	t.Logf("not exposed by obsproxy, by design: %v", synthetic)
	assert.Empty(t, missing, "queried, but absent from obsproxy's /metrics after a request")

	var unshown []string
	for _, m := range specMetrics {
		if !dashFamilies[m] {
			unshown = append(unshown, m)
		}
	}
	assert.Empty(t, unshown, "spec metrics the dashboard does not query")
}
