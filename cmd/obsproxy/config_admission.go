package main

// admission checks the admission-control settings (spec section 10): the
// cap, the queue size and the queue timeout.
func (v *validator) admission() error {
	c := v.cfg
	if c.WorkerMaxInFlight < 0 || c.WorkerMaxInFlight > 100000 {
		return v.invalid("WORKER_MAX_IN_FLIGHT", v.raw("WORKER_MAX_IN_FLIGHT"), "")
	}
	if c.QueueSize < 0 || c.QueueSize > 1000000 {
		return v.invalid("QUEUE_SIZE", v.raw("QUEUE_SIZE"), "")
	}
	if c.QueueTimeout <= 0 {
		return v.invalid("QUEUE_TIMEOUT", v.raw("QUEUE_TIMEOUT"), "")
	}
	return nil
}
