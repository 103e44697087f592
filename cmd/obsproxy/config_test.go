package main

import (
	"bytes"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// configVars lists the variables of Config by reflection over its env tags,
// independently of settingRows, so that the tests cannot drift from the struct.
func configVars(t *testing.T) (vars, flags []string) {
	t.Helper()
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		name := typ.Field(i).Tag.Get("env")
		require.NotEmpty(t, name, "field %s has no env tag", typ.Field(i).Name)
		if name == "-" {
			continue
		}
		vars = append(vars, "OBSPROXY_"+name)
		flags = append(flags, "--"+strings.ToLower(strings.ReplaceAll(name, "_", "-")))
	}
	return vars, flags
}

// fieldForVar returns the Config field that variable key fills.
func fieldForVar(t *testing.T, key string) reflect.StructField {
	t.Helper()
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		if f := typ.Field(i); "OBSPROXY_"+f.Tag.Get("env") == key {
			return f
		}
	}
	t.Fatalf("no Config field for %s", key)
	return reflect.StructField{}
}

func TestLoadConfigDefaults(t *testing.T) {
	want := Config{
		ListenAddr:              ":8080",
		Upstreams:               "http://127.0.0.1:8000",
		LBPolicy:                "least_inflight",
		HealthPath:              "/health",
		LivenessPath:            "/livez",
		UpstreamHealthPath:      "/health",
		HealthInterval:          2 * time.Second,
		HealthTimeout:           time.Second,
		HealthRise:              1,
		HealthFall:              1,
		MinHealthyWorkers:       1,
		HealthVerbose:           false,
		AdminAddr:               "127.0.0.1:9090",
		AdminToken:              "",
		AdminIPAllowlist:        "",
		DiagEnabled:             false,
		DiagAuthToken:           "",
		DiagIPAllowlist:         "",
		DiagTrustForwarded:      false,
		TrustedProxies:          "",
		MaxConnections:          0,
		ReadHeaderTimeout:       10 * time.Second,
		IdleTimeout:             120 * time.Second,
		UpstreamDialTimeout:     2 * time.Second,
		UpstreamResponseTimeout: 60 * time.Second,
		DrainDelay:              0,
		ShutdownTimeout:         30 * time.Second,
		SampleInterval:          time.Second,
		PushURL:                 "",
		PushInterval:            10 * time.Second,
		PushExtraLabels:         "",
		AccessLog:               false,
		LogLevel:                "info",
		LogFormat:               "json",
		WorkerMetricsTimeout:    2 * time.Second,
		WorkerMetricsMaxBytes:   8 << 20,
		TLSMinVersion:           "1.2",
		TLSMinVersionID:         0x0303,
		ACMEDirectory:           "https://acme-v02.api.letsencrypt.org/directory",
		QueueSize:               1024,
		QueueTimeout:            10 * time.Second,
		WorkerTransport:         "unix",
		WorkerStartTimeout:      time.Minute,
		WorkerStopTimeout:       30 * time.Second,
		WorkerBackoffMax:        30 * time.Second,
		WorkerRecycleJitter:     0.1,
		Workers:                 []workerSpec{{Name: "127.0.0.1:8000", Network: "tcp", Address: "127.0.0.1:8000"}},
	}
	for name, environ := range map[string][]string{
		"nil":                 nil,
		"no OBSPROXY_ vars":   {"PATH=/usr/bin", "HOME=/root", "=C:=C:\\", "NOEQUALS"},
		"empty means default": {"OBSPROXY_LISTEN_ADDR=", "OBSPROXY_HEALTH_INTERVAL=", "OBSPROXY_HEALTH_RISE=", "OBSPROXY_HEALTH_VERBOSE=", "OBSPROXY_UPSTREAMS="},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadConfig(nil, environ)
			require.NoError(t, err)
			assert.Equal(t, want, cfg)
		})
	}
}

func TestLoadConfigEmptyAdminAddrDisables(t *testing.T) {
	for name, tc := range map[string]struct{ environ, args []string }{
		"env":  {environ: []string{"OBSPROXY_ADMIN_ADDR="}},
		"flag": {environ: []string{"OBSPROXY_ADMIN_ADDR=0.0.0.0:9090"}, args: []string{"--admin-addr="}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadConfig(tc.args, tc.environ)
			require.NoError(t, err)
			assert.Equal(t, "", cfg.AdminAddr)
		})
	}
}

func TestLoadConfigEnvironEntries(t *testing.T) {
	cfg, err := loadConfig(nil, []string{
		"OBSPROXY_LISTEN_ADDR=:1111",
		"OBSPROXY_LISTEN_ADDR=:2222", // a later entry wins
		`OBSPROXY_PUSH_EXTRA_LABELS=env="a=b"`,
		"OBSPROXY_LISTEN_ADRR=:3333", // typo: reported, not fatal
		"OBSPROXY_ALPHA=1",
		"LISTEN_ADDR=:4444",
	})
	require.NoError(t, err)
	assert.Equal(t, ":2222", cfg.ListenAddr)
	assert.Equal(t, []labelPair{{Name: "env", Value: "a=b"}}, cfg.PushLabels)
	assert.Equal(t, []string{"OBSPROXY_ALPHA", "OBSPROXY_LISTEN_ADRR"}, cfg.UnknownVars)
}

