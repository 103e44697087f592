// Package metricstest reads values out of a Prometheus gatherer, for tests of
// the packages that export obsproxy's metrics and for the end-to-end tests,
// which parse a scraped exposition into a Gatherer with Parse.
package metricstest

import (
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Value returns the value of the first series name{labels} gathered from g:
// a counter's or gauge's value, or a histogram's sample count. It returns
// (0, false) when no such series exists. Labels not named are not compared.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	ms := series(t, g, name, labels)
	if len(ms) == 0 {
		return 0, false
	}
	return valueOf(ms[0]), true
}

// Sum returns the sum over every series of name whose labels include labels
// (0 when there is none).
func Sum(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, m := range series(t, g, name, labels) {
		sum += valueOf(m)
	}
	return sum
}

// LabelValues returns every value label takes among the series of name.
func LabelValues(t testing.TB, g prometheus.Gatherer, name, label string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range series(t, g, name, nil) {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out[lp.GetValue()] = true
			}
		}
	}
	return out
}

// Parse reads a Prometheus text exposition (what /metrics serves) into a
// Gatherer for Value, Sum and LabelValues.
func Parse(t testing.TB, r io.Reader) prometheus.Gatherer {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parsing exposition: %v", err)
	}
	mfs := make([]*dto.MetricFamily, 0, len(byName))
	for _, mf := range byName {
		mfs = append(mfs, mf)
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
}

// series returns the series of name whose labels include labels.
func series(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) []*dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				out = append(out, m)
			}
		}
	}
	return out
}

func valueOf(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func matches(m *dto.Metric, labels map[string]string) bool {
	found := 0
	for _, lp := range m.GetLabel() {
		if v, ok := labels[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(labels)
}
