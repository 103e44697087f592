package lifecycle

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// HeldByKilled's rule (MarkKilled): a kill of generation k at time at
// counts for a request recorded at generation gen <= k and sent no later
// than at; the last four kills are remembered.
func TestHeldByKilled(t *testing.T) {
	w := &Worker{Name: "w1"}
	t0 := time.Unix(1000, 0)
	before, after := t0.Add(-time.Millisecond), t0.Add(time.Millisecond)
	assert.False(t, w.HeldByKilled(1, before), "never killed")

	w.MarkKilled(2, t0)
	for _, tc := range []struct {
		name string
		gen  uint64
		sent time.Time
		want bool
	}{
		{"sent to the killed process before the kill", 2, before, true},
		{"sent at the kill's instant", 2, t0, true},
		{"sent to an earlier process (or, after a takeover, this one)", 1, before, true},
		{"sent to the replacement", 3, before, false},
		{"sent after the kill", 2, after, false},
	} {
		assert.Equal(t, tc.want, w.HeldByKilled(tc.gen, tc.sent), tc.name)
	}

	// A newer process killed first, then the older one: both count.
	w2 := &Worker{Name: "w2"}
	w2.MarkKilled(5, t0)
	w2.MarkKilled(4, after)
	assert.True(t, w2.HeldByKilled(5, before), "the first kill is not forgotten by the second")
	assert.True(t, w2.HeldByKilled(4, after))

	// Four kills are remembered; a fifth forgets the oldest. (Generations
	// fall here, so that no later kill covers an earlier one.)
	w3 := &Worker{Name: "w3"}
	for i := uint64(1); i <= 5; i++ {
		w3.MarkKilled(60-i*10, t0.Add(time.Duration(i)*time.Second))
	}
	assert.False(t, w3.HeldByKilled(50, t0.Add(time.Second)), "the oldest is forgotten")
	assert.True(t, w3.HeldByKilled(40, t0.Add(2*time.Second)))
	assert.True(t, w3.HeldByKilled(10, t0.Add(5*time.Second)))
}

func TestHeldByKilledAllocatesNothing(t *testing.T) {
	w := &Worker{Name: "w1"}
	now := time.Now()
	assert.Equal(t, 0.0, testing.AllocsPerRun(100, func() { w.HeldByKilled(1, now) }), "never killed: the lock-free path")
	w.MarkKilled(1, now)
	assert.Equal(t, 0.0, testing.AllocsPerRun(100, func() { w.HeldByKilled(1, now) }))
}

// Marks and checks from many goroutines (run under -race).
func TestHeldByKilledConcurrent(t *testing.T) {
	w := &Worker{Name: "w1"}
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 500 {
				w.MarkKilled(uint64(i*1000+j), t0)
				w.HeldByKilled(uint64(j), t0)
			}
		})
	}
	wg.Wait()
	assert.True(t, w.HeldByKilled(0, t0), "every remembered kill is of a generation >= 0 at t0")
}
