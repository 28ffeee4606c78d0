#!/usr/bin/env python3
"""Helpers for loadtest/scale.sh (Python standard library only).

Subcommands:
  config DIR BACKEND_PORT N HOSTS  a config directory of N one-path Ingresses (N = 1: one
                                   prefix `/` Ingress, the one-path host) spread over
                                   HOSTS hosts (10 % regex, the rest prefix and exact),
                                   to 100 static registries (svc-<i % 100>.static, all the
                                   backend); DIR/paths.txt: `host path` per route
  wrk-script PATHS_TXT OUT.lua     a wrk script cycling over those request paths (and hosts)
  change-latency DIR STATS_ADDR N  N rewrites of one Ingress among them; time from the
                                   rename to a higher gateway_config_snapshot_version
  rss PID                          VmRSS of PID in KiB
"""

import math
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_helper import wait_version_above, write_atomic  # noqa: E402

CHANGED = 4242  # the Ingress the change-latency run rewrites
REGISTRIES = 100
TIMEOUTS = ("30", "31")


def host_of(i, hosts):
    return "scale.local" if hosts == 1 else f"h{i % hosts}.scale.local"


def route_of(i):
    """(pathType, path, use_regex, a request path it serves): the shapes of
    gateway/examples/route_lookup.rs."""
    base = f"/api/v{i % 3 + 1}/svc-{i}"
    k = i % 10
    if k == 9:
        return "ImplementationSpecific", f"{base}/items/[0-9]+", True, f"{base}/items/{1000 + i}"
    if k in (1, 4, 7):
        return "Exact", f"{base}/health", False, f"{base}/health"
    return "Prefix", base, False, f"{base}/orders/{i}"


def ingress_yaml(i, hosts, timeout=None, catch_all=False):
    path_type, path, regex, _ = ("Prefix", "/", False, "") if catch_all else route_of(i)
    ann = f'    higress.io/destination: "svc-{i % REGISTRIES}.static"\n'
    if regex:
        ann += '    higress.io/use-regex: "true"\n'
    if timeout:
        ann += f'    higress.io/timeout: "{timeout}"\n'
    return (
        "apiVersion: networking.k8s.io/v1\n"
        "kind: Ingress\n"
        "metadata:\n"
        f"  name: scale-{i:05d}\n"
        "  annotations:\n"
        f"{ann}"
        "spec:\n"
        "  ingressClassName: higress\n"
        "  rules:\n"
        f'  - host: "{host_of(i, hosts)}"\n'
        "    http:\n"
        "      paths:\n"
        f'      - path: "{path}"\n'
        f"        pathType: {path_type}\n"
        "        backend:\n"
        "          resource:\n"
        "            apiGroup: networking.higress.io\n"
        "            kind: McpBridge\n"
        "            name: default\n"
    )


def cmd_config(d, backend_port, n, hosts):
    n, hosts = int(n), int(hosts)
    for k in ("configmaps", "ingresses", "mcpbridges"):
        os.makedirs(os.path.join(d, k), exist_ok=True)
    with open(os.path.join(d, "mcpbridges/default.yaml"), "w") as f:
        f.write("apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n"
                "  name: default\nspec:\n  registries:\n")
        for r in range(REGISTRIES):
            f.write(f"  - type: static\n    name: svc-{r}\n"
                    f'    domain: "127.0.0.1:{backend_port}"\n    port: 80\n')
    with open(os.path.join(d, "paths.txt"), "w") as paths:
        for i in range(n):
            with open(os.path.join(d, f"ingresses/scale-{i:05d}.yaml"), "w") as f:
                # N = 1: the one-path host, a prefix `/` serving every request path.
                f.write(ingress_yaml(i, hosts, TIMEOUTS[0] if i == CHANGED else None, n == 1))
            paths.write(f"{host_of(i, hosts)} {route_of(i)[3]}\n")


def cmd_wrk_script(paths_txt, out):
    with open(paths_txt) as f:
        pairs = [line.split() for line in f if line.strip()]
    # A fixed stride spreads consecutive requests over the routes.
    n = len(pairs)
    step = next(s for s in range(7919, 7919 + n + 2) if math.gcd(s, n) == 1)
    order = [pairs[(k * step) % n] for k in range(n)]
    with open(out, "w") as f:
        f.write("local reqs = {\n")
        for host, path in order:
            f.write(f'  wrk.format("GET", "{path}", {{Host = "{host}"}}),\n')
        f.write("}\nlocal i = 0\n"
                "request = function()\n  i = i + 1\n  if i > #reqs then i = 1 end\n"
                "  return reqs[i]\nend\n")


def stats_version(addr):
    # Only this gauge (Envoy's `?filter=`): the whole exposition of 10,000 routes' gateway
    # is hundreds of KB, and rendering it every 2 ms took CPU from the rebuild measured.
    url = f"http://{addr}/stats/prometheus?filter=%5Egateway_config_snapshot_version%24"
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("gateway_config_snapshot_version"):
                return int(float(line.split()[-1]))
    raise OSError("no gateway_config_snapshot_version")


def percentile(xs, p):
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def cmd_change_latency(d, addr, n, hosts="1"):
    n, hosts = int(n), int(hosts)
    path = os.path.join(d, f"ingresses/scale-{CHANGED:05d}.yaml")
    lat, failures = [], 0
    v = stats_version(addr)
    for k in range(n):
        t0 = write_atomic(path, ingress_yaml(CHANGED, hosts, TIMEOUTS[(k + 1) % 2]))
        new, now = wait_version_above(lambda: stats_version(addr), v, t0 + 10)
        if new is None:
            failures += 1
            continue
        lat.append((now - t0) * 1e3)
        v = new
        time.sleep(0.1)
    if lat:
        print(f"one changed Ingress among the 10,000 -> live (n={len(lat)}, rename to a higher "
              f"gateway_config_snapshot_version, 2 ms polling): p50 = {percentile(lat, 50):.1f} ms  "
              f"p99 = {percentile(lat, 99):.1f} ms  (min {min(lat):.1f}, max {max(lat):.1f}; goal p99 < 100 ms)")
    if failures:
        print(f"{failures} of {n} changes did not go live within 10 s")
        sys.exit(1)


def cmd_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                print(line.split()[1])
                return
    sys.exit("no VmRSS")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, argv = sys.argv[1], sys.argv[2:]
    cmds = {"config": cmd_config, "wrk-script": cmd_wrk_script,
            "change-latency": cmd_change_latency, "rss": cmd_rss}
    if cmd not in cmds:
        sys.exit(f"unknown subcommand {cmd}\n{__doc__}")
    cmds[cmd](*argv)


if __name__ == "__main__":
    main()
