package workermetrics

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// workerLabel is the label added to every series of a worker (spec
// section 9); exportedPrefix renames a label of that name that the worker
// set itself, as Prometheus does under honor_labels: false.
const (
	workerLabel    = "worker"
	exportedPrefix = "exported_"
)

// merger builds one exposition: obsproxy's own families first, then each
// worker's in pool order (spec section 9).
type merger struct {
	byName map[string]*dto.MetricFamily
	// own marks the names of obsproxy's own families, whose series a
	// worker's may collide with; ownSeries holds their label signatures,
	// built on first need.
	own       map[string]bool
	ownSeries map[string]map[string]bool
	sig       []byte // scratch for signatures
}

// newMerger starts from obsproxy's own families.
func newMerger(base []*dto.MetricFamily, workers int) *merger {
	m := &merger{byName: make(map[string]*dto.MetricFamily, len(base)+64*workers), own: make(map[string]bool, len(base))}
	for _, mf := range base {
		m.byName[mf.GetName()] = mf
		m.own[mf.GetName()] = true
	}
	return m
}

// prepare readies one worker's parsed families for the merge, in the
// fetching goroutine: timestamps are removed; each series gains
// worker="<worker>" (a series' own worker label becomes exported_worker)
// and its labels are sorted; each family's series are sorted. It fails on
// two series with the same labels, which the text format forbids.
func prepare(worker string, families map[string]*dto.MetricFamily) error {
	name := workerLabel
	wl := &dto.LabelPair{Name: &name, Value: &worker}
	for fname, mf := range families {
		for _, metric := range mf.Metric {
			relabel(metric, wl)
		}
		slices.SortFunc(mf.Metric, compareMetrics)
		for i := 1; i < len(mf.Metric); i++ {
			if compareMetrics(mf.Metric[i-1], mf.Metric[i]) == 0 {
				return fmt.Errorf("%w: %s has two series with the same labels", errDuplicate, fname)
			}
		}
	}
	return nil
}

// errDuplicate is a worker's exposition with a repeated series.
var errDuplicate = errors.New("duplicate series")

// add merges one worker's prepared families and returns how many it
// dropped: for a TYPE that disagrees with the family's first holder
// (obsproxy, or an earlier worker; HELP stays the first holder's), for a
// name obsproxy reserves (ownNames), or for a series identical to one of
// obsproxy's own.
func (m *merger) add(families map[string]*dto.MetricFamily) (conflicts int) {
	// Within a worker, family order does not matter: the result is sorted
	// by name, and each family keeps the workers in pool order.
	for fname, mf := range families {
		prev, exists := m.byName[fname]
		if ownNames[fname] || (exists && prev.GetType() != mf.GetType()) {
			conflicts++
			continue
		}
		if exists && m.own[fname] && m.dropCollisions(prev, mf) {
			conflicts++
		}
		if !exists {
			m.byName[fname] = mf
			continue
		}
		prev.Metric = append(prev.Metric, mf.Metric...)
	}
	return conflicts
}

// relabel adds wl to metric's labels, renaming an existing worker label
// (and, in turn, an existing exported_worker, as Prometheus does), sorts
// them, and drops the timestamp.
func relabel(metric *dto.Metric, wl *dto.LabelPair) {
	metric.TimestampMs = nil
	for _, lp := range metric.Label {
		if lp.GetName() != workerLabel {
			continue
		}
		n := exportedPrefix + workerLabel
		for hasLabel(metric.Label, n) {
			n = exportedPrefix + n
		}
		lp.Name = &n
		break
	}
	metric.Label = append(metric.Label, wl)
	slices.SortFunc(metric.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
}

func hasLabel(labels []*dto.LabelPair, name string) bool {
	for _, lp := range labels {
		if lp.GetName() == name {
			return true
		}
	}
	return false
}

// compareMetrics orders metrics by their sorted label pairs, names then
// values, so that duplicates are neighbours.
func compareMetrics(a, b *dto.Metric) int {
	for i := 0; i < len(a.Label) && i < len(b.Label); i++ {
		if c := strings.Compare(a.Label[i].GetName(), b.Label[i].GetName()); c != 0 {
			return c
		}
		if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.Label), len(b.Label))
}

// dropCollisions removes from mf the series whose label set one of
// obsproxy's own series in prev already has, and reports whether it
// removed any.
func (m *merger) dropCollisions(prev, mf *dto.MetricFamily) bool {
	if m.ownSeries == nil {
		m.ownSeries = make(map[string]map[string]bool)
	}
	set, ok := m.ownSeries[prev.GetName()]
	if !ok {
		set = make(map[string]bool, len(prev.Metric))
		for _, metric := range prev.Metric {
			set[string(m.signature(metric))] = true
		}
		m.ownSeries[prev.GetName()] = set
	}
	before := len(mf.Metric)
	mf.Metric = slices.DeleteFunc(mf.Metric, func(metric *dto.Metric) bool { return set[string(m.signature(metric))] })
	return len(mf.Metric) != before
}

// signature writes metric's sorted label pairs into m.sig, separated by
// bytes that cannot occur in label names (0xff) or in UTF-8 text (0xfe).
func (m *merger) signature(metric *dto.Metric) []byte {
	m.sig = m.sig[:0]
	for _, lp := range metric.Label { // sorted: by the registry, or by relabel
		m.sig = append(m.sig, lp.GetName()...)
		m.sig = append(m.sig, 0xff)
		m.sig = append(m.sig, lp.GetValue()...)
		m.sig = append(m.sig, 0xfe)
	}
	return m.sig
}

// addOwn adds the families of spec section 9 about the fetches (a worker's
// family of one of their names was dropped by add).
func (m *merger) addOwn(families []*dto.MetricFamily) {
	for _, mf := range families {
		m.byName[mf.GetName()] = mf
	}
}

// result returns the families sorted by name; within a family obsproxy's
// series come first, then each worker's in pool order.
func (m *merger) result() []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, 0, len(m.byName))
	for _, mf := range m.byName {
		if len(mf.Metric) > 0 {
			out = append(out, mf)
		}
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}
