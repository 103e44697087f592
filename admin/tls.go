package admin

import (
	"math"
	"time"

	"github.com/obsproxy/obsproxy/certs"
)

// TLSSource is what the admin plane reads of the public listener's TLS
// (spec section 11). Implementations are safe for concurrent use.
type TLSSource interface {
	// Certificates describes the certificates in use.
	Certificates() []certs.Info
	// Reloads returns the certificate file reloads: succeeded, failed.
	Reloads() (success, failure uint64)
}

// TLSView is the public listener's TLS in a Snapshot; null when the
// listener is plain.
type TLSView struct {
	// Certificates in use, soonest expiry first.
	Certificates []CertificateView `json:"certificates"`
	// ReloadsSuccess and ReloadsFailure count certificate file reloads
	// (obsproxy_tls_reloads_total).
	ReloadsSuccess uint64 `json:"reloads_success"`
	ReloadsFailure uint64 `json:"reloads_failure"`
	// HandshakeErrorsTotal counts failed TLS handshakes
	// (obsproxy_tls_handshake_errors_total).
	HandshakeErrorsTotal uint64 `json:"handshake_errors_total"`
}

// CertificateView is one certificate in use.
type CertificateView struct {
	// Name is its first DNS name, else IP address, else common name.
	Name     string    `json:"name"`
	Serial   string    `json:"serial"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	// ExpiresInSeconds is NotAfter minus the snapshot time; negative once
	// expired.
	ExpiresInSeconds float64 `json:"expires_in_seconds"`
}

// tlsView renders the TLS part of a snapshot at now; nil without TLS.
func (s *Sources) tlsView(now time.Time) *TLSView {
	if s.TLS == nil {
		return nil
	}
	v := &TLSView{Certificates: []CertificateView{}, HandshakeErrorsTotal: s.Conns.HandshakeErrors()}
	v.ReloadsSuccess, v.ReloadsFailure = s.TLS.Reloads()
	for _, c := range s.TLS.Certificates() {
		v.Certificates = append(v.Certificates, CertificateView{
			Name: c.Name, Serial: c.Serial, Issuer: c.Issuer, NotAfter: c.NotAfter.UTC(),
			ExpiresInSeconds: math.Round(c.NotAfter.Sub(now).Seconds()),
		})
	}
	for i := 1; i < len(v.Certificates); i++ { // few certificates: insertion sort
		for j := i; j > 0 && v.Certificates[j].NotAfter.Before(v.Certificates[j-1].NotAfter); j-- {
			v.Certificates[j], v.Certificates[j-1] = v.Certificates[j-1], v.Certificates[j]
		}
	}
	return v
}
