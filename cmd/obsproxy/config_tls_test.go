package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tlsFiles are certificate files made with crypto/x509 for the config tests.
type tlsFiles struct {
	dir                    string
	cert1, cert2, key      string // two certificates of one key
	otherKey               string // a key matching neither
	expired, notPEM, ca    string
	missing, cacheDir, reg string
}

func newTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	f := tlsFiles{dir: dir}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	write := func(name string, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	cert := func(serial int64, notAfter time.Time) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "test"},
			DNSNames: []string{"example.test"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		require.NoError(t, err)
		return der
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	oder, err := x509.MarshalPKCS8PrivateKey(other)
	require.NoError(t, err)
	f.cert1 = write("cert1.pem", "CERTIFICATE", cert(1, time.Now().Add(24*time.Hour)))
	f.cert2 = write("cert2.pem", "CERTIFICATE", cert(2, time.Now().Add(24*time.Hour)))
	f.expired = write("expired.pem", "CERTIFICATE", cert(3, time.Now().Add(-time.Hour)))
	f.ca = f.cert1
	f.key = write("key.pem", "PRIVATE KEY", kder)
	f.otherKey = write("other-key.pem", "PRIVATE KEY", oder)
	f.notPEM = filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(f.notPEM, []byte("hello\n"), 0o600))
	f.missing = filepath.Join(dir, "missing.pem")
	f.cacheDir = filepath.Join(dir, "acme")
	f.reg = f.notPEM // a regular file where a directory is wanted
	return f
}

// tlsCompanions are the variables a client-side setting needs beside it to
// be valid on its own in TestEveryVariableHasAFlag.
func (f tlsFiles) companions(key string) []string {
	switch key {
	case "OBSPROXY_TLS_CERT_FILE":
		return []string{"OBSPROXY_TLS_KEY_FILE=" + f.key}
	case "OBSPROXY_TLS_KEY_FILE":
		return []string{"OBSPROXY_TLS_CERT_FILE=" + f.cert1}
	case "OBSPROXY_ACME_DOMAINS":
		return []string{"OBSPROXY_ACME_CACHE_DIR=" + f.cacheDir}
	case "OBSPROXY_ACME_CACHE_DIR":
		return []string{"OBSPROXY_ACME_DOMAINS=example.com"}
	}
	return nil
}

// tlsFlagRows are TestEveryVariableHasAFlag's rows for section 11.
func (f tlsFiles) flagRows() map[string]struct {
	env, flag         string
	wantEnv, wantFlag any
} {
	return map[string]struct {
		env, flag         string
		wantEnv, wantFlag any
	}{
		"OBSPROXY_TLS_CERT_FILE":   {f.cert1, f.cert2, f.cert1, f.cert2},
		"OBSPROXY_TLS_KEY_FILE":    {f.key, f.key, f.key, f.key},
		"OBSPROXY_TLS_MIN_VERSION": {"1.3", "1.2", "1.3", "1.2"},
		"OBSPROXY_H2C":             {"true", "false", true, false},
		"OBSPROXY_ACME_DOMAINS":    {"example.com", "a.example.com,b.example.com", "example.com", "a.example.com,b.example.com"},
		"OBSPROXY_ACME_EMAIL":      {"ops@example.com", "admin@example.com", "ops@example.com", "admin@example.com"},
		"OBSPROXY_ACME_DIRECTORY":  {"https://acme-staging-v02.api.letsencrypt.org/directory", "https://127.0.0.1:14000/dir", "https://acme-staging-v02.api.letsencrypt.org/directory", "https://127.0.0.1:14000/dir"},
		"OBSPROXY_ACME_CA_FILE":    {f.ca, f.cert2, f.ca, f.cert2},
		"OBSPROXY_ACME_CACHE_DIR":  {f.cacheDir, f.dir, f.cacheDir, f.dir},
	}
}

