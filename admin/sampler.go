package admin

import (
	"context"
	"sync"
	"time"
)

// historyWindow is how far back the rolling charts reach when the
// dashboard opens.
const historyWindow = 5 * time.Minute

// sampler reads the sources every interval and keeps the chart history: a
// ring of the newest points, and the rates of the last step for the JSON
// snapshot. One goroutine (run) writes; readers copy under mu.
type sampler struct {
	src      *Sources
	interval time.Duration
	now      func() time.Time

	rt rater // only run touches it

	mu      sync.Mutex
	ring    []Point // capacity fixed at start
	next    int     // where the next point goes
	full    bool
	last    rates
	hasLast bool
}

func newSampler(src *Sources, interval time.Duration, now func() time.Time) *sampler {
	n := int(historyWindow / interval)
	n = min(max(n, 60), 600)
	return &sampler{src: src, interval: interval, now: now, ring: make([]Point, n)}
}

// run samples until ctx ends.
func (s *sampler) run(ctx context.Context) {
	s.step()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.step()
		}
	}
}

// step takes one reading and records its point.
func (s *sampler) step() {
	r := s.src.read(s.now())
	rt := s.rt.next(r)
	p := point(r, rt)
	s.mu.Lock()
	s.ring[s.next] = p
	s.next = (s.next + 1) % len(s.ring)
	s.full = s.full || s.next == 0
	s.last, s.hasLast = rt, true
	s.mu.Unlock()
}

// history returns the recorded points, oldest first.
func (s *sampler) history() []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full {
		return append([]Point(nil), s.ring[:s.next]...)
	}
	out := make([]Point, 0, len(s.ring))
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

// latest returns the rates of the last step; ok is false before the first
// step.
func (s *sampler) latest() (rt rates, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.hasLast
}
