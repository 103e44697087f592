// Package certs owns the public listener's certificates (spec section 11):
// a Store that keeps a parsed certificate and key pair loaded from files,
// serves it through tls.Config.GetCertificate and reloads it when the files
// change, and an ACME source that obtains, caches and renews certificates
// with golang.org/x/crypto/acme/autocert. Both report the expiry of the
// certificates they serve (obsproxy_tls_certificate_not_after_seconds).
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPollInterval is how often a Store checks its files for a change
// when Config.PollInterval is zero: spec section 11 asks for at least every
// 10 s.
const DefaultPollInterval = 5 * time.Second

// Config says where a Store finds its pair.
type Config struct {
	// CertFile is the PEM certificate chain, leaf first
	// (OBSPROXY_TLS_CERT_FILE). Required.
	CertFile string
	// KeyFile is the PEM private key matching the leaf
	// (OBSPROXY_TLS_KEY_FILE). Required.
	KeyFile string
	// PollInterval is how often the files are checked for a change; zero
	// means DefaultPollInterval.
	PollInterval time.Duration
	// Logger receives one line per reload (info on success, warn with the
	// reason on failure); nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Info describes one certificate in use, for the dashboard.
type Info struct {
	// Name is the certificate's first DNS name, else its first IP address,
	// else its subject common name (the `name` label of
	// obsproxy_tls_certificate_not_after_seconds).
	Name string `json:"name"`
	// NotAfter is when it expires.
	NotAfter time.Time `json:"not_after"`
	// Serial is its serial number in hexadecimal.
	Serial string `json:"serial"`
	// Issuer is its issuer's common name.
	Issuer string `json:"issuer"`
}

// InfoOf describes leaf.
func InfoOf(leaf *x509.Certificate) Info {
	return Info{Name: NameOf(leaf), NotAfter: leaf.NotAfter, Serial: leaf.SerialNumber.Text(16), Issuer: leaf.Issuer.CommonName}
}

// NameOf is the name a certificate is reported by (spec section 11): its
// first DNS name, else its first IP address, else its subject common name.
func NameOf(leaf *x509.Certificate) string {
	switch {
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0]
	case len(leaf.IPAddresses) > 0:
		return leaf.IPAddresses[0].String()
	}
	return leaf.Subject.CommonName
}

// Store holds the certificate and key pair of Config.CertFile and
// Config.KeyFile, parsed once per change: GetCertificate hands out the
// parsed pair and never touches the files. Run polls the files and swaps
// in a changed pair that loads; a changed pair that does not (unreadable,
// not PEM, a key that does not match the certificate, an expired
// certificate) leaves the old one in use, counts one failure and is tried
// again at the next change (spec section 11). A Store is safe for
// concurrent use. Build one with Load.
type Store struct {
	cfg     Config
	current atomic.Pointer[tls.Certificate]
	// seen is the files' state at the last load attempt; only Run's
	// goroutine (or Check) touches it, under checking.
	seen     [2]fileStamp
	checking atomic.Bool

	reloadOK, reloadFailed atomic.Uint64

	descNotAfter, descReloads *prometheus.Desc
}

// Load reads and checks the pair of cfg: both files readable, the key
// matching the certificate, the certificate valid now. The load at start is
// not a reload (it is not counted). An error names the file at fault.
func Load(cfg Config) (*Store, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("loading certificate: both a certificate and a key file are needed")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{
		cfg:          cfg,
		descNotAfter: notAfterDesc(),
		descReloads: prometheus.NewDesc("obsproxy_tls_reloads_total",
			"Certificate file reloads by result (success, failure).", []string{"result"}, nil),
	}
	s.seen = s.stamps()
	cert, err := s.load()
	if err != nil {
		return nil, err
	}
	s.current.Store(cert)
	return s, nil
}

// notAfterDesc is obsproxy_tls_certificate_not_after_seconds (spec section 11).
func notAfterDesc() *prometheus.Desc {
	return prometheus.NewDesc("obsproxy_tls_certificate_not_after_seconds",
		"Expiry (Unix time) of each certificate in use, by its first DNS name (else first IP address, else subject common name).",
		[]string{"name"}, nil)
}

// FileError is a pair that failed to load; File is the file at fault.
type FileError struct {
	File string
	Err  error
}

// Error returns "FILE: reason".
func (e *FileError) Error() string { return e.File + ": " + e.Err.Error() }

// Unwrap returns the reason.
func (e *FileError) Unwrap() error { return e.Err }

// ErrKeyMismatch is the reason a key does not belong to the certificate.
var ErrKeyMismatch = errors.New("private key does not match the certificate")

