#!/usr/bin/env python3
"""Companion of loadtest/reload.js: rewrites a gateway config directory again and again
while k6 keeps load on the gateway, so the run shows whether changes apply without a
failed request.

  python3 loadtest/reload_companion.py CONFIG_DIR [--for SECONDS] [--every SECONDS]
                                       [--destination HOST] [--admin ADDR]

Each step writes (temp file + rename, as editors and Higress do):
  - configmaps/higress-config.yaml, alternating two global configs (gzip level and
    minimum length, downstream idle timeout, route timeout);
  - ingresses/k6-reload.yaml, an Ingress of its own for host reload.k6.local whose
    timeout annotation and second path alternate (its destination: --destination,
    default httpbin.static, the demo's registry).
The routes k6 requests are never removed. At the end the original higress-config is put
back and the companion's Ingress removed. With --admin (the gateway's admin address) it
prints how many snapshot versions the gateway published meanwhile.
Standard library only.
"""

import argparse
import json
import os
import sys
import time
import urllib.request

CONFIGS = [
    "downstream:\n  idleTimeout: 180\n  routeTimeout: 0\ngzip:\n  enable: true\n"
    "  minContentLength: 1024\n  compressionLevel: BEST_COMPRESSION\n",
    "downstream:\n  idleTimeout: 120\n  routeTimeout: 30\ngzip:\n  enable: true\n"
    "  minContentLength: 2048\n  compressionLevel: BEST_SPEED\n",
]


def configmap(higress):
    body = "".join(f"    {line}\n" for line in higress.splitlines())
    return ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: higress-config\n"
            f"  namespace: higress-system\ndata:\n  higress: |\n{body}")


def ingress(step, destination):
    paths = ["/"] + (["/k6-extra"] if step % 2 else [])
    rules = "".join(
        f"      - path: {p}\n        pathType: Prefix\n        backend:\n          resource:\n"
        "            apiGroup: networking.higress.io\n            kind: McpBridge\n"
        "            name: default\n" for p in paths)
    return ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: k6-reload\n"
            "  namespace: higress-system\n  annotations:\n"
            f"    higress.io/destination: {destination}\n"
            f"    higress.io/timeout: \"{10 + 10 * (step % 2)}\"\n"
            "spec:\n  ingressClassName: higress\n  rules:\n  - host: reload.k6.local\n"
            f"    http:\n      paths:\n{rules}")


def write_atomic(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".k6tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def version(admin):
    try:
        with urllib.request.urlopen(f"http://{admin}/debug/configz", timeout=2) as r:
            return json.load(r).get("version")
    except (OSError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config_dir")
    ap.add_argument("--for", dest="duration", type=float, default=40.0,
                    help="seconds to keep rewriting (default 40)")
    ap.add_argument("--every", type=float, default=0.5,
                    help="seconds between rewrites (default 0.5)")
    ap.add_argument("--destination", default="httpbin.static",
                    help="the companion Ingress's higress.io/destination")
    ap.add_argument("--admin", help="the gateway's admin address, to count snapshots")
    a = ap.parse_args()
    if not os.path.isdir(a.config_dir):
        sys.exit(f"reload_companion: {a.config_dir}: not a directory")
    cm_path = os.path.join(a.config_dir, "configmaps", "higress-config.yaml")
    ing_path = os.path.join(a.config_dir, "ingresses", "k6-reload.yaml")
    original = None
    if os.path.exists(cm_path):
        with open(cm_path) as f:
            original = f.read()
    start_version = version(a.admin) if a.admin else None
    deadline = time.monotonic() + a.duration
    steps = 0
    try:
        while time.monotonic() < deadline:
            write_atomic(cm_path, configmap(CONFIGS[steps % 2]))
            write_atomic(ing_path, ingress(steps, a.destination))
            steps += 1
            time.sleep(a.every)
    except KeyboardInterrupt:
        pass
    finally:
        if original is not None:
            write_atomic(cm_path, original)
        if os.path.exists(ing_path):
            os.remove(ing_path)
    line = f"reload_companion: {steps} rewrites of higress-config and ingresses/k6-reload.yaml"
    if a.admin:
        time.sleep(1)
        end_version = version(a.admin)
        if start_version is not None and end_version is not None:
            line += f"; the gateway published {end_version - start_version} snapshots"
    print(line)


if __name__ == "__main__":
    main()