func TestLoadConfigTLSInvalid(t *testing.T) {
	f := newTLSFiles(t)
	const (
		acceptCert = "a readable PEM certificate file, valid now, matching OBSPROXY_TLS_KEY_FILE"
		acceptKey  = "a readable PEM private key file matching OBSPROXY_TLS_CERT_FILE"
		acceptDoms = "comma-separated DNS names, e.g. example.com,www.example.com (no wildcards, no IP addresses)"
	)
	pair := func(cert, key string) []string {
		return []string{"OBSPROXY_TLS_CERT_FILE=" + cert, "OBSPROXY_TLS_KEY_FILE=" + key}
	}
	tests := []struct {
		name    string
		environ []string
		want    string
	}{
		{"min version", []string{"OBSPROXY_TLS_MIN_VERSION=1.1"}, `invalid OBSPROXY_TLS_MIN_VERSION="1.1": want 1.2 or 1.3`},
		{"min version spelled", []string{"OBSPROXY_TLS_MIN_VERSION=TLS1.3"}, `invalid OBSPROXY_TLS_MIN_VERSION="TLS1.3": want 1.2 or 1.3`},
		{"cert without key", []string{"OBSPROXY_TLS_CERT_FILE=" + f.cert1}, `invalid OBSPROXY_TLS_KEY_FILE="": OBSPROXY_TLS_CERT_FILE is set, so the key file is needed too; want ` + acceptKey},
		{"key without cert", []string{"OBSPROXY_TLS_KEY_FILE=" + f.key}, `invalid OBSPROXY_TLS_CERT_FILE="": OBSPROXY_TLS_KEY_FILE is set, so the certificate file is needed too; want ` + acceptCert},
		{"missing cert", pair(f.missing, f.key), `invalid OBSPROXY_TLS_CERT_FILE="` + f.missing + `": open ` + f.missing + `: no such file or directory; want ` + acceptCert},
		{"missing key", pair(f.cert1, f.missing), `invalid OBSPROXY_TLS_KEY_FILE="` + f.missing + `": open ` + f.missing + `: no such file or directory; want ` + acceptKey},
		{"cert not PEM", pair(f.notPEM, f.key), `invalid OBSPROXY_TLS_CERT_FILE="` + f.notPEM + `": tls: failed to find any PEM data in certificate input; want ` + acceptCert},
		{"key not PEM", pair(f.cert1, f.notPEM), `invalid OBSPROXY_TLS_KEY_FILE="` + f.notPEM + `": tls: failed to find any PEM data in key input; want ` + acceptKey},
		{"key does not match", pair(f.cert1, f.otherKey), `invalid OBSPROXY_TLS_KEY_FILE="` + f.otherKey + `": private key does not match the certificate; want ` + acceptKey},
		{"expired", pair(f.expired, f.key), `invalid OBSPROXY_TLS_CERT_FILE="` + f.expired + `": certificate is not valid now`},
		{"acme with files", append(pair(f.cert1, f.key), "OBSPROXY_ACME_DOMAINS=example.com", "OBSPROXY_ACME_CACHE_DIR="+f.cacheDir),
			`invalid OBSPROXY_ACME_DOMAINS="example.com": certificates come either from files (OBSPROXY_TLS_CERT_FILE) or from ACME, not both; want ` + acceptDoms},
		{"acme without cache", []string{"OBSPROXY_ACME_DOMAINS=example.com"}, `invalid OBSPROXY_ACME_CACHE_DIR="": required with OBSPROXY_ACME_DOMAINS`},
		{"acme cache is a file", []string{"OBSPROXY_ACME_DOMAINS=example.com", "OBSPROXY_ACME_CACHE_DIR=" + f.reg}, `invalid OBSPROXY_ACME_CACHE_DIR="` + f.reg + `": not a directory`},
		{"acme wildcard", []string{"OBSPROXY_ACME_DOMAINS=*.example.com", "OBSPROXY_ACME_CACHE_DIR=" + f.cacheDir}, `invalid OBSPROXY_ACME_DOMAINS="*.example.com": wildcard *.example.com needs DNS-01, which TLS-ALPN-01 cannot do; want ` + acceptDoms},
		{"acme IP", []string{"OBSPROXY_ACME_DOMAINS=example.com,10.0.0.1", "OBSPROXY_ACME_CACHE_DIR=" + f.cacheDir}, `invalid OBSPROXY_ACME_DOMAINS="example.com,10.0.0.1": 10.0.0.1 is an IP address`},
		{"acme no dot", []string{"OBSPROXY_ACME_DOMAINS=localhost", "OBSPROXY_ACME_CACHE_DIR=" + f.cacheDir}, `invalid OBSPROXY_ACME_DOMAINS="localhost": localhost is not a DNS name with a dot`},
		{"acme empty name", []string{"OBSPROXY_ACME_DOMAINS=example.com,,b.example.com", "OBSPROXY_ACME_CACHE_DIR=" + f.cacheDir}, `invalid OBSPROXY_ACME_DOMAINS="example.com,,b.example.com": name 2 is empty`},
		{"acme email", []string{"OBSPROXY_ACME_EMAIL=ops at example"}, `invalid OBSPROXY_ACME_EMAIL="ops at example": want an email address, or empty`},
		{"acme directory http", []string{"OBSPROXY_ACME_DIRECTORY=http://127.0.0.1:14000/dir"}, `invalid OBSPROXY_ACME_DIRECTORY="http://127.0.0.1:14000/dir": want an https:// URL`},
		{"acme CA file not PEM", []string{"OBSPROXY_ACME_CA_FILE=" + f.notPEM}, `invalid OBSPROXY_ACME_CA_FILE="` + f.notPEM + `": ` + f.notPEM + `: no PEM certificate found`},
		{"h2c with TLS", append(pair(f.cert1, f.key), "OBSPROXY_H2C=true"), `invalid OBSPROXY_H2C="true": with TLS, HTTP/2 is negotiated by ALPN; h2c is for a plain listener`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(nil, tc.environ)
			require.Error(t, err)
			var ce *configError
			require.ErrorAs(t, err, &ce, "a configuration error exits 2")
			assert.True(t, strings.HasPrefix(err.Error(), tc.want), "got  %s\nwant %s...", err, tc.want)
		})
	}
}

