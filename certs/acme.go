package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// LetsEncryptDirectory is the default ACME directory: Let's Encrypt's
// production CA (OBSPROXY_ACME_DIRECTORY's default, spec section 2).
const LetsEncryptDirectory = acme.LetsEncryptURL

// ACMEConfig configures an ACME source.
type ACMEConfig struct {
	// Domains are the names certificates are obtained for
	// (OBSPROXY_ACME_DOMAINS); a client hello for any other name fails.
	// Required.
	Domains []string
	// Email is the account contact (OBSPROXY_ACME_EMAIL); may be empty.
	Email string
	// Directory is the ACME directory URL (OBSPROXY_ACME_DIRECTORY); empty
	// means LetsEncryptDirectory.
	Directory string
	// CAFile is a PEM bundle of CAs trusted for the directory's HTTPS, in
	// addition to the system roots (OBSPROXY_ACME_CA_FILE); empty: system
	// roots only.
	CAFile string
	// CacheDir holds the account key and the certificates
	// (OBSPROXY_ACME_CACHE_DIR), created 0700 if missing. Required: without
	// it every restart would order anew and hit the CA's rate limits.
	CacheDir string
	// RenewBefore is how long before expiry a certificate is renewed; zero
	// means autocert's default, the lesser of 30 days and a third of the
	// certificate's lifetime.
	RenewBefore time.Duration
	// Logger receives a line per certificate obtained or failed; nil
	// discards them.
	Logger *slog.Logger
}

// ACME obtains certificates from an ACME CA with autocert, answering
// TLS-ALPN-01 challenges (RFC 8737) on the listener whose tls.Config it
// builds, caching them in CacheDir and renewing them before expiry (spec
// section 11). It is safe for concurrent use.
type ACME struct {
	cfg ACMEConfig
	m   *autocert.Manager

	mu    sync.Mutex
	inUse map[string]*x509.Certificate // by NameOf

	descNotAfter *prometheus.Desc
}

// NewACME checks cfg and builds the source; it contacts no CA yet.
func NewACME(cfg ACMEConfig) (*ACME, error) {
	if len(cfg.Domains) == 0 {
		return nil, errors.New("acme: no domains")
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("acme: no cache directory")
	}
	if cfg.Directory == "" {
		cfg.Directory = LetsEncryptDirectory
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("acme: creating cache directory: %w", err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pool, err := CAPool(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	a := &ACME{cfg: cfg, inUse: make(map[string]*x509.Certificate), descNotAfter: notAfterDesc()}
	a.m = &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       autocert.DirCache(cfg.CacheDir),
		HostPolicy:  autocert.HostWhitelist(cfg.Domains...),
		RenewBefore: cfg.RenewBefore,
		Email:       cfg.Email,
		Client: &acme.Client{
			DirectoryURL: cfg.Directory,
			HTTPClient:   &http.Client{Transport: transport, Timeout: 2 * time.Minute},
			UserAgent:    "obsproxy",
		},
	}
	return a, nil
}

// CAPool returns the system roots plus the PEM certificates of file.
func CAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, nil
}

// GetCertificate is the tls.Config.GetCertificate hook: autocert's, which
// answers acme-tls/1 challenge handshakes and serves (obtaining on first
// use, from memory or the cache after) the certificate for the hello's
// name. It records the certificate served per name for the expiry metric.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, err := a.m.GetCertificate(hello)
	if err != nil || cert == nil || cert.Leaf == nil || slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
		return cert, err
	}
	a.mu.Lock()
	if name := NameOf(cert.Leaf); a.inUse[name] != cert.Leaf {
		a.inUse[name] = cert.Leaf
	}
	a.mu.Unlock()
	return cert, nil
}

// NextProtos is what the listener offers by ALPN: HTTP/2, HTTP/1.1 and the
// TLS-ALPN-01 challenge protocol.
func (a *ACME) NextProtos() []string { return a.m.TLSConfig().NextProtos }

// Obtain gets a certificate for every domain now (from memory, the cache or
// the CA), as a client hello for each would, so that the first visitor
// does not wait for an order; the listener must already serve, since the
// CA validates through it. It returns the first error after trying every
// domain; each failure is logged too.
func (a *ACME) Obtain() error {
	var first error
	for _, d := range a.cfg.Domains {
		hello := &tls.ClientHelloInfo{
			ServerName:        d,
			SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
			SupportedCurves:   []tls.CurveID{tls.CurveP256},
			CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
		}
		cert, err := a.GetCertificate(hello)
		if err != nil {
			a.cfg.Logger.Error("acme: obtaining certificate", "domain", d, "err", err)
			if first == nil {
				first = fmt.Errorf("acme: obtaining certificate for %s: %w", d, err)
			}
			continue
		}
		a.cfg.Logger.Info("acme: certificate ready", "domain", d, "serial", cert.Leaf.SerialNumber.Text(16),
			"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return first
}

// Certificates describes the certificates served so far, by name.
func (a *ACME) Certificates() []Info {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Info, 0, len(a.inUse))
	for _, leaf := range a.inUse {
		out = append(out, InfoOf(leaf))
	}
	slices.SortFunc(out, func(x, y Info) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// Describe implements prometheus.Collector.
func (a *ACME) Describe(ch chan<- *prometheus.Desc) { ch <- a.descNotAfter }

// Collect implements prometheus.Collector: the expiry of each certificate
// served so far.
func (a *ACME) Collect(ch chan<- prometheus.Metric) {
	for _, c := range a.Certificates() {
		ch <- prometheus.MustNewConstMetric(a.descNotAfter, prometheus.GaugeValue, float64(c.NotAfter.Unix()), c.Name)
	}
}
