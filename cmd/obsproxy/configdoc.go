package main

import (
	"fmt"
	"io"
	"reflect"
	"strings"
)

// configGroup is one section of the configuration reference: the settings
// whose Config field carries group:"<Key>", in struct order.
type configGroup struct {
	Key   string // the group tag value, e.g. "health"
	Title string // the section heading
	Intro string // one paragraph of Markdown under the heading
}

// configGroups lists the sections of docs/configuration.md in order. Every
// setting of Config names one of these keys in its group tag
// (TestConfigDocGroups checks it).
var configGroups = []configGroup{
	{"listener", "Listener and workers",
		"Where obsproxy listens, which workers it sends requests to, and how it picks one. " +
			"The worker URL forms and labels are in [README.md](../README.md#workers); how to run each " +
			"ASGI server as workers is in [servers.md](servers.md)."},
	{"supervisor", "Supervisor mode",
		"With a command after `--` (`obsproxy [flags] -- uvicorn app:app --uds {socket}`) or " +
			"`OBSPROXY_WORKER_COMMAND`, obsproxy starts, watches and restarts its own workers `w1` … `wN` " +
			"instead of proxying to `OBSPROXY_UPSTREAMS` (which must then be unset). How it works: " +
			"[supervisor.md](supervisor.md)."},
	{"recycle", "Recycling and the stuck-worker kill",
		"Limits that replace a supervised worker's process (by requests served, resident memory, age) and " +
			"the kill of a process whose event loop is blocked (spec section 8). A replacement starts beside " +
			"the old process, which drains once it serves; at most one recycle runs at a time. See " +
			"docs/supervisor.md and docs/health.md."},
	{"health", "Health checks",
		"The probes sent to every worker, the rules that take a worker in and out of traffic, and " +
			"obsproxy's own `/health` (readiness) and `/livez` (liveness). Every rule is in [health.md](health.md)."},
	{"admin", "Admin listener and /diag",
		"The admin listener serves `/metrics` ([metrics.md](metrics.md)), the dashboard and `/diag`. " +
			"If `OBSPROXY_ADMIN_ADDR` is not a loopback address and neither `OBSPROXY_ADMIN_TOKEN` nor " +
			"`OBSPROXY_ADMIN_IP_ALLOWLIST` is set, obsproxy refuses to start (exit 2). `/diag` has its own " +
			"gate: it answers 404 while disabled, and 403 to everyone when enabled without a token or an allowlist."},
	{"clients", "Client connections",
		"How obsproxy treats the clients of the public listener."},
	{"timeouts", "Timeouts",
		"Limits on the client side (reading request headers, idle keep-alive connections) and on the " +
			"worker side (connecting, waiting for response headers). A worker that sends no response " +
			"headers within `OBSPROXY_UPSTREAM_RESPONSE_TIMEOUT` gets the client a 504."},
	{"shutdown", "Shutdown",
		"What happens on SIGTERM or SIGINT: `/health` reports `draining` at once, the listener keeps " +
			"accepting for `OBSPROXY_DRAIN_DELAY`, then in-flight requests get up to " +
			"`OBSPROXY_SHUTDOWN_TIMEOUT` to finish ([health.md](health.md#shutdown); for Kubernetes, " +
			"[kubernetes.md](kubernetes.md#shutdown))."},
	{"dashboard", "Dashboard",
		"The live dashboard on the admin listener (`/admin/`)."},
	{"push", "Metrics push",
		"Pushing the metrics of `/metrics` in the Prometheus text format to a VictoriaMetrics-compatible " +
			"import URL, for setups that cannot scrape obsproxy."},
	{"workermetrics", "Workers' own metrics",
		"With `OBSPROXY_WORKER_METRICS_PATH` set, every scrape of `/metrics` (and every push) also fetches " +
			"that path from every worker and exposes the workers' series with a `worker` label, so that an " +
			"application keeps prometheus_client's ordinary single-process registry " +
			"([metrics.md](metrics.md#the-workers-own-metrics)). The public listener answers 404 on that path."},
	{"logging", "Logging",
		"Structured logs on stderr. The access log never records query strings or header values."},
	{"tls", "TLS, HTTP/2 and ACME",
		"TLS on the public listener from certificate files (reloaded when they change) or from an ACME CA, " +
			"HTTP/2 by ALPN, and h2c for a plain listener behind a load balancer. Everything is in [tls.md](tls.md)."},
	{"admission", "Admission control",
		"A cap on the requests in flight to each worker and one FIFO queue for the requests that find " +
			"every worker at its cap (spec section 10); without a cap nothing waits. How to size the cap, " +
			"the queue and the workers' own limits together is in [operations.md](operations.md#admission-control)."},
}

