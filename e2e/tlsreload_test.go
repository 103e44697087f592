package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// awaitSerial polls new TLS connections to addr until they are served the
// certificate with serial (decimal), within d.
func awaitSerial(t *testing.T, addr string, serial string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < d {
		if leaf, err := servedCert(addr, "localhost"); err == nil {
			if last = leaf.SerialNumber.String(); last == serial {
				return time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("new connections still see serial %s, not %s, after %v", last, serial, d)
	return 0
}

// TestTLSCertificateReplacedByRename replaces the pair the way certificate
// tools do (write a new file, rename it over the old): new connections see
// the new serial within 15 s without a restart; a broken file keeps the old
// certificate and counts a failure (spec section 11).
func TestTLSCertificateReplacedByRename(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(t, leafOpts{serial: 100})
	cf, kf := writePair(t, dir, certPEM, keyPEM)
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startTLSObsproxy(t, 0, []*worker{w}, ca.pool, "localhost",
		"OBSPROXY_TLS_CERT_FILE="+cf, "OBSPROXY_TLS_KEY_FILE="+kf)
	addr := strings.TrimPrefix(in.url, "https://")
	pid := in.proc.cmd.Process.Pid
	assert.Equal(t, 0.0, in.value(t, "obsproxy_tls_reloads_total", nil), "the load at start is not a reload")
	notAfter := in.value(t, "obsproxy_tls_certificate_not_after_seconds", map[string]string{"name": "localhost"})
	assert.InDelta(t, float64(time.Now().Add(24*time.Hour).Unix()), notAfter, 120)

	// A new pair (new key too): key first, then the certificate, each by rename.
	certPEM, keyPEM = ca.issue(t, leafOpts{serial: 101, notAfter: time.Now().Add(48 * time.Hour)})
	writeFile(t, kf, keyPEM)
	writeFile(t, cf, certPEM)
	took := awaitSerial(t, addr, "101", 15*time.Second)
	t.Logf("new serial served %v after the rename", took.Round(10*time.Millisecond))
	assert.Equal(t, pid, in.proc.cmd.Process.Pid)
	select {
	case <-in.proc.done:
		t.Fatal("obsproxy exited")
	default:
	}
	code, _ := in.get(t, "/")
	assert.Equal(t, http.StatusOK, code, "requests still served over the new certificate")
	eventually(t, 5*time.Second, func() bool {
		return in.value(t, "obsproxy_tls_reloads_total", map[string]string{"result": "success"}) >= 1
	}, "reload not counted")
	assert.InDelta(t, float64(time.Now().Add(48*time.Hour).Unix()),
		in.value(t, "obsproxy_tls_certificate_not_after_seconds", map[string]string{"name": "localhost"}), 120)

	// A broken certificate file: the old certificate stays, one failure.
	failures := in.value(t, "obsproxy_tls_reloads_total", map[string]string{"result": "failure"})
	writeFile(t, cf, []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"))
	eventually(t, 15*time.Second, func() bool {
		return in.value(t, "obsproxy_tls_reloads_total", map[string]string{"result": "failure"}) == failures+1
	}, "a broken file is not counted as a failed reload")
	leaf, err := servedCert(addr, "localhost")
	require.NoError(t, err)
	assert.Equal(t, "101", leaf.SerialNumber.String(), "the old certificate stays in use")

	// A certificate whose key is not the one on disk: also a failure.
	mismatched, _ := ca.issue(t, leafOpts{serial: 102})
	writeFile(t, cf, mismatched)
	eventually(t, 15*time.Second, func() bool {
		return in.value(t, "obsproxy_tls_reloads_total", map[string]string{"result": "failure"}) == failures+2
	}, "a key mismatch is not counted as a failed reload")
	leaf, err = servedCert(addr, "localhost")
	require.NoError(t, err)
	assert.Equal(t, "101", leaf.SerialNumber.String())
	assert.Contains(t, in.proc.out.String(), "private key does not match", "the log says why the reload failed")

	// Fixed: tried again at the next change.
	writeFile(t, cf, certPEM)
	awaitSerial(t, addr, "101", 15*time.Second)
	eventually(t, 15*time.Second, func() bool {
		return in.value(t, "obsproxy_tls_reloads_total", map[string]string{"result": "success"}) >= 2
	}, "the fixed pair is not reloaded")
}

// TestTLSCertificateKubernetesSecretSwap mounts the pair the way a
// Kubernetes secret volume does (tls.crt -> ..data/tls.crt, ..data -> a
// timestamped directory) and updates it the way the kubelet does (a new
// directory, then ..data swapped by rename): new connections see the new
// serial within 15 s, same pid.
func TestTLSCertificateKubernetesSecretSwap(t *testing.T) {
	ca := newTestCA(t)
	vol := t.TempDir()
	project := func(name string, serial int64) {
		t.Helper()
		d := filepath.Join(vol, name)
		require.NoError(t, os.Mkdir(d, 0o755))
		certPEM, keyPEM := ca.issue(t, leafOpts{serial: serial})
		require.NoError(t, os.WriteFile(filepath.Join(d, "tls.crt"), certPEM, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(d, "tls.key"), keyPEM, 0o600))
		tmp := filepath.Join(vol, "..data_tmp")
		require.NoError(t, os.Symlink(name, tmp))
		require.NoError(t, os.Rename(tmp, filepath.Join(vol, "..data")))
	}
	project("..2026_12_02_00_00_00.1", 200)
	for _, f := range []string{"tls.crt", "tls.key"} {
		require.NoError(t, os.Symlink(filepath.Join("..data", f), filepath.Join(vol, f)))
	}
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startTLSObsproxy(t, 0, []*worker{w}, ca.pool, "localhost",
		"OBSPROXY_TLS_CERT_FILE="+filepath.Join(vol, "tls.crt"), "OBSPROXY_TLS_KEY_FILE="+filepath.Join(vol, "tls.key"))
	addr := strings.TrimPrefix(in.url, "https://")
	pid := in.proc.cmd.Process.Pid
	awaitSerial(t, addr, "200", 5*time.Second)

	project("..2026_12_02_00_01_00.2", 201)
	took := awaitSerial(t, addr, "201", 15*time.Second)
	t.Logf("new serial served %v after the ..data swap", took.Round(10*time.Millisecond))
	assert.Equal(t, pid, in.proc.cmd.Process.Pid)
	assert.Equal(t, 1.0, in.value(t, "obsproxy_tls_reloads_total", map[string]string{"result": "success"}))
	assert.Equal(t, 0.0, in.value(t, "obsproxy_tls_reloads_total", map[string]string{"result": "failure"}))
}
