#!/usr/bin/env bash
# Installs what `make run` and `make test` need, each only when missing,
# without prompting:
#   1. Debian packages (needs root or sudo only to install);
#   2. the project venv, .venv, from the pinned examples/app/requirements.txt
#      (uvicorn, hypercorn, granian, fastapi, prometheus_client, ...), rebuilt
#      whenever that file changes. The e2e tests, `make run` and `make bench`
#      run the workers from .venv/bin.
# With arguments, installs those Debian packages instead, then the venv
# (bench/run.sh does).
#
# Services that Debian packages would start on install (prometheus on :9090,
# victoria-metrics on :8428) are kept stopped with a temporary policy-rc.d:
# the tests start their own instances on free loopback ports, and the
# admin listener's default port is 9090.
set -euo pipefail
pkgs=(
  python3 python3-venv curl   # the venv's interpreter is Debian's /usr/bin/python3
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
install_venv() {
  local req=examples/app/requirements.txt stamp=.venv/.requirements.sha256 sum
  sum=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
    return 0
  fi
  echo "creating the project venv .venv from $req"
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --no-cache-dir -r "$req"
  .venv/bin/pip check
  echo "$sum" >"$stamp"
}
cd "$(dirname "$0")/.."
if [ ${#missing[@]} -eq 0 ]; then
  install_venv
  exit 0
fi
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
install_venv
