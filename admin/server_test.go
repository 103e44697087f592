package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestHandler(token string, allow ...string) http.Handler {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "obsproxy_test_total", Help: "test"})
	c.Add(3)
	reg.MustRegister(c)
	var prefixes []netip.Prefix
	for _, a := range allow {
		prefixes = append(prefixes, netip.MustParsePrefix(a))
	}
	s, err := New(Config{Gatherer: reg, Access: Access{Token: token, Allow: prefixes}})
	if err != nil {
		panic(err)
	}
	return s
}

func TestAdminAccess(t *testing.T) {
	for _, tc := range []struct {
		name   string
		token  string
		allow  []string
		remote string
		auth   string
		want   int
	}{
		{"open on loopback", "", nil, "127.0.0.1:5000", "", 200},
		{"token matches", "s3cret", nil, "10.1.2.3:5000", "Bearer s3cret", 200},
		{"scheme is case-insensitive", "s3cret", nil, "10.1.2.3:5000", "bearer s3cret", 200},
		{"wrong token", "s3cret", nil, "10.1.2.3:5000", "Bearer s3cre", 401},
		{"no token", "s3cret", nil, "10.1.2.3:5000", "", 401},
		{"basic auth is not bearer", "s3cret", nil, "10.1.2.3:5000", "Basic czNjcmV0", 401},
		{"allowlisted v4", "", []string{"10.0.0.0/8"}, "10.1.2.3:5000", "", 200},
		{"allowlisted v6", "", []string{"fd00::/8"}, "[fd00::1]:5000", "", 200},
		{"mapped v4 matches v4 prefix", "", []string{"10.0.0.0/8"}, "[::ffff:10.1.2.3]:5000", "", 200},
		{"not allowlisted", "", []string{"10.0.0.0/8"}, "192.0.2.1:5000", "", 403},
		{"either admits: token", "s3cret", []string{"10.0.0.0/8"}, "192.0.2.1:5000", "Bearer s3cret", 200},
		{"either admits: address", "s3cret", []string{"10.0.0.0/8"}, "10.9.9.9:5000", "", 200},
		{"neither", "s3cret", []string{"10.0.0.0/8"}, "192.0.2.1:5000", "Bearer nope", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(tc.token, tc.allow...)
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			r.RemoteAddr = tc.remote
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			assert.Equal(t, tc.want, w.Code)
			assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
			body := w.Body.String()
			if tc.want == 200 {
				assert.Contains(t, body, "obsproxy_test_total 3")
			} else {
				assert.NotContains(t, body, "obsproxy_test_total")
				assert.NotContains(t, body, "s3cret")
			}
		})
	}
}

func TestUnknownAdminRouteIs404(t *testing.T) {
	srv := httptest.NewServer(newTestHandler(""))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/nope")
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, err = http.Post(srv.URL+"/metrics", "text/plain", strings.NewReader(""))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}
