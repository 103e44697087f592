package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA is a certificate authority made in the test with crypto/x509.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "obsproxy e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// leafOpts shapes a leaf certificate.
type leafOpts struct {
	serial    int64
	notBefore time.Time // zero: an hour ago
	notAfter  time.Time // zero: in a day
	dnsNames  []string  // nil: localhost
	key       *ecdsa.PrivateKey
}

// issue returns a PEM leaf for 127.0.0.1 and o.dnsNames and its PEM key.
func (ca *testCA) issue(t *testing.T, o leafOpts) (certPEM, keyPEM []byte) {
	t.Helper()
	key := o.key
	if key == nil {
		var err error
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
	}
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(24 * time.Hour)
	}
	if o.dnsNames == nil {
		o.dnsNames = []string{"localhost"}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(o.serial), Subject: pkix.Name{CommonName: o.dnsNames[0]},
		NotBefore: o.notBefore, NotAfter: o.notAfter,
		DNSNames: o.dnsNames, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// writeFile writes b to path through a temporary file and a rename, as
// certificate tools do, so that a reader never sees half a file.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// tlsClient is an HTTPS client trusting pool; with h2 it negotiates HTTP/2,
// else it offers only HTTP/1.1.
func tlsClient(pool *x509.CertPool, serverName string, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName}, MaxIdleConnsPerHost: 64}
	if h2 {
		tr.ForceAttemptHTTP2 = true
	} else {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// startTLSObsproxy starts obsproxy with TLS on port (0: a free one) and
// waits until the admin listener answers and /health over HTTPS no longer
// says "starting". The instance's url is https://127.0.0.1:port and its
// client speaks HTTP/2, trusting pool, with serverName as SNI.
func startTLSObsproxy(t *testing.T, port int, workers []*worker, pool *x509.CertPool, serverName string, env ...string) *instance {
	t.Helper()
	if port == 0 {
		port = freePort(t)
	}
	var ups []string
	for _, w := range workers {
		ups = append(ups, w.upstream)
	}
	adminPort := freePort(t)
	env = append([]string{
		fmt.Sprintf("OBSPROXY_LISTEN_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("OBSPROXY_ADMIN_ADDR=127.0.0.1:%d", adminPort),
		"OBSPROXY_UPSTREAMS=" + strings.Join(ups, ","),
		"OBSPROXY_LOG_FORMAT=text",
	}, env...)
	p := start(t, env, obsproxyBinary(t))
	in := &instance{proc: p, url: fmt.Sprintf("https://127.0.0.1:%d", port), admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		client: tlsClient(pool, serverName, true)}
	t.Cleanup(in.client.CloseIdleConnections)
	deadline := time.Now().Add(60 * time.Second)
	once := tlsClient(pool, serverName, false)
	once.Transport.(*http.Transport).DisableKeepAlives = true
	for {
		resp, err := once.Get(in.url + "/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), `"detail":"starting"`) {
				return in
			}
		}
		select {
		case <-p.done:
			t.Fatalf("obsproxy exited early:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("obsproxy not ready over TLS (%v):\n%s", err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// servedCert makes a new TLS connection to addr and returns the leaf it was
// served (not verified: the caller compares serials).
func servedCert(addr, serverName string) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, ServerName: serverName}) // the caller compares serials
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// writePair writes a pair into dir as tls.crt and tls.key, returning paths.
func writePair(t *testing.T, dir string, certPEM, keyPEM []byte) (string, string) {
	t.Helper()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, cf, certPEM)
	writeFile(t, kf, keyPEM)
	return cf, kf
}