// configDocHeader opens docs/configuration.md; the rest follows from Config.
const configDocHeader = `<!-- Code generated from the Config struct tags of cmd/obsproxy/config.go by "make docs"; DO NOT EDIT. -->

# Configuration reference

> **Generated file: do not edit.** It is written from the struct tags of ` + "`Config`" + ` in
> [cmd/obsproxy/config.go](../cmd/obsproxy/config.go) (` + "`env`, `envDefault`, `accept`, `help`, `group`" + `).
> After changing a setting there, regenerate it with ` + "`make docs`" + `; ` + "`go test ./cmd/obsproxy`" + ` fails while
> this file is out of date.

Every setting is an environment variable and a flag; a flag overrides the variable, and the
variable overrides the default. The flag is the variable without ` + "`OBSPROXY_`" + `, in lower case, with
` + "`_`" + ` turned into ` + "`-`" + `: ` + "`OBSPROXY_LISTEN_ADDR=:8081`" + ` and ` + "`--listen-addr=:8081`" + ` (or
` + "`--listen-addr :8081`" + `) mean the same. ` + "`obsproxy --help`" + ` prints the same list.

- **Durations** use Go syntax: ` + "`500ms`, `2s`, `1m`, `1m30s`" + `.
- **Booleans**: ` + "`true` or `false`" + ` (also ` + "`1`, `0`, `t`, `f`" + `). A boolean flag alone means true
  (` + "`--access-log`" + `); give false as ` + "`--access-log=false`" + `.
- **An empty value means the default**, except ` + "`OBSPROXY_ADMIN_ADDR=`" + ` (empty), which disables the
  admin listener.
- **Every value is checked before anything listens.** A bad one makes obsproxy exit with code 2 and a
  message that names the variable, the value and what is accepted (the *accepted* column below);
  token values are never printed.
- An ` + "`OBSPROXY_`" + ` variable that names no setting (a typo) is ignored, with a warning in the log at start.

`

// writeConfigDoc writes the Markdown configuration reference
// (docs/configuration.md) to w: a fixed header, then one section per entry
// of configGroups with a table of its settings (variable, flag, default,
// accepted values, meaning) in Config field order. It returns an error
// when a setting has no group or names an unknown one, and the first write
// error.
func writeConfigDoc(w io.Writer) error {
	byGroup := make(map[string][]settingRow)
	known := make(map[string]bool)
	for _, g := range configGroups {
		known[g.Key] = true
	}
	for _, r := range settingRows() {
		g := settingGroup(r)
		if !known[g] {
			return fmt.Errorf("setting %s: group %q is not one of configGroups (group tag on Config.%s)", r.Var, g, r.Field)
		}
		byGroup[g] = append(byGroup[g], r)
	}

	var b strings.Builder
	b.WriteString(configDocHeader)
	b.WriteString("Sections:")
	for i, g := range configGroups {
		if i > 0 {
			b.WriteString(" ·")
		}
		fmt.Fprintf(&b, " [%s](#%s)", g.Title, markdownAnchor(g.Title))
	}
	b.WriteString("\n")
	for _, g := range configGroups {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", g.Title, g.Intro)
		b.WriteString("| variable | flag | default | accepted | meaning |\n")
		b.WriteString("| --- | --- | --- | --- | --- |\n")
		for _, r := range byGroup[g.Key] {
			def := "(empty)"
			if r.Default != "" {
				def = "`" + r.Default + "`"
			}
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s |\n",
				r.Var, r.Flag, def, markdownCell(r.Accept), markdownCell(r.Help))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// settingGroup returns the group tag of the Config field behind r ("" when
// it has none).
func settingGroup(r settingRow) string {
	f, ok := reflect.TypeFor[Config]().FieldByName(r.Field)
	if !ok {
		return ""
	}
	return f.Tag.Get("group")
}

// markdownCell escapes s for a Markdown table cell: a '|' would end the cell.
func markdownCell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

// markdownAnchor returns the anchor GitHub gives a heading: lower case,
// spaces turned into '-', and everything but letters, digits, '-' and '_'
// dropped ("Admin listener and /diag" → "admin-listener-and-diag").
func markdownAnchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		}
	}
	return b.String()
}
