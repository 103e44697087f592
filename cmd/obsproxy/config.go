package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// envPrefix is the prefix of every obsproxy environment variable (spec section 2).
const envPrefix = "OBSPROXY_"

// Config is every setting of spec section 2 ("Configuration"), read from the
// environment with caarlos0/env and overridden by flags. It is the only place
// where obsproxy reads its settings; run maps it onto each package's plain
// Config. The struct tags are the single source of truth for the variable
// names (env, with the prefix OBSPROXY_), the defaults (envDefault), the
// one-line meaning printed by --help (help) and what a value must look like
// (accept, quoted in error messages).
//
// A variable set to the empty string means its default, as caarlos0/env
// reads it, with one exception: OBSPROXY_ADMIN_ADDR set to the empty string
// disables the admin listener (spec section 2).
//
// Variables whose feature lands in a later issue are parsed and validated now
// so that a deployment written today keeps working.
//
// The fields tagged env:"-" are not read from the environment: loadConfig
// fills them with the parsed forms of the string settings above them, so
// that nothing after loadConfig parses a setting again.
type Config struct {
	ListenAddr string `env:"LISTEN_ADDR" envDefault:":8080" help:"public listener address" accept:"host:port, e.g. :8080 or 127.0.0.1:8080" group:"listener"`
	Upstreams  string `env:"UPSTREAMS" envDefault:"http://127.0.0.1:8000" help:"comma-separated workers, each [name=]URL with URL http://host:port, h2c://host:port or unix:/path.sock" accept:"comma-separated [name=]URL, URL one of http://host:port, h2c://host:port, unix:/path.sock" group:"listener"`
	LBPolicy   string `env:"LB_POLICY" envDefault:"least_inflight" help:"load-balancing policy: least_inflight (fewest in-flight requests, ties round-robin) or round_robin" accept:"least_inflight or round_robin" group:"listener"`

	HealthPath         string        `env:"HEALTH_PATH" envDefault:"/health" help:"public fail-closed health endpoint (not proxied)" accept:"an absolute path starting with /" group:"health"`
	LivenessPath       string        `env:"LIVENESS_PATH" envDefault:"/livez" help:"public liveness endpoint: 200 while the process serves (not proxied)" accept:"an absolute path starting with /" group:"health"`
	UpstreamHealthPath string        `env:"UPSTREAM_HEALTH_PATH" envDefault:"/health" help:"path probed on every worker" accept:"an absolute path starting with /" group:"health"`
	HealthInterval     time.Duration `env:"HEALTH_INTERVAL" envDefault:"2s" help:"probe period" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"health"`
	HealthTimeout      time.Duration `env:"HEALTH_TIMEOUT" envDefault:"1s" help:"per-probe timeout (may exceed the interval; a worker never has two probes in flight)" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"health"`
	HealthRise         int           `env:"HEALTH_RISE" envDefault:"1" help:"consecutive good probes to mark a worker up" accept:"an integer from 1 to 100" group:"health"`
	HealthFall         int           `env:"HEALTH_FALL" envDefault:"1" help:"consecutive bad probes to mark a worker down" accept:"an integer from 1 to 100" group:"health"`
	MinHealthyWorkers  int           `env:"MIN_HEALTHY_WORKERS" envDefault:"1" help:"fewer workers up than this makes /health unhealthy" accept:"an integer from 1 to the number of workers" group:"health"`
	HealthVerbose      bool          `env:"HEALTH_VERBOSE" envDefault:"false" help:"include per-worker detail in the public /health body" accept:"true or false" group:"health"`

	AdminAddr          string `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9090" help:"admin listener (/metrics, /admin/, /diag); empty disables it" accept:"host:port, or empty to disable" group:"admin"`
	AdminToken         string `env:"ADMIN_TOKEN" help:"bearer token admitted to every admin route but /diag" accept:"a non-blank string of printable characters without surrounding spaces" group:"admin"`
	AdminIPAllowlist   string `env:"ADMIN_IP_ALLOWLIST" help:"comma-separated IPs and CIDRs admitted to every admin route but /diag" accept:"comma-separated IPs or CIDRs, e.g. 10.0.0.0/8,::1" group:"admin"`
	DiagEnabled        bool   `env:"DIAG_ENABLED" envDefault:"false" help:"serve /diag on the admin listener (404 while false)" accept:"true or false" group:"admin"`
	DiagAuthToken      string `env:"DIAG_AUTH_TOKEN" help:"bearer token admitted to /diag" accept:"a non-blank string of printable characters without surrounding spaces" group:"admin"`
	DiagIPAllowlist    string `env:"DIAG_IP_ALLOWLIST" help:"comma-separated IPs and CIDRs admitted to /diag" accept:"comma-separated IPs or CIDRs, e.g. 10.0.0.0/8,::1" group:"admin"`
	DiagTrustForwarded bool   `env:"DIAG_TRUST_FORWARDED_FOR" envDefault:"false" help:"use the left-most X-Forwarded-For as the /diag client IP" accept:"true or false" group:"admin"`
	TrustedProxies     string `env:"TRUSTED_PROXIES" help:"CIDRs whose X-Forwarded-For and Forwarded are kept and extended; from anyone else they are replaced by obsproxy's own" accept:"comma-separated IPs or CIDRs, e.g. 10.0.0.0/8,::1" group:"clients"`
	MaxConnections     int    `env:"MAX_CONNECTIONS" envDefault:"0" help:"cap on open client connections (0: none)" accept:"an integer >= 0" group:"clients"`

	ReadHeaderTimeout       time.Duration `env:"READ_HEADER_TIMEOUT" envDefault:"10s" help:"time allowed to read a client's request headers" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"timeouts"`
	IdleTimeout             time.Duration `env:"IDLE_TIMEOUT" envDefault:"120s" help:"how long an idle client keep-alive connection stays open" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"timeouts"`
	UpstreamDialTimeout     time.Duration `env:"UPSTREAM_DIAL_TIMEOUT" envDefault:"2s" help:"time allowed to connect to a worker" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"timeouts"`
	UpstreamResponseTimeout time.Duration `env:"UPSTREAM_RESPONSE_TIMEOUT" envDefault:"60s" help:"time allowed for a worker's response headers" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"timeouts"`
	DrainDelay              time.Duration `env:"DRAIN_DELAY" envDefault:"0s" help:"after SIGTERM, how long /health reports draining before the listener stops accepting" accept:"a Go duration >= 0 such as 0s, 5s" group:"shutdown"`
	ShutdownTimeout         time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s" help:"how long in-flight requests may take to finish on shutdown" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"shutdown"`
	SampleInterval          time.Duration `env:"SAMPLE_INTERVAL" envDefault:"1s" help:"dashboard / SSE sampling period" accept:"a Go duration from 100ms to 1m" group:"dashboard"`

	PushURL         string        `env:"PUSH_URL" help:"VictoriaMetrics-compatible import URL (.../api/v1/import/prometheus) to push metrics to; empty disables push" accept:"an http:// or https:// URL, or empty" group:"push"`
	PushInterval    time.Duration `env:"PUSH_INTERVAL" envDefault:"10s" help:"metrics push period" accept:"a Go duration of at least 1s" group:"push"`
	PushExtraLabels string        `env:"PUSH_EXTRA_LABELS" help:"labels added to every pushed series, as name=\"value\",name2=\"value2\"" accept:"comma-separated name=\"value\" pairs with Prometheus label names" group:"push"`

	AccessLog bool   `env:"ACCESS_LOG" envDefault:"false" help:"log one line per proxied request (never query strings or header values)" accept:"true or false" group:"logging"`
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" help:"log level" accept:"debug, info, warn or error" group:"logging"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"json" help:"log format on stderr" accept:"json or text" group:"logging"`

	// The workers' own metrics, spec section 9 (config_workermetrics.go).
	WorkerMetricsPath     string        `env:"WORKER_METRICS_PATH" help:"path fetched from every worker on each scrape of /metrics (and each push), its series exposed with a worker label; empty: off. The public listener answers 404 on it" accept:"empty, or an absolute path other than / such as /metrics" group:"workermetrics"`
	WorkerMetricsTimeout  time.Duration `env:"WORKER_METRICS_TIMEOUT" envDefault:"2s" help:"time allowed for each worker's metrics fetch (shortened to fit the scraper's X-Prometheus-Scrape-Timeout-Seconds)" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"workermetrics"`
	WorkerMetricsMaxBytes byteSize      `env:"WORKER_METRICS_MAX_BYTES" envDefault:"8MiB" help:"most bytes a worker's metrics body may have after decompression; a larger one contributes nothing and counts as too_large" accept:"a byte count or a number with a unit from 1KiB to 1GiB, e.g. 8MiB, 500MB, 1048576" group:"workermetrics"`

	// The client side: TLS, HTTP/2, ACME (spec section 11); checked in config_tls.go.
	TLSCertFile   string `env:"TLS_CERT_FILE" help:"PEM certificate chain (leaf first) for TLS on the public listener, with OBSPROXY_TLS_KEY_FILE; reloaded when it changes" accept:"a readable PEM certificate file, valid now, matching OBSPROXY_TLS_KEY_FILE" group:"tls"`
	TLSKeyFile    string `env:"TLS_KEY_FILE" help:"PEM private key of OBSPROXY_TLS_CERT_FILE" accept:"a readable PEM private key file matching OBSPROXY_TLS_CERT_FILE" group:"tls"`
	TLSMinVersion string `env:"TLS_MIN_VERSION" envDefault:"1.2" help:"lowest TLS version accepted from clients" accept:"1.2 or 1.3" group:"tls"`
	H2C           bool   `env:"H2C" envDefault:"false" help:"accept HTTP/2 cleartext with prior knowledge on a plain public listener (behind a load balancer that speaks h2c)" accept:"true or false, and not with TLS" group:"tls"`
	ACMEDomains   string `env:"ACME_DOMAINS" help:"comma-separated names to obtain certificates for from an ACME CA (TLS-ALPN-01 on the public listener); not with certificate files" accept:"comma-separated DNS names, e.g. example.com,www.example.com (no wildcards, no IP addresses)" group:"tls"`
	ACMEEmail     string `env:"ACME_EMAIL" help:"contact address of the ACME account (expiry notices)" accept:"an email address, or empty" group:"tls"`
	ACMEDirectory string `env:"ACME_DIRECTORY" envDefault:"https://acme-v02.api.letsencrypt.org/directory" help:"ACME directory URL (default: Let's Encrypt production)" accept:"an https:// URL" group:"tls"`
	ACMECAFile    string `env:"ACME_CA_FILE" help:"PEM CA certificates trusted for the ACME directory's HTTPS, besides the system roots (a private CA)" accept:"a readable PEM file with at least one certificate, or empty" group:"tls"`
	ACMECacheDir  string `env:"ACME_CACHE_DIR" help:"directory for the ACME account key and certificates (keep it on a volume: a restart reuses them); required with OBSPROXY_ACME_DOMAINS" accept:"a directory path, created 0700 if missing" group:"tls"`
	// TLSMinVersionID is OBSPROXY_TLS_MIN_VERSION as a crypto/tls constant.
	TLSMinVersionID uint16 `env:"-"`
	// ACMEDomainList is OBSPROXY_ACME_DOMAINS parsed, lower-cased, in the
	// order written; nil when unset.
	ACMEDomainList    []string      `env:"-"`
	WorkerMaxInFlight int           `env:"WORKER_MAX_IN_FLIGHT" envDefault:"0" help:"cap on requests in flight per worker; beyond it requests wait in one FIFO queue (0: no cap)" accept:"an integer from 0 to 100000" group:"admission"`
	QueueSize         int           `env:"QUEUE_SIZE" envDefault:"1024" help:"how many requests may wait for a worker below its cap; more get 503 overloaded (0: none wait)" accept:"an integer from 0 to 1000000" group:"admission"`
	QueueTimeout      time.Duration `env:"QUEUE_TIMEOUT" envDefault:"10s" help:"longest a request waits in the queue before 503 overloaded" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"admission"`
	// Supervisor mode (spec section 8): config_supervisor.go validates these.
	WorkerCommand      string        `env:"WORKER_COMMAND" help:"supervisor mode: the worker command, split like a shell ($VAR expands, nothing runs through a shell); a command after -- wins" accept:"a command line with {socket} (unix transport) or {port} (tcp, h2c), e.g. uvicorn app:app --uds {socket}" group:"supervisor"`
	NumWorkers         int           `env:"WORKERS" help:"supervisor mode: worker processes w1..wN (empty: the number of CPUs)" accept:"an integer from 1 to 256" group:"supervisor"`
	WorkerTransport    string        `env:"WORKER_TRANSPORT" envDefault:"unix" help:"supervisor mode: how obsproxy reaches a worker: unix ({socket}), tcp or h2c ({port} on 127.0.0.1)" accept:"unix, tcp or h2c" group:"supervisor"`
	WorkerSocketDir    string        `env:"WORKER_SOCKET_DIR" help:"supervisor mode: directory of the workers' unix sockets, created 0700 if missing (empty: a fresh private directory under the system temp dir, removed on exit)" accept:"a directory obsproxy can create and write, short enough for a socket path (108 bytes)" group:"supervisor"`
	WorkerStartTimeout time.Duration `env:"WORKER_START_TIMEOUT" envDefault:"60s" help:"supervisor mode: a new process that no probe finds serving within this is killed (start_timeout)" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"supervisor"`
	WorkerStopTimeout  time.Duration `env:"WORKER_STOP_TIMEOUT" envDefault:"30s" help:"supervisor mode: after SIGTERM, how long a process may take to exit before SIGKILL" accept:"a positive Go duration such as 500ms, 2s, 1m" group:"supervisor"`
	WorkerBackoffMax   time.Duration `env:"WORKER_BACKOFF_MAX" envDefault:"30s" help:"supervisor mode: the longest delay before restarting a failing worker (100ms doubling up to this)" accept:"a Go duration of at least 100ms" group:"supervisor"`
	// Recycling and the stuck-worker kill (spec section 8), enforced by
	// the supervisor (validated in config_recycle.go).
	WorkerMaxRequests   int           `env:"WORKER_MAX_REQUESTS" envDefault:"0" help:"supervisor mode: recycle a process after this many requests (0: off)" accept:"an integer >= 0" group:"recycle"`
	WorkerMaxRSS        byteSize      `env:"WORKER_MAX_RSS" envDefault:"0" help:"supervisor mode: recycle a process whose resident memory (with its descendants) stays above this (0: off)" accept:"0, a byte count or a number with a unit, e.g. 512MiB, 1GiB, 500MB" group:"recycle"`
	WorkerMaxLifetime   time.Duration `env:"WORKER_MAX_LIFETIME" envDefault:"0s" help:"supervisor mode: recycle a process after it has run this long (0s: off)" accept:"a Go duration >= 0 such as 0s, 1h" group:"recycle"`
	WorkerRecycleJitter float64       `env:"WORKER_RECYCLE_JITTER" envDefault:"0.1" help:"supervisor mode: each recycling limit is scaled per process by a random factor in [1, 1+this]" accept:"a number from 0 to 1" group:"recycle"`
	WorkerStuckTimeout  time.Duration `env:"WORKER_STUCK_TIMEOUT" envDefault:"0s" help:"supervisor mode: SIGKILL a process whose requests are in flight and whose probes all time out for this long (0s: off)" accept:"a Go duration >= 0 such as 0s, 30s" group:"recycle"`
	// WorkerArgv is the worker command as argv, placeholders unreplaced:
	// the arguments after --, else OBSPROXY_WORKER_COMMAND split; nil in
	// static mode.
	WorkerArgv []string `env:"-"`
	// WorkerEnv is the environment loadConfig was given (KEY=VALUE): the
	// workers' environment, and where $VAR in OBSPROXY_WORKER_COMMAND is
	// looked up.
	WorkerEnv []string `env:"-"`
	// Workers is OBSPROXY_UPSTREAMS parsed: one entry per worker, in the
	// order written, never empty after a successful loadConfig.
	Workers []workerSpec `env:"-"`
	// TrustedProxyPrefixes is OBSPROXY_TRUSTED_PROXIES parsed; nil when unset.
	TrustedProxyPrefixes []netip.Prefix `env:"-"`
	// AdminAllowPrefixes is OBSPROXY_ADMIN_IP_ALLOWLIST parsed; nil when unset.
	AdminAllowPrefixes []netip.Prefix `env:"-"`
	// DiagAllowPrefixes is OBSPROXY_DIAG_IP_ALLOWLIST parsed; nil when unset.
	DiagAllowPrefixes []netip.Prefix `env:"-"`
	// PushLabels is OBSPROXY_PUSH_EXTRA_LABELS parsed, in the order written;
	// nil when unset.
	PushLabels []labelPair `env:"-"`
	// UnknownVars lists, sorted, the OBSPROXY_ variables of the environment
	// that name no setting (typically a typo); run logs a warning for each.
	// nil when there are none.
	UnknownVars []string `env:"-"`
}

