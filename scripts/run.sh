#!/usr/bin/env bash
# The demo of `make run`: obsproxy on :8080 (admin on 127.0.0.1:9090) in
# supervisor mode (spec section 8), starting three uvicorn workers of
# examples/app on unix sockets, w1..w3, and restarting any that dies.
# obsproxy owns the workers: Ctrl-C stops obsproxy, and it stops them.
#
# Settings (environment, all optional): OBSPROXY_WORKERS (3), and any other
# OBSPROXY_* setting (obsproxy --help). The sockets live in
# OBSPROXY_WORKER_SOCKET_DIR, by default /tmp/obsproxy-run-<uid>, a private
# directory of yours, so that the README's walk-throughs can reach a worker
# directly (curl --unix-socket).
set -euo pipefail
bin=${1:-bin/obsproxy}
cd "$(dirname "$0")/.."

if [ -n "${OBSPROXY_UPSTREAMS:-}" ]; then
  # obsproxy refuses a worker command together with a static list (exit 2).
  echo "run.sh: ignoring OBSPROXY_UPSTREAMS=$OBSPROXY_UPSTREAMS: make run supervises its own workers" >&2
  unset OBSPROXY_UPSTREAMS
fi
workers=${OBSPROXY_WORKERS:-3}
sockets=${OBSPROXY_WORKER_SOCKET_DIR:-${TMPDIR:-/tmp}/obsproxy-run-$(id -u)}
# A fixed name under a shared /tmp: make sure it is ours and private before
# obsproxy puts sockets in it.
mkdir -p -m 0700 "$sockets"
if [ ! -O "$sockets" ] || [ -L "$sockets" ]; then
  echo "run.sh: $sockets is not a directory of yours; set OBSPROXY_WORKER_SOCKET_DIR to one" >&2
  exit 1
fi
chmod 0700 "$sockets"

export OBSPROXY_WORKER_SOCKET_DIR="$sockets"
export OBSPROXY_UPSTREAM_HEALTH_PATH="${OBSPROXY_UPSTREAM_HEALTH_PATH:-/api/v1/health}"
export OBSPROXY_LOG_FORMAT="${OBSPROXY_LOG_FORMAT:-text}"
export OBSPROXY_WORKER_METRICS_PATH="${OBSPROXY_WORKER_METRICS_PATH:-/metrics}"
cat <<MSG

obsproxy is starting $workers uvicorn workers of examples/app (w1..w$workers) on unix sockets in
$sockets/ and proxying to them:
  proxy      http://localhost:8080/            (try /slow?seconds=5, /sse?count=5)
  health     http://localhost:8080/health      (obsproxy's own: 200 healthy|degraded, 503 unhealthy)
  liveness   http://localhost:8080/livez       (200 while obsproxy serves)
  dashboard  http://127.0.0.1:9090/admin/      (live: cards, charts, workers with pid/memory/CPU, events)
  metrics    http://127.0.0.1:9090/metrics
  snapshot   http://127.0.0.1:9090/admin/api/observability   (the dashboard's JSON; /sse streams it)
Try it: kill -9 a worker's pid (see the dashboard or
  curl -s 127.0.0.1:9090/metrics | grep obsproxy_worker_pid
) and watch obsproxy start a new one (obsproxy_worker_exits_total{reason="crash"}, the event log).
Worker output appears below with worker=w1..w$workers. Ctrl-C stops obsproxy and its workers.
See README.md.

MSG
# exec: obsproxy gets Ctrl-C itself, drains, and stops every worker it started
# (each in its own process group) before it exits.
exec "$bin" --workers "$workers" -- .venv/bin/python -m uvicorn app:app --app-dir examples/app \
  --uds '{socket}' --log-level warning
