// Command obsproxy is a reverse proxy for a pool of Python ASGI workers that
// counts what the workers cannot see about themselves (spec section 1).
//
//	obsproxy                 run the proxy (config from environment, flags override)
//	obsproxy healthcheck     GET the local health endpoint; exit 0 on 200, 1 otherwise
//	obsproxy version         print version, commit, Go version
//	obsproxy --help          every setting; exit 0
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/obsproxy/obsproxy/supervisor"
)

// Exit codes (spec section 1).
const (
	exitOK      = 0
	exitFailure = 1
	exitConfig  = 2
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == supervisor.ReaperArg {
		os.Exit(supervisor.RunReaper(os.Stdin)) // supervisor mode's safety net, see package supervisor
	}
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is obsproxy's whole life; it returns the process exit code.
func run(args, environ []string, stdout, stderr io.Writer) int {
	cmd := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "", "healthcheck":
	default:
		fmt.Fprintf(stderr, "obsproxy: unknown command %q (want healthcheck, version or --help)\n", cmd)
		return exitConfig
	}
	cfg, err := loadConfig(args, environ)
	if errors.Is(err, errHelp) {
		writeHelp(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "obsproxy: %v\n(run obsproxy --help for every setting)\n", err)
		return exitConfig
	}
	if cmd == "healthcheck" {
		return healthcheck(cfg, stdout, stderr)
	}
	return serve(cfg, stderr)
}
