#!/usr/bin/env bash
# Fuzz every cargo-fuzz target of fuzz/ for a bounded time, one after the other, and print
# each one's final libFuzzer line (`#<executions> DONE cov: <edges> ft: <features> ...`).
# Exits non-zero when a target crashed (a panic, a sanitizer report, a timeout or an
# out-of-memory); the crashing input is then under fuzz/artifacts/<target>/. Fix the bug,
# then keep the input as fuzz/regressions/<target>/<name>: gateway/tests/fuzz_corpus.rs
# replays it (with the seeds of fuzz/corpus/<target>/) in every `cargo test`.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60
#   TARGET              default: every target (`cargo fuzz list`)
# Environment: FUZZ_ARGS   more libFuzzer flags (e.g. "-jobs=2 -workers=2"), default none;
#              CARGO_TARGET_DIR   where the nightly build goes (default fuzz/target).
# New inputs that add coverage are written to fuzz/work/<target>/ (not committed); the
# committed seeds are only read. Logs: fuzz/work/<target>.log.
# Needs nightly (installed with rustup if missing) and cargo-fuzz (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# The workspace's versions of every shared dependency: the fuzz build tests the code
# that ships.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock

cd fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
mkdir -p work
echo "== building ${#targets[@]} fuzz targets (nightly, AddressSanitizer; log: fuzz/work/build.log) =="
: >work/build.log
for t in "${targets[@]}"; do
  if ! cargo +nightly fuzz build "$t" >>work/build.log 2>&1; then
    tail -n 30 work/build.log >&2
    exit 1
  fi
done

failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "work/$t"
  seeds=("corpus/$t")
  [ -d "regressions/$t" ] && seeds+=("regressions/$t")
  log="work/$t.log"
  echo "== $t: ${secs}s =="
  status=0
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  cargo +nightly fuzz run "$t" "work/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
  final=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  echo "$final"
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    summary+=("$t: CRASH (exit $status) $final")
    grep -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)|Test unit written to' "$log" | head -n 5 >&2 || true
  else
    summary+=("$t: $final")
  fi
done

echo "== summary (${secs}s per target) =="
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs under fuzz/artifacts/; logs under fuzz/work/)" >&2
  exit 1
fi