// ErrExpired is the reason a certificate is past its NotAfter (or before
// its NotBefore).
var ErrExpired = errors.New("certificate is not valid now")

// load reads and checks the pair.
func (s *Store) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(s.cfg.CertFile)
	if err != nil {
		return nil, &FileError{File: s.cfg.CertFile, Err: err}
	}
	keyPEM, err := os.ReadFile(s.cfg.KeyFile)
	if err != nil {
		return nil, &FileError{File: s.cfg.KeyFile, Err: err}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair says which part failed; attribute it.
		msg := err.Error()
		switch {
		case strings.Contains(msg, "does not match"):
			return nil, &FileError{File: s.cfg.KeyFile, Err: ErrKeyMismatch}
		case strings.Contains(msg, "key input"), strings.Contains(msg, "private key"):
			return nil, &FileError{File: s.cfg.KeyFile, Err: err}
		}
		return nil, &FileError{File: s.cfg.CertFile, Err: err}
	}
	// Go 1.23+ fills Leaf.
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, &FileError{File: s.cfg.CertFile, Err: err}
		}
		cert.Leaf = leaf
	}
	now := s.cfg.Now()
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return nil, &FileError{File: s.cfg.CertFile, Err: fmt.Errorf("%w (valid from %s to %s)",
			ErrExpired, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	return &cert, nil
}

// GetCertificate is the tls.Config.GetCertificate hook: it returns the pair
// in use, whatever the client hello asks (one certificate per Store). It
// never reads the files and allocates nothing.
func (s *Store) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current.Load(), nil
}

// Current returns the certificate in use; its Leaf is set.
func (s *Store) Current() *tls.Certificate { return s.current.Load() }

// Certificates describes the certificate in use (one element).
func (s *Store) Certificates() []Info { return []Info{InfoOf(s.current.Load().Leaf)} }

// Reloads returns the reloads so far: succeeded and failed.
func (s *Store) Reloads() (success, failure uint64) { return s.reloadOK.Load(), s.reloadFailed.Load() }

// Run checks the files every Config.PollInterval until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Check()
		}
	}
}

// Check looks at the files once and reloads them if either changed since
// the last attempt (modification time, size, or the file itself: a rename
// over it or a Kubernetes ..data symlink swap, which os.Stat sees through).
// It reports whether it tried a reload. Concurrent calls are serialised by
// skipping: a Check that finds another running returns false.
func (s *Store) Check() bool {
	if !s.checking.CompareAndSwap(false, true) {
		return false
	}
	defer s.checking.Store(false)
	now := s.stamps()
	if now[0].same(s.seen[0]) && now[1].same(s.seen[1]) {
		return false
	}
	s.seen = now
	cert, err := s.load()
	if err != nil {
		s.reloadFailed.Add(1)
		s.cfg.Logger.Warn("certificate reload failed: keeping the certificate in use", "err", err,
			"serial", s.current.Load().Leaf.SerialNumber.Text(16))
		return true
	}
	s.current.Store(cert)
	s.reloadOK.Add(1)
	s.cfg.Logger.Info("certificate reloaded", "name", NameOf(cert.Leaf), "serial", cert.Leaf.SerialNumber.Text(16),
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return true
}

// stamps stats both files.
func (s *Store) stamps() [2]fileStamp {
	return [2]fileStamp{stampOf(s.cfg.CertFile), stampOf(s.cfg.KeyFile)}
}

// fileStamp is what a poll compares: os.Stat follows symlinks, so a
// Kubernetes secret update (the ..data symlink swapped to a new directory)
// shows as a different file.
type fileStamp struct {
	info os.FileInfo // nil when the file could not be stat'ed
	err  string
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{err: err.Error()}
	}
	return fileStamp{info: fi}
}

func (a fileStamp) same(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil && a.err == b.err
	}
	return os.SameFile(a.info, b.info) && a.info.ModTime().Equal(b.info.ModTime()) && a.info.Size() == b.info.Size()
}

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.descNotAfter
	ch <- s.descReloads
}

// Collect implements prometheus.Collector: the expiry of the certificate in
// use and the reload counts.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	leaf := s.current.Load().Leaf
	ch <- prometheus.MustNewConstMetric(s.descNotAfter, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()), NameOf(leaf))
	ch <- prometheus.MustNewConstMetric(s.descReloads, prometheus.CounterValue, float64(s.reloadOK.Load()), "success")
	ch <- prometheus.MustNewConstMetric(s.descReloads, prometheus.CounterValue, float64(s.reloadFailed.Load()), "failure")
}
