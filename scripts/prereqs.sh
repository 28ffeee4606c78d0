#!/usr/bin/env bash
# Build prerequisites a fresh machine lacks: cmake (Pingora's zlib-ng) and protoc
# (the skywalking crate). Installs them with apt when root; otherwise names them and stops.
# Sourced by scripts/demo.sh and scripts/test.sh; extra Debian packages may be passed in
# NEED_DEBS.
set -euo pipefail

need_debs() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
  for pkg in ${NEED_DEBS:-}; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  printf '%s\n' "${missing[@]+"${missing[@]}"}"
}

missing=$(need_debs)
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: $(echo $missing)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "missing prerequisites: $(echo $missing)" >&2
    echo "install them (Debian: sudo apt-get install $(echo $missing)) and run again" >&2
    exit 1
  fi
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup)" >&2; exit 1; }
