package workermetrics

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// BenchmarkGather16Workers2000Series is one scrape of obsproxy with 16
// workers of 2,000 series each (docs/performance.md): fetched over
// loopback HTTP, parsed, relabelled, merged with a registry holding the
// Go and process collectors, and encoded in the text format as promhttp
// would.
func BenchmarkGather16Workers2000Series(b *testing.B) {
	body := syntheticExposition(2000)
	handlers := make([]http.Handler, 16)
	for i := range handlers {
		handlers[i] = textHandler(body)
	}
	base := prometheus.NewRegistry()
	base.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := newTestGatherer(b, base, Config{}, handlers...)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		mfs, err := g.Gather()
		if err != nil {
			b.Fatal(err)
		}
		_ = exposition(b, mfs)
	}
	b.StopTimer()
	mfs, _ := g.Gather()
	n := 0
	for _, mf := range mfs {
		n += len(mf.Metric)
	}
	b.ReportMetric(float64(n), "metrics/scrape")
}

// endless streams valid sample lines until the client goes or limit bytes
// were written (bounded, so a broken client cannot keep it going).
func endless(lineLen int, limit int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("# TYPE flood gauge\n"))
		written := 0
		for i := 0; written < limit; i++ {
			n, err := fmt.Fprintf(w, "flood{i=\"%d\",pad=\"%s\"} 1\n", i, strings.Repeat("x", lineLen))
			if err != nil {
				return
			}
			written += n
		}
	})
}

// TestMemoryStaysBoundedWhenAWorkerSendsTooMuch: a worker that floods
// 256 MiB, in short lines (stopped by the series limit) or in long ones
// (stopped by the byte limit), costs obsproxy an allocation bounded by the
// limits, not by what it sent.
func TestMemoryStaysBoundedWhenAWorkerSendsTooMuch(t *testing.T) {
	for name, lineLen := range map[string]int{"short lines": 10, "long lines": 64 << 10} {
		t.Run(name, func(t *testing.T) {
			// A generous timeout: under -race on a loaded machine reading 8 MiB takes seconds.
			g := newTestGatherer(t, nil, Config{Timeout: time.Minute}, endless(lineLen, 256<<20), textHandler(appText))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			mfs, err := g.Gather()
			runtime.ReadMemStats(&after)
			require.NoError(t, err)
			got := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
			assert.Equal(t, 1.0, errorsTotal(t, got, "w1", "too_large"))
			v, _ := metricstest.Value(t, got, "app_temperature", map[string]string{"worker": "w2"})
			assert.Equal(t, 21.5, v)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %.1f MiB for a 256 MiB flood", float64(alloc)/(1<<20))
			// The test process' whole allocation (server side included)
			// stays well under what the worker offered.
			assert.Less(t, alloc, uint64(96<<20))
		})
	}
}