// workerSpec is one worker of OBSPROXY_UPSTREAMS (spec section 2): its
// label (the name given as name=URL, else host:port as written or the socket
// path), network ("tcp" for http:// and h2c://, "unix"), address and h2c flag.
type workerSpec = lifecycle.WorkerConfig

// labelPair is one name="value" pair of OBSPROXY_PUSH_EXTRA_LABELS, with
// Value unquoted.
type labelPair struct {
	Name  string
	Value string
}

// errHelp is returned by loadConfig for -h, -help, --h or --help; the caller
// prints writeHelp and exits 0.
var errHelp = errors.New("help requested")

// configError is an invalid setting. Its message names the variable, the
// bad value (redacted for secrets) and what is accepted (the accept tag),
// after the contract of spec section 1: the process exits 2 and nothing
// starts listening.
type configError struct {
	Var      string // the variable, e.g. OBSPROXY_HEALTH_INTERVAL
	Value    string // the value as written, or "<redacted>" for a secret
	Accepted string // what a valid value looks like
	Reason   string // what is wrong beyond "not accepted"; may be empty
}

// Error returns `invalid VAR="value": want ACCEPTED`, or with a Reason
// `invalid VAR="value": REASON; want ACCEPTED`.
func (e *configError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("invalid %s=%q: want %s", e.Var, e.Value, e.Accepted)
	}
	return fmt.Sprintf("invalid %s=%q: %s; want %s", e.Var, e.Value, e.Reason, e.Accepted)
}

