package proxy

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestForwardedProtoFollowsTLS: X-Forwarded-Proto is https for a request
// that came over TLS (spec section 11), http otherwise; a trusted proxy's
// own value is kept either way.
func TestForwardedProtoFollowsTLS(t *testing.T) {
	trustedNet := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name    string
		tls     bool
		peer    string
		claimed string
		want    string
	}{
		{"plain", false, "192.0.2.1:5000", "", "http"},
		{"TLS", true, "192.0.2.1:5000", "", "https"},
		{"TLS, untrusted claim replaced", true, "192.0.2.1:5000", "http", "https"},
		{"TLS, trusted proxy without claim", true, "10.1.2.3:5000", "", "https"},
		{"plain, trusted proxy's claim kept", false, "10.1.2.3:5000", "https", "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := httptest.NewRequest(http.MethodGet, "https://example.test/", nil)
			in.RemoteAddr = tc.peer
			in.TLS = nil
			if tc.tls {
				in.TLS = &tls.ConnectionState{}
			}
			if tc.claimed != "" {
				in.Header.Set("X-Forwarded-Proto", tc.claimed)
			}
			out := in.Clone(in.Context())
			out.Header.Del("X-Forwarded-Proto")
			setForwarded(&httputil.ProxyRequest{In: in, Out: out}, trustedNet)
			assert.Equal(t, []string{tc.want}, out.Header["X-Forwarded-Proto"])
		})
	}
}
