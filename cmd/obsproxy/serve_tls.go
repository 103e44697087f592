package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"log"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obsproxy/obsproxy/admin"
	"github.com/obsproxy/obsproxy/certs"
)

// clientTLS is the public listener's TLS (spec section 11): certificates
// from files or from ACME, nil parts when off.
type clientTLS struct {
	config *tls.Config
	files  *certs.Store // OBSPROXY_TLS_CERT_FILE / _KEY_FILE
	acme   *certs.ACME  // OBSPROXY_ACME_DOMAINS
}

// Certificates describes the certificates in use (for the dashboard); nil
// without TLS.
func (c *clientTLS) Certificates() []certs.Info {
	switch {
	case c == nil:
		return nil
	case c.files != nil:
		return c.files.Certificates()
	case c.acme != nil:
		return c.acme.Certificates()
	}
	return nil
}

// source is c as the admin plane's TLS source: a nil interface, not a nil
// pointer in one, when the listener is plain.
func (c *clientTLS) source() admin.TLSSource {
	if c == nil {
		return nil
	}
	return c
}

// Reloads returns the certificate file reloads (success, failure); zero
// without certificate files.
func (c *clientTLS) Reloads() (success, failure uint64) {
	if c == nil || c.files == nil {
		return 0, 0
	}
	return c.files.Reloads()
}

// newClientTLS builds the TLS of the public listener from cfg and registers
// its metrics on reg; it returns nil when the listener is plain. The pair
// was checked by validate already; a failure here (the files changed in
// between) is a runtime failure.
func newClientTLS(cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*clientTLS, error) {
	c := &clientTLS{}
	switch {
	case cfg.TLSCertFile != "":
		store, err := certs.Load(certs.Config{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, Logger: logger})
		if err != nil {
			return nil, err
		}
		c.files = store
		reg.MustRegister(store)
		c.config = &tls.Config{GetCertificate: store.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
	case len(cfg.ACMEDomainList) > 0:
		a, err := certs.NewACME(certs.ACMEConfig{
			Domains: cfg.ACMEDomainList, Email: cfg.ACMEEmail, Directory: cfg.ACMEDirectory,
			CAFile: cfg.ACMECAFile, CacheDir: cfg.ACMECacheDir, Logger: logger,
		})
		if err != nil {
			return nil, err
		}
		c.acme = a
		reg.MustRegister(a)
		c.config = &tls.Config{GetCertificate: a.GetCertificate, NextProtos: a.NextProtos()}
	default:
		return nil, nil
	}
	c.config.MinVersion = cfg.TLSMinVersionID
	return c, nil
}

// protocols is what the public listener speaks: HTTP/1.1 always, HTTP/2 by
// ALPN with TLS, HTTP/2 with prior knowledge on a plain listener with
// OBSPROXY_H2C (net/http's own server, not x/net/http2/h2c).
func protocols(cfg Config, withTLS bool) *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	if withTLS {
		p.SetHTTP2(true)
	}
	if cfg.H2C {
		p.SetUnencryptedHTTP2(true)
	}
	return p
}

// listen wraps the (counted) listener in TLS; without TLS it returns ln.
func (c *clientTLS) listen(ln net.Listener) net.Listener {
	if c == nil {
		return ln
	}
	return tls.NewListener(ln, c.config)
}

// run keeps the certificates current until ctx ends: it polls the files,
// or asks the ACME CA for the certificates at start (the listener serves
// already, for the TLS-ALPN-01 validation; autocert renews them after).
func (c *clientTLS) run(ctx context.Context) {
	switch {
	case c == nil:
	case c.files != nil:
		c.files.Run(ctx)
	case c.acme != nil:
		// Bounded by autocert's own timeout (5 minutes per name); a failure
		// is logged and retried at the first client hello.
		_ = c.acme.Obtain()
	}
}

// serverErrorLog is the public http.Server's ErrorLog: its lines go to
// logger at warn, except the per-client TLS handshake errors, which go at
// debug (they are counted in obsproxy_tls_handshake_errors_total; a
// scanner must not flood the log, spec section 11).
func serverErrorLog(logger *slog.Logger) *log.Logger {
	return log.New(&errorLogWriter{logger: logger}, "", 0)
}

type errorLogWriter struct{ logger *slog.Logger }

func (w *errorLogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, "\n"))
	level := slog.LevelWarn
	if bytes.Contains(p, []byte("TLS handshake error")) {
		level = slog.LevelDebug
	}
	w.logger.Log(context.Background(), level, msg)
	return len(p), nil
}

// healthcheckScheme is the scheme `obsproxy healthcheck` speaks to the
// local public listener: https when it serves TLS.
func healthcheckScheme(cfg Config) string {
	if cfg.TLSCertFile != "" || len(cfg.ACMEDomainList) > 0 {
		return "https"
	}
	return "http"
}

// healthcheckTransport is the transport of `obsproxy healthcheck`. Over
// TLS it does not verify the certificate (the check talks to its own
// process on loopback, where the name cannot match) and sends the first
// ACME domain as server name, without which autocert has no certificate
// to offer.
func healthcheckTransport(cfg Config) *http.Transport {
	t := &http.Transport{Proxy: nil}
	if healthcheckScheme(cfg) == "https" {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // its own process on loopback
		if len(cfg.ACMEDomainList) > 0 {
			t.TLSClientConfig.ServerName = cfg.ACMEDomainList[0]
		}
	}
	return t
}
