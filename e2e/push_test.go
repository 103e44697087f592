package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// victoriaMetrics is a real single-node VictoriaMetrics (Debian's
// /usr/bin/victoria-metrics) on a loopback port with its own data directory.
type victoriaMetrics struct {
	base           string
	user, password string // HTTP basic auth, when set
	client         *http.Client
}

// startVictoriaMetrics starts VictoriaMetrics, requiring basic auth when
// user is not empty, and waits until it answers.
func startVictoriaMetrics(t *testing.T, user, password string) *victoriaMetrics {
	t.Helper()
	port := freePort(t)
	args := []string{
		fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port),
		"-storageDataPath=" + t.TempDir(),
		"-retentionPeriod=1d",
		// Queries see samples at once rather than 30 s late.
		"-search.latencyOffset=0s",
		"-search.disableCache",
		"-loggerLevel=WARN",
	}
	if user != "" {
		args = append(args, "-httpAuth.username="+user, "-httpAuth.password="+password)
	}
	p := start(t, nil, "/usr/bin/victoria-metrics", args...)
	vm := &victoriaMetrics{base: fmt.Sprintf("http://127.0.0.1:%d", port), user: user, password: password,
		client: &http.Client{Timeout: 5 * time.Second}}
	eventually(t, 10*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("victoria-metrics exited early:\n%s", p.out.String())
		default:
		}
		code, _, err := vm.do("/health", nil)
		return err == nil && code == http.StatusOK
	}, "victoria-metrics ready")
	return vm
}

// importURL is the push URL for obsproxy, with the credentials in it.
func (vm *victoriaMetrics) importURL() string {
	u, _ := url.Parse(vm.base + "/api/v1/import/prometheus")
	if vm.user != "" {
		u.User = url.UserPassword(vm.user, vm.password)
	}
	return u.String()
}

// do GETs path with query, with the basic auth credentials.
func (vm *victoriaMetrics) do(path string, query url.Values) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, vm.base+path+"?"+query.Encode(), nil)
	if err != nil {
		return 0, nil, err
	}
	if vm.user != "" {
		req.SetBasicAuth(vm.user, vm.password)
	}
	resp, err := vm.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// vmSeries is one line of /api/v1/export.
type vmSeries struct {
	Metric     map[string]string `json:"metric"`
	Values     []float64         `json:"values"`
	Timestamps []int64           `json:"timestamps"`
}

// latest returns the newest value of the series of name.
func (s vmSeries) latest() float64 {
	last := 0
	for i, ts := range s.Timestamps {
		if ts >= s.Timestamps[last] {
			last = i
		}
	}
	return s.Values[last]
}

// export flushes what VictoriaMetrics has received to searchable storage,
// then returns every series of name with all their raw samples.
func (vm *victoriaMetrics) export(t *testing.T, name string) []vmSeries {
	t.Helper()
	code, body, err := vm.do("/internal/force_flush", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, "force_flush: %s", body)
	code, body, err = vm.do("/api/v1/export", url.Values{"match[]": {name}})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, "export: %s", body)
	var out []vmSeries
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s vmSeries
		require.NoError(t, json.Unmarshal(sc.Bytes(), &s), "export line %s", sc.Text())
		out = append(out, s)
	}
	return out
}

// latestSum is the sum over the series of name whose labels include labels
// of each one's newest value, and how many series there were.
func (vm *victoriaMetrics) latestSum(t *testing.T, name string, labels map[string]string) (float64, int) {
	t.Helper()
	var sum float64
	var n int
	for _, s := range vm.export(t, name) {
		if hasLabels(s.Metric, labels) {
			sum += s.latest()
			n++
		}
	}
	return sum, n
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// sendRequests sends n GETs through obsproxy and requires a 200 for each.
func sendRequests(t *testing.T, in *instance, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		code, body := in.get(t, fmt.Sprintf("/anything/%d", i))
		require.Equal(t, http.StatusOK, code, body)
	}
}

