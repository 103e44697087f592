#!/usr/bin/env bash
# Installs the Debian packages that `make run` and `make test` need, only when
# one is missing, without prompting. Needs root (or sudo) only to install.
# With arguments, installs those packages instead (bench/run.sh does).
#
# Services that Debian packages would start on install (prometheus on :9090,
# victoria-metrics on :8428) are kept stopped with a temporary policy-rc.d:
# the tests start their own instances on free loopback ports, and the
# admin listener's default port is 9090.
set -euo pipefail
pkgs=(
  python3-uvicorn python3-hypercorn python3-fastapi python3-websockets python3-wsproto python3-h2 curl
  chromium            # the dashboard's browser test (e2e/dashboard_test.go)
  prometheus          # the real-scrape e2e test and promtool
  victoria-metrics    # the push e2e test
  docker-compose      # `docker-compose config -q` on docker-compose.yml
)
[ $# -eq 0 ] || pkgs=("$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  made_policy=1
fi
cleanup() { [ -z "$made_policy" ] || $sudo rm -f "$policy"; }
trap cleanup EXIT
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
