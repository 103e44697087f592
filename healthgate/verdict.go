// Package healthgate decides what obsproxy tells load balancers: it probes
// every worker (Prober), turns each answer into a verdict (Classify), and
// serves the fail-closed /health and the /livez of spec section 3 (Gate).
package healthgate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// MaxBody is the largest probe answer body, in bytes: a longer one makes the
// worker unhealthy (spec section 3). The prober reads at most MaxBody+1.
const MaxBody = 64 << 10

// Classify returns the verdict on a worker's probe answer with HTTP status
// code, Content-Type contentType and body (at most MaxBody+1 bytes), by the
// rules of spec section 3:
//
//   - healthy: a 2xx whose body is not JSON (an empty body included, whatever
//     its content type), or JSON whose "status" is absent or one of healthy,
//     ok, pass, up;
//   - degraded: a 2xx with JSON "status" degraded or warn;
//   - unhealthy: anything else: a non-2xx (503 included), a JSON "status"
//     of unhealthy, fail, error, down or any unknown value, malformed JSON
//     under a JSON content type, a body over MaxBody.
//
// Status values are compared case-insensitively. A body without a JSON
// content type that parses as a JSON object is read as JSON too (some
// frameworks label JSON text/plain). The answer's "uptime_seconds" (a
// number), "pid" (an integer) and "checks" (kept verbatim) are read
// whatever the status code, for restart detection and the admin plane.
// The result has Answered set; At and Latency are the caller's.
func Classify(code int, contentType string, body []byte) lifecycle.ProbeResult {
	res := lifecycle.ProbeResult{Answered: true}
	if len(body) > MaxBody {
		res.Health, res.Detail = lifecycle.Unhealthy, "body over 64 KiB"
		return res
	}
	status, isJSON, parseErr := readDocument(&res, contentType, body)
	ok := code >= 200 && code <= 299
	switch {
	case !ok:
		res.Health, res.Detail = lifecycle.Unhealthy, "status "+strconv.Itoa(code)
	case parseErr != "":
		res.Health, res.Detail = lifecycle.Unhealthy, parseErr
	case !isJSON || status == nil:
		res.Health = lifecycle.Healthy
	default:
		switch strings.ToLower(*status) {
		case "healthy", "ok", "pass", "up":
			res.Health = lifecycle.Healthy
		case "degraded", "warn":
			res.Health, res.Detail = lifecycle.Degraded, "reports degraded"
		default:
			res.Health, res.Detail = lifecycle.Unhealthy, "reports "+strconv.Quote(*status)
		}
	}
	return res
}

// readDocument reads a JSON answer into res (uptime, pid, checks) and
// returns its status (nil when absent). isJSON says whether the body is to
// be judged as JSON; parseErr is set when it must be JSON and is not, or
// when its status is not a string.
func readDocument(res *lifecycle.ProbeResult, contentType string, body []byte) (status *string, isJSON bool, parseErr string) {
	declared := isJSONType(contentType)
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || (!declared && trimmed[0] != '{') {
		return nil, false, "" // no body is not malformed JSON (a 204 under application/json)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &doc); err != nil {
		if !declared {
			return nil, false, "" // text that only looks like JSON
		}
		var any json.RawMessage
		if json.Unmarshal(trimmed, &any) == nil {
			return nil, true, "" // valid JSON but not an object: no status
		}
		return nil, true, "malformed JSON"
	}
	if raw, found := doc["uptime_seconds"]; found {
		if v, err := strconv.ParseFloat(string(raw), 64); err == nil && v >= 0 {
			res.Uptime, res.HasUptime = v, true
		}
	}
	if raw, found := doc["pid"]; found {
		if v, err := strconv.Atoi(string(raw)); err == nil && v > 0 {
			res.PID = v
		}
	}
	if raw, found := doc["checks"]; found && len(raw) > 0 && raw[0] == '{' {
		res.Checks = append(json.RawMessage(nil), raw...)
	}
	raw, found := doc["status"]
	if !found || string(raw) == "null" {
		return nil, true, ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, true, "status is not a string"
	}
	return &s, true, ""
}

// isJSONType reports whether a Content-Type is JSON: application/json or
// any +json type (RFC 6839), such as application/health+json.
func isJSONType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// classifyError returns the verdict on a probe that got no answer: refused
// (nothing listens: connection refused, or a unix socket path with no
// socket), timeout, or another failure with its text (admin plane only).
func classifyError(err error) lifecycle.ProbeResult {
	res := lifecycle.ProbeResult{Health: lifecycle.Unhealthy}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		res.Refused, res.Detail = true, "connection refused"
	case errors.Is(err, syscall.ENOENT):
		res.Refused, res.Detail = true, "no socket"
	case errors.Is(err, lifecycle.ErrNoProcess):
		res.Refused, res.Detail = true, "no process"
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		res.Detail, res.TimedOut = "timeout", true
	default:
		res.Detail = err.Error()
	}
	return res
}
