package supervisor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// OBSPROXY_WORKER_MAX_RSS recycles a process above its limit in two samples
// in a row, not after one spike (spec section 8).
func TestMemoryLimitNeedsTwoSamplesInARow(t *testing.T) {
	sl := &slot{}
	p := &process{maxRSS: 100 << 20}
	now := time.Now()
	sl.sampled(p, now, 150<<20, 0)
	assert.Empty(t, sl.due(p, now), "one sample above: a spike")
	sl.sampled(p, now, 50<<20, 0)
	sl.sampled(p, now, 150<<20, 0)
	assert.Empty(t, sl.due(p, now), "the run starts over after a sample below")
	sl.sampled(p, now, 150<<20, 0)
	assert.Equal(t, reasonMaxRSS, sl.due(p, now), "two samples in a row above")
}

// Each limit is scaled per process by a factor in [1, 1+jitter] (spec
// section 8), so processes started together do not recycle together.
func TestLimitsJitterPerProcess(t *testing.T) {
	s := &Supervisor{cfg: Config{MaxRequests: 40, MaxRSS: 100, MaxLifetime: 10 * time.Second, Jitter: 0.5}}
	started := time.Now()
	requests := map[int64]bool{}
	for range 50 {
		p := &process{started: started}
		s.limits(p)
		assert.GreaterOrEqual(t, p.maxRequests, int64(40))
		assert.LessOrEqual(t, p.maxRequests, int64(60))
		assert.GreaterOrEqual(t, p.maxRSS, uint64(100))
		assert.LessOrEqual(t, p.maxRSS, uint64(150))
		life := p.lifetimeEnd.Sub(started)
		assert.GreaterOrEqual(t, life, 10*time.Second)
		assert.LessOrEqual(t, life, 15*time.Second)
		requests[p.maxRequests] = true
	}
	assert.Greater(t, len(requests), 1, "the limits differ between processes")

	s.cfg.Jitter = 0
	p := &process{started: started}
	s.limits(p)
	assert.Equal(t, int64(40), p.maxRequests, "no jitter: the limit itself")
	assert.Equal(t, started.Add(10*time.Second), p.lifetimeEnd)
}
