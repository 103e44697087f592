package admin

import (
	"encoding/base64"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func TestCredentialsMatch(t *testing.T) {
	for _, tc := range []struct {
		name, header, token string
		want                bool
	}{
		{"bearer", "Bearer s3cret", "s3cret", true},
		{"bearer scheme case-insensitive", "bEaReR s3cret", "s3cret", true},
		{"bearer surrounding spaces", "  Bearer   s3cret  ", "s3cret", true},
		{"bearer wrong", "Bearer s3cre", "s3cret", false},
		{"bearer longer", "Bearer s3cret2", "s3cret", false},
		{"bearer empty", "Bearer ", "s3cret", false},
		{"scheme only", "Bearer", "s3cret", false},
		{"no header", "", "s3cret", false},
		{"basic, token as password", basic("admin", "s3cret"), "s3cret", true},
		{"basic, any user", basic("", "s3cret"), "s3cret", true},
		{"basic, password with colon", basic("u", "a:b"), "a:b", true},
		{"basic, token as user", basic("s3cret", ""), "s3cret", false},
		{"basic, no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("s3cret")), "s3cret", false},
		{"basic, not base64", "Basic %%%", "s3cret", false},
		{"other scheme", "Token s3cret", "s3cret", false},
		{"empty token never matches", "Bearer ", "", false},
		{"empty token never matches basic", basic("u", ""), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, CredentialsMatch(tc.header, tc.token))
		})
	}
}

func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		name      string
		remote    string
		forwarded []string
		trust     bool
		want      string // "" means not ok
	}{
		{"peer v4", "10.1.2.3:5000", nil, false, "10.1.2.3"},
		{"peer v6", "[fd00::1]:5000", nil, false, "fd00::1"},
		{"peer mapped", "[::ffff:10.1.2.3]:5000", nil, false, "10.1.2.3"},
		{"peer with zone", "[fe80::1%eth0]:5000", nil, false, "fe80::1"},
		{"peer without port", "10.1.2.3", nil, false, "10.1.2.3"},
		{"peer garbage", "nonsense", nil, false, ""},
		{"forwarded ignored when untrusted", "127.0.0.1:5000", []string{"10.9.9.9"}, false, "127.0.0.1"},
		{"forwarded left-most when trusted", "127.0.0.1:5000", []string{"10.9.9.9, 10.8.8.8"}, true, "10.9.9.9"},
		{"first field line wins", "127.0.0.1:5000", []string{"10.9.9.9", "10.7.7.7"}, true, "10.9.9.9"},
		{"forwarded with port", "127.0.0.1:5000", []string{"10.9.9.9:1234"}, true, "10.9.9.9"},
		{"forwarded bracketed v6", "127.0.0.1:5000", []string{"[2001:db8::1]:443, 10.0.0.1"}, true, "2001:db8::1"},
		{"forwarded bare v6", "127.0.0.1:5000", []string{"2001:db8::1"}, true, "2001:db8::1"},
		{"forwarded garbage is not the peer", "127.0.0.1:5000", []string{"unknown"}, true, ""},
		{"forwarded empty element", "127.0.0.1:5000", []string{", 10.0.0.1"}, true, ""},
		{"trusted without header uses peer", "127.0.0.1:5000", nil, true, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip, ok := ClientIP(tc.remote, tc.forwarded, tc.trust)
			if tc.want == "" {
				assert.False(t, ok, "got %v", ip)
				return
			}
			assert.True(t, ok)
			assert.Equal(t, netip.MustParseAddr(tc.want), ip)
		})
	}
}

func TestAccessAdmits(t *testing.T) {
	lo := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		name   string
		access Access
		remote string
		xff    string
		auth   string
		want   bool
	}{
		{"unconfigured admits nobody", Access{}, "127.0.0.1:1", "", "", false},
		{"token", Access{Token: "t"}, "192.0.2.1:1", "", "Bearer t", true},
		{"wrong token", Access{Token: "t"}, "192.0.2.1:1", "", "Bearer u", false},
		{"allowlisted peer", Access{Allow: lo}, "127.0.0.1:1", "", "", true},
		{"allowlisted v6 peer", Access{Allow: lo}, "[::1]:1", "", "", true},
		{"peer outside", Access{Allow: lo}, "192.0.2.1:1", "", "", false},
		{"spoofed forwarded-for ignored", Access{Allow: lo}, "192.0.2.1:1", "127.0.0.1", "", false},
		{"trusted forwarded-for admits", Access{Allow: lo, TrustForwardedFor: true}, "192.0.2.1:1", "127.0.0.1", "", true},
		{"trusted forwarded-for refuses", Access{Allow: lo, TrustForwardedFor: true}, "127.0.0.1:1", "192.0.2.9", "", false},
		{"either admits: token from outside", Access{Token: "t", Allow: lo}, "192.0.2.1:1", "", "Bearer t", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/diag", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			assert.Equal(t, tc.want, tc.access.Admits(r))
		})
	}
}

func mustPrefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}
