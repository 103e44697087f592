package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pebbleVersion is the Pebble (Let's Encrypt's test CA) built from the Go
// module proxy for TestACMEWithPebble.
const pebbleVersion = "v2.10.3"

// buildPebble installs pebble and pebble-challtestsrv into a temporary
// directory from the module proxy. The test is skipped only when the module
// proxy cannot be reached.
func buildPebble(t *testing.T) (pebble, challtestsrv string) {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "install",
		"github.com/letsencrypt/pebble/v2/cmd/pebble@"+pebbleVersion,
		"github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@"+pebbleVersion)
	cmd.Dir = bin // outside the module: go install pkg@version ignores go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		for _, unreachable := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "network is unreachable", "TLS handshake timeout"} {
			if strings.Contains(string(out), unreachable) {
				t.Skipf("the Go module proxy is unreachable, so Pebble cannot be built: %s", out)
			}
		}
		t.Fatalf("building pebble %s: %v\n%s", pebbleVersion, err, out)
	}
	return filepath.Join(bin, "pebble"), filepath.Join(bin, "pebble-challtestsrv")
}

// TestACMEWithPebble obtains a certificate from Pebble by TLS-ALPN-01 on
// obsproxy's public listener (Pebble's challenge test server resolves the
// test domain to 127.0.0.1, so the validation is real), serves it, reuses
// it from the cache after a restart without a new order, and renews it
// when its lifetime runs short (Pebble issues 60-second certificates, so
// autocert renews after two thirds of it).
func TestACMEWithPebble(t *testing.T) {
	const domain = "obsproxy-e2e.test"
	pebble, challtestsrv := buildPebble(t)
	dir := t.TempDir()
	ca := newTestCA(t)
	pebbleCert, pebbleKey := ca.issue(t, leafOpts{serial: 9, dnsNames: []string{"localhost"}})
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.pem, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pebble.crt"), pebbleCert, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pebble.key"), pebbleKey, 0o600))

	// The challenge test server as DNS only, loopback only.
	dnsPort, challMgmt := freePort(t), freePort(t)
	start(t, nil, challtestsrv, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-management", fmt.Sprintf("127.0.0.1:%d", challMgmt),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	eventually(t, 20*time.Second, func() bool {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/add-a", challMgmt), "application/json",
			strings.NewReader(`{"host":"`+domain+`","addresses":["127.0.0.1"]}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "pebble-challtestsrv does not take the A record")

	// Pebble, loopback only, validating TLS-ALPN-01 on obsproxy's port.
	obsPort, pebblePort, pebbleMgmt := freePort(t), freePort(t), freePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", pebblePort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", pebbleMgmt),
		"certificate":                    filepath.Join(dir, "pebble.crt"),
		"privateKey":                     filepath.Join(dir, "pebble.key"),
		"httpPort":                       freePort(t),
		"tlsPort":                        obsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"profiles":                       map[string]any{"default": map[string]any{"description": "60-second certificates", "validityPeriod": 60}},
	}}
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pebble.json"), b, 0o600))
	peb := start(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, pebble,
		"-config", filepath.Join(dir, "pebble.json"), "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	trusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	directory := fmt.Sprintf("https://localhost:%d/dir", pebblePort)
	eventually(t, 20*time.Second, func() bool {
		resp, err := trusting.Get(directory)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "pebble does not serve its directory")
	// Pebble's root, made at its start: what clients of the certificate trust.
	resp, err := trusting.Get(fmt.Sprintf("https://localhost:%d/roots/0", pebbleMgmt))
	require.NoError(t, err)
	rootPEM, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM), "pebble root: %s", rootPEM)
	issued := func() int { return strings.Count(peb.out.String(), "Issued certificate serial") }

	w := startUvicorn(t, "u1")
	waitReady(t, w)
	cache := filepath.Join(dir, "acme-cache")
	env := []string{"OBSPROXY_ACME_DOMAINS=" + domain, "OBSPROXY_ACME_EMAIL=ops@example.com",
		"OBSPROXY_ACME_DIRECTORY=" + directory, "OBSPROXY_ACME_CA_FILE=" + caFile, "OBSPROXY_ACME_CACHE_DIR=" + cache}
	in := startTLSObsproxy(t, obsPort, []*worker{w}, roots, domain, env...)
	addr := fmt.Sprintf("127.0.0.1:%d", obsPort)

	// Obtained at start, served, verified against Pebble's root.
	leaf, err := servedCert(addr, domain)
	require.NoError(t, err)
	assert.Equal(t, []string{domain}, leaf.DNSNames)
	assert.Contains(t, leaf.Issuer.CommonName, "Pebble")
	first := leaf.SerialNumber.String()
	assert.Equal(t, 1, issued(), "one order at start")
	req, _ := http.NewRequest(http.MethodGet, in.url+"/headers", nil)
	resp, err = in.client.Do(req)
	require.NoError(t, err)
	var h map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	resp.Body.Close()
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, "https", h["x-forwarded-proto"])
	assert.FileExists(t, filepath.Join(cache, domain), "the certificate is cached")
	assert.Equal(t, float64(leaf.NotAfter.Unix()),
		in.value(t, "obsproxy_tls_certificate_not_after_seconds", map[string]string{"name": domain}))
	assert.Contains(t, in.proc.out.String(), "acme: certificate ready")

	// A restart reuses the cached certificate: no new order. (On a slow
	// machine a renewal may already have replaced the first certificate:
	// what counts is that the restart serves the one in use, unordered.)
	leaf, err = servedCert(addr, domain)
	require.NoError(t, err)
	current, orders := leaf.SerialNumber.String(), issued()
	in.client.CloseIdleConnections()
	in.proc.signal(syscall.SIGTERM)
	require.Equal(t, 0, in.proc.wait(t, 15*time.Second))
	in = startTLSObsproxy(t, obsPort, []*worker{w}, roots, domain, env...)
	leaf, err = servedCert(addr, domain)
	require.NoError(t, err)
	assert.Equal(t, current, leaf.SerialNumber.String(), "the restart serves the cached certificate")
	assert.Equal(t, orders, issued(), "the restart ordered a new certificate")

	// Renewed before expiry: a new serial from a new order, same process.
	pid := in.proc.cmd.Process.Pid
	eventually(t, 90*time.Second, func() bool {
		l, err := servedCert(addr, domain)
		return err == nil && l.SerialNumber.String() != current
	}, "the certificate was not renewed before it expired")
	leaf, err = servedCert(addr, domain)
	require.NoError(t, err)
	assert.Equal(t, orders+1, issued())
	assert.Equal(t, pid, in.proc.cmd.Process.Pid)
	assert.True(t, leaf.NotAfter.After(time.Now()))
	cached, err := os.ReadFile(filepath.Join(cache, domain))
	require.NoError(t, err)
	assert.True(t, bytes.Contains(cached, []byte("CERTIFICATE")))
	eventually(t, 5*time.Second, func() bool {
		return in.value(t, "obsproxy_tls_certificate_not_after_seconds", map[string]string{"name": domain}) == float64(leaf.NotAfter.Unix())
	}, "the expiry metric does not follow the renewal")
	t.Logf("obtained %s, served %s after the restart, renewed to %s (not after %s)", first, current, leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339))
}
