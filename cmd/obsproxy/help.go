package main

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
)

// settingRow is one setting of Config as --help (and, later, generated docs)
// show it, derived from the struct tags by settingRows.
type settingRow struct {
	Flag    string // e.g. --listen-addr
	Var     string // e.g. OBSPROXY_LISTEN_ADDR
	Default string // the envDefault tag as written; "" when there is none
	Help    string // the one-line meaning (help tag)
	Accept  string // what a value must look like (accept tag)
	Field   string // the Config field name, e.g. ListenAddr
	IsBool  bool   // a boolean flag: --name alone means true
}

// settingRows returns every setting of Config (fields with an env tag other
// than "-"), in struct order. The flag name is the variable name without
// OBSPROXY_, lower-case, with '_' turned into '-'.
func settingRows() []settingRow {
	t := reflect.TypeFor[Config]()
	var rows []settingRow
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" || name == "-" {
			continue
		}
		rows = append(rows, settingRow{
			Flag:    "--" + strings.ReplaceAll(strings.ToLower(name), "_", "-"),
			Var:     envPrefix + name,
			Default: f.Tag.Get("envDefault"),
			Help:    f.Tag.Get("help"),
			Accept:  f.Tag.Get("accept"),
			Field:   f.Name,
			IsBool:  f.Type.Kind() == reflect.Bool,
		})
	}
	return rows
}

// writeHelp writes the usage text of spec section 1 to w: the commands, the
// exit codes, then every setting (flag, variable, default, meaning) in
// aligned columns. Write errors are ignored: there is nowhere to report them.
func writeHelp(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, `obsproxy: a reverse proxy for ASGI workers with fail-closed health, metrics and a live dashboard

Usage:
  obsproxy [flags]	run the proxy (settings from the environment; flags override)
  obsproxy [flags] -- COMMAND [ARG ...]	supervisor mode: start, watch and restart the workers ({socket}, {port}, {name})
  obsproxy healthcheck	GET the local health endpoint; exit 0 on 200, 1 otherwise
  obsproxy version	print version, commit and Go version
  obsproxy --help	print this help and exit 0

Exit codes:
  0	clean shutdown
  1	runtime failure
  2	invalid configuration (nothing starts listening)

Settings: every environment variable also has a flag; a flag overrides the variable.
Durations use Go syntax (500ms, 2s, 1m). A boolean flag alone means true (--access-log);
give false as --access-log=false. An empty value means the default, except that an
empty OBSPROXY_ADMIN_ADDR disables the admin listener.

  FLAG	VARIABLE	DEFAULT	MEANING
`)
	for _, r := range settingRows() {
		def := r.Default
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Flag, r.Var, def, r.Help)
	}
	_ = tw.Flush()
}
