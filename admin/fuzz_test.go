package admin

import (
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzCredentialsMatch checks the token check's properties on any header
// and token: no panic; a match needs a non-empty token that the header
// carries (plainly or base64-encoded); the canonical forms always match;
// and a different token never matches the same header.
func FuzzCredentialsMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"Bearer s3cret", "s3cret"}, {"bearer  s3cret ", "s3cret"}, {basic("u", "s3cret"), "s3cret"},
		{"Basic !!!", "x"}, {"Bearer ", ""}, {"", "t"}, {"Token abc", "abc"}, {"Bearer a b", "a b"},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte(":")), ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, header, token string) {
		got := CredentialsMatch(header, token)
		if token == "" && got {
			t.Fatalf("empty token matched %q", header)
		}
		if got && !strings.Contains(header, token) {
			scheme, rest, _ := strings.Cut(strings.TrimSpace(header), " ")
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
			if !strings.EqualFold(scheme, "Basic") || err != nil || !strings.Contains(string(raw), token) {
				t.Fatalf("%q matched token %q that it does not carry", header, token)
			}
		}
		if got && CredentialsMatch(header, token+"x") {
			t.Fatalf("%q matched both %q and %q", header, token, token+"x")
		}
		if token != "" && strings.TrimSpace(token) == token {
			if !CredentialsMatch("Bearer "+token, token) {
				t.Fatalf("canonical bearer form of %q did not match", token)
			}
			if !CredentialsMatch(basic("user", token), token) {
				t.Fatalf("basic form of %q did not match", token)
			}
		}
	})
}

// FuzzClientIP checks the client address rule on any peer and
// X-Forwarded-For: no panic; a result is a valid, unzoned, unmapped
// address; untrusted, the header never matters; trusted and present, the
// peer never matters (a malformed header is not replaced by the peer).
func FuzzClientIP(f *testing.F) {
	for _, seed := range []struct {
		remote, xff string
		trust       bool
	}{
		{"127.0.0.1:5000", "", false}, {"[::1]:5000", "10.0.0.1", true}, {"[::ffff:10.1.2.3]:1", "", false},
		{"10.0.0.1:1", "[2001:db8::1]:443, 10.0.0.2", true}, {"10.0.0.1:1", "unknown", true},
		{"[fe80::1%eth0]:1", "fe80::2%lo", true}, {"", ",", true}, {"1.2.3.4", "1.2.3.4:99999", true},
	} {
		f.Add(seed.remote, seed.xff, seed.trust)
	}
	f.Fuzz(func(t *testing.T, remote, xff string, trust bool) {
		var fwd []string
		if xff != "" {
			fwd = []string{xff}
		}
		ip, ok := ClientIP(remote, fwd, trust)
		if ok && (!ip.IsValid() || ip.Zone() != "" || ip.Is4In6()) {
			t.Fatalf("ClientIP(%q, %q, %v) = %v: not a plain address", remote, xff, trust, ip)
		}
		if !trust || xff == "" {
			peer, peerOK := ClientIP(remote, nil, false)
			if peer != ip || peerOK != ok {
				t.Fatalf("the header changed the result without trust: %v,%v vs %v,%v", ip, ok, peer, peerOK)
			}
			return
		}
		other, otherOK := ClientIP("192.0.2.77:1", fwd, true)
		if other != ip || otherOK != ok {
			t.Fatalf("the peer changed a trusted forwarded result: %v,%v vs %v,%v", ip, ok, other, otherOK)
		}
	})
}