// redacted stands for a secret's value in error messages.
const redacted = "<redacted>"

// loadConfig reads the settings of spec section 2 from environ (shaped like
// os.Environ(): KEY=VALUE) and args (the command-line flags, without the
// program name or subcommand). Every setting has a flag named after its
// variable without the prefix, lower-case, '_' turned into '-'
// (OBSPROXY_LISTEN_ADDR: --listen-addr); a flag that is set overrides the
// environment. Boolean flags accept --name alone (true) and --name=value.
//
// It returns errHelp for -h or --help; a *configError naming the first
// invalid variable in Config field order (values that do not parse as their
// type first, then the rules of validate, cross-variable rules last); or a
// plain error for an unknown flag or a stray argument. Every error is a
// configuration error (exit code 2).
func loadConfig(args []string, environ []string) (Config, error) {
	rows := settingRows()
	vars := make(map[string]string) // never nil: a nil map makes caarlos0/env read os.Environ
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, envPrefix) {
			vars[k] = v
		}
	}
	var unknown []string
	for k := range vars {
		if !slices.ContainsFunc(rows, func(r settingRow) bool { return r.Var == k }) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)

	command, err := parseFlags(args, rows, vars)
	if err != nil {
		return Config{}, err
	}

	var cfg Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars, Prefix: envPrefix}); err != nil {
		return Config{}, mapParseError(err, rows, vars)
	}
	// caarlos0/env turns an empty value into the default; for the admin
	// address the empty string is meaningful (spec section 2: "empty disables it").
	if v, ok := vars[envPrefix+"ADMIN_ADDR"]; ok && v == "" {
		cfg.AdminAddr = ""
	}
	cfg.WorkerArgv, cfg.WorkerEnv = command, environ
	if err := validate(&cfg, vars); err != nil {
		return Config{}, err
	}
	cfg.UnknownVars = unknown
	return cfg, nil
}

