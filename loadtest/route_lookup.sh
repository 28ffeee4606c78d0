#!/usr/bin/env bash
# Instructions per route lookup (callgrind) for one host with 10 paths and one with
# 10,000 (10 % regex, the rest prefix and exact; lookups spread over every path):
# gateway/examples/route_lookup.rs. Goal: 10,000 paths cost at most 1.2x 10 paths.
#
#   loadtest/route_lookup.sh        BENCH_PROFILE (release), BENCH_NO_BUILD=1 as bench.sh;
#                                   LOOKUPS (20000) lookups counted per host;
#                                   ROUTE_LOOKUP_BIN overrides the example binary
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${BENCH_PROFILE:-release}
case $PROFILE in
  dev) DIR=debug ;;
  *) DIR=$PROFILE ;;
esac
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if [[ -z ${ROUTE_LOOKUP_BIN:-} && ${BENCH_NO_BUILD:-0} != 1 ]]; then
  cargo build --profile "$PROFILE" -p gateway --example route_lookup >&2
fi
BIN=${ROUTE_LOOKUP_BIN:-$TARGET_DIR/$DIR/examples/route_lookup}
command -v valgrind >/dev/null || { echo "route_lookup.sh: needs valgrind" >&2; exit 2; }
LOOKUPS=${LOOKUPS:-20000}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/route-lookup.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
count() { # paths -> instructions per lookup
  valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*route_lookup::lookups*' \
    --callgrind-out-file="$TMP/cg.$1" "$BIN" "$1" "$LOOKUPS" >"$TMP/out.$1" 2>"$TMP/err.$1" ||
    { cat "$TMP/err.$1" >&2; exit 1; }
  awk -v n="$LOOKUPS" '/^(totals|summary):/ {printf "%.0f\n", $2 / n; exit}' "$TMP/cg.$1"
}
SMALL=$(count 10)
LARGE=$(count 10000)
echo "route lookup (callgrind, $LOOKUPS lookups spread over the paths of one host, 10 % regex):"
echo "  10 paths:     $SMALL instructions/lookup"
echo "  10000 paths:  $LARGE instructions/lookup"
awk -v s="$SMALL" -v l="$LARGE" 'BEGIN {r = l / s; printf "  10000/10 = %.2fx (goal <= 1.20x)%s\n", r, (r <= 1.2 ? "" : "  ABOVE GOAL")}'
