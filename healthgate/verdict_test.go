package healthgate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// jsonOfSize returns a JSON object with the given status whose encoding is
// exactly n bytes long.
func jsonOfSize(t *testing.T, n int, status string) []byte {
	t.Helper()
	head := `{"status":"` + status + `","pad":"`
	tail := `"}`
	pad := n - len(head) - len(tail)
	require.GreaterOrEqual(t, pad, 0)
	body := []byte(head + strings.Repeat("x", pad) + tail)
	require.Len(t, body, n)
	require.True(t, json.Valid(body))
	return body
}

// TestClassify walks every row of the probe verdict rule of spec section 3.
func TestClassify(t *testing.T) {
	const (
		jsonCT   = "application/json"
		healthCT = "application/health+json"
		textCT   = "text/plain; charset=utf-8"
	)
	tests := []struct {
		name   string
		code   int
		ct     string
		body   string
		health lifecycle.Health
		detail string // checked when set; a healthy verdict must have none
	}{
		// 2xx that is not JSON.
		{name: "plain text 200", code: 200, ct: textCT, body: "OK", health: lifecycle.Healthy},
		{name: "plain text 200 without content type", code: 200, body: "alive\n", health: lifecycle.Healthy},
		{name: "204 empty", code: 204, health: lifecycle.Healthy},
		{name: "200 empty", code: 200, health: lifecycle.Healthy},
		{name: "html 200", code: 200, ct: "text/html", body: "<h1>up</h1>", health: lifecycle.Healthy},
		// A JSON status that means healthy.
		{name: "json healthy", code: 200, ct: jsonCT, body: `{"status":"healthy"}`, health: lifecycle.Healthy},
		{name: "json ok", code: 200, ct: jsonCT, body: `{"status":"ok"}`, health: lifecycle.Healthy},
		{name: "json pass", code: 200, ct: jsonCT, body: `{"status":"pass"}`, health: lifecycle.Healthy},
		{name: "json up", code: 200, ct: jsonCT, body: `{"status":"up"}`, health: lifecycle.Healthy},
		{name: "json OK upper case", code: 200, ct: jsonCT, body: `{"status":"OK"}`, health: lifecycle.Healthy},
		{name: "json Healthy mixed case", code: 200, ct: jsonCT, body: `{"status":"Healthy"}`, health: lifecycle.Healthy},
		{name: "json with charset parameter", code: 200, ct: "application/json; charset=utf-8", body: `{"status":"ok"}`, health: lifecycle.Healthy},
		{name: "json 201 healthy", code: 201, ct: jsonCT, body: `{"status":"up"}`, health: lifecycle.Healthy},
		{name: "json without status", code: 200, ct: jsonCT, body: `{"uptime_seconds":12,"pid":7}`, health: lifecycle.Healthy},
		{name: "json empty object", code: 200, ct: jsonCT, body: `{}`, health: lifecycle.Healthy},
		{name: "json null status is no status", code: 200, ct: jsonCT, body: `{"status":null}`, health: lifecycle.Healthy},
		// Degraded.
		{name: "json degraded", code: 200, ct: jsonCT, body: `{"status":"degraded"}`, health: lifecycle.Degraded},
		{name: "json warn", code: 200, ct: jsonCT, body: `{"status":"warn"}`, health: lifecycle.Degraded},
		{name: "json WARN upper case", code: 200, ct: jsonCT, body: `{"status":"WARN"}`, health: lifecycle.Degraded},
		// Unhealthy by the worker's own word.
		{name: "json unhealthy", code: 200, ct: jsonCT, body: `{"status":"unhealthy"}`, health: lifecycle.Unhealthy},
		{name: "json fail", code: 200, ct: jsonCT, body: `{"status":"fail"}`, health: lifecycle.Unhealthy},
		{name: "json error", code: 200, ct: jsonCT, body: `{"status":"error"}`, health: lifecycle.Unhealthy},
		{name: "json down", code: 200, ct: jsonCT, body: `{"status":"down"}`, health: lifecycle.Unhealthy},
		{name: "json unknown status", code: 200, ct: jsonCT, body: `{"status":"banana"}`, health: lifecycle.Unhealthy},
		{name: "json empty status", code: 200, ct: jsonCT, body: `{"status":""}`, health: lifecycle.Unhealthy},
		{name: "json status is a number", code: 200, ct: jsonCT, body: `{"status":1}`, health: lifecycle.Unhealthy},
		{name: "json status is a bool", code: 200, ct: jsonCT, body: `{"status":true}`, health: lifecycle.Unhealthy},
		{name: "json status is an object", code: 200, ct: jsonCT, body: `{"status":{"db":"ok"}}`, health: lifecycle.Unhealthy},
		// Non-2xx, whatever the body says.
		{name: "503 with healthy json", code: 503, ct: jsonCT, body: `{"status":"healthy"}`, health: lifecycle.Unhealthy, detail: "status 503"},
		{name: "503 plain", code: 503, ct: textCT, body: "Service Unavailable", health: lifecycle.Unhealthy, detail: "status 503"},
		{name: "500", code: 500, ct: textCT, body: "boom", health: lifecycle.Unhealthy, detail: "status 500"},
		{name: "301", code: 301, health: lifecycle.Unhealthy, detail: "status 301"},
		{name: "302", code: 302, health: lifecycle.Unhealthy, detail: "status 302"},
		{name: "404", code: 404, ct: jsonCT, body: `{"detail":"Not Found"}`, health: lifecycle.Unhealthy, detail: "status 404"},
		{name: "429", code: 429, health: lifecycle.Unhealthy, detail: "status 429"},
		{name: "503 with malformed json", code: 503, ct: jsonCT, body: `{oops`, health: lifecycle.Unhealthy, detail: "status 503"},
		// Malformed JSON: only a JSON content type makes it a failure.
		{name: "malformed json under application/json", code: 200, ct: jsonCT, body: `{"status":"ok"`, health: lifecycle.Unhealthy, detail: "malformed JSON"},
		{name: "garbage under application/json", code: 200, ct: jsonCT, body: `OK`, health: lifecycle.Unhealthy, detail: "malformed JSON"},
		{name: "malformed json under text/plain", code: 200, ct: textCT, body: `{"status":"ok"`, health: lifecycle.Healthy},
		{name: "brace text under text/plain", code: 200, ct: textCT, body: `{not json at all}`, health: lifecycle.Healthy},
		// JSON mislabelled text/plain is read as JSON.
		{name: "json object under text/plain with status unhealthy", code: 200, ct: textCT, body: `{"status":"unhealthy"}`, health: lifecycle.Unhealthy},
		{name: "json object under text/plain with status degraded", code: 200, ct: textCT, body: ` {"status":"warn"}`, health: lifecycle.Degraded},
		{name: "json object without content type with status ok", code: 200, body: `{"status":"ok"}`, health: lifecycle.Healthy},
		// +json types are JSON.
		{name: "health+json pass", code: 200, ct: healthCT, body: `{"status":"pass"}`, health: lifecycle.Healthy},
		{name: "health+json warn", code: 200, ct: healthCT, body: `{"status":"warn"}`, health: lifecycle.Degraded},
		{name: "health+json fail", code: 200, ct: healthCT, body: `{"status":"fail"}`, health: lifecycle.Unhealthy},
		{name: "health+json malformed", code: 200, ct: healthCT, body: `{"status":`, health: lifecycle.Unhealthy, detail: "malformed JSON"},
		{name: "upper-case media type is JSON", code: 200, ct: "Application/JSON", body: `{"status":"down"}`, health: lifecycle.Unhealthy},
		// Valid JSON that is not an object has no status.
		{name: "json array", code: 200, ct: jsonCT, body: `[]`, health: lifecycle.Healthy},
		{name: "json string", code: 200, ct: jsonCT, body: `"ok"`, health: lifecycle.Healthy},
		{name: "json string saying fail", code: 200, ct: jsonCT, body: `"fail"`, health: lifecycle.Healthy},
		{name: "json number", code: 200, ct: jsonCT, body: `1`, health: lifecycle.Healthy},
		// A 204 carries no body whatever Content-Type a framework stamps on
		// it (Starlette's JSONResponse, hence FastAPI's status_code=204
		// routes, sends "content-type: application/json" on an empty 204):
		// an absent body is not malformed JSON.
		{name: "204 empty under application/json", code: 204, ct: jsonCT, health: lifecycle.Healthy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(tc.code, tc.ct, []byte(tc.body))
			assert.Equal(t, tc.health, got.Health, "detail %q", got.Detail)
			assert.True(t, got.Answered, "Classify judges an answer")
			assert.False(t, got.Refused)
			if tc.health == lifecycle.Healthy {
				assert.Empty(t, got.Detail)
			}
			if tc.detail != "" {
				assert.Equal(t, tc.detail, got.Detail)
			}
		})
	}
}

