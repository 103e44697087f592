package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWorkerMetricsConfigInvalid(t *testing.T) {
	const (
		acceptPath = "empty, or an absolute path other than / such as /metrics"
		acceptSize = "a byte count or a number with a unit from 1KiB to 1GiB, e.g. 8MiB, 500MB, 1048576"
		acceptDur  = "a positive Go duration such as 500ms, 2s, 1m"
	)
	tests := []struct {
		name    string
		environ []string
		want    string
	}{
		{"relative path", []string{"OBSPROXY_WORKER_METRICS_PATH=metrics"}, `invalid OBSPROXY_WORKER_METRICS_PATH="metrics": want ` + acceptPath},
		{"root", []string{"OBSPROXY_WORKER_METRICS_PATH=/"}, `invalid OBSPROXY_WORKER_METRICS_PATH="/": the public listener answers 404 on this path and everything under it, so / would hide every route; want ` + acceptPath},
		{"dot root", []string{"OBSPROXY_WORKER_METRICS_PATH=/./"}, `invalid OBSPROXY_WORKER_METRICS_PATH="/./": the public listener answers 404 on this path and everything under it, so / would hide every route; want ` + acceptPath},
		{"query", []string{"OBSPROXY_WORKER_METRICS_PATH=/metrics?x=1"}, `invalid OBSPROXY_WORKER_METRICS_PATH="/metrics?x=1": a path cannot contain ?, # or blanks; want ` + acceptPath},
		{"health path", []string{"OBSPROXY_WORKER_METRICS_PATH=/health"}, `invalid OBSPROXY_WORKER_METRICS_PATH="/health": same as OBSPROXY_HEALTH_PATH; want ` + acceptPath},
		{"liveness path", []string{"OBSPROXY_WORKER_METRICS_PATH=/livez"}, `invalid OBSPROXY_WORKER_METRICS_PATH="/livez": same as OBSPROXY_LIVENESS_PATH; want ` + acceptPath},
		{"timeout zero", []string{"OBSPROXY_WORKER_METRICS_TIMEOUT=0s"}, `invalid OBSPROXY_WORKER_METRICS_TIMEOUT="0s": want ` + acceptDur},
		{"timeout negative", []string{"OBSPROXY_WORKER_METRICS_TIMEOUT=-1s"}, `invalid OBSPROXY_WORKER_METRICS_TIMEOUT="-1s": want ` + acceptDur},
		{"timeout without unit", []string{"OBSPROXY_WORKER_METRICS_TIMEOUT=2"}, `invalid OBSPROXY_WORKER_METRICS_TIMEOUT="2": want ` + acceptDur},
		{"size word", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=lots"}, `invalid OBSPROXY_WORKER_METRICS_MAX_BYTES="lots": want ` + acceptSize},
		{"size unknown unit", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=8MiBs"}, `invalid OBSPROXY_WORKER_METRICS_MAX_BYTES="8MiBs": want ` + acceptSize},
		{"size negative", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=-8MiB"}, `invalid OBSPROXY_WORKER_METRICS_MAX_BYTES="-8MiB": want ` + acceptSize},
		{"size overflow", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=99999999EiB"}, `invalid OBSPROXY_WORKER_METRICS_MAX_BYTES="99999999EiB": want ` + acceptSize},
		{"size zero", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=0"}, `invalid OBSPROXY_WORKER_METRICS_MAX_BYTES="0": below 1KiB; want ` + acceptSize},
		{"size too small", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=1000"}, `invalid OBSPROXY_WORKER_METRICS_MAX_BYTES="1000": below 1KiB; want ` + acceptSize},
		{"size too large", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=2GiB"}, `invalid OBSPROXY_WORKER_METRICS_MAX_BYTES="2GiB": above 1GiB; want ` + acceptSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(nil, tt.environ)
			require.Error(t, err)
			var ce *configError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.want, err.Error())
		})
	}
}

func TestWorkerMetricsConfigValid(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		path    string
		timeout time.Duration
		bytes   byteSize
	}{
		{"defaults: off", nil, "", 2 * time.Second, 8 << 20},
		{"on", []string{"OBSPROXY_WORKER_METRICS_PATH=/metrics"}, "/metrics", 2 * time.Second, 8 << 20},
		{"IEC", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=512MiB"}, "", 2 * time.Second, 512 << 20},
		{"SI", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=500MB"}, "", 2 * time.Second, 500_000_000},
		{"GiB upper bound", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=1GiB"}, "", 2 * time.Second, 1 << 30},
		{"plain count", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=1048576"}, "", 2 * time.Second, 1 << 20},
		{"lower case with a space", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=64 kib"}, "", 2 * time.Second, 64 << 10},
		{"lower bound", []string{"OBSPROXY_WORKER_METRICS_MAX_BYTES=1KiB"}, "", 2 * time.Second, 1024},
		{"timeout", []string{"OBSPROXY_WORKER_METRICS_TIMEOUT=250ms"}, "", 250 * time.Millisecond, 8 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(nil, tt.environ)
			require.NoError(t, err)
			assert.Equal(t, tt.path, cfg.WorkerMetricsPath)
			assert.Equal(t, tt.timeout, cfg.WorkerMetricsTimeout)
			assert.Equal(t, tt.bytes, cfg.WorkerMetricsMaxBytes)
		})
	}
}

func TestByteSizeString(t *testing.T) {
	assert.Equal(t, "8.0 MiB", byteSize(8<<20).String())
}
