package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAdmissionSettings(t *testing.T) {
	cfg, err := loadConfig([]string{"--worker-max-in-flight=4", "--queue-size=0"},
		[]string{"OBSPROXY_QUEUE_TIMEOUT=500ms", "OBSPROXY_QUEUE_SIZE=7"})
	require.NoError(t, err)
	assert.Equal(t, 4, cfg.WorkerMaxInFlight)
	assert.Equal(t, 0, cfg.QueueSize, "the flag overrides the environment")
	assert.Equal(t, 500*time.Millisecond, cfg.QueueTimeout)
}

func TestAdmissionSettingsInvalid(t *testing.T) {
	const (
		acceptCap      = "an integer from 0 to 100000"
		acceptSize     = "an integer from 0 to 1000000"
		acceptPositive = "a positive Go duration such as 500ms, 2s, 1m"
	)
	for _, tc := range []struct {
		name    string
		environ []string
		want    string
	}{
		{"cap negative", []string{"OBSPROXY_WORKER_MAX_IN_FLIGHT=-1"}, `invalid OBSPROXY_WORKER_MAX_IN_FLIGHT="-1": want ` + acceptCap},
		{"cap too large", []string{"OBSPROXY_WORKER_MAX_IN_FLIGHT=100001"}, `invalid OBSPROXY_WORKER_MAX_IN_FLIGHT="100001": want ` + acceptCap},
		{"cap not a number", []string{"OBSPROXY_WORKER_MAX_IN_FLIGHT=many"}, `invalid OBSPROXY_WORKER_MAX_IN_FLIGHT="many": want ` + acceptCap},
		{"size negative", []string{"OBSPROXY_QUEUE_SIZE=-5"}, `invalid OBSPROXY_QUEUE_SIZE="-5": want ` + acceptSize},
		{"size too large", []string{"OBSPROXY_QUEUE_SIZE=2000000"}, `invalid OBSPROXY_QUEUE_SIZE="2000000": want ` + acceptSize},
		{"timeout zero", []string{"OBSPROXY_QUEUE_TIMEOUT=0s"}, `invalid OBSPROXY_QUEUE_TIMEOUT="0s": want ` + acceptPositive},
		{"timeout negative", []string{"OBSPROXY_QUEUE_TIMEOUT=-1s"}, `invalid OBSPROXY_QUEUE_TIMEOUT="-1s": want ` + acceptPositive},
		{"timeout without unit", []string{"OBSPROXY_QUEUE_TIMEOUT=10"}, `invalid OBSPROXY_QUEUE_TIMEOUT="10": want ` + acceptPositive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(nil, tc.environ)
			require.Error(t, err)
			var ce *configError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}
