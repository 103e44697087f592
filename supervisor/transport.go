package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
)

// Transport is how obsproxy reaches its workers (OBSPROXY_WORKER_TRANSPORT,
// spec section 8).
type Transport int

const (
	// Unix is a unix socket per process, {socket} in the command.
	Unix Transport = iota
	// TCP is HTTP/1.1 on a 127.0.0.1 port per process, {port}.
	TCP
	// H2C is HTTP/2 cleartext with prior knowledge (RFC 9113 section 3.3)
	// on a 127.0.0.1 port per process, {port}.
	H2C
)

// ParseTransport maps unix, tcp and h2c to their Transport; anything else is
// an error.
func ParseTransport(s string) (Transport, error) {
	switch s {
	case "unix":
		return Unix, nil
	case "tcp":
		return TCP, nil
	case "h2c":
		return H2C, nil
	}
	return 0, fmt.Errorf("unknown worker transport %q (want unix, tcp or h2c)", s)
}

// String returns the transport's configuration value.
func (t Transport) String() string {
	switch t {
	case TCP:
		return "tcp"
	case H2C:
		return "h2c"
	}
	return "unix"
}

// Network returns the lifecycle network: "unix" or "tcp".
func (t Transport) Network() string {
	if t == Unix {
		return "unix"
	}
	return "tcp"
}

// Placeholder returns the placeholder the command must contain for t:
// {socket} for Unix, {port} for TCP and H2C (spec section 8).
func (t Transport) Placeholder() string {
	if t == Unix {
		return "{socket}"
	}
	return "{port}"
}

// MaxSocketPath is the longest unix socket path the kernel takes: sun_path
// is 108 bytes on Linux, the terminating NUL included (unix(7)).
const MaxSocketPath = 107

// TempDirPattern is the os.MkdirTemp pattern of the default socket
// directory, under os.TempDir().
const TempDirPattern = "obsproxy-"

// maxSeqDigits bounds the per-worker process number in a socket name.
const maxSeqDigits = 10

// MaxSocketName returns the length of the longest socket file name a pool
// of n workers uses: "w<n>.<seq>.sock" with seq up to 10 digits.
func MaxSocketName(n int) int {
	return len("w"+strconv.Itoa(n)) + 1 + maxSeqDigits + len(".sock")
}

// socketName is the file name of process seq of worker name.
func socketName(name string, seq uint64) string {
	return name + "." + strconv.FormatUint(seq, 10) + ".sock"
}

// PrepareSocketDir creates dir with mode 0700 when it is missing and checks
// that it is a directory obsproxy can create files in. An existing
// directory keeps its mode. Errors say what failed, for the exit-2 message.
func PrepareSocketDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create it: %w", errors.Unwrap(err))
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cannot read it: %w", err)
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	f, err := os.CreateTemp(dir, ".obsproxy-write-check-*")
	if err != nil {
		return fmt.Errorf("cannot write in it: %w", errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}
