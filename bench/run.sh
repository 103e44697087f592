#!/usr/bin/env bash
# `make bench` (issue 6): installs nginx, haproxy, caddy and wrk from Debian
# when missing (their services kept stopped), builds obsproxy and the bench
# programs, and runs bench/runner, which prints the tables that
# docs/performance.md reproduces. Loopback only; every process it starts is
# stopped by PID; the temporary directory is removed on exit.
#
# Settings (environment): ROUNDS (5), DURATION (10s), CONNS (64),
# IDLE_CONNS (5000), STUCK_DURATION (15s), STUCK_CONNS (8), BLOCK_SECONDS
# (5), STUCK_ROUNDS (1), PHASES (idle,rounds,stuck; add tls, or PHASES=tls
# alone, for TLS HTTP/1.1, HTTP/2 and handshakes), LOAD_CPU (0),
# SERVER_CPU (1). A quick run: ROUNDS=1 DURATION=3 IDLE_CONNS=500 make bench
# The overload phase (admission control, issue 16) runs only when asked:
# PHASES=overload make bench (about 4 minutes; OVERLOAD_* settings in
# bench/runner/overload.go).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

# Package installs would start nginx and haproxy as system services:
# scripts/deps.sh keeps them stopped. Its progress goes to stderr, since
# stdout carries the tables.
scripts/deps.sh nginx haproxy caddy wrk nghttp2-client >&2   # h2load is nghttp2-client; and the project venv (.venv)

# 5,000 idle connections and their upstream side need more than 1,024 files.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d /tmp/obsproxy-bench.XXXXXX)
runner_pid=""
cleanup() {
  if [ -n "$runner_pid" ] && kill -0 "$runner_pid" 2>/dev/null; then
    kill -TERM "$runner_pid" 2>/dev/null || true
    wait "$runner_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make --no-print-directory build >&2
for prog in upstream bareproxy benchclient runner; do
  CGO_ENABLED=0 $GO build -trimpath -o "$tmp/bin/$prog" "./bench/$prog"
done

started=$(date +%s)
"$tmp/bin/runner" -tmp "$tmp" -repo "$PWD" -obsproxy "$PWD/bin/obsproxy" \
  -upstream "$tmp/bin/upstream" -bareproxy "$tmp/bin/bareproxy" -benchclient "$tmp/bin/benchclient" &
runner_pid=$!
wait "$runner_pid"
rc=$?
runner_pid=""
echo "bench: finished in $(( $(date +%s) - started )) s (exit $rc)" >&2
exit "$rc"