// settingFlag is the flag.Value of one setting: Set records the raw string
// under the variable's name, for caarlos0/env to parse with the environment.
type settingFlag struct {
	vars   map[string]string
	key    string
	isBool bool
}

// String returns the raw value recorded so far ("" for the zero value).
func (f *settingFlag) String() string {
	if f == nil || f.vars == nil {
		return ""
	}
	return f.vars[f.key]
}

// Set records v; it never fails, so a bad value is reported by the
// variable's name like one from the environment.
func (f *settingFlag) Set(v string) error {
	f.vars[f.key] = v
	return nil
}

// IsBoolFlag lets a boolean setting be given as --name alone (meaning true).
func (f *settingFlag) IsBoolFlag() bool { return f.isBool }

// parseFlags overlays the flags of args onto vars and returns the worker
// command given after "--" (spec section 1: obsproxy [flags] -- COMMAND
// [ARG ...]): nil without "--", an empty non-nil slice for "--" alone.
func parseFlags(args []string, rows []settingRow, vars map[string]string) ([]string, error) {
	fs := flag.NewFlagSet("obsproxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	boolFlags := make(map[string]bool)
	for _, r := range rows {
		name := strings.TrimPrefix(r.Flag, "--")
		fs.Var(&settingFlag{vars: vars, key: r.Var, isBool: r.IsBool}, name, r.Help)
		boolFlags[name] = r.IsBool
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
			return nil, fmt.Errorf("unknown flag --%s", strings.TrimLeft(name, "-"))
		}
		return nil, fmt.Errorf("invalid flags: %w", err)
	}
	if rest := fs.Args(); len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
		return append([]string{}, rest...), nil
	}
	if rest := fs.Args(); len(rest) > 0 {
		msg := fmt.Sprintf("unexpected argument %q", rest[0])
		if i := len(args) - len(rest); i > 0 {
			prev := strings.TrimLeft(args[i-1], "-")
			if !strings.Contains(prev, "=") && boolFlags[prev] {
				msg += fmt.Sprintf(" (a boolean flag takes its value after =, e.g. --%s=%s)", prev, rest[0])
			}
		}
		return nil, errors.New(msg)
	}
	return nil, nil
}

