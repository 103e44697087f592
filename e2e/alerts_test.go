package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// promtool is Debian's, from the prometheus package that make deps installs.
const promtool = "/usr/bin/promtool"

// alertsFile is the rules file operators load, relative to the repository root.
const alertsFile = "deploy/prometheus/alerts.yml"

func requirePromtool(t *testing.T) {
	t.Helper()
	_, err := os.Stat(promtool)
	require.NoError(t, err, "%s is missing: install Debian's prometheus package (make deps)", promtool)
}

// TestAlertsRulesCheck runs promtool check rules on the shipped rules file:
// YAML shape, PromQL syntax, templates.
func TestAlertsRulesCheck(t *testing.T) {
	requirePromtool(t)
	cmd := exec.Command(promtool, "check", "rules", alertsFile)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check rules %s:\n%s", alertsFile, out)
	assert.Contains(t, string(out), "SUCCESS")
}

// TestAlertsRulesFire runs promtool test rules: for each alert, series that
// must make it fire (with the labels and annotations an operator receives)
// and series that must not.
func TestAlertsRulesFire(t *testing.T) {
	promtoolTestRules(t, alertsUnitTests)
}

// promtoolTestRules runs `promtool test rules` on tests, a promtool unit
// test file whose rule_files entry is RULES_FILE (replaced by
// deploy/prometheus/alerts.yml), and requires it to succeed.
func promtoolTestRules(t *testing.T, tests string) {
	t.Helper()
	requirePromtool(t)
	tests = strings.ReplaceAll(tests, "RULES_FILE", filepath.Join(repoRoot, alertsFile))
	path := filepath.Join(t.TempDir(), "alerts_test.yml")
	require.NoError(t, os.WriteFile(path, []byte(tests), 0o644))
	out, err := exec.Command(promtool, "test", "rules", path).CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
	assert.Contains(t, string(out), "SUCCESS")
}

// metricNameRe matches obsproxy metric names (at least one character after
// the prefix, so that prose such as "obsproxy_ metric" does not count).
var metricNameRe = regexp.MustCompile(`\bobsproxy_[a-z0-9_]+`)

// TestAlertsMetricsDocumented checks that every obsproxy_ metric the rules
// use is in the catalogue of docs/metrics.md (its ### headings), a
// histogram's _bucket, _count and _sum series by the histogram's name.
func TestAlertsMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "metrics.md"))
	require.NoError(t, err)
	catalogue := make(map[string]bool)
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "### ") {
			for _, name := range metricNameRe.FindAllString(line, -1) {
				catalogue[name] = true
			}
		}
	}
	require.GreaterOrEqual(t, len(catalogue), 15, "docs/metrics.md: too few ### metric headings found; has its layout changed?")

	rules, err := os.ReadFile(filepath.Join(repoRoot, alertsFile))
	require.NoError(t, err)
	used := metricNameRe.FindAllString(string(rules), -1)
	slices.Sort(used)
	used = slices.Compact(used)
	require.NotEmpty(t, used, "no obsproxy_ metric found in %s", alertsFile)
	for _, name := range used {
		base := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && catalogue[b] {
				base = b
			}
		}
		assert.True(t, catalogue[base], "%s uses %s, which docs/metrics.md does not describe", alertsFile, name)
	}
}

