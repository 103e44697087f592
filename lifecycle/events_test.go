package lifecycle_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// emitEvents makes exactly n lifecycle events on worker w0 of f (a pool of
// two workers with MinUp 2, so no pool events): a supervisor start, then up
// and down in turn. It returns the events as made.
func emitEvents(t *testing.T, f *fixture, n int) []lifecycle.Event {
	t.Helper()
	w := f.worker(0)
	var want []lifecycle.Event
	for i := 0; i < n; i++ {
		at := f.clock.Advance(time.Second)
		e := lifecycle.Event{Seq: uint64(i + 1), Time: at, Worker: "w0"}
		switch {
		case i == 0:
			f.pool.ProcessStarted(w, at, 0)
			e.Kind = lifecycle.EventStarted
		case i%2 == 1:
			f.pool.ObserveProbe(w, answer(at, lifecycle.Healthy))
			e.Kind, e.Reason = lifecycle.EventUp, "healthy"
		default:
			require.True(t, f.pool.MarkDown(w, "connect failed"))
			e.Kind, e.Reason = lifecycle.EventDown, "connect failed"
		}
		want = append(want, e)
		require.Len(t, f.log.all(), i+1, "step %d makes one event", i+1)
	}
	return want
}

func seqs(evs []lifecycle.Event) []uint64 {
	out := []uint64{}
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}

func TestEventRing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n        int
		wantSeqs []uint64
	}{
		{"empty", 0, []uint64{}},
		{"one", 1, []uint64{1}},
		{"not full", 2, []uint64{1, 2}},
		{"exactly full", 3, []uint64{1, 2, 3}},
		{"wrapped once", 4, []uint64{2, 3, 4}},
		{"wrapped twice", 5, []uint64{3, 4, 5}},
		{"wrapped full circle", 6, []uint64{4, 5, 6}},
		{"wrapped more", 8, []uint64{6, 7, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 2, lifecycle.Config{MinUp: 2, EventLogSize: 3})
			made := emitEvents(t, f, tc.n)
			got := f.pool.Events()
			assert.Equal(t, tc.wantSeqs, seqs(got))
			if len(made) > 0 {
				assert.Equal(t, made[max(0, len(made)-3):], got, "newest three, oldest first")
			}
			assert.Equal(t, made, f.log.all(), "OnEvent sees every event")
		})
	}
}

func TestEventRingFiveEvents(t *testing.T) {
	f := newFixture(t, 2, lifecycle.Config{MinUp: 2, EventLogSize: 3})
	made := emitEvents(t, f, 5)
	got := f.pool.Events()
	require.Len(t, got, 3)
	assert.Equal(t, []uint64{3, 4, 5}, seqs(got))
	assert.Equal(t, []string{lifecycle.EventDown, lifecycle.EventUp, lifecycle.EventDown},
		[]string{got[0].Kind, got[1].Kind, got[2].Kind})
	assert.Equal(t, made[2:], got)
	assert.Equal(t, []uint64{1, 2, 3, 4, 5}, seqs(f.log.all()))
}

func TestEventsReturnsACopy(t *testing.T) {
	f := newFixture(t, 2, lifecycle.Config{MinUp: 2, EventLogSize: 3})
	made := emitEvents(t, f, 4)
	got := f.pool.Events()
	got[0].Kind, got[0].Seq = "tampered", 99
	assert.Equal(t, made[1:], f.pool.Events())
}

func TestEventLogDefaultSize(t *testing.T) {
	f := newFixture(t, 2, lifecycle.Config{MinUp: 2})
	emitEvents(t, f, 300)
	got := f.pool.Events()
	require.Len(t, got, 256)
	assert.Equal(t, uint64(45), got[0].Seq)
	assert.Equal(t, uint64(300), got[255].Seq)
	for i := 1; i < len(got); i++ {
		require.Equal(t, got[i-1].Seq+1, got[i].Seq)
	}
}

func TestEventWorkerAndPoolEvents(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	at := f.clock.Now()
	f.pool.ObserveProbe(f.worker(0), answer(at, lifecycle.Healthy))
	assert.Equal(t, []lifecycle.Event{
		{Seq: 1, Time: at, Worker: "w0", Kind: lifecycle.EventStarted},
		{Seq: 2, Time: at, Worker: "w0", Kind: lifecycle.EventUp, Reason: "healthy"},
		{Seq: 3, Time: at, Worker: "", Kind: lifecycle.EventPoolUp},
	}, f.pool.Events())
}