// mapParseError turns the first caarlos0/env error (they come in Config
// field order) into a *configError naming the variable and its raw value.
func mapParseError(err error, rows []settingRow, vars map[string]string) error {
	var agg env.AggregateError
	errs := []error{err}
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		errs = agg.Errors
	}
	var pe env.ParseError
	if errors.As(errs[0], &pe) {
		for _, r := range rows {
			if r.Field == pe.Name {
				return &configError{Var: r.Var, Value: vars[r.Var], Accepted: r.Accept}
			}
		}
	}
	return fmt.Errorf("reading configuration: %w", err)
}

// validator checks a parsed Config; vars holds the merged raw values, so
// messages quote what the user wrote.
type validator struct {
	cfg  *Config
	vars map[string]string
	rows map[string]settingRow // by variable
}

// invalid returns the error for variable name (without prefix) and value.
func (v *validator) invalid(name, value, reason string) *configError {
	key := envPrefix + name
	return &configError{Var: key, Value: value, Accepted: v.rows[key].Accept, Reason: reason}
}

// raw returns the value of variable name (without prefix) as written, or
// its default when unset or empty.
func (v *validator) raw(name string) string {
	key := envPrefix + name
	if s := v.vars[key]; s != "" {
		return s
	}
	return v.rows[key].Default
}

