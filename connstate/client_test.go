package connstate

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

func TestProtocolIndex(t *testing.T) {
	for _, tc := range []struct {
		major, minor int
		want         string
	}{{1, 0, "HTTP/1.0"}, {1, 1, "HTTP/1.1"}, {1, 2, "HTTP/1.1"}, {2, 0, "HTTP/2.0"}, {3, 0, "HTTP/2.0"}} {
		assert.Equal(t, tc.want, protocolNames[protocolIndex(tc.major, tc.minor)], "%d.%d", tc.major, tc.minor)
	}
}

func TestCountRequestsAllocatesNothing(t *testing.T) {
	tr := New()
	h := tr.CountRequests(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	var w http.ResponseWriter = httptest.NewRecorder()
	assert.Equal(t, 0.0, testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, r) }))
	_, h11, _ := tr.Requests()
	assert.Equal(t, uint64(1001), h11)
}

func TestCountRequestsRefusesAnHTTP2Preface(t *testing.T) {
	tr := New()
	reached := false
	h := tr.CountRequests(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	r := httptest.NewRequest("PRI", "*", nil)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	assert.Equal(t, http.StatusHTTPVersionNotSupported, rec.Code)
	assert.False(t, reached)
	h10, h11, h2 := tr.Requests()
	assert.Equal(t, [3]uint64{0, 0, 0}, [3]uint64{h10, h11, h2})
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestTLSConnectionsAreCountedAndFailedHandshakesToo serves TLS over a
// tracked listener: a TLS connection counts like any other, HTTP/2 requests
// are counted by protocol, and a connection that closes before its
// handshake finished is a handshake error.
func TestTLSConnectionsAreCountedAndFailedHandshakesToo(t *testing.T) {
	tr := New()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(tr)
	cert, pool := selfSigned(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: tr.CountRequests(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})),
		ConnState: tr.ConnState, TLSConfig: cfg}
	go srv.Serve(tls.NewListener(tr.Listen(ln), cfg))
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	for range 3 {
		resp, err := client.Get("https://" + addr + "/")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "HTTP/2.0", resp.Proto)
	}
	assert.Equal(t, uint64(1), tr.Accepted(), "three HTTP/2 requests on one connection")
	assert.Equal(t, int64(1), tr.Active())
	_, _, h2 := tr.Requests()
	assert.Equal(t, uint64(3), h2)
	client.CloseIdleConnections()
	require.Eventually(t, func() bool { return tr.Active() == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, uint64(0), tr.HandshakeErrors(), "a finished handshake is no error")

	// An untrusting client and a bare TCP connection.
	_, err = tls.Dial("tcp", addr, &tls.Config{})
	require.Error(t, err)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c.Close()
	require.Eventually(t, func() bool { return tr.HandshakeErrors() == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return tr.Active() == 0 }, 5*time.Second, 5*time.Millisecond)
	v, ok := metricstest.Value(t, reg, "obsproxy_tls_handshake_errors_total", nil)
	assert.True(t, ok)
	assert.Equal(t, 2.0, v)
	v, _ = metricstest.Value(t, reg, "obsproxy_client_requests_total", map[string]string{"protocol": "HTTP/2.0"})
	assert.Equal(t, 3.0, v)
}