func TestClassifyBodySizeLimit(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		status string
		health lifecycle.Health
		detail string
	}{
		{name: "exactly 64 KiB healthy", size: 64 << 10, status: "ok", health: lifecycle.Healthy},
		{name: "exactly 64 KiB degraded is judged", size: 64 << 10, status: "warn", health: lifecycle.Degraded, detail: "reports degraded"},
		{name: "exactly 64 KiB unhealthy is judged", size: 64 << 10, status: "fail", health: lifecycle.Unhealthy},
		{name: "64 KiB + 1 healthy json", size: 64<<10 + 1, status: "ok", health: lifecycle.Unhealthy, detail: "body over 64 KiB"},
		{name: "64 KiB + 1 degraded json", size: 64<<10 + 1, status: "warn", health: lifecycle.Unhealthy, detail: "body over 64 KiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(200, "application/json", jsonOfSize(t, tc.size, tc.status))
			assert.Equal(t, tc.health, got.Health)
			assert.True(t, got.Answered)
			if tc.detail != "" {
				assert.Equal(t, tc.detail, got.Detail)
			}
		})
	}
	t.Run("64 KiB + 1 of plain text", func(t *testing.T) {
		got := Classify(200, "text/plain", []byte(strings.Repeat("a", MaxBody+1)))
		assert.Equal(t, lifecycle.Unhealthy, got.Health)
		assert.Equal(t, "body over 64 KiB", got.Detail)
	})
	t.Run("MaxBody is 64 KiB", func(t *testing.T) {
		assert.Equal(t, 65536, MaxBody)
	})
}