// validate checks the rules of spec section 2 that a type cannot express,
// in Config field order, and fills the env:"-" fields. It returns the first
// violation as a *configError.
func validate(cfg *Config, vars map[string]string) error {
	v := &validator{cfg: cfg, vars: vars, rows: make(map[string]settingRow)}
	for _, r := range settingRows() {
		v.rows[r.Var] = r
	}
	checks := []func() error{
		v.listener,
		v.supervisor,
		v.recycle,
		v.upstreams,
		v.paths,
		v.health,
		v.admin,
		v.access,
		v.timeouts,
		v.push,
		v.logging,
		v.workerMetrics,
		v.tls,
		v.admission,
		v.adminExposure,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) listener() error {
	if v.cfg.ListenAddr == "" {
		return v.invalid("LISTEN_ADDR", "", "")
	}
	if reason := checkHostPort(v.cfg.ListenAddr); reason != "" {
		return v.invalid("LISTEN_ADDR", v.cfg.ListenAddr, reason)
	}
	return nil
}

func (v *validator) upstreams() error {
	if v.cfg.WorkerArgv == nil { // supervisor mode has its workers already
		workers, err := parseUpstreams(v.cfg.Upstreams)
		if err != nil {
			return v.invalid("UPSTREAMS", v.cfg.Upstreams, err.Error())
		}
		v.cfg.Workers = workers
	}
	switch v.cfg.LBPolicy {
	case "least_inflight", "round_robin":
	default:
		return v.invalid("LB_POLICY", v.cfg.LBPolicy, "")
	}
	return nil
}

func (v *validator) paths() error {
	c := v.cfg
	for _, p := range []struct{ name, value string }{
		{"HEALTH_PATH", c.HealthPath},
		{"LIVENESS_PATH", c.LivenessPath},
		{"UPSTREAM_HEALTH_PATH", c.UpstreamHealthPath},
	} {
		if !strings.HasPrefix(p.value, "/") {
			return v.invalid(p.name, p.value, "")
		}
		if strings.ContainsAny(p.value, "?# \t") {
			return v.invalid(p.name, p.value, "a path cannot contain ?, # or blanks")
		}
		if p.name == "LIVENESS_PATH" && p.value == c.HealthPath {
			return v.invalid(p.name, p.value, "same as OBSPROXY_HEALTH_PATH")
		}
	}
	return nil
}

func (v *validator) health() error {
	c := v.cfg
	if c.HealthInterval <= 0 {
		return v.invalid("HEALTH_INTERVAL", v.raw("HEALTH_INTERVAL"), "")
	}
	if c.HealthTimeout <= 0 {
		return v.invalid("HEALTH_TIMEOUT", v.raw("HEALTH_TIMEOUT"), "")
	}
	if c.HealthRise < 1 || c.HealthRise > 100 {
		return v.invalid("HEALTH_RISE", v.raw("HEALTH_RISE"), "")
	}
	if c.HealthFall < 1 || c.HealthFall > 100 {
		return v.invalid("HEALTH_FALL", v.raw("HEALTH_FALL"), "")
	}
	if n := len(c.Workers); c.MinHealthyWorkers < 1 || c.MinHealthyWorkers > n {
		reason := ""
		if c.MinHealthyWorkers > n {
			reason = fmt.Sprintf("only %d %s configured", n, plural(n, "worker is", "workers are"))
		}
		return v.invalid("MIN_HEALTHY_WORKERS", v.raw("MIN_HEALTHY_WORKERS"), reason)
	}
	return nil
}

func (v *validator) admin() error {
	c := v.cfg
	if c.AdminAddr != "" {
		if reason := checkHostPort(c.AdminAddr); reason != "" {
			return v.invalid("ADMIN_ADDR", c.AdminAddr, reason)
		}
		if sameListener(c.AdminAddr, c.ListenAddr) {
			return v.invalid("ADMIN_ADDR", c.AdminAddr, "same port as OBSPROXY_LISTEN_ADDR="+strconv.Quote(c.ListenAddr))
		}
	}
	if err := v.token("ADMIN_TOKEN", c.AdminToken); err != nil {
		return err
	}
	var err error
	if c.AdminAllowPrefixes, err = parsePrefixes(c.AdminIPAllowlist); err != nil {
		return v.invalid("ADMIN_IP_ALLOWLIST", c.AdminIPAllowlist, err.Error())
	}
	if err := v.token("DIAG_AUTH_TOKEN", c.DiagAuthToken); err != nil {
		return err
	}
	if c.DiagAllowPrefixes, err = parsePrefixes(c.DiagIPAllowlist); err != nil {
		return v.invalid("DIAG_IP_ALLOWLIST", c.DiagIPAllowlist, err.Error())
	}
	return nil
}

// token checks an optional bearer token; its value never appears in the error.
func (v *validator) token(name, tok string) error {
	if tok == "" {
		return nil
	}
	switch {
	case strings.TrimSpace(tok) == "":
		return v.invalid(name, redacted, "blank")
	case strings.TrimSpace(tok) != tok:
		return v.invalid(name, redacted, "leading or trailing whitespace, which an Authorization header cannot carry")
	case strings.ContainsFunc(tok, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return v.invalid(name, redacted, "contains a control character")
	}
	return nil
}

func (v *validator) access() error {
	c := v.cfg
	var err error
	if c.TrustedProxyPrefixes, err = parsePrefixes(c.TrustedProxies); err != nil {
		return v.invalid("TRUSTED_PROXIES", c.TrustedProxies, err.Error())
	}
	if c.MaxConnections < 0 {
		return v.invalid("MAX_CONNECTIONS", v.raw("MAX_CONNECTIONS"), "")
	}
	return nil
}

func (v *validator) timeouts() error {
	c := v.cfg
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"READ_HEADER_TIMEOUT", c.ReadHeaderTimeout},
		{"IDLE_TIMEOUT", c.IdleTimeout},
		{"UPSTREAM_DIAL_TIMEOUT", c.UpstreamDialTimeout},
		{"UPSTREAM_RESPONSE_TIMEOUT", c.UpstreamResponseTimeout},
		{"DRAIN_DELAY", c.DrainDelay},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
	} {
		if d.value < 0 || (d.value == 0 && d.name != "DRAIN_DELAY") {
			return v.invalid(d.name, v.raw(d.name), "")
		}
	}
	if c.SampleInterval < 100*time.Millisecond || c.SampleInterval > time.Minute {
		return v.invalid("SAMPLE_INTERVAL", v.raw("SAMPLE_INTERVAL"), "")
	}
	return nil
}

func (v *validator) push() error {
	c := v.cfg
	if c.PushURL != "" {
		shown, reason := checkPushURL(c.PushURL)
		if reason != "" {
			return v.invalid("PUSH_URL", shown, reason)
		}
	}
	if c.PushInterval < time.Second {
		return v.invalid("PUSH_INTERVAL", v.raw("PUSH_INTERVAL"), "")
	}
	var err error
	if c.PushLabels, err = parseExtraLabels(c.PushExtraLabels); err != nil {
		return v.invalid("PUSH_EXTRA_LABELS", c.PushExtraLabels, err.Error())
	}
	return nil
}

func (v *validator) logging() error {
	switch v.cfg.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return v.invalid("LOG_LEVEL", v.cfg.LogLevel, "")
	}
	switch v.cfg.LogFormat {
	case "json", "text":
	default:
		return v.invalid("LOG_FORMAT", v.cfg.LogFormat, "")
	}
	return nil
}

// adminExposure is the cross-variable rule of spec section 2: an admin
// listener that is not on loopback needs a token or an allowlist.
func (v *validator) adminExposure() error {
	c := v.cfg
	if c.AdminAddr == "" || c.AdminToken != "" || len(c.AdminAllowPrefixes) > 0 {
		return nil
	}
	host, _, _ := net.SplitHostPort(c.AdminAddr) // checked in admin
	if isLoopbackHost(host) {
		return nil
	}
	return v.invalid("ADMIN_ADDR", c.AdminAddr,
		"not a loopback address, so OBSPROXY_ADMIN_TOKEN or OBSPROXY_ADMIN_IP_ALLOWLIST must be set")
}

