#!/usr/bin/env bash
# Scale as a user meets it: 10,000 one-path Ingresses in the config directory (10 % regex,
# the rest prefix and exact, one file each). Prints
#   (a) req/s of a host with those 10,000 paths against a one-path host (wrk cycling
#       over the 10,000 request paths on both), and their ratio;
#   (b) one changed Ingress among the 10,000: rename to a higher
#       gateway_config_snapshot_version (p50/p99; goal p99 < 100 ms);
#   (c) RSS per route (goal < 4 KiB): 10,000 paths on one host and spread over 100
#       hosts, less the one-path gateway's RSS, each gateway at rest after it answered
#       its first request; and the one-host gateway's again after (a) and (b), which
#       adds its idle upstream connections (100 clusters) and what the allocator keeps
#       of the rebuilds.
# Then the route lookup microbenchmark (loadtest/route_lookup.sh) unless SCALE_LOOKUP=0.
#
# Run by loadtest/bench.sh when BENCH_SCALE=1, or alone:
#   loadtest/scale.sh          BENCH_PROFILE (release), BENCH_NO_BUILD=1, BENCH_KEEP_TMP=1
#                              as bench.sh; GATEWAY_BIN overrides the binary;
#                              SCALE_ROUTES (10000), SCALE_ROUNDS (3), SCALE_DURATION (5 s),
#                              SCALE_CHANGES (20)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HELPER=$ROOT/loadtest/scale_helper.py
N=${SCALE_ROUTES:-10000}
ROUNDS=${SCALE_ROUNDS:-3}
DURATION=${SCALE_DURATION:-5}
CHANGES=${SCALE_CHANGES:-20}
PROFILE=${BENCH_PROFILE:-release}
case $PROFILE in
  dev) DIR=debug ;;
  *) DIR=$PROFILE ;;
esac
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -z ${GATEWAY_BIN:-} && ${BENCH_NO_BUILD:-0} != 1 ]]; then
  cargo build --profile "$PROFILE" -p gateway --bin gateway >&2
fi
GATEWAY_BIN=${GATEWAY_BIN:-$TARGET_DIR/$DIR/gateway}
for c in wrk nginx python3 curl; do
  command -v "$c" >/dev/null 2>&1 || [[ -x /usr/sbin/$c ]] || {
    echo "scale.sh: needs $c" >&2
    exit 2
  }