func TestClassifyReadsWorkerFacts(t *testing.T) {
	tests := []struct {
		name      string
		code      int
		ct        string
		body      string
		health    lifecycle.Health
		uptime    float64
		hasUptime bool
		pid       int
		checks    string // verbatim; "" for none
	}{
		{
			name: "uptime pid and checks", code: 200, ct: "application/json",
			body:   `{"status":"ok","uptime_seconds":12.5,"pid":4242,"checks":{"db": {"status": "pass", "ms": 3}}}`,
			health: lifecycle.Healthy, uptime: 12.5, hasUptime: true, pid: 4242,
			checks: `{"db": {"status": "pass", "ms": 3}}`,
		},
		{
			name: "from a 503 body", code: 503, ct: "application/json",
			body:   `{"status":"fail","uptime_seconds":3,"pid":99,"checks":{"db":{"status":"fail","detail":"timeout"}}}`,
			health: lifecycle.Unhealthy, uptime: 3, hasUptime: true, pid: 99,
			checks: `{"db":{"status":"fail","detail":"timeout"}}`,
		},
		{
			name: "from a text/plain json object", code: 200, ct: "text/plain",
			body:   `{"status":"warn","uptime_seconds":1e3,"pid":1}`,
			health: lifecycle.Degraded, uptime: 1000, hasUptime: true, pid: 1,
		},
		{
			name: "whitespace around values", code: 200, ct: "application/json",
			body:   "{ \"uptime_seconds\" : 7 ,\n \"pid\" : 12 }",
			health: lifecycle.Healthy, uptime: 7, hasUptime: true, pid: 12,
		},
		{
			name: "zero uptime is an uptime", code: 200, ct: "application/json",
			body:   `{"uptime_seconds":0}`,
			health: lifecycle.Healthy, uptime: 0, hasUptime: true,
		},
		{
			name: "negative uptime ignored", code: 200, ct: "application/json",
			body:   `{"status":"ok","uptime_seconds":-5,"pid":10}`,
			health: lifecycle.Healthy, pid: 10,
		},
		{
			name: "string uptime ignored", code: 200, ct: "application/json",
			body:   `{"status":"ok","uptime_seconds":"12"}`,
			health: lifecycle.Healthy,
		},
		{
			name: "bool uptime ignored", code: 200, ct: "application/json",
			body:   `{"status":"ok","uptime_seconds":true}`,
			health: lifecycle.Healthy,
		},
		{
			name: "null uptime ignored", code: 200, ct: "application/json",
			body:   `{"uptime_seconds":null}`,
			health: lifecycle.Healthy,
		},
		{
			name: "string pid ignored", code: 200, ct: "application/json",
			body:   `{"pid":"12"}`,
			health: lifecycle.Healthy,
		},
		{
			name: "negative pid ignored", code: 200, ct: "application/json",
			body:   `{"pid":-3,"uptime_seconds":2}`,
			health: lifecycle.Healthy, uptime: 2, hasUptime: true,
		},
		{
			name: "fractional pid ignored", code: 200, ct: "application/json",
			body:   `{"pid":12.5}`,
			health: lifecycle.Healthy,
		},
		{
			name: "zero pid ignored", code: 200, ct: "application/json",
			body:   `{"pid":0}`,
			health: lifecycle.Healthy,
		},
		{
			name: "checks that are not an object ignored", code: 200, ct: "application/json",
			body:   `{"checks":["db"]}`,
			health: lifecycle.Healthy,
		},
		{
			name: "plain text has none", code: 200, ct: "text/plain",
			body:   `uptime_seconds=12 pid=4`,
			health: lifecycle.Healthy,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(tc.code, tc.ct, []byte(tc.body))
			assert.Equal(t, tc.health, got.Health)
			assert.Equal(t, tc.hasUptime, got.HasUptime)
			assert.Equal(t, tc.uptime, got.Uptime)
			assert.Equal(t, tc.pid, got.PID)
			if tc.checks == "" {
				assert.Nil(t, got.Checks)
			} else {
				assert.Equal(t, tc.checks, string(got.Checks))
			}
		})
	}
}