// TestEveryVariableHasAFlag sets every variable in the environment and then
// by its flag: the environment value applies alone, the flag value wins.
func TestEveryVariableHasAFlag(t *testing.T) {
	type values struct {
		env, flag         string
		wantEnv, wantFlag any
	}
	table := map[string]values{
		"OBSPROXY_LISTEN_ADDR":               {":8081", "127.0.0.1:8082", ":8081", "127.0.0.1:8082"},
		"OBSPROXY_UPSTREAMS":                 {"http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003", "a=unix:/run/a.sock,b=unix:/run/b.sock,c=unix:/run/c.sock", "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003", "a=unix:/run/a.sock,b=unix:/run/b.sock,c=unix:/run/c.sock"},
		"OBSPROXY_LB_POLICY":                 {"round_robin", "least_inflight", "round_robin", "least_inflight"},
		"OBSPROXY_HEALTH_PATH":               {"/hz", "/healthz", "/hz", "/healthz"},
		"OBSPROXY_LIVENESS_PATH":             {"/live", "/alive", "/live", "/alive"},
		"OBSPROXY_UPSTREAM_HEALTH_PATH":      {"/up", "/ready", "/up", "/ready"},
		"OBSPROXY_HEALTH_INTERVAL":           {"3s", "4s", 3 * time.Second, 4 * time.Second},
		"OBSPROXY_HEALTH_TIMEOUT":            {"5s", "6s", 5 * time.Second, 6 * time.Second},
		"OBSPROXY_HEALTH_RISE":               {"2", "3", 2, 3},
		"OBSPROXY_HEALTH_FALL":               {"4", "5", 4, 5},
		"OBSPROXY_MIN_HEALTHY_WORKERS":       {"2", "3", 2, 3},
		"OBSPROXY_HEALTH_VERBOSE":            {"true", "false", true, false},
		"OBSPROXY_ADMIN_ADDR":                {"127.0.0.1:9191", "localhost:9292", "127.0.0.1:9191", "localhost:9292"},
		"OBSPROXY_ADMIN_TOKEN":               {"env-token", "flag-token", "env-token", "flag-token"},
		"OBSPROXY_ADMIN_IP_ALLOWLIST":        {"10.0.0.0/8", "192.168.0.0/16", "10.0.0.0/8", "192.168.0.0/16"},
		"OBSPROXY_DIAG_ENABLED":              {"false", "true", false, true},
		"OBSPROXY_DIAG_AUTH_TOKEN":           {"env-diag", "flag-diag", "env-diag", "flag-diag"},
		"OBSPROXY_DIAG_IP_ALLOWLIST":         {"10.1.0.0/16", "10.2.0.0/16", "10.1.0.0/16", "10.2.0.0/16"},
		"OBSPROXY_DIAG_TRUST_FORWARDED_FOR":  {"true", "false", true, false},
		"OBSPROXY_TRUSTED_PROXIES":           {"10.3.0.0/16", "10.4.0.0/16", "10.3.0.0/16", "10.4.0.0/16"},
		"OBSPROXY_MAX_CONNECTIONS":           {"10", "20", 10, 20},
		"OBSPROXY_READ_HEADER_TIMEOUT":       {"11s", "12s", 11 * time.Second, 12 * time.Second},
		"OBSPROXY_IDLE_TIMEOUT":              {"1m", "2m", time.Minute, 2 * time.Minute},
		"OBSPROXY_UPSTREAM_DIAL_TIMEOUT":     {"3s", "4s", 3 * time.Second, 4 * time.Second},
		"OBSPROXY_UPSTREAM_RESPONSE_TIMEOUT": {"30s", "45s", 30 * time.Second, 45 * time.Second},
		"OBSPROXY_WORKER_MAX_IN_FLIGHT":      {"4", "8", 4, 8},
		"OBSPROXY_QUEUE_SIZE":                {"100", "200", 100, 200},
		"OBSPROXY_QUEUE_TIMEOUT":             {"5s", "500ms", 5 * time.Second, 500 * time.Millisecond},
		"OBSPROXY_DRAIN_DELAY":               {"5s", "0s", 5 * time.Second, time.Duration(0)},
		"OBSPROXY_SHUTDOWN_TIMEOUT":          {"10s", "20s", 10 * time.Second, 20 * time.Second},
		"OBSPROXY_SAMPLE_INTERVAL":           {"500ms", "2s", 500 * time.Millisecond, 2 * time.Second},
		"OBSPROXY_PUSH_URL":                  {"http://vm:8428/api/v1/import/prometheus", "https://vm.example/api/v1/import/prometheus", "http://vm:8428/api/v1/import/prometheus", "https://vm.example/api/v1/import/prometheus"},
		"OBSPROXY_PUSH_INTERVAL":             {"15s", "30s", 15 * time.Second, 30 * time.Second},
		"OBSPROXY_PUSH_EXTRA_LABELS":         {`env="a"`, `env="b"`, `env="a"`, `env="b"`},
		"OBSPROXY_ACCESS_LOG":                {"true", "false", true, false},
		"OBSPROXY_LOG_LEVEL":                 {"debug", "warn", "debug", "warn"},
		"OBSPROXY_LOG_FORMAT":                {"text", "json", "text", "json"},
		"OBSPROXY_WORKER_METRICS_PATH":       {"/metrics", "/app/metrics", "/metrics", "/app/metrics"},
		"OBSPROXY_WORKER_METRICS_TIMEOUT":    {"3s", "500ms", 3 * time.Second, 500 * time.Millisecond},
		"OBSPROXY_WORKER_METRICS_MAX_BYTES":  {"512MiB", "500MB", byteSize(512 << 20), byteSize(500_000_000)},
		"OBSPROXY_WORKER_COMMAND":            {"sh -c {socket}", "true {socket}", "sh -c {socket}", "true {socket}"},
		"OBSPROXY_WORKERS":                   {"2", "3", 2, 3},
		"OBSPROXY_WORKER_TRANSPORT":          {"tcp", "h2c", "tcp", "h2c"},
		"OBSPROXY_WORKER_SOCKET_DIR":         {"/tmp/obsproxy-test-a", "/tmp/obsproxy-test-b", "/tmp/obsproxy-test-a", "/tmp/obsproxy-test-b"},
		"OBSPROXY_WORKER_START_TIMEOUT":      {"5s", "6s", 5 * time.Second, 6 * time.Second},
		"OBSPROXY_WORKER_STOP_TIMEOUT":       {"7s", "8s", 7 * time.Second, 8 * time.Second},
		"OBSPROXY_WORKER_BACKOFF_MAX":        {"1s", "2s", time.Second, 2 * time.Second},
		"OBSPROXY_WORKER_MAX_REQUESTS":       {"1000", "2000", 1000, 2000},
		"OBSPROXY_WORKER_MAX_RSS":            {"512MiB", "1GB", byteSize(512 << 20), byteSize(1_000_000_000)},
		"OBSPROXY_WORKER_MAX_LIFETIME":       {"1h", "30m", time.Hour, 30 * time.Minute},
		"OBSPROXY_WORKER_RECYCLE_JITTER":     {"0.5", "0", 0.5, 0.0},
		"OBSPROXY_WORKER_STUCK_TIMEOUT":      {"30s", "1m", 30 * time.Second, time.Minute},
	}
	tlsf := newTLSFiles(t)
	for k, v := range tlsf.flagRows() {
		table[k] = values(v)
	}
	// Three workers, so that MIN_HEALTHY_WORKERS=3 is valid.
	base := []string{"OBSPROXY_UPSTREAMS=http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003"}

	vars, flags := configVars(t)
	assert.Len(t, table, len(vars), "the table must cover every variable")
	for i, key := range vars {
		t.Run(key, func(t *testing.T) {
			v, ok := table[key]
			require.True(t, ok, "no test values for %s", key)
			field := fieldForVar(t, key)
			environ := append(append(append([]string{}, base...), tlsf.companions(key)...), key+"="+v.env)
			if key == "OBSPROXY_WORKER_COMMAND" { // supervisor mode: no OBSPROXY_UPSTREAMS beside it
				environ = []string{key + "=" + v.env, "PATH=" + os.Getenv("PATH")}
			}

			cfg, err := loadConfig(nil, environ)
			require.NoError(t, err)
			assert.Equal(t, v.wantEnv, reflect.ValueOf(cfg).FieldByIndex(field.Index).Interface())

			cfg, err = loadConfig([]string{flags[i] + "=" + v.flag}, environ)
			require.NoError(t, err)
			assert.Equal(t, v.wantFlag, reflect.ValueOf(cfg).FieldByIndex(field.Index).Interface())

			// The single-dash and space-separated forms of the flag package work too.
			if field.Type.Kind() != reflect.Bool {
				cfg, err = loadConfig([]string{strings.TrimPrefix(flags[i], "-"), v.flag}, environ)
				require.NoError(t, err)
				assert.Equal(t, v.wantFlag, reflect.ValueOf(cfg).FieldByIndex(field.Index).Interface())
			}
		})
	}
}