// isLoopbackHost reports whether host (from host:port) is "localhost" or a
// loopback IP (127.0.0.0/8, ::1). An empty host or 0.0.0.0 listens on every
// interface and is not loopback.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// checkHostPort returns why s is not a listen address host:port with a
// numeric port from 0 to 65535, or "" when it is one.
func checkHostPort(s string) string {
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		return fmt.Sprintf("missing colon before the port (did you mean %q?)", ":"+s)
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return ae.Err
		}
		return err.Error()
	}
	if port == "" {
		return "missing port"
	}
	if !isDigits(port) {
		return fmt.Sprintf("port %q is not a number from 0 to 65535", port)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		return fmt.Sprintf("port %q is not a number from 0 to 65535", port)
	}
	return ""
}

// sameListener reports whether two valid listen addresses would bind the
// same port: equal non-zero ports and equal hosts, or a wildcard host on
// either side.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || strings.TrimLeft(pa, "0") == "" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// workerNameRe is what a worker name given as name=URL may look like.
var workerNameRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// parseUpstreams parses OBSPROXY_UPSTREAMS (spec section 2): comma-separated
// entries [name=]URL, blanks around each trimmed, where URL is
// http://host:port, h2c://host:port, unix:/abs/path.sock or
// unix:///abs/path.sock. The error text (no variable name, no "want") says
// which entry is wrong and why, e.g. `worker 2 ("h2c://x"): missing port`.
func parseUpstreams(s string) ([]workerSpec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no workers listed")
	}
	var workers []workerSpec
	for i, entry := range strings.Split(s, ",") {
		n := i + 1
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("worker %d is empty", n)
		}
		w, err := parseWorker(entry)
		if err != nil {
			return nil, fmt.Errorf("worker %d (%q): %w", n, entry, err)
		}
		for j, prev := range workers {
			if prev.Network == w.Network && prev.Address == w.Address {
				return nil, fmt.Errorf("worker %d (%q): address %s already used by worker %d", n, entry, w.Address, j+1)
			}
			if prev.Name == w.Name {
				return nil, fmt.Errorf("worker %d (%q): label %q already used by worker %d", n, entry, w.Name, j+1)
			}
		}
		workers = append(workers, w)
	}
	return workers, nil
}

// parseWorker parses one trimmed, non-empty [name=]URL entry.
func parseWorker(entry string) (workerSpec, error) {
	var w workerSpec
	rawURL := entry
	// A name comes before the URL's scheme, so its '=' precedes any ':'.
	if eq := strings.IndexByte(entry, '='); eq >= 0 {
		if colon := strings.IndexByte(entry, ':'); colon < 0 || eq < colon {
			name := strings.TrimSpace(entry[:eq])
			if !workerNameRe.MatchString(name) {
				return w, fmt.Errorf("name %q is not 1 to 64 of A-Z a-z 0-9 . _ -", name)
			}
			w.Name = name
			rawURL = strings.TrimSpace(entry[eq+1:])
		}
	}
	scheme, rest, ok := strings.Cut(rawURL, ":")
	switch scheme = strings.ToLower(scheme); {
	case !ok:
		return w, errors.New("missing scheme (want http://, h2c:// or unix:)")
	case scheme == "unix":
		path := rest
		if after, ok := strings.CutPrefix(rest, "//"); ok {
			if !strings.HasPrefix(after, "/") {
				return w, errors.New("a unix: URL with // needs three slashes (unix:///path.sock)")
			}
			path = after
		}
		if path == "" || path == "/" {
			return w, errors.New("missing socket path")
		}
		if !strings.HasPrefix(path, "/") {
			return w, fmt.Errorf("socket path %q is not absolute", path)
		}
		w.Network, w.Address = "unix", path
	case scheme == "http" || scheme == "h2c":
		after, ok := strings.CutPrefix(rest, "//")
		if !ok {
			return w, fmt.Errorf("want %s://host:port", scheme)
		}
		addr, err := parseWorkerAuthority(after)
		if err != nil {
			return w, err
		}
		w.Network, w.Address, w.H2C = "tcp", addr, scheme == "h2c"
	case scheme == "https":
		return w, errors.New("https is not supported (workers are reached over plain HTTP: use http:// or h2c://)")
	case !strings.HasPrefix(rest, "//"):
		// host:port without a scheme, e.g. 127.0.0.1:8000 or localhost:8000
		return w, fmt.Errorf("missing scheme (did you mean %q?)", "http://"+rawURL)
	default:
		return w, fmt.Errorf("unsupported scheme %q (want http://, h2c:// or unix:)", scheme)
	}
	if w.Name == "" {
		w.Name = w.Address
	}
	return w, nil
}

