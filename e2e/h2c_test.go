package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestH2CPriorKnowledgeFromClients sends HTTP/2 cleartext with prior
// knowledge (curl --http2-prior-knowledge) through obsproxy with
// OBSPROXY_H2C=true to uvicorn, beside plain HTTP/1.1 on the same port, and
// finds both counted by protocol (spec section 11).
func TestH2CPriorKnowledgeFromClients(t *testing.T) {
	curl, err := exec.LookPath("curl")
	require.NoError(t, err, "curl is installed by make deps")
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w}, "OBSPROXY_H2C=true")
	h1Before := in.value(t, "obsproxy_client_requests_total", map[string]string{"protocol": "HTTP/1.1"})

	out, err := exec.Command(curl, "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_code} %{http_version}", in.url+"/headers").CombinedOutput()
	require.NoError(t, err, string(out))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	assert.Equal(t, "200 2", lines[len(lines)-1])
	var h map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &h))
	assert.Equal(t, "http", h["x-forwarded-proto"], "h2c is cleartext")
	assert.NotEmpty(t, h["x-request-id"])

	out, err = exec.Command(curl, "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", in.url+"/").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "200 1.1", string(out))

	assert.Equal(t, 1.0, in.value(t, "obsproxy_client_requests_total", map[string]string{"protocol": "HTTP/2.0"}))
	assert.Equal(t, h1Before+1, in.value(t, "obsproxy_client_requests_total", map[string]string{"protocol": "HTTP/1.1"}))
	assert.Equal(t, 2.0, in.value(t, "obsproxy_requests_total", map[string]string{"worker": "u1", "code": "200"}), "both reached uvicorn")
}

// TestH2COffByDefault: without OBSPROXY_H2C, a prior-knowledge HTTP/2
// client is not understood (the listener speaks HTTP/1.1 only).
func TestH2COffByDefault(t *testing.T) {
	curl, err := exec.LookPath("curl")
	require.NoError(t, err)
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	out, err := exec.Command(curl, "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", in.url+"/").CombinedOutput()
	assert.Error(t, err, "prior-knowledge HTTP/2 must fail without OBSPROXY_H2C: %s", out)
	assert.Equal(t, 0.0, in.value(t, "obsproxy_client_requests_total", map[string]string{"protocol": "HTTP/2.0"}))
	assert.Equal(t, 0.0, in.value(t, "obsproxy_requests_total", nil), "the HTTP/2 preface is not sent to a worker")
}
