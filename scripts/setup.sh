#!/usr/bin/env bash
# Set up everything edge-sdk needs on a fresh Debian machine (run as root, from anywhere):
# system packages when missing, then .venv/ in the repo root with the package and every extra.
# Re-running is cheap: the pip step is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# System packages the backends and their simulators use (added as the backends land).
APT_PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm iverilog cmake)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=""
for cand in python3.11 python3; do
  if command -v "$cand" >/dev/null 2>&1 &&
     "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    PY=$cand; break
  fi
done
if [[ -z "$PY" ]]; then
  echo "setup: Python 3.11 not found; installing Debian's python3.11"
  apt-get update -qq && apt-get install -y -qq python3.11 python3.11-venv >/dev/null
  PY=python3.11
fi

stamp=.venv/.edge-sdk-setup
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup: .venv is up to date"
  exit 0
fi
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch 2.13.0 CPU (extra [train]) is pinned exactly so pip takes the CPU build.
.venv/bin/python -m pip install -q -e ".[cortexm,fpga,train,test,qonnx,report]"
echo "$want" > "$stamp"
echo "setup: done ($(.venv/bin/edge-sdk --version))"