func TestLoadConfigBoolFlags(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		args    []string
		want    bool
		wantErr string
	}{
		{name: "alone means true", args: []string{"--health-verbose"}, want: true},
		{name: "single dash", args: []string{"-health-verbose"}, want: true},
		{name: "=true", args: []string{"--health-verbose=true"}, want: true},
		{name: "=1", args: []string{"--health-verbose=1"}, want: true},
		{name: "=false overrides env", environ: []string{"OBSPROXY_HEALTH_VERBOSE=true"}, args: []string{"--health-verbose=false"}, want: false},
		{name: "alone overrides env", environ: []string{"OBSPROXY_HEALTH_VERBOSE=false"}, args: []string{"--health-verbose"}, want: true},
		{name: "env alone", environ: []string{"OBSPROXY_HEALTH_VERBOSE=true"}, want: true},
		{
			name:    "bad value",
			args:    []string{"--health-verbose=maybe"},
			wantErr: `invalid OBSPROXY_HEALTH_VERBOSE="maybe": want true or false`,
		},
		{
			name:    "space-separated value",
			args:    []string{"--health-verbose", "false"},
			wantErr: `unexpected argument "false" (a boolean flag takes its value after =, e.g. --health-verbose=false)`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(tc.args, tc.environ)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Equal(t, tc.wantErr, err.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, cfg.HealthVerbose)
		})
	}
}

func TestLoadConfigArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		help    bool
	}{
		{name: "-h", args: []string{"-h"}, help: true},
		{name: "--help", args: []string{"--help"}, help: true},
		{name: "-help", args: []string{"-help"}, help: true},
		{name: "help after a flag", args: []string{"--listen-addr=:1", "--help"}, help: true},
		{name: "help despite a bad value", args: []string{"--health-interval=abc", "-h"}, help: true},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "unknown flag --nope"},
		{name: "unknown flag with value", args: []string{"--listen-adr=:1"}, wantErr: "unknown flag --listen-adr"},
		{name: "missing value", args: []string{"--listen-addr"}, wantErr: "invalid flags: flag needs an argument: -listen-addr"},
		{name: "stray argument", args: []string{"serve"}, wantErr: `unexpected argument "serve"`},
		{name: "stray argument after flags", args: []string{"--listen-addr=:1", "extra", "--log-level=debug"}, wantErr: `unexpected argument "extra"`},
		{name: "after -- is the worker command", args: []string{"--", "--listen-addr=:1"}, wantErr: `invalid OBSPROXY_WORKER_COMMAND="--listen-addr=:1": program "--listen-addr=:1" not found in PATH; want a command line with {socket} (unix transport) or {port} (tcp, h2c), e.g. uvicorn app:app --uds {socket}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(tc.args, nil)
			require.Error(t, err)
			if tc.help {
				assert.ErrorIs(t, err, errHelp)
				return
			}
			assert.NotErrorIs(t, err, errHelp)
			assert.Equal(t, tc.wantErr, err.Error())
		})
	}
}

// TestLoadConfigInvalid checks the exact message of every validation rule.
func TestLoadConfigInvalid(t *testing.T) {
	const (
		acceptAddr     = "host:port, e.g. :8080 or 127.0.0.1:8080"
		acceptAdmin    = "host:port, or empty to disable"
		acceptPath     = "an absolute path starting with /"
		acceptPositive = "a positive Go duration such as 500ms, 2s, 1m"
		acceptRiseFall = "an integer from 1 to 100"
		acceptToken    = "a non-blank string of printable characters without surrounding spaces"
		acceptIPs      = "comma-separated IPs or CIDRs, e.g. 10.0.0.0/8,::1"
		acceptUp       = "comma-separated [name=]URL, URL one of http://host:port, h2c://host:port, unix:/path.sock"
		acceptPushURL  = "an http:// or https:// URL, or empty"
		acceptLabels   = `comma-separated name="value" pairs with Prometheus label names`
	)
	tests := []struct {
		name    string
		environ []string
		args    []string
		want    string
	}{
		// type errors from caarlos0/env, one per kind
		{"duration type", []string{"OBSPROXY_HEALTH_INTERVAL=abc"}, nil, `invalid OBSPROXY_HEALTH_INTERVAL="abc": want ` + acceptPositive},
		{"duration type from flag", nil, []string{"--health-interval=abc"}, `invalid OBSPROXY_HEALTH_INTERVAL="abc": want ` + acceptPositive},
		{"duration without unit", []string{"OBSPROXY_SHUTDOWN_TIMEOUT=30"}, nil, `invalid OBSPROXY_SHUTDOWN_TIMEOUT="30": want ` + acceptPositive},
		{"int type", []string{"OBSPROXY_HEALTH_RISE=two"}, nil, `invalid OBSPROXY_HEALTH_RISE="two": want ` + acceptRiseFall},
		{"int overflow", []string{"OBSPROXY_MAX_CONNECTIONS=99999999999"}, nil, `invalid OBSPROXY_MAX_CONNECTIONS="99999999999": want an integer >= 0`},
		{"bool type", []string{"OBSPROXY_ACCESS_LOG=yes"}, nil, `invalid OBSPROXY_ACCESS_LOG="yes": want true or false`},
		{"bool type from flag", nil, []string{"--diag-enabled=on"}, `invalid OBSPROXY_DIAG_ENABLED="on": want true or false`},
		{"first type error in field order", []string{"OBSPROXY_LOG_LEVEL=loud", "OBSPROXY_SAMPLE_INTERVAL=x", "OBSPROXY_HEALTH_TIMEOUT=y", "OBSPROXY_HEALTH_FALL=z"}, nil, `invalid OBSPROXY_HEALTH_TIMEOUT="y": want ` + acceptPositive},
		{"type errors before rule violations", []string{"OBSPROXY_LB_POLICY=random", "OBSPROXY_PUSH_INTERVAL=soon"}, nil, `invalid OBSPROXY_PUSH_INTERVAL="soon": want a Go duration of at least 1s`},
		{"first rule violation in field order", []string{"OBSPROXY_LOG_FORMAT=xml", "OBSPROXY_LB_POLICY=random", "OBSPROXY_HEALTH_PATH=x"}, nil, `invalid OBSPROXY_LB_POLICY="random": want least_inflight or round_robin`},

		// listen address
		{"listen addr port only", []string{"OBSPROXY_LISTEN_ADDR=8080"}, nil, `invalid OBSPROXY_LISTEN_ADDR="8080": missing colon before the port (did you mean ":8080"?); want ` + acceptAddr},
		{"listen addr host only", []string{"OBSPROXY_LISTEN_ADDR=localhost"}, nil, `invalid OBSPROXY_LISTEN_ADDR="localhost": missing port in address; want ` + acceptAddr},
		{"listen addr empty port", []string{"OBSPROXY_LISTEN_ADDR=127.0.0.1:"}, nil, `invalid OBSPROXY_LISTEN_ADDR="127.0.0.1:": missing port; want ` + acceptAddr},
		{"listen addr named port", []string{"OBSPROXY_LISTEN_ADDR=:http"}, nil, `invalid OBSPROXY_LISTEN_ADDR=":http": port "http" is not a number from 0 to 65535; want ` + acceptAddr},
		{"listen addr port too big", nil, []string{"--listen-addr=:65536"}, `invalid OBSPROXY_LISTEN_ADDR=":65536": port "65536" is not a number from 0 to 65535; want ` + acceptAddr},
		{"listen addr signed port", nil, []string{"--listen-addr=:+80"}, `invalid OBSPROXY_LISTEN_ADDR=":+80": port "+80" is not a number from 0 to 65535; want ` + acceptAddr},
		{"listen addr bare IPv6", []string{"OBSPROXY_LISTEN_ADDR=::1:8080"}, nil, `invalid OBSPROXY_LISTEN_ADDR="::1:8080": too many colons in address; want ` + acceptAddr},

		// upstreams (parseUpstreams has its own table)
		{"upstreams missing port", []string{"OBSPROXY_UPSTREAMS=http://127.0.0.1:8001,h2c://x"}, nil, `invalid OBSPROXY_UPSTREAMS="http://127.0.0.1:8001,h2c://x": worker 2 ("h2c://x"): missing port; want ` + acceptUp},
		{"upstreams blank", []string{"OBSPROXY_UPSTREAMS= "}, nil, `invalid OBSPROXY_UPSTREAMS=" ": no workers listed; want ` + acceptUp},

		// enums
		{"lb policy", []string{"OBSPROXY_LB_POLICY=random"}, nil, `invalid OBSPROXY_LB_POLICY="random": want least_inflight or round_robin`},
		{"lb policy case", []string{"OBSPROXY_LB_POLICY=Round_Robin"}, nil, `invalid OBSPROXY_LB_POLICY="Round_Robin": want least_inflight or round_robin`},
		{"log level", []string{"OBSPROXY_LOG_LEVEL=INFO"}, nil, `invalid OBSPROXY_LOG_LEVEL="INFO": want debug, info, warn or error`},
		{"log format", []string{"OBSPROXY_LOG_FORMAT=logfmt"}, nil, `invalid OBSPROXY_LOG_FORMAT="logfmt": want json or text`},

		// paths
		{"health path relative", []string{"OBSPROXY_HEALTH_PATH=health"}, nil, `invalid OBSPROXY_HEALTH_PATH="health": want ` + acceptPath},
		{"health path query", []string{"OBSPROXY_HEALTH_PATH=/health?full=1"}, nil, `invalid OBSPROXY_HEALTH_PATH="/health?full=1": a path cannot contain ?, # or blanks; want ` + acceptPath},
		{"liveness path relative", []string{"OBSPROXY_LIVENESS_PATH=livez"}, nil, `invalid OBSPROXY_LIVENESS_PATH="livez": want ` + acceptPath},
		{"liveness path equals health path", []string{"OBSPROXY_LIVENESS_PATH=/health"}, nil, `invalid OBSPROXY_LIVENESS_PATH="/health": same as OBSPROXY_HEALTH_PATH; want ` + acceptPath},
		{"upstream health path relative", []string{"OBSPROXY_UPSTREAM_HEALTH_PATH=http://x/health"}, nil, `invalid OBSPROXY_UPSTREAM_HEALTH_PATH="http://x/health": want ` + acceptPath},
		{"upstream health path blank", []string{"OBSPROXY_UPSTREAM_HEALTH_PATH=/he alth"}, nil, `invalid OBSPROXY_UPSTREAM_HEALTH_PATH="/he alth": a path cannot contain ?, # or blanks; want ` + acceptPath},

		// durations
		{"health interval zero", []string{"OBSPROXY_HEALTH_INTERVAL=0s"}, nil, `invalid OBSPROXY_HEALTH_INTERVAL="0s": want ` + acceptPositive},
		{"health interval negative", []string{"OBSPROXY_HEALTH_INTERVAL=-2s"}, nil, `invalid OBSPROXY_HEALTH_INTERVAL="-2s": want ` + acceptPositive},
		{"health timeout zero", []string{"OBSPROXY_HEALTH_TIMEOUT=0"}, nil, `invalid OBSPROXY_HEALTH_TIMEOUT="0": want ` + acceptPositive},
		{"read header timeout zero", []string{"OBSPROXY_READ_HEADER_TIMEOUT=0s"}, nil, `invalid OBSPROXY_READ_HEADER_TIMEOUT="0s": want ` + acceptPositive},
		{"idle timeout negative", []string{"OBSPROXY_IDLE_TIMEOUT=-1m"}, nil, `invalid OBSPROXY_IDLE_TIMEOUT="-1m": want ` + acceptPositive},
		{"dial timeout zero", []string{"OBSPROXY_UPSTREAM_DIAL_TIMEOUT=0ms"}, nil, `invalid OBSPROXY_UPSTREAM_DIAL_TIMEOUT="0ms": want ` + acceptPositive},
		{"response timeout zero", []string{"OBSPROXY_UPSTREAM_RESPONSE_TIMEOUT=0s"}, nil, `invalid OBSPROXY_UPSTREAM_RESPONSE_TIMEOUT="0s": want ` + acceptPositive},
		{"drain delay negative", []string{"OBSPROXY_DRAIN_DELAY=-1s"}, nil, `invalid OBSPROXY_DRAIN_DELAY="-1s": want a Go duration >= 0 such as 0s, 5s`},
		{"shutdown timeout zero", []string{"OBSPROXY_SHUTDOWN_TIMEOUT=0s"}, nil, `invalid OBSPROXY_SHUTDOWN_TIMEOUT="0s": want ` + acceptPositive},
		{"sample interval too short", []string{"OBSPROXY_SAMPLE_INTERVAL=99ms"}, nil, `invalid OBSPROXY_SAMPLE_INTERVAL="99ms": want a Go duration from 100ms to 1m`},
		{"sample interval too long", []string{"OBSPROXY_SAMPLE_INTERVAL=1m1s"}, nil, `invalid OBSPROXY_SAMPLE_INTERVAL="1m1s": want a Go duration from 100ms to 1m`},
		{"push interval too short", []string{"OBSPROXY_PUSH_INTERVAL=999ms"}, nil, `invalid OBSPROXY_PUSH_INTERVAL="999ms": want a Go duration of at least 1s`},

		// counts
		{"health rise zero", []string{"OBSPROXY_HEALTH_RISE=0"}, nil, `invalid OBSPROXY_HEALTH_RISE="0": want ` + acceptRiseFall},
		{"health rise too big", []string{"OBSPROXY_HEALTH_RISE=101"}, nil, `invalid OBSPROXY_HEALTH_RISE="101": want ` + acceptRiseFall},
		{"health fall zero", []string{"OBSPROXY_HEALTH_FALL=0"}, nil, `invalid OBSPROXY_HEALTH_FALL="0": want ` + acceptRiseFall},
		{"health fall too big", nil, []string{"--health-fall=1000"}, `invalid OBSPROXY_HEALTH_FALL="1000": want ` + acceptRiseFall},
		{"min healthy workers zero", []string{"OBSPROXY_MIN_HEALTHY_WORKERS=0"}, nil, `invalid OBSPROXY_MIN_HEALTHY_WORKERS="0": want an integer from 1 to the number of workers`},
		{"min healthy workers above one worker", []string{"OBSPROXY_MIN_HEALTHY_WORKERS=2"}, nil, `invalid OBSPROXY_MIN_HEALTHY_WORKERS="2": only 1 worker is configured; want an integer from 1 to the number of workers`},
		{"min healthy workers above two workers", []string{"OBSPROXY_UPSTREAMS=http://a:1,http://b:1", "OBSPROXY_MIN_HEALTHY_WORKERS=3"}, nil, `invalid OBSPROXY_MIN_HEALTHY_WORKERS="3": only 2 workers are configured; want an integer from 1 to the number of workers`},
		{"max connections negative", []string{"OBSPROXY_MAX_CONNECTIONS=-1"}, nil, `invalid OBSPROXY_MAX_CONNECTIONS="-1": want an integer >= 0`},

		// admin address
		{"admin addr without port", []string{"OBSPROXY_ADMIN_ADDR=127.0.0.1"}, nil, `invalid OBSPROXY_ADMIN_ADDR="127.0.0.1": missing port in address; want ` + acceptAdmin},
		{"admin addr same as listen addr", []string{"OBSPROXY_ADMIN_ADDR=127.0.0.1:8080"}, nil, `invalid OBSPROXY_ADMIN_ADDR="127.0.0.1:8080": same port as OBSPROXY_LISTEN_ADDR=":8080"; want ` + acceptAdmin},
		{"admin addr same as listen addr, wildcard admin", []string{"OBSPROXY_LISTEN_ADDR=127.0.0.1:7000", "OBSPROXY_ADMIN_ADDR=:7000", "OBSPROXY_ADMIN_TOKEN=t"}, nil, `invalid OBSPROXY_ADMIN_ADDR=":7000": same port as OBSPROXY_LISTEN_ADDR="127.0.0.1:7000"; want ` + acceptAdmin},
		{"admin on every interface", []string{"OBSPROXY_ADMIN_ADDR=:9090"}, nil, `invalid OBSPROXY_ADMIN_ADDR=":9090": not a loopback address, so OBSPROXY_ADMIN_TOKEN or OBSPROXY_ADMIN_IP_ALLOWLIST must be set; want ` + acceptAdmin},
		{"admin on 0.0.0.0", nil, []string{"--admin-addr=0.0.0.0:9090"}, `invalid OBSPROXY_ADMIN_ADDR="0.0.0.0:9090": not a loopback address, so OBSPROXY_ADMIN_TOKEN or OBSPROXY_ADMIN_IP_ALLOWLIST must be set; want ` + acceptAdmin},
		{"admin on ::", []string{"OBSPROXY_ADMIN_ADDR=[::]:9090"}, nil, `invalid OBSPROXY_ADMIN_ADDR="[::]:9090": not a loopback address, so OBSPROXY_ADMIN_TOKEN or OBSPROXY_ADMIN_IP_ALLOWLIST must be set; want ` + acceptAdmin},
		{"admin on a private IP", []string{"OBSPROXY_ADMIN_ADDR=10.1.2.3:9090"}, nil, `invalid OBSPROXY_ADMIN_ADDR="10.1.2.3:9090": not a loopback address, so OBSPROXY_ADMIN_TOKEN or OBSPROXY_ADMIN_IP_ALLOWLIST must be set; want ` + acceptAdmin},
		{"admin on a host name", []string{"OBSPROXY_ADMIN_ADDR=admin.internal:9090"}, nil, `invalid OBSPROXY_ADMIN_ADDR="admin.internal:9090": not a loopback address, so OBSPROXY_ADMIN_TOKEN or OBSPROXY_ADMIN_IP_ALLOWLIST must be set; want ` + acceptAdmin},
		{"admin exposure checked after the other rules", []string{"OBSPROXY_ADMIN_ADDR=:9090", "OBSPROXY_LOG_FORMAT=xml"}, nil, `invalid OBSPROXY_LOG_FORMAT="xml": want json or text`},

		// tokens: never echoed
		{"admin token blank", []string{"OBSPROXY_ADMIN_TOKEN=   "}, nil, `invalid OBSPROXY_ADMIN_TOKEN="<redacted>": blank; want ` + acceptToken},
		{"admin token surrounding space", []string{"OBSPROXY_ADMIN_TOKEN=s3cret "}, nil, `invalid OBSPROXY_ADMIN_TOKEN="<redacted>": leading or trailing whitespace, which an Authorization header cannot carry; want ` + acceptToken},
		{"diag token blank", nil, []string{"--diag-auth-token=\t"}, `invalid OBSPROXY_DIAG_AUTH_TOKEN="<redacted>": blank; want ` + acceptToken},
		{"diag token control character", []string{"OBSPROXY_DIAG_AUTH_TOKEN=s3c\x00ret"}, nil, `invalid OBSPROXY_DIAG_AUTH_TOKEN="<redacted>": contains a control character; want ` + acceptToken},

		// allowlists
		{"admin allowlist bad CIDR", []string{"OBSPROXY_ADMIN_IP_ALLOWLIST=10.0.0.0/33"}, nil, `invalid OBSPROXY_ADMIN_IP_ALLOWLIST="10.0.0.0/33": element 1 ("10.0.0.0/33") is not an IP address or CIDR; want ` + acceptIPs},
		{"diag allowlist empty element", []string{"OBSPROXY_DIAG_IP_ALLOWLIST=10.0.0.1,,10.0.0.2"}, nil, `invalid OBSPROXY_DIAG_IP_ALLOWLIST="10.0.0.1,,10.0.0.2": element 2 is empty; want ` + acceptIPs},
		{"trusted proxies host name", []string{"OBSPROXY_TRUSTED_PROXIES=10.0.0.0/8, proxy.local"}, nil, `invalid OBSPROXY_TRUSTED_PROXIES="10.0.0.0/8, proxy.local": element 2 ("proxy.local") is not an IP address or CIDR; want ` + acceptIPs},
		{"trusted proxies blank", []string{"OBSPROXY_TRUSTED_PROXIES= "}, nil, `invalid OBSPROXY_TRUSTED_PROXIES=" ": element 1 is empty; want ` + acceptIPs},

		// push
		{"push url scheme", []string{"OBSPROXY_PUSH_URL=ftp://vm/api/v1/import/prometheus"}, nil, `invalid OBSPROXY_PUSH_URL="ftp://vm/api/v1/import/prometheus": scheme must be http or https; want ` + acceptPushURL},
		{"push url relative", []string{"OBSPROXY_PUSH_URL=/api/v1/import/prometheus"}, nil, `invalid OBSPROXY_PUSH_URL="/api/v1/import/prometheus": scheme must be http or https; want ` + acceptPushURL},
		{"push url without scheme", []string{"OBSPROXY_PUSH_URL=vm:8428/api/v1/import/prometheus"}, nil, `invalid OBSPROXY_PUSH_URL="vm:8428/api/v1/import/prometheus": scheme must be http or https; want ` + acceptPushURL},
		{"push url without host", []string{"OBSPROXY_PUSH_URL=http:///api/v1/import/prometheus"}, nil, `invalid OBSPROXY_PUSH_URL="http:///api/v1/import/prometheus": missing host; want ` + acceptPushURL},
		{"push url unparsable", []string{"OBSPROXY_PUSH_URL=http://[::1"}, nil, `invalid OBSPROXY_PUSH_URL="http://[::1": not a URL; want ` + acceptPushURL},
		{"push url password redacted", []string{"OBSPROXY_PUSH_URL=ftp://user:hunter2@vm/x"}, nil, `invalid OBSPROXY_PUSH_URL="ftp://user:xxxxx@vm/x": scheme must be http or https; want ` + acceptPushURL},
		{"push labels unquoted", []string{"OBSPROXY_PUSH_EXTRA_LABELS=env=prod"}, nil, `invalid OBSPROXY_PUSH_EXTRA_LABELS="env=prod": label 1 (env): the value must be double-quoted, e.g. env="value"; want ` + acceptLabels},
		{"push labels reserved", []string{`OBSPROXY_PUSH_EXTRA_LABELS=env="a",__name__="b"`}, nil, `invalid OBSPROXY_PUSH_EXTRA_LABELS="env=\"a\",__name__=\"b\"": label 2: names starting with __ are reserved ("__name__"); want ` + acceptLabels},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(tc.args, tc.environ)
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
			var ce *configError
			assert.ErrorAs(t, err, &ce)
		})
	}
}

