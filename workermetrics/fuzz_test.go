package workermetrics

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// FuzzMerge feeds arbitrary worker bodies through the parse, the relabel
// and the merge: nothing panics, and whatever is merged encodes to text
// that parses again, each worker series carrying exactly one worker label.
func FuzzMerge(f *testing.F) {
	for _, seed := range []string{
		appText,
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
		"# TYPE s summary\ns{quantile=\"0.5\"} NaN\ns_sum 1\ns_count 1\n",
		"x{worker=\"a\",exported_worker=\"b\"} +Inf 1700000000000\n",
		"# TYPE process_open_fds counter\nprocess_open_fds 3\n",
		"obsproxy_worker_metrics_up 1\n",
		"a{v=\"q \\\" b \\\\ n \\n\"} -1e-300\n",
		"<html>",
	} {
		f.Add(seed)
	}
	base := prometheus.NewRegistry()
	base.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "process_open_fds", Help: "obsproxy's."}))
	f.Fuzz(func(t *testing.T, body string) {
		families, err := parse(strings.NewReader(body), 64<<10, 1000)
		if err != nil {
			return
		}
		if err := prepare("w1", families); err != nil {
			return
		}
		mfs, err := base.Gather()
		if err != nil {
			t.Fatal(err)
		}
		m := newMerger(mfs, 1)
		m.add(families)
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range m.result() {
			if err := enc.Encode(mf); err != nil {
				return // a family the encoder refuses (the parser is laxer); not ours to fix
			}
			if mf.GetName() == "process_open_fds" {
				continue
			}
			for _, metric := range mf.Metric {
				n := 0
				for _, lp := range metric.Label {
					if lp.GetName() == workerLabel {
						n++
						if lp.GetValue() != "w1" {
							t.Fatalf("worker=%q in %s", lp.GetValue(), mf.GetName())
						}
					}
				}
				if n != 1 {
					t.Fatalf("%d worker labels in a series of %s", n, mf.GetName())
				}
				if metric.TimestampMs != nil {
					t.Fatalf("a timestamp kept in %s", mf.GetName())
				}
			}
		}
		p := expfmt.NewTextParser(model.LegacyValidation)
		if _, err := p.TextToMetricFamilies(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("the merged text does not parse: %v\n%s", err, buf.String())
		}
	})
}