// parseWorkerAuthority checks what follows http:// or h2c:// and returns the
// host:port as written.
func parseWorkerAuthority(s string) (string, error) {
	authority, tail := s, ""
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		authority, tail = s[:i], s[i:]
	}
	if strings.Contains(authority, "@") {
		return "", errors.New("userinfo is not allowed")
	}
	if i := strings.IndexAny(tail, "?#"); i >= 0 {
		if tail[i] == '?' {
			return "", errors.New("a query is not allowed")
		}
		return "", errors.New("a fragment is not allowed")
	}
	if tail != "" && tail != "/" {
		return "", fmt.Errorf("path %q is not allowed (a worker is host:port only)", tail)
	}
	if authority == "" {
		return "", errors.New("missing host")
	}
	if !strings.Contains(authority, ":") || strings.HasSuffix(authority, "]") {
		return "", errors.New("missing port")
	}
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		if strings.Count(authority, ":") > 1 && !strings.HasPrefix(authority, "[") {
			return "", errors.New("an IPv6 address needs brackets, e.g. [::1]:8000")
		}
		return "", fmt.Errorf("invalid host:port %q", authority)
	}
	if port == "" {
		return "", errors.New("missing port")
	}
	if n, err := strconv.ParseUint(port, 10, 16); !isDigits(port) || err != nil || n == 0 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if host == "" {
		return "", errors.New("missing host")
	}
	if strings.HasPrefix(authority, "[") {
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return "", fmt.Errorf("%q is not an IPv6 address", host)
		}
	} else if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
		return "", fmt.Errorf("invalid host %q", host)
	}
	return authority, nil
}

// isHostname reports whether s is made of DNS name characters.
func isHostname(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
	})
}

// parsePrefixes parses a comma-separated list of IPs and CIDRs (blanks
// around each element trimmed) into prefixes: a bare IP becomes a
// single-address prefix (/32 or /128), host bits are cleared (Masked), and
// IPv4-mapped IPv6 forms (::ffff:10.0.0.1) become IPv4. The empty string
// gives nil; an empty element is an error.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	if s == "" {
		return nil, nil
	}
	var prefixes []netip.Prefix
	for i, elem := range strings.Split(s, ",") {
		n := i + 1
		elem = strings.TrimSpace(elem)
		if elem == "" {
			return nil, fmt.Errorf("element %d is empty", n)
		}
		var p netip.Prefix
		if strings.Contains(elem, "/") {
			var err error
			if p, err = netip.ParsePrefix(elem); err != nil {
				return nil, fmt.Errorf("element %d (%q) is not an IP address or CIDR", n, elem)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
		} else {
			ip, err := netip.ParseAddr(elem)
			if err != nil {
				return nil, fmt.Errorf("element %d (%q) is not an IP address or CIDR", n, elem)
			}
			if ip.Zone() != "" {
				return nil, fmt.Errorf("element %d (%q): an IPv6 zone is not allowed", n, elem)
			}
			ip = ip.Unmap()
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		prefixes = append(prefixes, p.Masked())
	}
	return prefixes, nil
}

// checkPushURL returns the URL as it may be shown (password redacted) and
// why it is not an absolute http(s) URL with a host, or "" when it is one.
func checkPushURL(s string) (shown, reason string) {
	u, err := url.Parse(s)
	if err != nil {
		return s, "not a URL"
	}
	shown = u.Redacted()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return shown, "scheme must be http or https"
	case u.Host == "" || u.Hostname() == "":
		return shown, "missing host"
	}
	return shown, ""
}

// labelNameRe is a Prometheus label name.
var labelNameRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// parseExtraLabels parses OBSPROXY_PUSH_EXTRA_LABELS: comma-separated
// name="value" pairs, blanks allowed around names, '=' and commas; names
// are Prometheus label names not starting with __ (reserved) and not
// repeated; values are double-quoted strings with Go escapes (\" and \\
// among them). The empty string gives nil.
func parseExtraLabels(s string) ([]labelPair, error) {
	if s == "" {
		return nil, nil
	}
	var pairs []labelPair
	rest := s
	for n := 1; ; n++ {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" || rest[0] == ',' {
			return nil, fmt.Errorf("label %d is empty", n)
		}
		eq := strings.IndexByte(rest, '=')
		if comma := strings.IndexByte(rest, ','); eq < 0 || (comma >= 0 && comma < eq) {
			elem := rest
			if comma >= 0 {
				elem = rest[:comma]
			}
			return nil, fmt.Errorf("label %d (%q): want name=\"value\"", n, strings.TrimSpace(elem))
		}
		name := strings.TrimSpace(rest[:eq])
		if !labelNameRe.MatchString(name) {
			return nil, fmt.Errorf("label %d: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", n, name)
		}
		if strings.HasPrefix(name, "__") {
			return nil, fmt.Errorf("label %d: names starting with __ are reserved (%q)", n, name)
		}
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		if !strings.HasPrefix(rest, `"`) {
			return nil, fmt.Errorf("label %d (%s): the value must be double-quoted, e.g. %s=\"value\"", n, name, name)
		}
		end := closingQuote(rest)
		if end < 0 {
			return nil, fmt.Errorf("label %d (%s): the value has no closing quote", n, name)
		}
		value, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			return nil, fmt.Errorf("label %d (%s): the value is not a valid quoted string", n, name)
		}
		if slices.ContainsFunc(pairs, func(p labelPair) bool { return p.Name == name }) {
			return nil, fmt.Errorf("label %d: %q is given twice", n, name)
		}
		pairs = append(pairs, labelPair{Name: name, Value: value})
		rest = strings.TrimLeft(rest[end+1:], " \t")
		if rest == "" {
			return pairs, nil
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("label %d (%s): want a comma after the closing quote", n, name)
		}
		rest = rest[1:]
	}
}

// closingQuote returns the index of the quote closing the double-quoted
// string that s starts with, skipping backslash escapes, or -1.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
