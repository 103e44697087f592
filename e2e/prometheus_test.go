package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// prometheusServer is a real Prometheus (Debian's /usr/bin/prometheus) on a
// loopback port with its own data directory.
type prometheusServer struct {
	base   string
	client *http.Client
}

// startPrometheus starts Prometheus with the configuration config and waits
// until it is ready.
func startPrometheus(t *testing.T, config string) *prometheusServer {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(config), 0o600))
	port := freePort(t)
	p := start(t, nil, "/usr/bin/prometheus",
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--log.level=warn")
	ps := &prometheusServer{base: fmt.Sprintf("http://127.0.0.1:%d", port), client: &http.Client{Timeout: 5 * time.Second}}
	eventually(t, 10*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("prometheus exited early:\n%s", p.out.String())
		default:
		}
		resp, err := ps.client.Get(ps.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "prometheus ready")
	return ps
}

// api GETs an /api/v1 path and decodes the data member of a successful answer.
func (ps *prometheusServer) api(t *testing.T, path string, query url.Values, data any) {
	t.Helper()
	resp, err := ps.client.Get(ps.base + "/api/v1/" + path + "?" + query.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var envelope struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &envelope), "%s: %s", path, body)
	require.Equal(t, "success", envelope.Status, "%s: %s", path, body)
	require.NoError(t, json.Unmarshal(envelope.Data, data), "%s: %s", path, body)
}

// promTarget is one active target of /api/v1/targets.
type promTarget struct {
	ScrapePool string `json:"scrapePool"`
	Health     string `json:"health"`
	LastError  string `json:"lastError"`
}

// targets returns the active targets by scrape pool (one target per pool here).
func (ps *prometheusServer) targets(t *testing.T) map[string]promTarget {
	t.Helper()
	var data struct {
		ActiveTargets []promTarget `json:"activeTargets"`
	}
	ps.api(t, "targets", url.Values{"state": {"active"}}, &data)
	out := map[string]promTarget{}
	for _, tg := range data.ActiveTargets {
		out[tg.ScrapePool] = tg
	}
	return out
}

// scalarQuery runs an instant query whose answer is one sample and returns
// its value; ok is false when the answer is empty.
func (ps *prometheusServer) scalarQuery(t *testing.T, query string) (float64, bool) {
	t.Helper()
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	ps.api(t, "query", url.Values{"query": {query}}, &data)
	require.Equal(t, "vector", data.ResultType)
	if len(data.Result) == 0 {
		return 0, false
	}
	require.Len(t, data.Result, 1, "query %s", query)
	s, _ := data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err)
	return v, true
}

func TestPrometheusScrapesTheAdminMetricsWithTheBearerToken(t *testing.T) {
	const token = "scrape-token-4f9a"
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w}, "OBSPROXY_ADMIN_TOKEN="+token)
	adminHostPort := strings.TrimPrefix(in.admin, "http://")

	// Two jobs on the same target: the right token, and a wrong one that
	// must be refused (so that "up" really depends on the token).
	ps := startPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: obsproxy
    authorization:
      credentials: %[1]q
    static_configs:
      - targets: [%[2]q]
  - job_name: wrong-token
    authorization:
      credentials: "not-the-token"
    static_configs:
      - targets: [%[2]q]
`, token, adminHostPort))

	const n = 30
	sendRequests(t, in, n)

	var targets map[string]promTarget
	eventually(t, 10*time.Second, func() bool {
		targets = ps.targets(t)
		return targets["obsproxy"].Health == "up" && targets["wrong-token"].Health == "down"
	}, "obsproxy target up, wrong-token target down; last %+v", targets)
	assert.Empty(t, targets["obsproxy"].LastError)
	assert.Contains(t, targets["wrong-token"].LastError, "401")

	var got float64
	eventually(t, 10*time.Second, func() bool {
		var ok bool
		got, ok = ps.scalarQuery(t, `sum(obsproxy_requests_total{job="obsproxy"})`)
		return ok && got == n
	}, "sum(obsproxy_requests_total) = %d in Prometheus; last %v", n, got)
	v, ok := ps.scalarQuery(t, `sum(obsproxy_requests_total{job="obsproxy",worker="u1",code="200",method="GET"})`)
	require.True(t, ok)
	assert.Equal(t, float64(n), v)
	v, ok = ps.scalarQuery(t, `obsproxy_build_info{job="obsproxy"}`)
	require.True(t, ok)
	assert.Equal(t, 1.0, v)
}

func TestPrometheusPromtoolChecksTheExposition(t *testing.T) {
	const token = "lint-token-77"
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w}, "OBSPROXY_ADMIN_TOKEN="+token)
	// Every family with series: requests of each kind, including an error.
	sendRequests(t, in, 5)
	code, _ := in.get(t, "/status/503")
	require.Equal(t, http.StatusServiceUnavailable, code)

	req, err := http.NewRequest(http.MethodGet, in.admin+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	exposition, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", exposition)
	require.Contains(t, string(exposition), "\nobsproxy_requests_total{")

	cmd := exec.Command("/usr/bin/promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "running promtool: %v", err)
	// promtool prints one "name problem" line per lint problem. The Go and
	// process collectors (go_*, process_*) are the Prometheus client's, not
	// ours: their problems are tolerated. Everything else fails the test.
	var ours []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "go_") || strings.HasPrefix(line, "process_") {
			t.Logf("promtool, on the client's collectors (tolerated): %s", line)
			continue
		}
		ours = append(ours, line)
	}
	assert.Empty(t, ours, "promtool check metrics (exit %d):\n%s", ee.ExitCode(), out)
}