func TestPushToVictoriaMetricsCarriesTheTrafficAndTheExtraLabels(t *testing.T) {
	// Basic auth on VictoriaMetrics: the credentials of the push URL must
	// become an Authorization header, or nothing lands.
	vm := startVictoriaMetrics(t, "obsproxy", "vm-secret-pw")
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w},
		"OBSPROXY_PUSH_URL="+vm.importURL(),
		"OBSPROXY_PUSH_INTERVAL=1s",
		`OBSPROXY_PUSH_EXTRA_LABELS=env="e2e"`)

	const n = 25
	sendRequests(t, in, n)

	var got float64
	eventually(t, 10*time.Second, func() bool {
		got, _ = vm.latestSum(t, "obsproxy_requests_total", map[string]string{"env": "e2e"})
		return got == n
	}, "obsproxy_requests_total{env=\"e2e\"} = %d in VictoriaMetrics; last %v", n, got)

	series := vm.export(t, "obsproxy_requests_total")
	require.NotEmpty(t, series)
	for _, s := range series {
		assert.Equal(t, "e2e", s.Metric["env"], "every pushed series has the extra label: %v", s.Metric)
		assert.Equal(t, "u1", s.Metric["worker"], "the series' own labels are kept: %v", s.Metric)
	}
	// The Go and process collectors travel too: the same registry as /metrics.
	_, goSeries := vm.latestSum(t, "go_goroutines", map[string]string{"env": "e2e"})
	assert.Equal(t, 1, goSeries)

	mfs := in.metrics(t)
	assert.GreaterOrEqual(t, metricstest.Sum(t, mfs, "obsproxy_pushes_total", map[string]string{"result": "success"}), 1.0)
	assert.Equal(t, 0.0, metricstest.Sum(t, mfs, "obsproxy_pushes_total", map[string]string{"result": "failure"}))
	assert.NotContains(t, in.proc.out.String(), "vm-secret-pw")
}

func TestPushFinalOnSIGTERM(t *testing.T) {
	vm := startVictoriaMetrics(t, "", "")
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	// A long interval: after the push at start, only the final push can
	// bring the requests to VictoriaMetrics within this test.
	in := startObsproxy(t, []*worker{w},
		"OBSPROXY_PUSH_URL="+vm.importURL(),
		"OBSPROXY_PUSH_INTERVAL=1h",
		`OBSPROXY_PUSH_EXTRA_LABELS=env="final"`)
	eventually(t, 10*time.Second, func() bool {
		_, n := vm.latestSum(t, "obsproxy_uptime_seconds", map[string]string{"env": "final"})
		return n == 1
	}, "the push at start reaches VictoriaMetrics")

	const n = 17
	sendRequests(t, in, n)
	require.Equal(t, 1.0, in.value(t, "obsproxy_pushes_total", map[string]string{"result": "success"}),
		"no periodic push since the one at start")

	in.proc.signal(syscall.SIGTERM)
	require.Equal(t, 0, in.proc.wait(t, 10*time.Second), "exit code after SIGTERM")
	assert.Contains(t, in.proc.out.String(), `msg="final metrics push sent"`)

	// VictoriaMetrics has answered the push; a new series may take a moment
	// to be searchable all the same.
	var got float64
	var series int
	eventually(t, 10*time.Second, func() bool {
		got, series = vm.latestSum(t, "obsproxy_requests_total", map[string]string{"env": "final", "worker": "u1"})
		return series > 0
	}, "the final push's obsproxy_requests_total in VictoriaMetrics")
	assert.Equal(t, 1, series)
	assert.Equal(t, float64(n), got, "the final push carries every request")
}

func TestPushToAClosedPortKeepsServingAndCountsFailures(t *testing.T) {
	const password = "push-pw-never-logged"
	closed := freePort(t) // nothing listens there
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w},
		fmt.Sprintf("OBSPROXY_PUSH_URL=http://obsproxy:%s@127.0.0.1:%d/api/v1/import/prometheus", password, closed),
		"OBSPROXY_PUSH_INTERVAL=1s")

	failures := func() float64 {
		return in.value(t, "obsproxy_pushes_total", map[string]string{"result": "failure"})
	}
	eventually(t, 5*time.Second, func() bool { return failures() >= 1 }, "a first failed push")
	first := failures()
	sendRequests(t, in, 10)
	eventually(t, 5*time.Second, func() bool { return failures() > first }, "failures keep being counted")
	assert.Equal(t, 0.0, in.value(t, "obsproxy_pushes_total", map[string]string{"result": "success"}))
	assert.Equal(t, 10.0, in.value(t, "obsproxy_requests_total", map[string]string{"code": "200"}), "still serving")

	// A failed final push does not change the exit code.
	in.proc.signal(syscall.SIGTERM)
	require.Equal(t, 0, in.proc.wait(t, 10*time.Second), "exit code after SIGTERM")
	logs := in.proc.out.String()
	assert.Contains(t, logs, `level=WARN msg="metrics push failed"`)
	assert.Contains(t, logs, "connection refused")
	assert.Contains(t, logs, fmt.Sprintf("obsproxy:xxxxx@127.0.0.1:%d", closed), "the URL is logged, redacted")
	assert.NotContains(t, logs, password)
}
