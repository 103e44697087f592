package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// pemPair returns a self-signed PEM certificate (serial, names, validity)
// and its PEM key; key nil makes a new one.
func pemPair(t *testing.T, serial int64, key *ecdsa.PrivateKey, notAfter time.Time, dns []string, ips []net.IP, cn string) ([]byte, []byte) {
	t.Helper()
	if key == nil {
		var err error
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		DNSNames: dns, IPAddresses: ips, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func replace(t *testing.T, path string, b []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".new", b, 0o600))
	require.NoError(t, os.Rename(path+".new", path))
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	good, key := pemPair(t, 1, nil, time.Now().Add(time.Hour), []string{"a.test"}, nil, "")
	_, otherKey := pemPair(t, 2, nil, time.Now().Add(time.Hour), []string{"a.test"}, nil, "")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	expired, expiredKey := pemPair(t, 3, k, time.Now().Add(-time.Minute), []string{"a.test"}, nil, "")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	cf, kf, ok := write("c.pem", good), write("k.pem", key), write("other.pem", otherKey)
	ef, ekf := write("e.pem", expired), write("ek.pem", expiredKey)
	for _, tc := range []struct {
		name, cert, key, file string
		is                    error
	}{
		{"missing cert", filepath.Join(dir, "none"), kf, filepath.Join(dir, "none"), os.ErrNotExist},
		{"missing key", cf, filepath.Join(dir, "none"), filepath.Join(dir, "none"), os.ErrNotExist},
		{"mismatch", cf, ok, ok, ErrKeyMismatch},
		{"expired", ef, ekf, ef, ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(Config{CertFile: tc.cert, KeyFile: tc.key})
			var fe *FileError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tc.file, fe.File)
			assert.True(t, errors.Is(err, tc.is), "%v", err)
		})
	}
}

func TestCheckReloadsOnChangeKeepsOldOnFailure(t *testing.T) {
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c1, key := pemPair(t, 1, k, time.Now().Add(time.Hour), []string{"a.test"}, nil, "")
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	replace(t, cf, c1)
	replace(t, kf, key)
	s, err := Load(Config{CertFile: cf, KeyFile: kf})
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	serial := func() int64 { c, _ := s.GetCertificate(nil); return c.Leaf.SerialNumber.Int64() }

	assert.False(t, s.Check(), "nothing changed")
	assert.Equal(t, int64(1), serial())

	c2, _ := pemPair(t, 2, k, time.Now().Add(2*time.Hour), []string{"a.test"}, nil, "")
	replace(t, cf, c2)
	assert.True(t, s.Check())
	assert.Equal(t, int64(2), serial())
	assert.False(t, s.Check(), "loaded once per change")

	replace(t, cf, []byte("garbage"))
	assert.True(t, s.Check())
	assert.Equal(t, int64(2), serial(), "the old certificate stays")
	assert.False(t, s.Check(), "a failed pair is tried again only at the next change")
	ok, failed := s.Reloads()
	assert.Equal(t, [2]uint64{1, 1}, [2]uint64{ok, failed})

	os.Remove(cf)
	assert.True(t, s.Check(), "a vanished file is a change")
	assert.Equal(t, int64(2), serial())

	c3, _ := pemPair(t, 3, k, time.Now().Add(3*time.Hour), []string{"a.test"}, nil, "")
	replace(t, cf, c3)
	assert.True(t, s.Check())
	assert.Equal(t, int64(3), serial())
	ok, failed = s.Reloads()
	assert.Equal(t, [2]uint64{2, 2}, [2]uint64{ok, failed})

	v, _ := metricstest.Value(t, reg, "obsproxy_tls_reloads_total", map[string]string{"result": "failure"})
	assert.Equal(t, 2.0, v)
	v, _ = metricstest.Value(t, reg, "obsproxy_tls_certificate_not_after_seconds", map[string]string{"name": "a.test"})
	assert.InDelta(t, float64(time.Now().Add(3*time.Hour).Unix()), v, 5)

	assert.Equal(t, 0.0, testing.AllocsPerRun(100, func() { _, _ = s.GetCertificate(&tls.ClientHelloInfo{}) }))
}

func TestNameOf(t *testing.T) {
	for _, tc := range []struct {
		dns  []string
		ips  []net.IP
		cn   string
		want string
	}{
		{[]string{"a.test", "b.test"}, []net.IP{net.IPv4(10, 0, 0, 1)}, "cn", "a.test"},
		{nil, []net.IP{net.IPv4(10, 0, 0, 1)}, "cn", "10.0.0.1"},
		{nil, nil, "cn", "cn"},
	} {
		c, _ := pemPair(t, 1, nil, time.Now().Add(time.Hour), tc.dns, tc.ips, tc.cn)
		b, _ := pem.Decode(c)
		leaf, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		assert.Equal(t, tc.want, NameOf(leaf))
	}
}