// alertsUnitTests is a promtool rule test file; RULES_FILE stands for the
// absolute path of deploy/prometheus/alerts.yml. Series carry the job and
// instance labels a scrape adds. Values are per minute (interval 1m).
const alertsUnitTests = `
rule_files:
  - RULES_FILE
evaluation_interval: 1m
tests:
  - name: ObsproxyDown
    interval: 1m
    input_series:
      - series: 'up{job="obsproxy",instance="op:9090"}'
        values: '1 0 0 0 0 0'
      - series: 'up{job="obsproxy",instance="op2:9090"}'
        values: '1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 2m
        alertname: ObsproxyDown
        exp_alerts: []
      - eval_time: 4m
        alertname: ObsproxyDown
        exp_alerts:
          - exp_labels: {severity: critical, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090 cannot be scraped"
              description: "Prometheus has not scraped op:9090 for 2 minutes: obsproxy is down, its admin listener is unreachable, or the scrape is refused (401/403: check the bearer token)."

  - name: ObsproxyUnhealthy
    interval: 1m
    input_series:
      - series: 'obsproxy_health_status{job="obsproxy",instance="op:9090",status="unhealthy"}'
        values: '1 0 0 1 1 1'
      - series: 'obsproxy_health_status{job="obsproxy",instance="op:9090",status="healthy"}'
        values: '0 1 1 0 0 0'
    alert_rule_test:
      # starting: unhealthy for less than a minute
      - eval_time: 1m
        alertname: ObsproxyUnhealthy
        exp_alerts: []
      - eval_time: 5m
        alertname: ObsproxyUnhealthy
        exp_alerts:
          - exp_labels: {severity: critical, job: obsproxy, instance: "op:9090", status: unhealthy}
            exp_annotations:
              summary: "obsproxy op:9090 reports unhealthy: no healthy pool"
              description: "/health has answered 503 for 1 minute: fewer than OBSPROXY_MIN_HEALTHY_WORKERS workers are up, every worker reports unhealthy, or probes are stale. Look at /health (detail) and obsproxy_worker_up."

  - name: ObsproxyCapacityLow and ObsproxyWorkerDown
    interval: 1m
    input_series:
      - series: 'obsproxy_worker_up{job="obsproxy",instance="op:9090",worker="w1"}'
        values: '1 1 1 1 1 1 1'
      - series: 'obsproxy_worker_up{job="obsproxy",instance="op:9090",worker="w2"}'
        values: '1 0 0 0 0 0 0'
      - series: 'obsproxy_worker_up{job="obsproxy",instance="op:9090",worker="w3"}'
        values: '1 1 0 0 0 0 0'
    alert_rule_test:
      # one of three down: not yet half
      - eval_time: 2m
        alertname: ObsproxyCapacityLow
        exp_alerts: []
      - eval_time: 5m
        alertname: ObsproxyCapacityLow
        exp_alerts:
          - exp_labels: {severity: critical, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090: fewer than half of its workers take traffic"
              description: "Only 33.33% of the workers are up. The others are down or report unhealthy; see obsproxy_worker_up per worker."
      - eval_time: 3m
        alertname: ObsproxyWorkerDown
        exp_alerts: []
      - eval_time: 4m
        alertname: ObsproxyWorkerDown
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090", worker: w2}
            exp_annotations:
              summary: "worker w2 of op:9090 is out of traffic"
              description: "Worker w2 has not been up for 3 minutes: its process is gone (connection refused) or its health check reports unhealthy. obsproxy_worker_uptime_seconds tells which: 0 means the process is not running."

  - name: ObsproxyWorkerRestarting
    interval: 1m
    input_series:
      # w1 starts every other minute; w2 started once, with obsproxy
      - series: 'obsproxy_worker_started_total{job="obsproxy",instance="op:9090",worker="w1"}'
        values: '1 1 2 2 3 3 4 4 5 5 6'
      - series: 'obsproxy_worker_started_total{job="obsproxy",instance="op:9090",worker="w2"}'
        values: '1 1 1 1 1 1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 10m
        alertname: ObsproxyWorkerRestarting
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090", worker: w1}
            exp_annotations:
              summary: "worker w1 of op:9090 restarted more than twice in 15 minutes"
              description: "obsproxy saw worker w1 start more than twice in 15 minutes. Check the worker's logs for crashes and its memory limits."

  - name: ObsproxyWorkerStuck
    interval: 1m
    input_series:
      # w1: requests hang until the 60s response timeout, again and again
      - series: 'obsproxy_oldest_in_flight_seconds{job="obsproxy",instance="op:9090",worker="w1"}'
        values: '0 20 40 55 0 20 40 55 0 20 40 55 0'
      # w2: one slow request of about 45s, then nothing
      - series: 'obsproxy_oldest_in_flight_seconds{job="obsproxy",instance="op:9090",worker="w2"}'
        values: '0 0 45 0 0 0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 5m
        alertname: ObsproxyWorkerStuck
        exp_alerts: []
      - eval_time: 12m
        alertname: ObsproxyWorkerStuck
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090", worker: w1}
            exp_annotations:
              summary: "worker w1 of op:9090 keeps requests in flight for more than 30s"
              description: "The oldest request in flight to w1 has been older than 30s for 5 minutes: the worker is probably stuck. A probe may still pass if the event loop is free between requests; py-spy dump on the worker shows where it waits."

  - name: ObsproxyHighErrorRatio, ObsproxyRetries, ObsproxyClientAborts
    interval: 1m
    input_series:
      - series: 'obsproxy_requests_total{job="obsproxy",instance="op:9090",worker="w1",code="200",method="GET"}'
        values: '0+1000x30'
      - series: 'obsproxy_requests_total{job="obsproxy",instance="op:9090",worker="w2",code="502",method="GET"}'
        values: '0+100x30'
      - series: 'obsproxy_requests_total{job="obsproxy",instance="op:9090",worker="none",code="503",method="POST"}'
        values: '0+10x30'
      - series: 'obsproxy_requests_total{job="obsproxy",instance="op:9090",worker="w1",code="499",method="GET"}'
        values: '0+90x30'
      - series: 'obsproxy_retries_total{job="obsproxy",instance="op:9090",worker="w2"}'
        values: '0+12x30'
      - series: 'obsproxy_retries_total{job="obsproxy",instance="op:9090",worker="w1"}'
        values: '0+0x30'
    alert_rule_test:
      # 110 5xx of 1200 requests a minute: 9.17%
      - eval_time: 3m
        alertname: ObsproxyHighErrorRatio
        exp_alerts: []
      - eval_time: 15m
        alertname: ObsproxyHighErrorRatio
        exp_alerts:
          - exp_labels: {severity: critical, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090: 9.167% of requests answered 5xx"
              description: "More than 5% of the requests have been answered with a 5xx for 5 minutes. sum by (worker, code) (rate(obsproxy_requests_total{code=~\"5..\"}[5m])) tells which worker and which code; worker=\"none\" with 503 means no worker was up."
      # 12 retries of 1200 requests a minute: 1%, not above it
      - eval_time: 20m
        alertname: ObsproxyRetries
        exp_alerts: []
      # 90 of 1200: 7.5%
      - eval_time: 10m
        alertname: ObsproxyClientAborts
        exp_alerts: []
      - eval_time: 25m
        alertname: ObsproxyClientAborts
        exp_alerts:
          - exp_labels: {severity: info, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090: 7.5% of requests abandoned by their clients (499)"
              description: "More than 5% of the requests end with the client gone before the answer. Compare the latency (obsproxy_request_duration_seconds) with the clients' timeouts."

  - name: ObsproxyRetries firing
    interval: 1m
    input_series:
      - series: 'obsproxy_requests_total{job="obsproxy",instance="op:9090",worker="w1",code="200",method="GET"}'
        values: '0+100x30'
      - series: 'obsproxy_retries_total{job="obsproxy",instance="op:9090",worker="w2"}'
        values: '0+5x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: ObsproxyRetries
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090 retries 5% of its requests"
              description: "More than 1% of the requests have been retried on another worker for 10 minutes. obsproxy_retries_total and obsproxy_upstream_errors_total by worker and reason tell which worker fails and how."

  - name: ObsproxyHighLatency
    interval: 1m
    input_series:
      # w1: 10% under 0.5s, 90% between 1s and 2.5s
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="w1",le="0.5"}'
        values: '0+10x20'
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="w1",le="1"}'
        values: '0+10x20'
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="w1",le="2.5"}'
        values: '0+100x20'
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="w1",le="+Inf"}'
        values: '0+100x20'
      # w2: everything under 0.5s
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="w2",le="0.5"}'
        values: '0+100x20'
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="w2",le="1"}'
        values: '0+100x20'
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="w2",le="2.5"}'
        values: '0+100x20'
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="w2",le="+Inf"}'
        values: '0+100x20'
      # worker="none": answered at once, but never part of this alert
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="none",le="2.5"}'
        values: '0+0x20'
      - series: 'obsproxy_request_duration_seconds_bucket{job="obsproxy",instance="op:9090",worker="none",le="+Inf"}'
        values: '0+100x20'
    alert_rule_test:
      - eval_time: 15m
        alertname: ObsproxyHighLatency
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090", worker: w1}
            exp_annotations:
              summary: "worker w1 of op:9090: p95 latency 2.417s"
              description: "The 95th percentile of request duration on w1 has been above 1s for 10 minutes."

  - name: ObsproxyProbeFailures
    interval: 1m
    input_series:
      # w1 up, but 1 probe in 6 fails
      - series: 'obsproxy_probes_total{job="obsproxy",instance="op:9090",worker="w1",result="healthy"}'
        values: '0+25x30'
      - series: 'obsproxy_probes_total{job="obsproxy",instance="op:9090",worker="w1",result="unhealthy"}'
        values: '0+5x30'
      - series: 'obsproxy_worker_up{job="obsproxy",instance="op:9090",worker="w1"}'
        values: '1x30'
      # w2 down: every probe fails, ObsproxyWorkerDown covers it
      - series: 'obsproxy_probes_total{job="obsproxy",instance="op:9090",worker="w2",result="healthy"}'
        values: '0+0x30'
      - series: 'obsproxy_probes_total{job="obsproxy",instance="op:9090",worker="w2",result="unhealthy"}'
        values: '0+30x30'
      - series: 'obsproxy_worker_up{job="obsproxy",instance="op:9090",worker="w2"}'
        values: '0x30'
    alert_rule_test:
      - eval_time: 10m
        alertname: ObsproxyProbeFailures
        exp_alerts: []
      - eval_time: 25m
        alertname: ObsproxyProbeFailures
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090", worker: w1}
            exp_annotations:
              summary: "worker w1 of op:9090 fails 16.67% of its probes"
              description: "More than 10% of the probes of w1 have been unhealthy for 15 minutes while it stays up. Compare obsproxy_probe_duration_seconds with OBSPROXY_HEALTH_TIMEOUT, and read the worker's own checks (verbose /health)."

  - name: ObsproxyConnectionsNearLimit and ObsproxyFileDescriptorsNearLimit
    interval: 1m
    input_series:
      - series: 'obsproxy_active_connections{job="obsproxy",instance="op:9090"}'
        values: '900x10'
      - series: 'obsproxy_active_connections{job="obsproxy",instance="op2:9090"}'
        values: '100x10'
      - series: 'process_open_fds{job="obsproxy",instance="op:9090"}'
        values: '900x10'
      - series: 'process_max_fds{job="obsproxy",instance="op:9090"}'
        values: '1000x10'
      - series: 'obsproxy_build_info{job="obsproxy",instance="op:9090",version="0.1.0",goversion="go1.26.0"}'
        values: '1x10'
      # a worker's own process near its limit (OBSPROXY_WORKER_METRICS_PATH): not obsproxy's, no alert
      - series: 'process_open_fds{job="obsproxy",instance="op:9090",worker="w1"}'
        values: '990x10'
      - series: 'process_max_fds{job="obsproxy",instance="op:9090",worker="w1"}'
        values: '1000x10'
      # another Go program near its limit: not obsproxy, no alert
      - series: 'process_open_fds{job="other",instance="other:8080"}'
        values: '990x10'
      - series: 'process_max_fds{job="other",instance="other:8080"}'
        values: '1000x10'
    alert_rule_test:
      - eval_time: 7m
        alertname: ObsproxyConnectionsNearLimit
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090 holds 900 client connections"
              description: "Open client connections are near OBSPROXY_MAX_CONNECTIONS. WebSockets and idle keep-alive connections count too (obsproxy_connections by state)."
      - eval_time: 7m
        alertname: ObsproxyFileDescriptorsNearLimit
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090 uses 90% of its file descriptors"
              description: "Raise the open-files limit (ulimit -n, LimitNOFILE, the container runtime's nofile) or set OBSPROXY_MAX_CONNECTIONS below it."
`
