#!/usr/bin/env bash
# Build the gateway and run it on its embedded default config (foo.bar.com -> echo).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
cargo build --release --bin gateway
exec ./target/release/gateway demo "$@"
