package supervisor

import "time"

// BackoffMin is the delay before restarting a worker after its first
// failure in a row (spec section 8).
const BackoffMin = 100 * time.Millisecond

// BackoffReset is how long a process must have served for the next failure
// to count as the first in a row again (spec section 8: "back to 100 ms
// once a process has served for a minute").
const BackoffReset = time.Minute

// backoff is one worker's restart delay: BackoffMin at the first failure,
// doubling at each failure in a row up to max, and back to BackoffMin after
// a process that served for reset. Not safe for concurrent use (one slot
// owns it).
type backoff struct {
	min, max, reset time.Duration
	cur             time.Duration // the last delay chosen; 0 before any failure
}

// next returns the delay before the next start, after a process that
// served (was found serving by a probe) for served; 0 when it never served.
func (b *backoff) next(served time.Duration) time.Duration {
	if served >= b.reset {
		b.cur = 0
	}
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}