func TestLoadConfigValid(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		check   func(t *testing.T, cfg Config)
	}{
		{"admin on 127.0.0.2", []string{"OBSPROXY_ADMIN_ADDR=127.0.0.2:9090"}, nil},
		{"admin on ::1", []string{"OBSPROXY_ADMIN_ADDR=[::1]:9090"}, nil},
		{"admin on localhost", []string{"OBSPROXY_ADMIN_ADDR=localhost:9090"}, nil},
		{"admin on LOCALHOST", []string{"OBSPROXY_ADMIN_ADDR=LOCALHOST:9090"}, nil},
		{"admin exposed with a token", []string{"OBSPROXY_ADMIN_ADDR=:9090", "OBSPROXY_ADMIN_TOKEN=t0ken"}, func(t *testing.T, cfg Config) {
			assert.Equal(t, "t0ken", cfg.AdminToken)
		}},
		{"admin exposed with an allowlist", []string{"OBSPROXY_ADMIN_ADDR=0.0.0.0:9090", "OBSPROXY_ADMIN_IP_ALLOWLIST=10.0.0.0/8"}, func(t *testing.T, cfg Config) {
			assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, cfg.AdminAllowPrefixes)
		}},
		{"admin and listener on port 0", []string{"OBSPROXY_LISTEN_ADDR=:0", "OBSPROXY_ADMIN_ADDR=127.0.0.1:0"}, nil},
		{"admin on the listen port of another host", []string{"OBSPROXY_LISTEN_ADDR=127.0.0.1:8080", "OBSPROXY_ADMIN_ADDR=127.0.0.2:8080"}, nil},
		{"token with inner space", []string{"OBSPROXY_DIAG_AUTH_TOKEN=correct horse battery"}, nil},
		{"drain delay zero", []string{"OBSPROXY_DRAIN_DELAY=0s"}, nil},
		{"sample interval bounds", []string{"OBSPROXY_SAMPLE_INTERVAL=100ms"}, nil},
		{"sample interval upper bound", []string{"OBSPROXY_SAMPLE_INTERVAL=1m"}, nil},
		{"push interval 1s", []string{"OBSPROXY_PUSH_INTERVAL=1s"}, nil},
		{"rise and fall 100", []string{"OBSPROXY_HEALTH_RISE=100", "OBSPROXY_HEALTH_FALL=100"}, nil},
		{"health timeout above interval", []string{"OBSPROXY_HEALTH_INTERVAL=1s", "OBSPROXY_HEALTH_TIMEOUT=5s"}, nil},
		{"push url with query and credentials", []string{"OBSPROXY_PUSH_URL=https://u:p@vm.example:8428/api/v1/import/prometheus?extra_label=a=b"}, nil},
		{"all parsed forms", []string{
			"OBSPROXY_UPSTREAMS=a=http://127.0.0.1:8001, h2c://[::1]:8002 ,unix:/run/w.sock",
			"OBSPROXY_MIN_HEALTHY_WORKERS=3",
			"OBSPROXY_TRUSTED_PROXIES=10.0.0.0/8,192.168.1.7",
			"OBSPROXY_ADMIN_IP_ALLOWLIST=::1",
			"OBSPROXY_DIAG_IP_ALLOWLIST=172.16.5.4/12",
			`OBSPROXY_PUSH_EXTRA_LABELS=env="prod",region="eu"`,
		}, func(t *testing.T, cfg Config) {
			assert.Equal(t, []workerSpec{
				{Name: "a", Network: "tcp", Address: "127.0.0.1:8001"},
				{Name: "[::1]:8002", Network: "tcp", Address: "[::1]:8002", H2C: true},
				{Name: "/run/w.sock", Network: "unix", Address: "/run/w.sock"},
			}, cfg.Workers)
			assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")}, cfg.TrustedProxyPrefixes)
			assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("::1/128")}, cfg.AdminAllowPrefixes)
			assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}, cfg.DiagAllowPrefixes)
			assert.Equal(t, []labelPair{{Name: "env", Value: "prod"}, {Name: "region", Value: "eu"}}, cfg.PushLabels)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(nil, tc.environ)
			require.NoError(t, err)
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}

