package main

import (
	"math"
)

// recycle checks the recycling and stuck-worker settings of spec section 8:
// OBSPROXY_WORKER_MAX_REQUESTS, _MAX_RSS, _MAX_LIFETIME and _STUCK_TIMEOUT
// are 0 (off) or more, and OBSPROXY_WORKER_RECYCLE_JITTER is a number from 0
// to 1. The supervisor enforces them.
func (v *validator) recycle() error {
	c := v.cfg
	switch {
	case c.WorkerMaxRequests < 0:
		return v.invalid("WORKER_MAX_REQUESTS", v.raw("WORKER_MAX_REQUESTS"), "")
	case c.WorkerMaxLifetime < 0:
		return v.invalid("WORKER_MAX_LIFETIME", v.raw("WORKER_MAX_LIFETIME"), "")
	case c.WorkerStuckTimeout < 0:
		return v.invalid("WORKER_STUCK_TIMEOUT", v.raw("WORKER_STUCK_TIMEOUT"), "")
	case math.IsNaN(c.WorkerRecycleJitter) || c.WorkerRecycleJitter < 0 || c.WorkerRecycleJitter > 1:
		return v.invalid("WORKER_RECYCLE_JITTER", v.raw("WORKER_RECYCLE_JITTER"), "")
	}
	return nil
}