// TestClassifyChecksAreCopied: the result must not alias the caller's body
// buffer, which the prober may reuse.
func TestClassifyChecksAreCopied(t *testing.T) {
	body := []byte(`{"checks":{"db":"ok"}}`)
	got := Classify(200, "application/json", body)
	for i := range body {
		body[i] = 'X'
	}
	assert.Equal(t, `{"db":"ok"}`, string(got.Checks))
}

// timeoutError is a net.Error that timed out, as a dial or read deadline
// produces.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassifyError(t *testing.T) {
	// A port that nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := l.Addr().String()
	require.NoError(t, l.Close())

	_, refusedErr := net.DialTimeout("tcp", closedAddr, time.Second)
	require.Error(t, refusedErr)
	_, httpRefusedErr := (&http.Client{Timeout: time.Second}).Get("http://" + closedAddr + "/health")
	require.Error(t, httpRefusedErr)
	_, noSocketErr := net.DialTimeout("unix", filepath.Join(t.TempDir(), "missing.sock"), time.Second)
	require.Error(t, noSocketErr)

	tests := []struct {
		name    string
		err     error
		refused bool
		detail  string
	}{
		{name: "connection refused", err: refusedErr, refused: true, detail: "connection refused"},
		{name: "connection refused through net/http", err: httpRefusedErr, refused: true, detail: "connection refused"},
		{name: "missing unix socket", err: noSocketErr, refused: true, detail: "no socket"},
		{name: "context deadline", err: context.DeadlineExceeded, detail: "timeout"},
		{name: "wrapped context deadline", err: fmt.Errorf("get: %w", context.DeadlineExceeded), detail: "timeout"},
		{name: "net timeout", err: &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}, detail: "timeout"},
		{name: "other error keeps its text", err: errors.New("tls: bad record MAC"), detail: "tls: bad record MAC"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := classifyError(tc.err)
			assert.Equal(t, lifecycle.Unhealthy, got.Health)
			assert.Equal(t, tc.refused, got.Refused)
			assert.False(t, got.Answered, "no answer came")
			assert.Equal(t, tc.detail, got.Detail)
		})
	}
}
