package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is obsproxy's release, set at build time with
// -ldflags "-X main.version=…" (the Makefile does).
var version = "0.1.0-dev"

// commit returns the VCS revision the binary was built from, as the Go
// toolchain recorded it, or "unknown".
func commit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "unknown", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

func versionString() string {
	return fmt.Sprintf("obsproxy %s (commit %s, %s)", version, commit(), runtime.Version())
}
