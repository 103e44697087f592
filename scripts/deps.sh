#!/usr/bin/env bash
# Installs the Debian packages that `make run` and `make test` need, only when
# one is missing, without prompting. Needs root (or sudo) only to install.
set -euo pipefail
pkgs=(python3-uvicorn python3-hypercorn python3-fastapi python3-websockets python3-wsproto python3-h2 curl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
