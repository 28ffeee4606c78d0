#!/usr/bin/env bash
# Ten minutes of k6 load while the config churns every second (valid and invalid
# changes), the Zipkin collector flaps, one endpoint of the served cluster bounces and
# redis-server restarts; prints requests, failures (goal 0), RSS at start, after
# warm-up and at the end (goal: growth < 10 %) and p99 per minute
# (loadtest/soak_companion.py does the work).
#
#   loadtest/soak.sh
#
# Environment: SOAK_SECONDS (default 600), SOAK_RATE (requests/s, default 200),
# SOAK_BIN (default: a release build, made here unless SOAK_NO_BUILD=1),
# SOAK_KEEP=1 keeps the work directory. Needs k6 (PATH or target/peers-venv, as
# scripts/test.sh installs it) and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
K6=$(command -v k6 || echo target/peers-venv/bin/k6)
[[ -x $K6 ]] || { echo "soak.sh: k6 not found (run scripts/test.sh, which installs it)" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "soak.sh: redis-server not found (apt-get install redis-server)" >&2; exit 2; }
bin=${SOAK_BIN:-}
if [[ -z $bin ]]; then
  target=${CARGO_TARGET_DIR:-target}
  [[ ${SOAK_NO_BUILD:-} == 1 ]] || cargo build --release -p gateway --bin gateway
  bin=$target/release/gateway
fi
keep=()
[[ ${SOAK_KEEP:-} == 1 ]] && keep=(--keep)
exec python3 loadtest/soak_companion.py --gateway "$bin" --k6 "$K6" \
  --seconds "${SOAK_SECONDS:-600}" --rate "${SOAK_RATE:-200}" "${keep[@]}"
