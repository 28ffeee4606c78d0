#!/usr/bin/env bash
# Throughput/latency of the gateway against a bare Pingora proxy (pingora-floor), nginx and
# haproxy as reverse proxies, and the backend hit directly; then config-change-to-live
# latency.
#
#   loadtest/bench.sh [--plot [PNG]]   --plot: also a chart (gnuplot), default
#                                      target/bench-report.png
# The rows (wrk: req/s, latency, CPU time per request of the serving process, its RSS;
# a goal is a ratio of CPU time, and under callgrind of instructions, per request):
#   direct          wrk straight at the backend (nginx, `return 200 "ok\n"`)
#   floor, nginx, haproxy   pingora-floor (a Pingora proxy that only forwards), nginx and
#                   haproxy as reverse proxies
#   gateway         recording stats, scraped every second as by Prometheus; <= 1.08x floor
#   gw-console      the gateway scraped as `gateway` is, with a script also polling the
#                   console's JSON endpoints (/api/console/metrics, series, traces,
#                   config) every second, as an open console page does; what that adds a
#                   request is measured at rest (the `console:` line; goal < 1 %)
#   gw-norec        --stats-recording off: what recording costs
#   gw-trace        tracing every request (Zipkin) to a live collector (bench_helper.py's)
#   gw-otlp, gw-sw  the same by OTLP gRPC and SkyWalking, to the test peers' collectors
#                   (gateway/tests/peers); <= 1.10x gateway
#   gw-trace1       Zipkin sampling 1 %; <= 1.01x gateway
#   gw-trace10      Zipkin sampling 10 % (callgrind only)
#   gw-trace-down   Zipkin to a port nothing listens on: spans dropped cheaply; <= 1.05x
#   gw-keyauth      Higress's key-auth + key-rate-limit (oci:// images, so native) on every
#                   request, each carrying consumer `bench`'s key; <= 1.05x gateway
#   gw-redis-limit  cluster-key-rate-limit counting every request in a local redis-server
#                   (one EVAL each, limits never reached)
#   gw-wasm0        loadtest/wasm_noop.wat adding a request and a response header: the
#                   Wasm host's own cost per plugin; <= 1.05x gateway
#   gw-wasm         Higress's compiled `transformer` (PyPI gpustack-higress-plugins, from
#                   the test peers' venv) adding the same headers; <= 2.9x gateway
#   floor-json, ngx-json, gw-json   /api/item: 400 bytes of JSON and a dozen response
#                   headers, as an API answers; gw-json <= 1.08x floor-json
#   ngx-gzip, hap-gzip, gw-gzip     10 KB of JSON gzip'd
#   ngx-tls, gw-tls HTTPS, keep-alive, one ECDSA P-256 certificate (the gateway takes it
#                   from a domain ConfigMap and a Secret as the Higress console writes them)
# gw-json, gw-gzip and gw-tls are the `gateway` process, the other gw- rows one each.
# Under callgrind (instructions per request, one keep-alive connection): floor, nginx,
# gateway, floor-json, nginx-json (ngx-json's nginx), gw-json, the tracing rows, gw-norec,
# gw-keyauth, gw-redis-limit, gw-wasm0, gw-wasm, and two rows of their own: `gw-policy`,
# a route with a regex path, request and response header control and CORS (the requests
# carry an `Origin` it allows; <= 1.03x gateway), and `gw-knative`, the bench host from a KIngress as
# Knative writes it (a 50/50 split between two revisions, each setting its revision
# headers upstream) instead of the Ingress. The script checks before or after the load
# that each row really does what it claims (plugin headers, 401 without a key, a Redis
# key, gzip, the JSON answer whole, spans sent, connect errors counted).
# Everything runs on 127.0.0.1, each proxy with one worker, one shared nginx backend.
#
# Environment:
#   BENCH_SMOKE=1     short CI run (1 round of 2 s, 5 config changes); fails if a target
#                     does not serve
#   BENCH_NO_BUILD=1  use the existing binaries
#   BENCH_PROFILE     release (default; fat LTO, the only profile whose figures mean
#                     anything) or dev (the test build; CI's smoke run uses it so it does
#                     not pay for a second, fat-LTO build)
#   BENCH_KEEP_TMP=1  keep the temp dir (configs, logs, raw wrk output)
#   BENCH_PIN         1 (default with 2+ CPUs and taskset): each proxy on CPU 1, the
#                     backend and wrk on CPU 0 (wrk on CPU 1 for `direct`), so a proxy
#                     never shares its core with the load it serves; 0: no pinning
#   BENCH_INSTRUCTIONS  1 (default outside smoke runs when valgrind is installed):
#                     also count instructions per request of the callgrind rows above,
#                     which unlike req/s repeat exactly run to run
#   BENCH_SCALE=1     also the scale rows (loadtest/scale.sh, a few minutes): 10,000
#                     one-path Ingresses: req/s of their host against a one-path host, one
#                     changed Ingress to live (p50/p99), RSS per route, and instructions per
#                     route lookup with 10 and 10,000 paths (loadtest/route_lookup.sh)
#   ROUNDS (5), DURATION (10, seconds per wrk run), CONNECTIONS (32), WRK_THREADS (1),
#   WARMUP (2, seconds per target before round 1), CONFIG_CHANGES (40),
#   CG_REQUESTS (2000, requests counted under callgrind)
# See loadtest/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PLOT=
while (($#)); do
  case $1 in
    --plot)
      PLOT=$ROOT/target/bench-report.png
      if [[ ${2:-} == *.png ]]; then PLOT=$(realpath -m "$2"); shift; fi
      ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
HELPER="$ROOT/loadtest/bench_helper.py"

SMOKE=${BENCH_SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
  ROUNDS=${ROUNDS:-1}
  DURATION=${DURATION:-2}
  WARMUP=${WARMUP:-0}
  CONFIG_CHANGES=${CONFIG_CHANGES:-5}
else
  ROUNDS=${ROUNDS:-5}
  DURATION=${DURATION:-10}
  WARMUP=${WARMUP:-2}
  CONFIG_CHANGES=${CONFIG_CHANGES:-40}
fi
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-1}
HOST=bench.local
# Every request carries it (bench_helper.py's API_KEY): consumer `bench` of gw-keyauth,
# the key gw-redis-limit counts by; the other rows only parse it.
API_KEY=bench-key-0123456789
TARGETS=(direct floor nginx haproxy gateway gw-console gw-norec gw-trace gw-otlp gw-sw gw-trace1 gw-trace-down
  gw-keyauth gw-redis-limit gw-wasm0 gw-wasm floor-json ngx-json gw-json ngx-gzip hap-gzip gw-gzip
  ngx-tls gw-tls)
PIN=${BENCH_PIN:-}
if [[ -z $PIN ]]; then
  if (($(nproc) >= 2)) && command -v taskset >/dev/null 2>&1; then PIN=1; else PIN=0; fi
fi
# Command prefixes (arrays, not a function, so `$!` is the pinned process itself).
ON_CPU0=()
ON_CPU1=()
if [[ $PIN == 1 ]]; then
  ON_CPU0=(taskset -c 0)
  ON_CPU1=(taskset -c 1)
fi

# ------------------------------------------------------------------ prerequisites
missing=()
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || missing+=("nginx (Debian package nginx-light)")
command -v wrk >/dev/null 2>&1 || missing+=("wrk (Debian package wrk)")
command -v python3 >/dev/null 2>&1 || missing+=("python3 (Debian package python3)")
command -v timeout >/dev/null 2>&1 || missing+=("timeout (Debian package coreutils)")
command -v openssl >/dev/null 2>&1 || missing+=("openssl (Debian package openssl)")
command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing+=("haproxy (Debian package haproxy)")
REDIS_SERVER=$(command -v redis-server || echo /usr/bin/redis-server)
[[ -x $REDIS_SERVER ]] || missing+=("redis-server, for gw-redis-limit (Debian package redis-server)")
if [[ -n $PLOT ]]; then
  command -v gnuplot >/dev/null 2>&1 || missing+=("gnuplot, for --plot (Debian package gnuplot-nox)")
fi
# The gw-wasm row's plugin: the compiled transformer of the PyPI package the tests use.
PEERS_PYTHON=${GATEWAY_TEST_PYTHON:-$ROOT/target/peers-venv/bin/python}
TRANSFORMER=
if [[ -x $PEERS_PYTHON ]]; then
  TRANSFORMER=$("$PEERS_PYTHON" -c "import importlib.util as u; s = u.find_spec('gpustack_higress_plugins'); print(s.submodule_search_locations[0] + '/plugins/transformer/2.0.0/plugin.wasm' if s else '')" 2>/dev/null || true)
fi
if [[ -z $TRANSFORMER || ! -f $TRANSFORMER ]]; then
  missing+=("the transformer Wasm plugin, for gw-wasm (PyPI gpustack-higress-plugins in target/peers-venv: NEED_PEERS_VENV=1 bash scripts/prereqs.sh)")
fi
# gw-otlp's and gw-sw's collectors are the test peers, on the same venv's gRPC stubs.
if ! "$PEERS_PYTHON" -c 'import grpc, opentelemetry.proto, skywalking.protocol' 2>/dev/null; then
  missing+=("the test peers' Python (grpcio, opentelemetry-proto, apache-skywalking), for gw-otlp and gw-sw: NEED_PEERS_VENV=1 bash scripts/prereqs.sh, or GATEWAY_TEST_PYTHON")
fi
if ((${#missing[@]})); then
  echo "bench.sh: missing prerequisites:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  echo "install them (e.g. apt-get install nginx-light haproxy wrk python3 openssl; scripts/test.sh does this)" >&2
  exit 2
fi
NGINX=/usr/sbin/nginx
[[ -x $NGINX ]] || NGINX=$(command -v nginx)
HAPROXY=/usr/sbin/haproxy
[[ -x $HAPROXY ]] || HAPROXY=$(command -v haproxy)

# ------------------------------------------------------------------ build
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${BENCH_PROFILE:-release}
case $PROFILE in
  release) PROFILE_DIR=release ;;
  dev) PROFILE_DIR=debug ;;
  *) echo "bench.sh: BENCH_PROFILE must be release or dev" >&2; exit 2 ;;
esac
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  echo "== building $PROFILE binaries =="
  cargo build --profile "$PROFILE" -p gateway --bin gateway -p pingora-floor --bin pingora-floor
fi
if [[ $PROFILE != release ]]; then
  echo "bench.sh: BENCH_PROFILE=$PROFILE: figures are not comparable to nginx; release builds only" >&2
fi
GATEWAY_BIN=$TARGET_DIR/$PROFILE_DIR/gateway
FLOOR_BIN=$TARGET_DIR/$PROFILE_DIR/pingora-floor
for b in "$GATEWAY_BIN" "$FLOOR_BIN"; do
  if [[ ! -x $b ]]; then
    echo "bench.sh: $b not found; build it or unset BENCH_NO_BUILD" >&2
    exit 2
  fi
done

# ------------------------------------------------------------------ processes and cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-bench.XXXXXX")
PIDS=()

alive() { # pid: running and not a zombie
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [[ ${s:0:1} != Z && ${s:0:1} != X ]]
}

kids() { # pid: its direct children (for nginx workers)
  cat /proc/"$1"/task/*/children 2>/dev/null || true
}

cleanup() {
  local rc=$? pid i any
  set +e
  trap - EXIT INT TERM
  local all=("${PIDS[@]}")
  for pid in "${PIDS[@]}"; do
    for k in $(kids "$pid"); do all+=("$k"); done
  done
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for ((i = 0; i < 50; i++)); do # at most 5 s
    any=0
    for pid in "${all[@]}"; do alive "$pid" && any=1; done
    ((any)) || break
    sleep 0.1
  done
  for pid in "${all[@]}"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then
    echo "bench.sh: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() { # label file
  echo "---- $1 ($2), last lines ----" >&2
  tail -n 30 "$2" >&2 2>/dev/null || true
}

wait_http() { # label log url timeout pid [host]
  local label=$1 log=$2 url=$3 t=$4 pid=$5 host=${6:-}
  local args=("$url" "$t" --pid "$pid")
  [[ -n $host ]] && args+=(--host "$host")
  if ! python3 "$HELPER" wait-http "${args[@]}"; then
    echo "bench.sh: $label did not come up" >&2
    show_log "$label" "$log"
    exit 1
  fi
}

# Every port of the run is drawn at once (ports drawn by separate calls could repeat):
# the named ones (C_: the callgrind rows'), then GW_PORTS, three for each gateway row
# (start_gateway). P_DOWN is gw-trace-down's collector: nothing ever listens there.
read -r P_BACKEND P_NGINX P_FLOOR P_HAP P_NGX_TLS P_GW_TLS P_REDIS P_ZIPKIN P_OTLP P_OTLP_HTTP \
  P_SW P_DOWN C_HTTP C_STATS C_ADMIN GW_PORTS < <(python3 "$HELPER" ports 60)
read -r -a GW_PORTS <<<"$GW_PORTS"

# The HTTPS rows' certificate (wrk sends no useful SNI for 127.0.0.1: the gateway serves
# it as the catch-all certificate, nginx as its only one).
mkdir -p "$TMP/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
  -keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" 2>"$TMP/tls/openssl.log"
chmod o+r "$TMP/tls/key.pem" "$TMP/tls/cert.pem"
chmod o+x "$TMP/tls"

# ------------------------------------------------------------------ nginx configs
nginx_conf() { # name body [master_process on|off]
  local d=$TMP/$1
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process ${3:-on};
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
$2
}
EOF
}

# A 10 KB JSON document for the gzip rows, served without an ETag (Higress's
# disableOnEtagHeader would rightly leave it uncompressed otherwise).
mkdir -p "$TMP/www"
# nginx's workers run as `nobody` when started by root: let them reach the file.
chmod o+x "$TMP"
python3 -c 'import json; print(json.dumps([{"id": i, "name": "item-%d" % i, "tags": ["a", "b"], "price": i * 1.5} for i in range(160)])[:10240], end="")' \
  >"$TMP/www/json10k"
# The -json rows' answer: what an API typically returns for one item, 400 bytes of JSON
# and a dozen response headers (so the per-header work of a proxy shows, which `ok\n`
# hides).
mkdir -p "$TMP/www/api"
cat >"$TMP/www/api/item" <<'EOF'
{"id":"c0a8012e-5f3b-4c1d-9e7a-2b6d8f4e1a90","sku":"BK-2291-XL","name":"Trail running shoe, waterproof","brand":"Northpeak","price":{"amount":129.9,"currency":"EUR"},"stock":{"available":37,"warehouse":"FRA-2"},"rating":4.6,"reviews":212,"tags":["outdoor","running","gore-tex"],"images":["/img/bk-2291-1.jpg","/img/bk-2291-2.jpg"],"updated_at":"2026-11-30T08:41:12Z","links":{"self":"/api/item"}}
EOF
nginx_conf backend "    server {
        listen 127.0.0.1:$P_BACKEND;
        location = /json10k {
            root $TMP/www;
            default_type application/json;
            etag off;
            add_header Last-Modified \"\";
        }
        location = /api/item {
            root $TMP/www;
            default_type application/json;
            etag off;
            add_header Cache-Control \"private, max-age=0, no-cache\";
            add_header X-Request-Time 0.004;
            add_header X-Upstream catalog-7d9f8b6c5-x2k4q;
            add_header Strict-Transport-Security \"max-age=31536000; includeSubDomains\";
            add_header X-Content-Type-Options nosniff;
            add_header Vary \"Accept-Encoding, Origin\";
            add_header X-Frame-Options DENY;
            add_header X-RateLimit-Limit 1000;
            add_header X-RateLimit-Remaining 998;
            add_header X-RateLimit-Reset 1764838800;
            add_header Set-Cookie \"session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax\";
            add_header X-Correlation-Id 5b1e2c7a-0d4f-4a8e-b6c3-9f2e1d7a4b60;
        }
        location / {
            default_type text/plain;
            return 200 \"ok\\n\";
        }
    }"

nginx_conf proxy "    upstream backend {
        server 127.0.0.1:$P_BACKEND;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$P_NGINX;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
        # The gzip row: level 9 and a 4 KB window, as Higress's defaults
        # (BEST_COMPRESSION, windowBits 12).
        location = /json10k {
            gzip on;
            gzip_types application/json;
            gzip_comp_level 9;
            gzip_window 4k;
            gzip_min_length 1024;
            gzip_proxied any;
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }
    server {
        listen 127.0.0.1:$P_NGX_TLS ssl;
        ssl_certificate $TMP/tls/cert.pem;
        ssl_certificate_key $TMP/tls/key.pem;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

# haproxy as a reverse proxy: one thread, keep-alive both ways (`http-reuse always`), and
# for the gzip row its compression (Debian's haproxy compresses with libslz, which has no
# levels: about zlib's level 1, so hap-gzip is not a like-for-like level-9 comparison).
mkdir -p "$TMP/haproxy"
cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:$P_HAP
    default_backend be
backend be
    compression algo gzip
    compression type application/json
    server s1 127.0.0.1:$P_BACKEND
EOF

# One config directory per gateway row. The tracing rows differ only by higress-config's
# `tracing:` (provider, sampling percent) and where the static McpBridge registry puts
# `collector.static`.
python3 "$HELPER" gateway-config "$TMP/gwconf" "$P_BACKEND"
python3 "$HELPER" gateway-tls "$TMP/gwconf" "$TMP/tls/cert.pem" "$TMP/tls/key.pem"
python3 "$HELPER" gateway-config "$TMP/gwconf-trace" "$P_BACKEND" "$P_ZIPKIN" zipkin 100
python3 "$HELPER" gateway-config "$TMP/gwconf-otlp" "$P_BACKEND" "$P_OTLP" opentelemetry 100
python3 "$HELPER" gateway-config "$TMP/gwconf-sw" "$P_BACKEND" "$P_SW" skywalking 100
python3 "$HELPER" gateway-config "$TMP/gwconf-trace1" "$P_BACKEND" "$P_ZIPKIN" zipkin 1
python3 "$HELPER" gateway-config "$TMP/gwconf-trace-down" "$P_BACKEND" "$P_DOWN" zipkin 100
python3 "$HELPER" gateway-config "$TMP/gwconf-wasm" "$P_BACKEND"
python3 "$HELPER" gateway-wasm "$TMP/gwconf-wasm" "$TRANSFORMER"
python3 "$HELPER" gateway-config "$TMP/gwconf-wasm0" "$P_BACKEND"
python3 "$HELPER" gateway-wasm-noop "$TMP/gwconf-wasm0" "$ROOT/loadtest/wasm_noop.wat"
python3 "$HELPER" gateway-config "$TMP/gwconf-keyauth" "$P_BACKEND"
python3 "$HELPER" gateway-keyauth "$TMP/gwconf-keyauth"
python3 "$HELPER" gateway-config "$TMP/gwconf-redis" "$P_BACKEND"
python3 "$HELPER" gateway-redis-limit "$TMP/gwconf-redis" "$P_REDIS"

# ------------------------------------------------------------------ start everything
echo "== starting backend and proxies (temp dir $TMP) =="
start_nginx() { # name cpu -> pid in NGINX_PID
  local d=$TMP/$1 pin=("${ON_CPU0[@]}")
  [[ $2 == 1 ]] && pin=("${ON_CPU1[@]}")
  "${pin[@]}" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
}
start_nginx backend 0
PID_BACKEND=$NGINX_PID
# gw-redis-limit's Redis, beside the backend.
mkdir -p "$TMP/redis"
"${ON_CPU0[@]}" "$REDIS_SERVER" --bind 127.0.0.1 --port "$P_REDIS" --save "" --appendonly no \
  --dir "$TMP/redis" --logfile "$TMP/redis/redis.log" >/dev/null 2>&1 &
PID_REDIS=$!
PIDS+=("$PID_REDIS")
wait_http "nginx backend" "$TMP/backend/error.log" "http://127.0.0.1:$P_BACKEND/" 10 "$PID_BACKEND" "$HOST"

start_nginx proxy 1
PID_NGINX=$NGINX_PID

"${ON_CPU1[@]}" "$FLOOR_BIN" "127.0.0.1:$P_FLOOR" "127.0.0.1:$P_BACKEND" 1 >"$TMP/floor.log" 2>&1 &
PID_FLOOR=$!
PIDS+=("$PID_FLOOR")

"${ON_CPU1[@]}" "$HAPROXY" -db -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/haproxy.log" 2>&1 &
PID_HAP=$!
PIDS+=("$PID_HAP")

# The collectors, on CPU 0 beside wrk and the backend: bench_helper.py's Zipkin one
# (gw-trace, gw-trace1), and the test peers' OTLP (gw-otlp) and SkyWalking (gw-sw) ones.
# A peer exits when its stdin reaches EOF (gateway/tests/peers/peerlib.py): here a pipe
# from a `sleep` that cleanup stops with the rest, so the peers end with the run;
# --max-seconds bounds them should this script be killed outright.
"${ON_CPU0[@]}" python3 "$HELPER" zipkin-collector "$P_ZIPKIN" "$TMP/zipkin-spans.txt" \
  >"$TMP/zipkin.log" 2>&1 &
PIDS+=("$!")
PEER_SECONDS=$((3600 + 2 * ${#TARGETS[@]} * (WARMUP + ROUNDS * (DURATION + 5))))
exec {PEER_STDIN}< <(exec sleep "$PEER_SECONDS")
PIDS+=("$!")
start_peer() { # label script [args...]: a test peer on CPU 0, log $TMP/<label>.log -> PEER_PID
  local label=$1 script=$2
  shift 2
  "${ON_CPU0[@]}" "$PEERS_PYTHON" "$ROOT/gateway/tests/peers/$script" "$@" \
    --max-seconds "$PEER_SECONDS" <&"$PEER_STDIN" >"$TMP/$label.log" 2>&1 &
  PEER_PID=$!
  PIDS+=("$PEER_PID")
}
wait_ready() { # label pid seconds: the peer printed its READY line (all its ports listen)
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q '^READY ' "$TMP/$1.log" 2>/dev/null && return 0
    alive "$2" || break
    sleep 0.1
  done
  echo "bench.sh: $1 did not come up (no READY line)" >&2
  show_log "$1" "$TMP/$1.log"
  exit 1
}
start_peer otlp-collector otlp_receiver.py --grpc-port "$P_OTLP" --http-port "$P_OTLP_HTTP"
PID_OTLP=$PEER_PID
start_peer sw-collector sw_collector.py --port "$P_SW"
PID_SW=$PEER_PID

gateway_args() { # config-dir http-port stats-port admin-port [extra args...]; GW_HTTPS=addr
  GW_ARGS=(run --config-dir "$1" --http-addr "127.0.0.1:$2" --https-addr "${GW_HTTPS:-off}" --local-http-addr off
    --stats-addr "127.0.0.1:$3" --admin-addr "127.0.0.1:$4" --threads 1 --access-log off "${@:5}")
}

# The gateway rows that have a process of their own (gw-json, gw-gzip and gw-tls are the
# `gateway` process), in GW_ROWS: one worker each on CPU 1, log $TMP/<row>.log, ports in
# GW_HTTP, GW_STATS and GW_ADMIN, pid in GW_PID.
GW_ROWS=()
declare -A GW_HTTP GW_STATS GW_ADMIN GW_PID
start_gateway() { # row config-dir [extra args...]; GW_HTTPS=addr
  local row=$1 conf=$2 http=${GW_PORTS[0]:-} stats=${GW_PORTS[1]:-} admin=${GW_PORTS[2]:-}
  shift 2
  if [[ -z $admin ]]; then
    echo "bench.sh: out of ports for $row (draw more)" >&2
    exit 1
  fi
  GW_PORTS=("${GW_PORTS[@]:3}")
  gateway_args "$conf" "$http" "$stats" "$admin" "$@"
  "${ON_CPU1[@]}" "$GATEWAY_BIN" "${GW_ARGS[@]}" >"$TMP/$row.log" 2>&1 &
  GW_PID[$row]=$!
  PIDS+=("$!")
  GW_HTTP[$row]=$http
  GW_STATS[$row]=$stats
  GW_ADMIN[$row]=$admin
  GW_ROWS+=("$row")
}
GW_HTTPS=127.0.0.1:$P_GW_TLS start_gateway gateway "$TMP/gwconf"
start_gateway gw-console "$TMP/gwconf"
start_gateway gw-norec "$TMP/gwconf" --stats-recording off
start_gateway gw-trace "$TMP/gwconf-trace"
start_gateway gw-otlp "$TMP/gwconf-otlp"
start_gateway gw-sw "$TMP/gwconf-sw"
start_gateway gw-trace1 "$TMP/gwconf-trace1"
start_gateway gw-trace-down "$TMP/gwconf-trace-down"
# Modules compile once at start-up (cold: a fresh cache in the temp dir).
start_gateway gw-wasm "$TMP/gwconf-wasm" --wasm-cache-dir "$TMP/wasm-cache"
start_gateway gw-wasm0 "$TMP/gwconf-wasm0"
start_gateway gw-keyauth "$TMP/gwconf-keyauth"
start_gateway gw-redis-limit "$TMP/gwconf-redis"

url_of() {
  case $1 in
    direct) echo "http://127.0.0.1:$P_BACKEND/" ;;
    floor) echo "http://127.0.0.1:$P_FLOOR/" ;;
    floor-json) echo "http://127.0.0.1:$P_FLOOR/api/item" ;;
    nginx) echo "http://127.0.0.1:$P_NGINX/" ;;
    ngx-json) echo "http://127.0.0.1:$P_NGINX/api/item" ;;
    ngx-gzip) echo "http://127.0.0.1:$P_NGINX/json10k" ;;
    ngx-tls) echo "https://127.0.0.1:$P_NGX_TLS/" ;;
    haproxy) echo "http://127.0.0.1:$P_HAP/" ;;
    hap-gzip) echo "http://127.0.0.1:$P_HAP/json10k" ;;
    gw-json) echo "http://127.0.0.1:${GW_HTTP[gateway]}/api/item" ;;
    gw-gzip) echo "http://127.0.0.1:${GW_HTTP[gateway]}/json10k" ;;
    gw-tls) echo "https://127.0.0.1:$P_GW_TLS/" ;;
    *) echo "http://127.0.0.1:${GW_HTTP[$1]}/" ;; # gateway and the other gw- rows
  esac
}

pid_of() {
  case $1 in
    direct) echo "$PID_BACKEND" ;;
    floor | floor-json) echo "$PID_FLOOR" ;;
    nginx | ngx-*) echo "$PID_NGINX" ;;
    haproxy | hap-*) echo "$PID_HAP" ;;
    gw-json | gw-gzip | gw-tls) echo "${GW_PID[gateway]}" ;;
    *) echo "${GW_PID[$1]}" ;;
  esac
}

wait_http "nginx proxy" "$TMP/proxy/error.log" "http://127.0.0.1:$P_NGINX/" 10 "$PID_NGINX" "$HOST"
wait_http "pingora-floor" "$TMP/floor.log" "http://127.0.0.1:$P_FLOOR/" 10 "$PID_FLOOR" "$HOST"
wait_http "haproxy" "$TMP/haproxy/haproxy.log" "http://127.0.0.1:$P_HAP/" 10 "$PID_HAP" "$HOST"
wait_ready otlp-collector "$PID_OTLP" 60
wait_ready sw-collector "$PID_SW" 60
wait_http "gateway (/healthz/ready)" "$TMP/gateway.log" "http://127.0.0.1:${GW_STATS[gateway]}/healthz/ready" 30 "${GW_PID[gateway]}"
for row in "${GW_ROWS[@]}"; do
  case $row in
    # (wait-http sends no key: these two are waited for by their readiness.)
    gw-keyauth | gw-redis-limit)
      wait_http "$row" "$TMP/$row.log" "http://127.0.0.1:${GW_STATS[$row]}/healthz/ready" 30 "${GW_PID[$row]}" ;;
    gw-wasm) wait_http "$row" "$TMP/$row.log" "$(url_of "$row")" 180 "${GW_PID[$row]}" "$HOST" ;;
    gw-wasm0) wait_http "$row" "$TMP/$row.log" "$(url_of "$row")" 60 "${GW_PID[$row]}" "$HOST" ;;
    *) wait_http "$row" "$TMP/$row.log" "$(url_of "$row")" 30 "${GW_PID[$row]}" "$HOST" ;;
  esac
done
# key-auth really runs (a request without the key gets 401), and the cluster limit
# really counts in Redis (its key is there after one request).
if [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "$(url_of gw-keyauth)") != 401 ]]; then
  echo "bench.sh: gw-keyauth does not authenticate (no 401 without a key)" >&2
  show_log gw-keyauth "$TMP/gw-keyauth.log"
  exit 1
fi
curl -s -o /dev/null -H "Host: $HOST" -H "apikey: $API_KEY" "$(url_of gw-redis-limit)"
if ! redis-cli -p "$P_REDIS" --scan --pattern 'higress-cluster-key-rate-limit:bench:*' | grep -q .; then
  echo "bench.sh: gw-redis-limit counted nothing in Redis" >&2
  show_log gw-redis-limit "$TMP/gw-redis-limit.log"
  exit 1
fi
# The wasm rows must really run their plugin: its response header is there.
check_plugin() { # row value
  if ! curl -s -o /dev/null -D - -H "Host: $HOST" "$(url_of "$1")" | tr -d '\r' |
    grep -qi "^x-bench-plugin: $2\$"; then
    echo "bench.sh: $1 does not run its plugin (no x-bench-plugin: $2 response header)" >&2
    show_log "$1" "$TMP/$1.log"
    exit 1
  fi
}
check_plugin gw-wasm transformer
check_plugin gw-wasm0 noop
wait_http "nginx https" "$TMP/proxy/error.log" "$(url_of ngx-tls)" 10 "$PID_NGINX" "$HOST"
wait_http "gateway https" "$TMP/gateway.log" "$(url_of gw-tls)" 10 "${GW_PID[gateway]}" "$HOST"
# The gzip rows compare compressed responses: both proxies must really compress.
for t in ngx-gzip gw-gzip hap-gzip; do
  enc=$(curl -s -o /dev/null -D - -H "Host: $HOST" -H "Accept-Encoding: gzip" "$(url_of "$t")" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "content-encoding" {print $2}')
  if [[ $enc != gzip ]]; then
    echo "bench.sh: $t does not answer /json10k with gzip (content-encoding: '$enc')" >&2
    exit 1
  fi
done
# The -json rows must pass the API answer whole: its body and the backend's headers.
for t in floor-json ngx-json gw-json; do
  hdrs=$(curl -s -o "$TMP/$t.body" -D - -H "Host: $HOST" "$(url_of "$t")" | tr -d '\r')
  if ! cmp -s "$TMP/$t.body" "$TMP/www/api/item" ||
    ! grep -qi '^content-type: application/json' <<<"$hdrs" ||
    ! grep -qi '^set-cookie: session=' <<<"$hdrs" ||
    ! grep -qi '^x-ratelimit-remaining: 998$' <<<"$hdrs"; then
    echo "bench.sh: $t does not pass /api/item through (body or headers differ); it answered:" >&2
    echo "$hdrs" >&2
    exit 1
  fi
done

# The recording gateway is scraped every second, as by Prometheus, for the whole run.
scrape_loop() { # gateway-pid stats-port
  local n=0 failed=0
  while alive "$1"; do
    if curl -sf -o /dev/null -H 'Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' \
      "http://127.0.0.1:$2/stats/prometheus"; then
      n=$((n + 1))
    else
      failed=$((failed + 1))
    fi
    echo "$n $failed" >"$TMP/scrapes.txt"
    sleep 1
  done
}
"${ON_CPU0[@]}" bash -c "$(declare -f alive scrape_loop); TMP=$TMP; scrape_loop ${GW_PID[gateway]} ${GW_STATS[gateway]}" &
PIDS+=("$!")

# gw-console: scraped the same way, and its console's JSON polled every second as an open
# /ui page polls it (the page's own requests, by the same URLs).
console_loop() { # gateway-pid stats-port admin-port
  local n=0 failed=0 route url
  route=$(curl -s "http://127.0.0.1:$3/api/console/config" |
    python3 -c 'import json, sys; r = json.load(sys.stdin)["routes"]; print(r[0]["name"] if r else "")' 2>/dev/null)
  while alive "$1"; do
    for url in "http://127.0.0.1:$2/stats/prometheus" \
      "http://127.0.0.1:$3/api/console/metrics" \
      "http://127.0.0.1:$3/api/console/series?kind=route&name=$route" \
      "http://127.0.0.1:$3/api/console/exemplars?kind=route&name=$route&from_ms=0&to_ms=99999999999999" \
      "http://127.0.0.1:$3/api/console/traces" \
      "http://127.0.0.1:$3/api/console/config"; do
      if curl -sf -o /dev/null "$url"; then n=$((n + 1)); else failed=$((failed + 1)); fi
    done
    echo "$n $failed" >"$TMP/console-polls.txt"
    sleep 1
  done
}
"${ON_CPU0[@]}" bash -c "$(declare -f alive console_loop); TMP=$TMP; console_loop ${GW_PID[gw-console]} ${GW_STATS[gw-console]} ${GW_ADMIN[gw-console]}" &
PIDS+=("$!")

cpu_ticks() { # pid: user+system clock ticks of it and its children (nginx workers)
  local total=0 p s f
  for p in "$1" $(kids "$1"); do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    read -r -a f <<<"${s##*) }"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

run_wrk() { # target seconds outfile
  local pin=("${ON_CPU0[@]}") extra=()
  [[ $1 == direct ]] && pin=("${ON_CPU1[@]}")
  [[ $1 == *-gzip ]] && extra=(-H "Accept-Encoding: gzip")
  "${pin[@]}" timeout -k 5 $(($2 + 30)) \
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$2"s -H "Host: $HOST" -H "apikey: $API_KEY" "${extra[@]}" --latency "$(url_of "$1")" \
    >"$3" 2>&1 || echo "wrk exited with status $?" >>"$3"
}

# ------------------------------------------------------------------ load
pinning="no CPU pinning"
[[ $PIN == 1 ]] && pinning="proxies on CPU 1, backend and wrk on CPU 0"
echo "== load: wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS round(s), $(nproc) CPU(s), $pinning =="
RES=$TMP/results
mkdir -p "$RES"
if ((WARMUP > 0)); then
  for t in "${TARGETS[@]}"; do
    echo "warm-up $t (${WARMUP}s)"
    run_wrk "$t" "$WARMUP" "$RES/warmup-$t.log"
  done
fi
n=${#TARGETS[@]}
# Count gw-redis-limit's EVALs from here (warm-up and checks aside).
redis-cli -p "$P_REDIS" CONFIG RESETSTAT >/dev/null
CPU_BEFORE=$(head -n 1 /proc/stat)
for ((r = 1; r <= ROUNDS; r++)); do
  # Rotate the order each round so no target always runs first or last.
  for ((i = 0; i < n; i++)); do
    t=${TARGETS[$(((i + r - 1) % n))]}
    out=$RES/$t.$r.txt
    ticks=$(cpu_ticks "$(pid_of "$t")")
    run_wrk "$t" "$DURATION" "$out"
    echo "$t $(($(cpu_ticks "$(pid_of "$t")") - ticks)) $(awk '/requests in/ {print $1}' "$out")" >>"$RES/cpu.txt"
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    echo "round $r/$ROUNDS  $(printf '%-14s' "$t") ${rps:-?} req/s"
  done
done

# The console's own cost, where it can be told from noise: CPU time (nanoseconds, every
# thread's /proc schedstat) of gw-console and gateway over the same idle window, both
# scraped every second, gw-console's console JSON also polled every second. Their
# difference a second, against the gateway's requests a second under load, is what an
# open console adds to a request.
cpu_ns() { # pid: CPU time of all its threads so far (ns)
  local t=0 n f
  for f in /proc/"$1"/task/*/schedstat; do
    read -r n _ <"$f" 2>/dev/null && t=$((t + n))
  done
  echo "$t"
}
IDLE=10
[[ $SMOKE == 1 ]] && IDLE=2
g0=$(cpu_ns "${GW_PID[gateway]}")
c0=$(cpu_ns "${GW_PID[gw-console]}")
sleep "$IDLE"
echo "$IDLE $(($(cpu_ns "${GW_PID[gateway]}") - g0)) $(($(cpu_ns "${GW_PID[gw-console]}") - c0))" \
  >"$RES/console-idle.txt"

status=0
# Each target's serving process, measured once the load is over, for the table.
rss_pairs=()
for t in "${TARGETS[@]}"; do rss_pairs+=("$t=$(pid_of "$t")"); done
python3 "$HELPER" rss-file "$RES/rss.txt" "${rss_pairs[@]}"
echo
echo "== results (median over rounds; ratios are of median req/s) =="
python3 "$HELPER" report "$RES" "${TARGETS[@]}" || status=1
if [[ -n $PLOT ]]; then
  mkdir -p "$(dirname "$PLOT")"
  python3 "$HELPER" plot "$RES" "$PLOT" "${TARGETS[@]}" || status=1
fi
# Time the hypervisor gave to others: on a shared VM this is a source of noise.
printf '%s\n%s\n' "$CPU_BEFORE" "$(head -n 1 /proc/stat)" | awk '
  { t = 0; for (i = 2; i <= 9; i++) t += $i; tot[NR] = t; st[NR] = $9; id[NR] = $5 + $6 }
  END { d = tot[2] - tot[1]; if (d > 0) printf "CPU during the measured rounds: %.1f%% steal, %.1f%% idle\n", 100 * (st[2] - st[1]) / d, 100 * (id[2] - id[1]) / d }'

# CPU time the proxy process itself used per request: unlike req/s, it is not moved by
# what wrk, the backend or the hypervisor take from the shared cores.
python3 "$HELPER" cpu "$(getconf CLK_TCK)" "$RES/cpu.txt"
python3 "$HELPER" console-cost "$RES" || status=1

echo
echo "== RSS after load =="
rss_pairs=()
for row in "${GW_ROWS[@]}"; do rss_pairs+=("$row=${GW_PID[$row]}"); done
python3 "$HELPER" rss "${rss_pairs[@]}" "floor=$PID_FLOOR" "nginx-proxy=$PID_NGINX" "haproxy=$PID_HAP"

# The tracing rows do what they claim, by each gateway's own exporter counters: spans
# reach the OTLP and SkyWalking collectors, gw-trace1 samples about 1 % (a sampled
# request is 2 spans, server and client), gw-trace-down's spans fail to connect.
metric() { # row regex: the sum of the samples on the row's /stats/prometheus it matches
  curl -s "http://127.0.0.1:${GW_STATS[$1]}/stats/prometheus" |
    awk -v re="$2" '$0 ~ re {s += $2} END {printf "%d\n", s}'
}
wait_metric() { # row regex: the metric once above 0 (the last batch may still be on its way), at most 10 s
  local i v
  for ((i = 0; i < 20; i++)); do
    v=$(metric "$1" "$2")
    ((v > 0)) && break
    sleep 0.5
  done
  echo "$v"
}
dropped() { # row provider
  metric "$1" "^gateway_tracing_spans_dropped_total[{]provider=\"$2\""
}
echo
echo "== tracing rows (each gateway's exporter counters) =="
sent=$(wait_metric gw-trace '^envoy_tracing_zipkin_spans_sent ')
echo "gw-trace: $sent spans sent, $(dropped gw-trace zipkin) dropped;" \
  "$(cat "$TMP/zipkin-spans.txt" 2>/dev/null || echo 0) spans reached the Zipkin collector (with gw-trace1's)"
must_send() { # row provider metric unit collector-name collector-log
  local sent
  sent=$(wait_metric "$1" "^$3 ")
  echo "$1: $sent $4 sent to the $5, $(dropped "$1" "$2") dropped"
  if ((sent == 0)); then
    echo "bench.sh: $1 sent no $4 to the $5" >&2
    show_log "$5" "$6"
    status=1
  fi
}
must_send gw-otlp opentelemetry envoy_tracing_opentelemetry_spans_sent spans \
  "OTLP gRPC collector" "$TMP/otlp-collector.log"
must_send gw-sw skywalking envoy_tracing_skywalking_segments_sent segments \
  "SkyWalking collector" "$TMP/sw-collector.log"
sent=$(wait_metric gw-trace1 '^envoy_tracing_zipkin_spans_sent ')
reqs=$(metric gw-trace1 '^envoy_http_downstream_rq_total')
echo "gw-trace1: $sent spans sent for $reqs requests" \
  "($(awk -v s="$sent" -v r="$reqs" 'BEGIN {if (r > 0) printf "%.2f", 100 * s / r; else print "-"}') per 100 requests; 2 expected at 1 %)"
# (5x the expected rate would be no 1 % sampling; none at all, no tracing.)
if ((sent == 0 || sent * 10 > reqs)); then
  echo "bench.sh: gw-trace1 does not sample about 1 % of its requests" >&2
  status=1
fi
errors=$(wait_metric gw-trace-down '^gateway_tracing_export_errors_total[{]provider="zipkin",reason="connect"[}] ')
echo "gw-trace-down: $errors connect errors, $(dropped gw-trace-down zipkin) spans dropped," \
  "$(metric gw-trace-down '^envoy_tracing_zipkin_spans_sent ') sent"
if ((errors == 0)); then
  echo "bench.sh: gw-trace-down counted no connect error: is its collector port really down?" >&2
  status=1
fi
echo
read -r SCRAPES SCRAPE_FAILS <"$TMP/scrapes.txt" || true
echo "gateway /stats/prometheus scraped every 1 s during the run: ${SCRAPES:-0} scrapes, ${SCRAPE_FAILS:-?} failed"
if [[ ${SCRAPE_FAILS:-1} != 0 ]]; then
  status=1
fi
read -r POLLS POLL_FAILS <"$TMP/console-polls.txt" || true
echo "gw-console: console JSON polled every 1 s during the run: ${POLLS:-0} requests, ${POLL_FAILS:-?} failed"
if [[ ${POLL_FAILS:-1} != 0 ]]; then
  status=1
fi

# Redis commands gw-redis-limit sent per request over the whole load (goal: exactly 1).
if [[ -n ${PID_REDIS:-} ]]; then
  cmds=$(redis-cli -p "$P_REDIS" INFO commandstats | tr -d '\r' | awk -F'[=,:]' '/^cmdstat_eval:/ {print $3}')
  reqs=$(awk '$1 == "gw-redis-limit" {n += $3} END {print n + 0}' "$RES/cpu.txt")
  # (wrk counts completed requests; the few in flight when a run stops were sent too.)
  echo "gw-redis-limit: ${cmds:-0} Redis EVALs for $reqs requests measured" \
    "($(awk -v c="${cmds:-0}" -v r="$reqs" 'BEGIN {if (r > 0) printf "%.3f", c / r; else print "-"}') per request)"
fi

# ------------------------------------------------------------------ config changes
echo
echo "== config change latency: $CONFIG_CHANGES rewrites of ingresses/bench.yaml (write temp + rename) =="
if ! timeout -k 5 $((CONFIG_CHANGES * 6 + 10)) \
  python3 "$HELPER" config-latency "$TMP/gwconf" "127.0.0.1:${GW_ADMIN[gateway]}" "$CONFIG_CHANGES"; then
  status=1
fi
if ! alive "${GW_PID[gateway]}"; then
  echo "bench.sh: the gateway exited during the benchmark" >&2
  status=1
fi

# ------------------------------------------------------------------ instructions
INSTRUCTIONS=${BENCH_INSTRUCTIONS:-}
if [[ -z $INSTRUCTIONS ]]; then
  INSTRUCTIONS=0
  if [[ $SMOKE == 0 ]] && command -v valgrind >/dev/null 2>&1 &&
    command -v callgrind_control >/dev/null 2>&1; then
    INSTRUCTIONS=1
  fi
fi
if [[ $INSTRUCTIONS == 1 ]]; then
  CG_REQUESTS=${CG_REQUESTS:-2000}
  echo
  echo "== instructions per request (callgrind, one keep-alive connection, $CG_REQUESTS requests after 200 warm-up) =="
  CG=$TMP/callgrind
  mkdir -p "$CG"
  : >"$CG/counts.txt"
  nginx_conf proxycg "    upstream backend {
        server 127.0.0.1:$P_BACKEND;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$C_HTTP;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }" off
  cg_run() { # label command...; CG_PATH: the path requested (default /)
    local label=$1 pid i
    shift
    # Instrumentation off until the proxy answers (the helper then switches it on, before
    # the warm-up): start-up runs several times faster, the counts are the same.
    "${ON_CPU1[@]}" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$CG/$label.%p" "$@" \
      >"$CG/$label.log" 2>&1 &
    pid=$!
    if ! python3 "$HELPER" instructions "$label" "$C_HTTP" "$CG_REQUESTS" "$pid" "$CG/$label" "${CG_PATH:-/}" \
      >>"$CG/counts.txt"; then
      status=1
      show_log "$label under callgrind" "$CG/$label.log"
    fi
    kill -INT "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do alive "$pid" || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  }
  cg_gateway() { # label config-dir [gateway args...]: the gateway under callgrind
    local label=$1 conf=$2
    shift 2
    gateway_args "$conf" "$C_HTTP" "$C_STATS" "$C_ADMIN" "$@"
    cg_run "$label" "$GATEWAY_BIN" "${GW_ARGS[@]}"
  }
  cg_run floor "$FLOOR_BIN" "127.0.0.1:$C_HTTP" "127.0.0.1:$P_BACKEND" 1
  cg_run nginx "$NGINX" -p "$TMP/proxycg" -c "$TMP/proxycg/nginx.conf" -e "$TMP/proxycg/error.log"
  cg_gateway gateway "$TMP/gwconf"
  # The API answer: 400 bytes of JSON and a dozen headers.
  CG_PATH=/api/item cg_run floor-json "$FLOOR_BIN" "127.0.0.1:$C_HTTP" "127.0.0.1:$P_BACKEND" 1
  CG_PATH=/api/item cg_run nginx-json "$NGINX" -p "$TMP/proxycg" -c "$TMP/proxycg/nginx.conf" -e "$TMP/proxycg/error.log"
  CG_PATH=/api/item cg_gateway gw-json "$TMP/gwconf"
  # The tracing rows export to the collectors of the wrk rows, still running.
  cg_gateway gw-trace "$TMP/gwconf-trace"
  cg_gateway gw-otlp "$TMP/gwconf-otlp"
  cg_gateway gw-sw "$TMP/gwconf-sw"
  cg_gateway gw-trace1 "$TMP/gwconf-trace1"
  python3 "$HELPER" gateway-config "$TMP/gwconf-trace10" "$P_BACKEND" "$P_ZIPKIN" zipkin 10
  cg_gateway gw-trace10 "$TMP/gwconf-trace10"
  cg_gateway gw-trace-down "$TMP/gwconf-trace-down"
  cg_gateway gw-norec "$TMP/gwconf" --stats-recording off
  python3 "$HELPER" gateway-config "$TMP/gwconf-policy" "$P_BACKEND"
  python3 "$HELPER" gateway-policy "$TMP/gwconf-policy"
  cg_gateway gw-policy "$TMP/gwconf-policy"
  cg_gateway gw-keyauth "$TMP/gwconf-keyauth"
  cg_gateway gw-redis-limit "$TMP/gwconf-redis"
  python3 "$HELPER" gateway-config "$TMP/gwconf-knative" "$P_BACKEND"
  python3 "$HELPER" gateway-knative "$TMP/gwconf-knative" "$P_BACKEND"
  cg_gateway gw-knative "$TMP/gwconf-knative"
  # (No module cache: the wrk row's entries do not match under valgrind, which shows the
  # compiler other CPU features; with instrumentation off the Go plugin compiles in about
  # a minute.) Last: the slowest.
  cg_gateway gw-wasm0 "$TMP/gwconf-wasm0"
  cg_gateway gw-wasm "$TMP/gwconf-wasm"
  python3 "$HELPER" instructions-summary "$CG/counts.txt"
fi

# ------------------------------------------------------------------ scale
if [[ ${BENCH_SCALE:-0} == 1 ]]; then
  echo
  if ! GATEWAY_BIN=$GATEWAY_BIN BENCH_PROFILE=$PROFILE bash "$ROOT/loadtest/scale.sh"; then
    status=1
  fi
fi

if ((status != 0)); then
  echo
  echo "bench.sh: FAILED (see above)" >&2
  for row in "${GW_ROWS[@]}"; do show_log "$row" "$TMP/$row.log"; done
  show_log pingora-floor "$TMP/floor.log"
  show_log "nginx proxy" "$TMP/proxy/error.log"
  show_log haproxy "$TMP/haproxy/haproxy.log"
fi
exit "$status"
