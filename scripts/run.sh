#!/usr/bin/env bash
# The demo of `make run`: three uvicorn workers of examples/app on
# 127.0.0.1:8001-8003 and obsproxy in front of them on :8080, admin on
# 127.0.0.1:9090. Ctrl-C (or any exit) stops every process this script started.
# It prints each worker's PID and the command that restarts it, for the
# health walk-through of README.md and docs/health.md.
set -euo pipefail
bin=${1:-bin/obsproxy}
cd "$(dirname "$0")/.."
printf -v root '%q' "$PWD"
pids=()
restart=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

for i in 1 2 3; do
  cmd=(.venv/bin/python -m uvicorn app:app --app-dir examples/app
    --host 127.0.0.1 --port "800$i" --log-level warning)
  WORKER_NAME=w$i "${cmd[@]}" &
  pids+=($!)
  restart+=("cd $root && WORKER_NAME=w$i ${cmd[*]}")
done
# Wait for the workers to answer before obsproxy takes traffic.
for i in 1 2 3; do
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://127.0.0.1:800$i/api/v1/health" && break
    sleep 0.1
  done
done

export OBSPROXY_UPSTREAMS="${OBSPROXY_UPSTREAMS:-w1=http://127.0.0.1:8001,w2=http://127.0.0.1:8002,w3=http://127.0.0.1:8003}"
export OBSPROXY_UPSTREAM_HEALTH_PATH="${OBSPROXY_UPSTREAM_HEALTH_PATH:-/api/v1/health}"
export OBSPROXY_LOG_FORMAT="${OBSPROXY_LOG_FORMAT:-text}"
export OBSPROXY_WORKER_METRICS_PATH="${OBSPROXY_WORKER_METRICS_PATH:-/metrics}"
cat <<MSG

obsproxy is starting in front of 3 uvicorn workers:
  w1  pid ${pids[0]}  127.0.0.1:8001
  w2  pid ${pids[1]}  127.0.0.1:8002
  w3  pid ${pids[2]}  127.0.0.1:8003
  proxy      http://localhost:8080/            (try /slow?seconds=5, /sse?count=5)
  health     http://localhost:8080/health      (obsproxy's own: 200 healthy|degraded, 503 unhealthy)
  liveness   http://localhost:8080/livez       (200 while obsproxy serves)
  dashboard  http://127.0.0.1:9090/admin/      (live: cards, charts, workers, lifecycle events)
  metrics    http://127.0.0.1:9090/metrics
  snapshot   http://127.0.0.1:9090/admin/api/observability   (the dashboard's JSON; /sse streams it)
To restart a worker you stopped (kill -9 <pid>), run its command in another terminal
(Ctrl-C there stops it; Ctrl-C here does not):
  ${restart[0]}
  ${restart[1]}
  ${restart[2]}
Ctrl-C stops everything this script started. See docs/health.md.

MSG
"$bin" &
pids+=($!)
wait "${pids[-1]}"
