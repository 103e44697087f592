package main

import (
	"strings"
)

// Bounds of OBSPROXY_WORKER_METRICS_MAX_BYTES: below 1 KiB not even
// prometheus_client's default process and platform metrics fit; above
// 1 GiB one scrape could cost obsproxy gigabytes per worker.
const (
	minWorkerMetricsBytes = 1 << 10
	maxWorkerMetricsBytes = 1 << 30
)

// workerMetrics checks the settings of spec section 9: the path (empty
// turns the feature off) must be a plain absolute path other than / and
// other than obsproxy's own public endpoints, the timeout positive, the
// size within [minWorkerMetricsBytes, maxWorkerMetricsBytes].
func (v *validator) workerMetrics() error {
	c := v.cfg
	if p := c.WorkerMetricsPath; p != "" {
		switch {
		case !strings.HasPrefix(p, "/"):
			return v.invalid("WORKER_METRICS_PATH", p, "")
		case strings.ContainsAny(p, "?# \t"):
			return v.invalid("WORKER_METRICS_PATH", p, "a path cannot contain ?, # or blanks")
		case strings.Trim(p, "/.") == "":
			return v.invalid("WORKER_METRICS_PATH", p, "the public listener answers 404 on this path and everything under it, so / would hide every route")
		case p == c.HealthPath:
			return v.invalid("WORKER_METRICS_PATH", p, "same as OBSPROXY_HEALTH_PATH")
		case p == c.LivenessPath:
			return v.invalid("WORKER_METRICS_PATH", p, "same as OBSPROXY_LIVENESS_PATH")
		}
	}
	if c.WorkerMetricsTimeout <= 0 {
		return v.invalid("WORKER_METRICS_TIMEOUT", v.raw("WORKER_METRICS_TIMEOUT"), "")
	}
	if n := c.WorkerMetricsMaxBytes; n < minWorkerMetricsBytes || n > maxWorkerMetricsBytes {
		reason := "below 1KiB"
		if n > maxWorkerMetricsBytes {
			reason = "above 1GiB"
		}
		return v.invalid("WORKER_METRICS_MAX_BYTES", v.raw("WORKER_METRICS_MAX_BYTES"), reason)
	}
	return nil
}
