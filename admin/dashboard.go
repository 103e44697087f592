package admin

import (
	"embed"
	"net/http"
)

// dashboardFS holds the dashboard's static files: index.html, its script
// and style, and the vendored uPlot build with its licence. Everything is
// served from the binary; the page loads nothing from outside.
//
//go:embed ui
var dashboardFS embed.FS

// dashboardPolicy is the dashboard's Content-Security-Policy: scripts,
// styles and data from obsproxy itself only. uPlot sets element styles
// from script, which style-src 'unsafe-inline' allows.
const dashboardPolicy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboardHeaders adds the dashboard's security headers.
func dashboardHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", dashboardPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
