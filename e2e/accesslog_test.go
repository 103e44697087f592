package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAccessLogLines: with OBSPROXY_ACCESS_LOG=true the binary writes one
// JSON line per proxied request on stderr, tagged log=access, without the
// query string or any header value.
func TestAccessLogLines(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w}, "OBSPROXY_ACCESS_LOG=true", "OBSPROXY_LOG_FORMAT=json")
	req, err := http.NewRequest(http.MethodGet, in.url+"/headers?api_key=query-secret-1", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer header-secret-2")
	resp, err := in.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	var rec map[string]any
	eventually(t, 5*time.Second, func() bool {
		for _, line := range strings.Split(in.proc.out.String(), "\n") {
			if strings.Contains(line, `"log":"access"`) && json.Unmarshal([]byte(line), &rec) == nil {
				return true
			}
		}
		return false
	}, "an access log line")
	assert.Equal(t, "/headers", rec["path"])
	assert.Equal(t, "GET", rec["method"])
	assert.Equal(t, 200.0, rec["status"])
	assert.Equal(t, "w1", rec["worker"])
	assert.NotEmpty(t, rec["request_id"])
	assert.Equal(t, resp.Header.Get("X-Request-Id"), rec["request_id"])
	out := in.proc.out.String()
	assert.NotContains(t, out, "query-secret-1")
	assert.NotContains(t, out, "header-secret-2")
}
