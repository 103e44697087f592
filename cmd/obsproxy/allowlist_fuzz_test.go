package main

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParsePrefixes checks the IP/CIDR list parser behind
// OBSPROXY_ADMIN_IP_ALLOWLIST, OBSPROXY_DIAG_IP_ALLOWLIST and
// OBSPROXY_TRUSTED_PROXIES on any input: no panic; an error names the
// element; a success gives one masked, unzoned prefix per element, each
// containing the address written, and survives a round trip through its
// string form.
func FuzzParsePrefixes(f *testing.F) {
	for _, seed := range []string{
		"", "10.0.0.0/8", "127.0.0.1,::1", " 10.0.0.0/8 , 192.168.1.7 ", "::ffff:10.0.0.0/104", "::ffff:1.2.3.4",
		"fe80::1%eth0", "10.0.0.1/33", "10.0.0.1/8", ",", "a,b", "2001:db8::/32,2001:db8::1/128",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		prefixes, err := parsePrefixes(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "element ") {
				t.Fatalf("parsePrefixes(%q): error %q does not name the element", s, err)
			}
			return
		}
		if s == "" {
			if prefixes != nil {
				t.Fatalf("empty input gave %v", prefixes)
			}
			return
		}
		elems := strings.Split(s, ",")
		if len(prefixes) != len(elems) {
			t.Fatalf("parsePrefixes(%q) = %d prefixes for %d elements", s, len(prefixes), len(elems))
		}
		parts := make([]string, len(prefixes))
		for i, p := range prefixes {
			if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
				t.Fatalf("parsePrefixes(%q)[%d] = %v: not a masked, unzoned prefix", s, i, p)
			}
			if p.Addr().Is4In6() {
				t.Fatalf("parsePrefixes(%q)[%d] = %v: IPv4-mapped prefix not normalised", s, i, p)
			}
			if ip, err := netip.ParseAddr(strings.TrimSpace(elems[i])); err == nil && !p.Contains(ip.Unmap()) {
				t.Fatalf("parsePrefixes(%q)[%d] = %v does not contain the address written", s, i, p)
			}
			parts[i] = p.String()
		}
		again, err := parsePrefixes(strings.Join(parts, ","))
		if err != nil {
			t.Fatalf("round trip of %v failed: %v", parts, err)
		}
		for i := range prefixes {
			if again[i] != prefixes[i] {
				t.Fatalf("round trip changed %v into %v", prefixes[i], again[i])
			}
		}
	})
}
