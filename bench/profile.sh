#!/usr/bin/env bash
# Profiles obsproxy's request path under the benchmark's c=64 load: starts
# bench/upstream and bench/profproxy (obsproxy's wiring with a pprof
# listener) pinned to SERVER_CPU, loads it with wrk pinned to LOAD_CPU, and
# takes a CPU profile and an allocation profile (delta) over the same
# window, plus the GC count over it. Prints `go tool pprof -top` of each and
# keeps the profiles in OUT (default /tmp/obsproxy-profile).
#
# Settings (environment): SECONDS_PROFILED (20), CONNS (64), BODY (small or
# large), H2C (0 or 1), LOAD_CPU (0), SERVER_CPU (1), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
SECONDS_PROFILED=${SECONDS_PROFILED:-20}
CONNS=${CONNS:-64}
BODY=${BODY:-small}
H2C=${H2C:-0}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
OUT=${OUT:-/tmp/obsproxy-profile}
command -v wrk >/dev/null || { echo "profile: wrk is missing (make bench installs it)" >&2; exit 1; }
mkdir -p "$OUT"

tmp=$(mktemp -d /tmp/obsproxy-prof.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
for prog in upstream profproxy; do
  CGO_ENABLED=0 "$GO" build -o "$tmp/$prog" "./bench/$prog"
done
cp "$tmp/profproxy" "$OUT/profproxy"
up=$(port); h2=$(port); pub=$(port); adm=$(port); ppf=$(port)
taskset -c "$SERVER_CPU" "$tmp/upstream" -addr "127.0.0.1:$up" -h2c-addr "127.0.0.1:$h2" & pids+=($!)
upstream="127.0.0.1:$up"; h2c_flag=""
if [ "$H2C" = 1 ]; then upstream="127.0.0.1:$h2"; h2c_flag="-h2c"; fi
taskset -c "$SERVER_CPU" "$tmp/profproxy" -listen "127.0.0.1:$pub" -admin "127.0.0.1:$adm" -pprof "127.0.0.1:$ppf" \
  -upstreams "$upstream" $h2c_flag & pids+=($!)
for _ in $(seq 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$pub/$BODY" && break
  sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$pub/$BODY"

gc_count() { curl -fs "http://127.0.0.1:$adm/metrics" | awk '/^go_gc_duration_seconds_count/ {print $2}'; }
requests() { curl -fs "http://127.0.0.1:$adm/metrics" | awk '/^obsproxy_requests_total/ {n += $2} END {printf "%d", n}'; }
# Syscalls per request, when perf can read the syscall tracepoints here.
perf_ok=""
if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_read -o /dev/null true 2>/dev/null; then perf_ok=1; fi
proxy_pid=${pids[1]}
total=$((SECONDS_PROFILED + 6))
taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${total}s" --latency "http://127.0.0.1:$pub/$BODY" > "$OUT/wrk.txt" & wrk_pid=$!
pids+=("$wrk_pid")
sleep 3
gc0=$(gc_count); req0=$(requests)
if [ -n "$perf_ok" ]; then
  perf stat -e 'syscalls:sys_enter_*' -p "$proxy_pid" -o "$OUT/syscalls.txt" -- sleep "$SECONDS_PROFILED" 2>/dev/null &
  perf_pid=$!; pids+=("$perf_pid")
fi
curl -fs -o "$OUT/cpu.pb.gz" "http://127.0.0.1:$ppf/debug/pprof/profile?seconds=$SECONDS_PROFILED" &
cpu_pid=$!
curl -fs -o "$OUT/allocs.pb.gz" "http://127.0.0.1:$ppf/debug/pprof/allocs?seconds=$SECONDS_PROFILED"
wait "$cpu_pid"
gc1=$(gc_count); req1=$(requests)
[ -z "$perf_ok" ] || wait "$perf_pid" || true
wait "$wrk_pid" || true
echo "== wrk (c=$CONNS, /$BODY, h2c=$H2C)"; grep -E 'Requests/sec|Latency  ' "$OUT/wrk.txt"
echo "== during the ${SECONDS_PROFILED}s profile: $((req1 - req0)) requests, $((gc1 - gc0)) GC cycles"
if [ -n "$perf_ok" ] && [ $((req1 - req0)) -gt 0 ]; then
  echo "== syscalls per request (perf stat, the proxy process only)"
  awk -v r=$((req1 - req0)) '$2 ~ /^syscalls:/ {gsub(",", "", $1); if ($1 + 0 > r / 50) printf "   %-36s %6.2f\n", $2, $1 / r}' "$OUT/syscalls.txt"
fi
echo "== CPU (top 40, flat)"
"$GO" tool pprof -top -nodecount=40 "$OUT/profproxy" "$OUT/cpu.pb.gz" 2>/dev/null
echo "== CPU (top 40, cumulative)"
"$GO" tool pprof -top -cum -nodecount=40 "$OUT/profproxy" "$OUT/cpu.pb.gz" 2>/dev/null
echo "== allocations (alloc_space, top 30)"
"$GO" tool pprof -top -sample_index=alloc_space -nodecount=30 "$OUT/profproxy" "$OUT/allocs.pb.gz" 2>/dev/null
echo "== allocations (alloc_objects, top 30)"
"$GO" tool pprof -top -sample_index=alloc_objects -nodecount=30 "$OUT/profproxy" "$OUT/allocs.pb.gz" 2>/dev/null
echo "profiles kept in $OUT (go tool pprof -http=127.0.0.1:0 $OUT/profproxy $OUT/cpu.pb.gz)"
