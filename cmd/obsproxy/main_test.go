package main

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

func runArgs(args []string, environ ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, environ, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestVersionCommand(t *testing.T) {
	code, out, _ := runArgs([]string{"version"})
	assert.Equal(t, exitOK, code)
	assert.True(t, strings.HasPrefix(out, "obsproxy "+version+" (commit "), out)
	assert.Contains(t, out, runtime.Version())
}

func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		code, out, _ := runArgs([]string{arg})
		assert.Equal(t, exitOK, code)
		assert.Contains(t, out, "OBSPROXY_UPSTREAMS")
		assert.Contains(t, out, "--upstreams")
	}
}

func TestUnknownCommandExitsTwo(t *testing.T) {
	code, _, errOut := runArgs([]string{"serve-please"})
	assert.Equal(t, exitConfig, code)
	assert.Contains(t, errOut, `unknown command "serve-please"`)
}

// TestBadConfigExitsTwoBeforeListening checks spec section 1: an invalid
// setting exits 2 with a message naming the variable, and nothing listens.
func TestBadConfigExitsTwoBeforeListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	for _, tc := range []struct {
		name    string
		environ []string
		args    []string
		want    string
	}{
		{"bad policy", []string{"OBSPROXY_LB_POLICY=random"}, nil, `invalid OBSPROXY_LB_POLICY="random"`},
		{"bad duration flag", nil, []string{"--health-interval=soon"}, `invalid OBSPROXY_HEALTH_INTERVAL="soon"`},
		{"bad upstream", []string{"OBSPROXY_UPSTREAMS=ftp://x:1"}, nil, `invalid OBSPROXY_UPSTREAMS="ftp://x:1"`},
		{"exposed admin", []string{"OBSPROXY_ADMIN_ADDR=0.0.0.0:9999"}, nil, "OBSPROXY_ADMIN_TOKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"OBSPROXY_LISTEN_ADDR=" + addr}, tc.environ...)
			code, _, errOut := runArgs(tc.args, env...)
			assert.Equal(t, exitConfig, code)
			assert.Contains(t, errOut, tc.want)
			ln, err := net.Listen("tcp", addr)
			require.NoError(t, err, "nothing may listen after a configuration error")
			ln.Close()
		})
	}
}

func TestHealthcheckFailsWhenNothingListens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	code, _, errOut := runArgs([]string{"healthcheck"}, fmt.Sprintf("OBSPROXY_LISTEN_ADDR=127.0.0.1:%d", port))
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "obsproxy healthcheck:")
}

// TestRegistryExportsTheSpecMetrics checks that the wired registry carries
// every metric of spec section 6 (obsproxy_requests_total has series only
// once requests were counted), passes promlint, and
// reports build info as 1.
func TestRegistryExportsTheSpecMetrics(t *testing.T) {
	cfg, err := loadConfig(nil, []string{"OBSPROXY_UPSTREAMS=a=http://127.0.0.1:1,b=unix:/tmp/b.sock"})
	require.NoError(t, err)
	a, err := newApp(cfg, newLogger(cfg, &bytes.Buffer{}))
	require.NoError(t, err)
	mfs, err := a.registry.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{
		"obsproxy_active_connections", "obsproxy_connections", "obsproxy_connections_accepted_total",
		"obsproxy_in_flight_requests", "obsproxy_request_duration_seconds", "obsproxy_streams_active",
		"obsproxy_upstream_errors_total", "obsproxy_retries_total", "obsproxy_oldest_in_flight_seconds",
		"obsproxy_worker_up", "obsproxy_workers", "obsproxy_uptime_seconds", "obsproxy_build_info",
		"obsproxy_worker_uptime_seconds", "obsproxy_worker_started_total",
		"obsproxy_worker_stopped_total", "obsproxy_pool_uptime_seconds", "obsproxy_health_status",
		"obsproxy_probe_duration_seconds", "obsproxy_probes_total",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		assert.True(t, names[want], "missing %s", want)
	}
	problems, err := testutil.GatherAndLint(a.registry)
	require.NoError(t, err)
	assert.Empty(t, problems)
	v, ok := metricstest.Value(t, a.registry, "obsproxy_build_info", map[string]string{"version": version, "goversion": runtime.Version()})
	assert.True(t, ok)
	assert.Equal(t, 1.0, v)
}