done
NGINX=/usr/sbin/nginx
[[ -x $NGINX ]] || NGINX=$(command -v nginx)
ON_CPU0=()
ON_CPU1=()
if (($(nproc) >= 2)) && command -v taskset >/dev/null 2>&1 && [[ ${BENCH_PIN:-1} == 1 ]]; then
  ON_CPU0=(taskset -c 0)
  ON_CPU1=(taskset -c 1)
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-scale.XXXXXX")
PIDS=()
cleanup() {
  local rc=$? p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then echo "scale.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
read -r P_BACKEND P1 S1 A1 P2 S2 A2 P3 S3 A3 < <(python3 "$ROOT/loadtest/bench_helper.py" ports 10)

mkdir -p "$TMP/backend/tmp"
chmod o+x "$TMP"
cat >"$TMP/backend/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/backend/tmp/body;
    proxy_temp_path $TMP/backend/tmp/proxy;
    fastcgi_temp_path $TMP/backend/tmp/fastcgi;
    uwsgi_temp_path $TMP/backend/tmp/uwsgi;
    scgi_temp_path $TMP/backend/tmp/scgi;
    server {
        listen 127.0.0.1:$P_BACKEND;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
"${ON_CPU0[@]}" "$NGINX" -p "$TMP/backend" -c "$TMP/backend/nginx.conf" >/dev/null 2>&1 &
PIDS+=("$!")

python3 "$HELPER" config "$TMP/one" "$P_BACKEND" 1 1
python3 "$HELPER" config "$TMP/many" "$P_BACKEND" "$N" 1
python3 "$HELPER" config "$TMP/hosts" "$P_BACKEND" "$N" 100
python3 "$HELPER" wrk-script "$TMP/many/paths.txt" "$TMP/many.lua"

start_gw() { # name port stats admin -> pid in GW_PID, seconds to ready in GW_START
  local t0
  t0=$(date +%s.%N)
  "${ON_CPU1[@]}" "$GATEWAY_BIN" run --config-dir "$TMP/$1" --http-addr "127.0.0.1:$2" --https-addr off --local-http-addr off \
    --stats-addr "127.0.0.1:$3" --admin-addr "127.0.0.1:$4" --threads 1 --access-log off \
    >"$TMP/$1.log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  local first
  first=$(head -n 1 "$TMP/$1/paths.txt")
  if ! python3 "$ROOT/loadtest/bench_helper.py" wait-http "http://127.0.0.1:$2${first#* }" 300 \
    --pid "$GW_PID" --host "${first%% *}"; then
    echo "scale.sh: gateway $1 did not come up" >&2
    tail -n 20 "$TMP/$1.log" >&2
    exit 1
  fi
  GW_START=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
}

echo "== scale: $N one-path Ingresses (10 % regex), gateway $GATEWAY_BIN =="
start_gw one "$P1" "$S1" "$A1"
PID1=$GW_PID
start_gw many "$P2" "$S2" "$A2"
PID2=$GW_PID
printf 'start to first answer with %d Ingresses on one host: %.1f s\n' "$N" "$GW_START"
R1=$(python3 "$HELPER" rss "$PID1")
R2=$(python3 "$HELPER" rss "$PID2")

# (a) req/s: the same request stream (every path in turn) against both.
declare -A RPS
for ((r = 1; r <= ROUNDS; r++)); do
  for t in one many; do
    port=$P1
    [[ $t == many ]] && port=$P2
    out=$TMP/wrk.$t.$r
    "${ON_CPU0[@]}" wrk -t1 -c32 -d"${DURATION}s" -s "$TMP/many.lua" "http://127.0.0.1:$port/" >"$out" 2>&1
    if grep -q "Non-2xx" "$out"; then
      echo "scale.sh: $t answered non-2xx:" >&2
      cat "$out" >&2
      exit 1
    fi
    RPS[$t]+="$(awk '/^Requests\/sec:/ {print $2}' "$out") "
  done
done
python3 - "${RPS[one]}" "${RPS[many]}" "$N" <<'EOF'
import statistics, sys
one = [float(x) for x in sys.argv[1].split()]
many = [float(x) for x in sys.argv[2].split()]
m1, mn = statistics.median(one), statistics.median(many)
print(f"req/s (wrk -c32, median of {len(one)} rounds): one-path host {m1:.0f}, "
      f"{sys.argv[3]}-path host {mn:.0f}: {mn / m1:.2f}x")
EOF

# (b) one changed Ingress among them.
python3 "$HELPER" change-latency "$TMP/many" "127.0.0.1:$S2" "$CHANGES" 1

# (c) RSS per route.
start_gw hosts "$P3" "$S3" "$A3"
PID3=$GW_PID
R3=$(python3 "$HELPER" rss "$PID3")
R2_AFTER=$(python3 "$HELPER" rss "$PID2")
awk -v r1="$R1" -v r2="$R2" -v r3="$R3" -v r2a="$R2_AFTER" -v n="$N" 'BEGIN {
  printf "RSS at rest: one path %.1f MiB; %d paths on one host %.1f MiB (%.1f KiB/route); over 100 hosts %.1f MiB (%.1f KiB/route); goal < 4 KiB/route\n",
    r1 / 1024, n, r2 / 1024, (r2 - r1) / n, r3 / 1024, (r3 - r1) / n
  printf "RSS of the %d-path host after the req/s rounds and the changes: %.1f MiB (%.1f KiB/route)\n",
    n, r2a / 1024, (r2a - r1) / n }'

if [[ ${SCALE_LOOKUP:-1} == 1 ]] && command -v valgrind >/dev/null 2>&1; then
  bash "$ROOT/loadtest/route_lookup.sh"
fi
