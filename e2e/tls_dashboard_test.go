package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDashboardShowsCertificateExpiry serves a certificate that expires in
// 10 days: the admin JSON carries it and the dashboard's certificate card,
// read in headless Chromium, shows it as a warning (under the 14 days of
// the CertificateExpiresSoon alert).
func TestDashboardShowsCertificateExpiry(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the dashboard test needs Debian's chromium (make deps): %v", err)
	}
	began := time.Now()
	ca := newTestCA(t)
	notAfter := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	certPEM, keyPEM := ca.issue(t, leafOpts{serial: 4242, notAfter: notAfter})
	cf, kf := writePair(t, t.TempDir(), certPEM, keyPEM)
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startTLSObsproxy(t, 0, []*worker{w}, ca.pool, "localhost",
		"OBSPROXY_TLS_CERT_FILE="+cf, "OBSPROXY_TLS_KEY_FILE="+kf, "OBSPROXY_SAMPLE_INTERVAL=250ms")
	code, _ := in.get(t, "/")
	require.Equal(t, http.StatusOK, code)

	resp, err := http.Get(in.admin + "/admin/api/observability")
	require.NoError(t, err)
	var snap struct {
		TLS *struct {
			Certificates []struct {
				Name             string    `json:"name"`
				Serial           string    `json:"serial"`
				NotAfter         time.Time `json:"not_after"`
				ExpiresInSeconds float64   `json:"expires_in_seconds"`
			} `json:"certificates"`
		} `json:"tls"`
		Connections struct {
			RequestsByProtocol map[string]uint64 `json:"requests_by_protocol"`
		} `json:"connections"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&snap))
	resp.Body.Close()
	require.NotNil(t, snap.TLS)
	require.Len(t, snap.TLS.Certificates, 1)
	c := snap.TLS.Certificates[0]
	assert.Equal(t, "localhost", c.Name)
	assert.Equal(t, "1092", c.Serial, "hexadecimal 4242")
	assert.True(t, notAfter.Equal(c.NotAfter), "%v != %v", notAfter, c.NotAfter)
	assert.InDelta(t, 10*24*3600, c.ExpiresInSeconds, 120)
	assert.Positive(t, snap.Connections.RequestsByProtocol["HTTP/2.0"])

	b := startBrowser(t, began.Add(40*time.Second))
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}, nil)
	b.call(t, "Page.navigate", map[string]any{"url": in.admin + "/admin/"}, nil)
	p := b.waitPage(t, "the certificate card", func(p dashboardPage) bool {
		return p.Live == "1" && p.Cards["certificate"]["level"] != ""
	})
	b.screenshot(t, filepath.Join(dashboardOutDir(t), "dashboard-tls.png"))
	card := p.Cards["certificate"]
	assert.Equal(t, "warn", card["level"], "10 days left is a warning")
	assert.Contains(t, card["text"], "d", "expiry shown as a duration: %q", card["text"])
	assert.Contains(t, card["sub"], "localhost")
	assert.Equal(t, "0", card["handshakeErrors"])
	assert.Empty(t, b.problems, "the page reported errors")
}
