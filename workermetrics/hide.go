package workermetrics

import (
	"net/http"
	"path"
	"strings"
)

// HidePath returns a handler that answers 404 on the workers' metrics path
// p (OBSPROXY_WORKER_METRICS_PATH) and everything under it, without asking
// a worker, and passes every other request to next: the application's
// metrics are not public (spec section 9). The path is compared after
// net/http's percent-decoding and after path.Clean, so that /./metrics,
// //metrics, /metrics/ and /%6detrics are refused as well (a worker's
// router might serve them as /metrics). An empty p returns next itself.
func HidePath(p string, next http.Handler) http.Handler {
	if p == "" {
		return next
	}
	p = strings.TrimSuffix(path.Clean(p), "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := path.Clean("/" + r.URL.Path)
		if c == p || strings.HasPrefix(c, p+"/") {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte("{\"error\":\"not found\"}\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
