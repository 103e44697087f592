package workermetrics

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHidePath(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := HidePath("/metrics", next)
	for path, want := range map[string]int{
		"/metrics":          http.StatusNotFound,
		"/metrics/":         http.StatusNotFound,
		"/metrics/extra":    http.StatusNotFound,
		"//metrics":         http.StatusNotFound,
		"/./metrics":        http.StatusNotFound,
		"/x/../metrics":     http.StatusNotFound,
		"/%6Detrics":        http.StatusNotFound,
		"/metrics?name[]=a": http.StatusNotFound,
		"/metricsx":         http.StatusTeapot,
		"/app/metrics":      http.StatusTeapot,
		"/":                 http.StatusTeapot,
		"/Metrics":          http.StatusTeapot, // routers are case-sensitive
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		assert.Equal(t, want, w.Code, path)
		if want == http.StatusNotFound {
			assert.JSONEq(t, `{"error":"not found"}`, w.Body.String(), path)
		}
	}
	// Off: next itself.
	w := httptest.NewRecorder()
	HidePath("", next).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	assert.Equal(t, http.StatusTeapot, w.Code)
}