func TestValidateEmptyListenAddr(t *testing.T) {
	// caarlos0/env turns an empty OBSPROXY_LISTEN_ADDR into the default, so
	// the rule is reachable only when validate is called directly.
	cfg, err := loadConfig(nil, nil)
	require.NoError(t, err)
	cfg.ListenAddr = ""
	err = validate(&cfg, map[string]string{})
	require.Error(t, err)
	assert.Equal(t, `invalid OBSPROXY_LISTEN_ADDR="": want host:port, e.g. :8080 or 127.0.0.1:8080`, err.Error())
}

// TestTokensNeverInErrors sets recognisable tokens alongside all sorts of
// invalid settings, and in invalid forms themselves.
func TestTokensNeverInErrors(t *testing.T) {
	const secret = "SECRET-7f3a"
	tokens := []string{"OBSPROXY_ADMIN_TOKEN=" + secret, "OBSPROXY_DIAG_AUTH_TOKEN=" + secret + "-diag"}
	tests := []struct {
		name    string
		environ []string
		args    []string
	}{
		{"admin token trailing newline", []string{"OBSPROXY_ADMIN_TOKEN=" + secret + "\n"}, nil},
		{"admin token leading space", []string{"OBSPROXY_ADMIN_TOKEN= " + secret}, nil},
		{"admin token control character", []string{"OBSPROXY_ADMIN_TOKEN=" + secret + "\x07x"}, nil},
		{"diag token from flag", nil, []string{"--diag-auth-token=" + secret + " "}},
		{"diag token tab", []string{"OBSPROXY_DIAG_AUTH_TOKEN=\t" + secret}, nil},
		{"unknown flag carrying a token", nil, []string{"--admin-tokn=" + secret}},
		{"other bad setting", append([]string{"OBSPROXY_LISTEN_ADDR=nope"}, tokens...), nil},
		{"type error", append([]string{"OBSPROXY_HEALTH_INTERVAL=nope"}, tokens...), nil},
		{"admin exposure", []string{"OBSPROXY_ADMIN_ADDR=:9090", "OBSPROXY_DIAG_AUTH_TOKEN=" + secret}, nil},
		{"bad allowlist", append([]string{"OBSPROXY_ADMIN_IP_ALLOWLIST=x"}, tokens...), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(tc.args, tc.environ)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), secret)
		})
	}
}

