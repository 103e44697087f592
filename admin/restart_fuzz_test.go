package admin

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzCrossSite checks the restart route's cross-site rule on any Host,
// Origin and Sec-Fetch-Site: no panic; a request passes only when its
// Sec-Fetch-Site is absent, same-origin or none; an Origin that passes for
// a Host does not pass for a different Host (that Host with a character
// more); and http://evil.example passes only for the Host evil.example.
func FuzzCrossSite(f *testing.F) {
	for _, seed := range [][3]string{
		{"127.0.0.1:9090", "", ""}, {"127.0.0.1:9090", "http://127.0.0.1:9090", "same-origin"},
		{"127.0.0.1:9090", "http://evil.example", "cross-site"}, {"[::1]:9090", "http://[::1]:9090", "none"},
		{"admin.example:80", "http://admin.example", ""}, {"admin.example", "https://admin.example:443", ""},
		{"x", "null", ""}, {"", "http://", ""}, {"a:80", "http://A", "same-site"}, {"h", "http://h/path", ""},
		{"h", "http://u@h", ""}, {"h:", "http://h:", ""}, {"[::1]:80", "http://[::1]", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, host, origin, site string) {
		req := func(host string) *http.Request {
			r := &http.Request{Method: http.MethodPost, Host: host, Header: http.Header{}}
			if origin != "" {
				r.Header.Set("Origin", origin)
			}
			if site != "" {
				r.Header.Set("Sec-Fetch-Site", site)
			}
			return r
		}
		passes := crossSite(req(host)) == ""
		if !passes {
			return
		}
		if s := strings.TrimSpace(site); site != "" && s != "same-origin" && s != "none" {
			t.Fatalf("Sec-Fetch-Site %q passed", site)
		}
		if origin == "" {
			return
		}
		if crossSite(req(host+"x")) == "" {
			t.Fatalf("Origin %q passed for both Host %q and %q", origin, host, host+"x")
		}
		if origin == "http://evil.example" && !strings.EqualFold(host, "evil.example") && !strings.EqualFold(host, "evil.example:80") {
			t.Fatalf("Origin %q passed for Host %q", origin, host)
		}
	})
}
