package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"strings"

	"github.com/obsproxy/obsproxy/certs"
)

// tls checks the client-side settings of spec section 11: the certificate
// pair loads now (both files readable, the key matching, the certificate
// not expired: exit 2 otherwise, naming the variable of the file at
// fault), ACME and files are not both set, h2c only on a plain listener,
// and the ACME settings are well formed. It fills TLSMinVersionID and
// ACMEDomainList.
func (v *validator) tls() error {
	c := v.cfg
	switch c.TLSMinVersion {
	case "1.2":
		c.TLSMinVersionID = tls.VersionTLS12
	case "1.3":
		c.TLSMinVersionID = tls.VersionTLS13
	default:
		return v.invalid("TLS_MIN_VERSION", c.TLSMinVersion, "")
	}
	files := c.TLSCertFile != "" || c.TLSKeyFile != ""
	if files {
		if c.TLSCertFile == "" {
			return v.invalid("TLS_CERT_FILE", "", "OBSPROXY_TLS_KEY_FILE is set, so the certificate file is needed too")
		}
		if c.TLSKeyFile == "" {
			return v.invalid("TLS_KEY_FILE", "", "OBSPROXY_TLS_CERT_FILE is set, so the key file is needed too")
		}
		if _, err := certs.Load(certs.Config{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile}); err != nil {
			name, value := "TLS_CERT_FILE", c.TLSCertFile
			var fe *certs.FileError
			if errors.As(err, &fe) {
				if fe.File == c.TLSKeyFile && fe.File != c.TLSCertFile {
					name, value = "TLS_KEY_FILE", c.TLSKeyFile
				}
				err = fe.Err
			}
			return v.invalid(name, value, err.Error())
		}
	}
	if c.ACMEDomains != "" {
		if files {
			return v.invalid("ACME_DOMAINS", c.ACMEDomains, "certificates come either from files (OBSPROXY_TLS_CERT_FILE) or from ACME, not both")
		}
		domains, reason := parseACMEDomains(c.ACMEDomains)
		if reason != "" {
			return v.invalid("ACME_DOMAINS", c.ACMEDomains, reason)
		}
		c.ACMEDomainList = domains
		if c.ACMECacheDir == "" {
			return v.invalid("ACME_CACHE_DIR", "", "required with OBSPROXY_ACME_DOMAINS, or every restart orders new certificates")
		}
		if fi, err := os.Stat(c.ACMECacheDir); err == nil && !fi.IsDir() {
			return v.invalid("ACME_CACHE_DIR", c.ACMECacheDir, "not a directory")
		}
	}
	if c.ACMEEmail != "" {
		if a, err := mail.ParseAddress(c.ACMEEmail); err != nil || a.Address != c.ACMEEmail {
			return v.invalid("ACME_EMAIL", c.ACMEEmail, "")
		}
	}
	if u, err := url.Parse(c.ACMEDirectory); err != nil || u.Scheme != "https" || u.Host == "" {
		return v.invalid("ACME_DIRECTORY", c.ACMEDirectory, "")
	}
	if c.ACMECAFile != "" {
		if _, err := certs.CAPool(c.ACMECAFile); err != nil {
			return v.invalid("ACME_CA_FILE", c.ACMECAFile, err.Error())
		}
	}
	if c.H2C && (files || c.ACMEDomains != "") {
		return v.invalid("H2C", "true", "with TLS, HTTP/2 is negotiated by ALPN; h2c is for a plain listener")
	}
	return nil
}

// parseACMEDomains splits OBSPROXY_ACME_DOMAINS into lower-cased DNS names
// with at least one dot; it returns why it cannot, or "".
func parseACMEDomains(s string) ([]string, string) {
	var out []string
	for i, d := range strings.Split(s, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "":
			return nil, fmt.Sprintf("name %d is empty", i+1)
		case strings.HasPrefix(d, "*."):
			return nil, "wildcard " + d + " needs DNS-01, which TLS-ALPN-01 cannot do"
		case isIP(d):
			return nil, d + " is an IP address"
		case !isHostname(d) || strings.Contains(d, "_") || !strings.Contains(strings.Trim(d, "."), "."):
			return nil, d + " is not a DNS name with a dot"
		}
		out = append(out, strings.TrimSuffix(d, "."))
	}
	return out, ""
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}