func TestLoadConfigTLSValid(t *testing.T) {
	f := newTLSFiles(t)
	cfg, err := loadConfig(nil, []string{"OBSPROXY_TLS_CERT_FILE=" + f.cert1, "OBSPROXY_TLS_KEY_FILE=" + f.key, "OBSPROXY_TLS_MIN_VERSION=1.3"})
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS13), cfg.TLSMinVersionID)

	cfg, err = loadConfig(nil, []string{"OBSPROXY_ACME_DOMAINS= Example.com , www.example.com. ", "OBSPROXY_ACME_CACHE_DIR=" + f.cacheDir, "OBSPROXY_H2C=false"})
	require.NoError(t, err)
	assert.Equal(t, []string{"example.com", "www.example.com"}, cfg.ACMEDomainList)
	assert.Equal(t, "https://acme-v02.api.letsencrypt.org/directory", cfg.ACMEDirectory)
	assert.Equal(t, uint16(tls.VersionTLS12), cfg.TLSMinVersionID)

	cfg, err = loadConfig(nil, []string{"OBSPROXY_H2C=true"})
	require.NoError(t, err)
	assert.True(t, cfg.H2C)
}

func TestServerErrorLogRoutesHandshakeErrorsToDebug(t *testing.T) {
	var buf strings.Builder
	l := serverErrorLog(newLogger(Config{LogLevel: "info", LogFormat: "text"}, &buf))
	l.Printf("http: TLS handshake error from 127.0.0.1:5555: EOF")
	assert.Empty(t, buf.String(), "a handshake error is debug, below info")
	l.Printf("http: Accept error: too many open files")
	assert.Contains(t, buf.String(), "level=WARN")
	assert.Contains(t, buf.String(), "Accept error")
}