func TestParseUpstreams(t *testing.T) {
	good := []struct {
		in   string
		want []workerSpec
	}{
		{"http://127.0.0.1:8001", []workerSpec{{Name: "127.0.0.1:8001", Network: "tcp", Address: "127.0.0.1:8001"}}},
		{"http://127.0.0.1:8001/", []workerSpec{{Name: "127.0.0.1:8001", Network: "tcp", Address: "127.0.0.1:8001"}}},
		{"h2c://[::1]:8001", []workerSpec{{Name: "[::1]:8001", Network: "tcp", Address: "[::1]:8001", H2C: true}}},
		{"api=http://app:8000", []workerSpec{{Name: "api", Network: "tcp", Address: "app:8000"}}},
		{"HTTP://App.Internal:8000", []workerSpec{{Name: "App.Internal:8000", Network: "tcp", Address: "App.Internal:8000"}}},
		{"unix:/run/app.sock", []workerSpec{{Name: "/run/app.sock", Network: "unix", Address: "/run/app.sock"}}},
		{"w=unix:///run/app.sock", []workerSpec{{Name: "w", Network: "unix", Address: "/run/app.sock"}}},
		{"unix:/tmp/a=b.sock", []workerSpec{{Name: "/tmp/a=b.sock", Network: "unix", Address: "/tmp/a=b.sock"}}},
		{" a=http://127.0.0.1:8001 , b = h2c://127.0.0.1:8002,c.1_-X=unix:/s", []workerSpec{
			{Name: "a", Network: "tcp", Address: "127.0.0.1:8001"},
			{Name: "b", Network: "tcp", Address: "127.0.0.1:8002", H2C: true},
			{Name: "c.1_-X", Network: "unix", Address: "/s"},
		}},
		{"http://127.0.0.1:8001,http://127.0.0.1:8002", []workerSpec{
			{Name: "127.0.0.1:8001", Network: "tcp", Address: "127.0.0.1:8001"},
			{Name: "127.0.0.1:8002", Network: "tcp", Address: "127.0.0.1:8002"},
		}},
		{strings.Repeat("n", 64) + "=http://h:1", []workerSpec{{Name: strings.Repeat("n", 64), Network: "tcp", Address: "h:1"}}},
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseUpstreams(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	bad := []struct{ in, want string }{
		{"", "no workers listed"},
		{"  ", "no workers listed"},
		{",", "worker 1 is empty"},
		{"http://a:1,,http://b:2", "worker 2 is empty"},
		{"http://a:1,", "worker 2 is empty"},
		{"h2c://x", `worker 1 ("h2c://x"): missing port`},
		{"http://a:1,h2c://x", `worker 2 ("h2c://x"): missing port`},
		{"http://x:", `worker 1 ("http://x:"): missing port`},
		{"http://[::1]", `worker 1 ("http://[::1]"): missing port`},
		{"http://:8000", `worker 1 ("http://:8000"): missing host`},
		{"http://", `worker 1 ("http://"): missing host`},
		{"http:///", `worker 1 ("http:///"): missing host`},
		{"http://x:abc", `worker 1 ("http://x:abc"): port "abc" is not a number from 1 to 65535`},
		{"http://x:0", `worker 1 ("http://x:0"): port "0" is not a number from 1 to 65535`},
		{"http://x:65536", `worker 1 ("http://x:65536"): port "65536" is not a number from 1 to 65535`},
		{"http://x:1/api", `worker 1 ("http://x:1/api"): path "/api" is not allowed (a worker is host:port only)`},
		{"http://x:1/?a=b", `worker 1 ("http://x:1/?a=b"): a query is not allowed`},
		{"http://x:1?", `worker 1 ("http://x:1?"): a query is not allowed`},
		{"http://x:1#top", `worker 1 ("http://x:1#top"): a fragment is not allowed`},
		{"http://u:p@x:1", `worker 1 ("http://u:p@x:1"): userinfo is not allowed`},
		{"http://::1:8000", `worker 1 ("http://::1:8000"): an IPv6 address needs brackets, e.g. [::1]:8000`},
		{"http://[10.0.0.1]:80", `worker 1 ("http://[10.0.0.1]:80"): "10.0.0.1" is not an IPv6 address`},
		{"http://bad host:80", `worker 1 ("http://bad host:80"): invalid host "bad host"`},
		{"http:x:1", `worker 1 ("http:x:1"): want http://host:port`},
		{"https://x:443", `worker 1 ("https://x:443"): https is not supported (workers are reached over plain HTTP: use http:// or h2c://)`},
		{"ftp://x:21", `worker 1 ("ftp://x:21"): unsupported scheme "ftp" (want http://, h2c:// or unix:)`},
		{"127.0.0.1:8000", `worker 1 ("127.0.0.1:8000"): missing scheme (did you mean "http://127.0.0.1:8000"?)`},
		{"app", `worker 1 ("app"): missing scheme (want http://, h2c:// or unix:)`},
		{"unix:run/app.sock", `worker 1 ("unix:run/app.sock"): socket path "run/app.sock" is not absolute`},
		{"unix://run/app.sock", `worker 1 ("unix://run/app.sock"): a unix: URL with // needs three slashes (unix:///path.sock)`},
		{"unix:", `worker 1 ("unix:"): missing socket path`},
		{"unix:/", `worker 1 ("unix:/"): missing socket path`},
		{"bad name=http://x:1", `worker 1 ("bad name=http://x:1"): name "bad name" is not 1 to 64 of A-Z a-z 0-9 . _ -`},
		{"=http://x:1", `worker 1 ("=http://x:1"): name "" is not 1 to 64 of A-Z a-z 0-9 . _ -`},
		{"w/1=http://x:1", `worker 1 ("w/1=http://x:1"): name "w/1" is not 1 to 64 of A-Z a-z 0-9 . _ -`},
		{strings.Repeat("n", 65) + "=http://x:1", `worker 1 ("` + strings.Repeat("n", 65) + `=http://x:1"): name "` + strings.Repeat("n", 65) + `" is not 1 to 64 of A-Z a-z 0-9 . _ -`},
		{"http://a:1,http://a:1", `worker 2 ("http://a:1"): address a:1 already used by worker 1`},
		{"x=http://a:1,y=h2c://a:1", `worker 2 ("y=h2c://a:1"): address a:1 already used by worker 1`},
		{"unix:/s,w=unix:///s", `worker 2 ("w=unix:///s"): address /s already used by worker 1`},
		{"w=http://a:1,w=http://b:2", `worker 2 ("w=http://b:2"): label "w" already used by worker 1`},
	}
	for _, tc := range bad {
		t.Run(tc.in, func(t *testing.T) {
			_, err := parseUpstreams(tc.in)
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	p := netip.MustParsePrefix
	good := []struct {
		in   string
		want []netip.Prefix
	}{
		{"", nil},
		{"10.0.0.1", []netip.Prefix{p("10.0.0.1/32")}},
		{"::1", []netip.Prefix{p("::1/128")}},
		{" 10.0.0.0/8 , ::1 ", []netip.Prefix{p("10.0.0.0/8"), p("::1/128")}},
		{"10.1.2.3/8", []netip.Prefix{p("10.0.0.0/8")}},
		{"2001:db8::1/32", []netip.Prefix{p("2001:db8::/32")}},
		{"::ffff:10.0.0.1", []netip.Prefix{p("10.0.0.1/32")}},
		{"::ffff:10.0.0.0/104", []netip.Prefix{p("10.0.0.0/8")}},
		{"0.0.0.0/0,::/0", []netip.Prefix{p("0.0.0.0/0"), p("::/0")}},
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parsePrefixes(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	bad := []struct{ in, want string }{
		{" ", "element 1 is empty"},
		{",10.0.0.1", "element 1 is empty"},
		{"10.0.0.1,", "element 2 is empty"},
		{"10.0.0.1, ,10.0.0.2", "element 2 is empty"},
		{"10.0.0.256", `element 1 ("10.0.0.256") is not an IP address or CIDR`},
		{"10.0.0.0/33", `element 1 ("10.0.0.0/33") is not an IP address or CIDR`},
		{"10.0.0.0/", `element 1 ("10.0.0.0/") is not an IP address or CIDR`},
		{"example.com", `element 1 ("example.com") is not an IP address or CIDR`},
		{"10.0.0.0-10.0.0.9", `element 1 ("10.0.0.0-10.0.0.9") is not an IP address or CIDR`},
		{"fe80::1%eth0", `element 1 ("fe80::1%eth0"): an IPv6 zone is not allowed`},
		{"fe80::1%eth0/64", `element 1 ("fe80::1%eth0/64") is not an IP address or CIDR`},
	}
	for _, tc := range bad {
		t.Run(tc.in, func(t *testing.T) {
			_, err := parsePrefixes(tc.in)
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}

func TestParseExtraLabels(t *testing.T) {
	good := []struct {
		in   string
		want []labelPair
	}{
		{"", nil},
		{`env="prod"`, []labelPair{{"env", "prod"}}},
		{`env="prod",region="eu-1"`, []labelPair{{"env", "prod"}, {"region", "eu-1"}}},
		{` a = "x" , _b="y" `, []labelPair{{"a", "x"}, {"_b", "y"}}},
		{`q="say \"hi\""`, []labelPair{{"q", `say "hi"`}}},
		{`p="C:\\dir"`, []labelPair{{"p", `C:\dir`}}},
		{`e=""`, []labelPair{{"e", ""}}},
		{`c="a,b",d="x=y"`, []labelPair{{"c", "a,b"}, {"d", "x=y"}}},
		{`u="caf\u00e9"`, []labelPair{{"u", "café"}}},
		{`z9="1"`, []labelPair{{"z9", "1"}}},
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseExtraLabels(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	bad := []struct{ in, want string }{
		{" ", "label 1 is empty"},
		{`,env="x"`, "label 1 is empty"},
		{`env="prod",`, "label 2 is empty"},
		{`env="prod",,x="y"`, "label 2 is empty"},
		{`env`, `label 1 ("env"): want name="value"`},
		{`env,x="y"`, `label 1 ("env"): want name="value"`},
		{`env=prod`, `label 1 (env): the value must be double-quoted, e.g. env="value"`},
		{`env='prod'`, `label 1 (env): the value must be double-quoted, e.g. env="value"`},
		{`1env="x"`, `label 1: "1env" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)`},
		{`a-b="x"`, `label 1: "a-b" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)`},
		{`="x"`, `label 1: "" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)`},
		{`__name__="x"`, `label 1: names starting with __ are reserved ("__name__")`},
		{`env="prod`, `label 1 (env): the value has no closing quote`},
		{`env="prod\"`, `label 1 (env): the value has no closing quote`},
		{`env="a\qb"`, `label 1 (env): the value is not a valid quoted string`},
		{`env="a" x`, `label 1 (env): want a comma after the closing quote`},
		{`env="a"x="b"`, `label 1 (env): want a comma after the closing quote`},
		{`env="a",env="b"`, `label 2: "env" is given twice`},
	}
	for _, tc := range bad {
		t.Run(tc.in, func(t *testing.T) {
			_, err := parseExtraLabels(tc.in)
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}

func TestSettingRows(t *testing.T) {
	vars, flags := configVars(t)
	rows := settingRows()
	require.Len(t, rows, len(vars))
	for i, r := range rows {
		assert.Equal(t, vars[i], r.Var)
		assert.Equal(t, flags[i], r.Flag)
		assert.NotEmpty(t, r.Help, r.Var)
		assert.NotEmpty(t, r.Accept, r.Var)
		f, ok := reflect.TypeFor[Config]().FieldByName(r.Field)
		require.True(t, ok, r.Field)
		assert.Equal(t, f.Tag.Get("envDefault"), r.Default)
		assert.Equal(t, f.Type.Kind() == reflect.Bool, r.IsBool, r.Var)
	}
}

func TestWriteHelp(t *testing.T) {
	var buf bytes.Buffer
	writeHelp(&buf)
	out := buf.String()

	for _, want := range []string{
		"obsproxy [flags]", "obsproxy healthcheck", "obsproxy version", "obsproxy --help",
		"0  clean shutdown", "1  runtime failure", "2  invalid configuration",
	} {
		assert.Contains(t, out, want)
	}

	lines := strings.Split(out, "\n")
	vars, flags := configVars(t)
	for i, key := range vars {
		t.Run(key, func(t *testing.T) {
			var line string
			for _, l := range lines {
				if strings.Contains(l, " "+key+" ") {
					line = l
				}
			}
			require.NotEmpty(t, line, "no help line for %s", key)
			fields := strings.Fields(line)
			require.GreaterOrEqual(t, len(fields), 4, line)
			assert.Equal(t, flags[i], fields[0])
			assert.Equal(t, key, fields[1])
			field := fieldForVar(t, key)
			def := field.Tag.Get("envDefault")
			if def == "" {
				def = "(empty)"
			}
			assert.Equal(t, def, fields[2])
			assert.True(t, strings.HasSuffix(line, field.Tag.Get("help")), line)
		})
	}

	// The columns are aligned: every setting line has its variable at the same offset.
	col := -1
	for _, l := range lines {
		if i := strings.Index(l, " OBSPROXY_"); i >= 0 && strings.HasPrefix(strings.TrimSpace(l), "--") {
			if col < 0 {
				col = i
			}
			assert.Equal(t, col, i, l)
		}
	}
	assert.Positive(t, col)
}
