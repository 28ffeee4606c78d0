#!/usr/bin/env python3
"""The soak of loadtest/soak.sh: the gateway under k6 load (loadtest/soak.js) while
everything around it misbehaves, then a verdict.

  python3 loadtest/soak_companion.py --gateway BIN --k6 K6 [--seconds 600] [--rate 200]

Around the load, on loopback:
  - config churn every second: a valid change (an extra Ingress comes or goes, a
    higress-config option flips) or an invalid one (a broken Ingress, then put back);
  - the Zipkin collector flaps: 10 s down out of every 30 s;
  - one of the two endpoints of the served cluster bounces: down 5 s out of every 15 s;
  - redis-server (counting cluster-key-rate-limit) restarts every 60 s.
Prints requests, failures (any answer other than 200: none is expected, as retries
take another endpoint, the rate limit fails open and rejected configs keep the last
good one), RSS at start, after warm-up and at the end, and p99 per minute. Exits 1
when a request failed or RSS grew by 10 % or more after warm-up.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out in two writes: without this, Nagle and the gateway's delayed
    # ACK hold the body ~40 ms now and then, and that, not the gateway, is the p99.
    disable_nagle_algorithm = True

    def _answer(self, status):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = b"ok\n"
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer(200)

    def do_POST(self):
        self._answer(202)

    def log_message(self, *args):
        pass


class Flapping:
    """An HTTP server on a fixed port that can be stopped and started again."""

    def __init__(self, port):
        self.port = port
        self.server = None

    def up(self):
        if self.server is None:
            ThreadingHTTPServer.allow_reuse_address = True
            self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Ok)
            self.server.daemon_threads = True
            threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def ingress(name, host, dest, path_type="Prefix"):
    return (
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
        f"  name: {name}\n  namespace: higress-system\n  annotations:\n"
        f"    higress.io/destination: {dest}\nspec:\n  rules:\n  - host: {host}\n"
        f"    http:\n      paths:\n      - path: /\n        pathType: {path_type}\n"
        "        backend:\n          resource:\n            apiGroup: networking.higress.io\n"
        "            kind: McpBridge\n            name: default\n"
    )


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def higress_config(real_ip, zipkin_port):
    doc = (
        f"addXRealIpHeader: {'true' if real_ip else 'false'}\n"
        "tracing:\n  enable: true\n  sampling: 10\n  timeout: 500\n"
        f"  zipkin:\n    service: zipkin.static\n    port: \"{zipkin_port}\"\n"
    )
    body = "".join("    " + line + "\n" for line in doc.splitlines())
    return (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: higress-config\n"
        f"  namespace: higress-system\ndata:\n  higress: |\n{body}"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--k6", required=True)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="soak-")
    cfg = os.path.join(work, "config")
    ports = {k: free_port() for k in ("a", "b", "zipkin", "redis", "http", "stats", "admin")}
    stable, bouncing = Flapping(ports["a"]), Flapping(ports["b"])
    collector = Flapping(ports["zipkin"])
    for s in (stable, bouncing, collector):
        s.up()

    def start_redis():
        return subprocess.Popen(
            ["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    redis = start_redis()
    write(cfg, "mcpbridges/default.yaml",
          "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\n"
          "  namespace: higress-system\nspec:\n  registries:\n"
          f"  - {{type: static, name: app, domain: \"127.0.0.1:{ports['a']}, 127.0.0.1:{ports['b']}\", port: 80}}\n"
          f"  - {{type: static, name: redis, domain: \"127.0.0.1:{ports['redis']}\", port: 6379}}\n"
          f"  - {{type: static, name: zipkin, domain: \"127.0.0.1:{ports['zipkin']}\", port: {ports['zipkin']}}}\n")
    write(cfg, "ingresses/soak.yaml", ingress("soak", "soak.test", "app.static"))
    write(cfg, "configmaps/higress-config.yaml", higress_config(False, ports["zipkin"]))
    write(cfg, "wasmplugins/limit.yaml",
          "apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n"
          "  name: limit\n  namespace: higress-system\nspec:\n  defaultConfig:\n"
          "    rule_name: soak\n    rule_items:\n    - limit_by_header: x-key\n"
          "      limit_keys:\n      - key: k1\n        query_per_minute: 100000000\n"
          "    redis:\n      service_name: redis.static\n      timeout: 100\n"
          "  url: oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/cluster-key-rate-limit:1.0.0\n")

    log = open(os.path.join(work, "gateway.log"), "w")
    gw = subprocess.Popen(
        [args.gateway, "run", "--config-dir", cfg, "--http-addr", f"127.0.0.1:{ports['http']}",
         "--https-addr", "off", "--local-http-addr", "off",
         "--stats-addr", f"127.0.0.1:{ports['stats']}", "--admin-addr", f"127.0.0.1:{ports['admin']}",
         "--threads", "2", "--access-log", "off"],
        stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", ports["http"]), timeout=1).close()
            break
        except OSError:
            if gw.poll() is not None or time.time() > deadline:
                print("soak: the gateway did not start; see", log.name)
                return 2
            time.sleep(0.1)
    rss = {"start": rss_kib(gw.pid)}

    points = os.path.join(work, "k6.json")
    env = dict(os.environ, BASE_URL=f"http://127.0.0.1:{ports['http']}",
               RATE=str(args.rate), DURATION=f"{args.seconds}s")
    k6 = subprocess.Popen([args.k6, "run", "--quiet", "--out", f"json={points}",
                           os.path.join(os.path.dirname(__file__), "soak.js")],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    events = {"valid": 0, "invalid": 0, "bounces": 0, "collector_flaps": 0, "redis_restarts": 0}
    started = time.time()
    real_ip = False
    tick = 0
    while k6.poll() is None:
        time.sleep(1)
        tick += 1
        elapsed = time.time() - started
        if tick % 2 == 1:
            write(cfg, "ingresses/soak.yaml", ingress("soak", "soak.test", "app.static", "Bogus"))
            time.sleep(0.3)
            write(cfg, "ingresses/soak.yaml", ingress("soak", "soak.test", "app.static"))
            events["invalid"] += 1
        elif tick % 4 == 0:
            real_ip = not real_ip
            write(cfg, "configmaps/higress-config.yaml", higress_config(real_ip, ports["zipkin"]))
            events["valid"] += 1
        else:
            extra = os.path.join(cfg, "ingresses/extra.yaml")
            if os.path.exists(extra):
                os.remove(extra)
            else:
                write(cfg, "ingresses/extra.yaml", ingress("extra", "extra.test", "app.static"))
            events["valid"] += 1
        phase = int(elapsed) % 15
        if phase < 5 and bouncing.server is not None:
            bouncing.down()
            events["bounces"] += 1
        elif phase >= 5:
            bouncing.up()
        if int(elapsed) % 30 < 10 and collector.server is not None:
            collector.down()
            events["collector_flaps"] += 1
        elif int(elapsed) % 30 >= 10:
            collector.up()
        if tick % 60 == 0:
            redis.send_signal(signal.SIGTERM)
            redis.wait()
            redis = start_redis()
            events["redis_restarts"] += 1
        if "warm" not in rss and elapsed >= min(60, args.seconds / 5):
            rss["warm"] = rss_kib(gw.pid)
    rss["end"] = rss_kib(gw.pid)
    gw.send_signal(signal.SIGTERM)
    try:
        gw.wait(timeout=30)
    except subprocess.TimeoutExpired:
        gw.kill()
    redis.terminate()
    for s in (stable, bouncing, collector):
        s.down()

    total, failed, by_status = 0, 0, {}
    minutes = {}
    with open(points) as f:
        for line in f:
            if '"http_req_duration"' not in line or '"Point"' not in line:
                continue
            p = json.loads(line)
            d = p["data"]
            status = d["tags"].get("status", "0")
            t = d["time"]
            minute = int(t[11:13]) * 60 + int(t[14:16])
            minutes.setdefault(minute, []).append(d["value"])
            total += 1
            by_status[status] = by_status.get(status, 0) + 1
            if status != "200":
                failed += 1
    print(f"soak: {args.seconds} s at {args.rate} req/s; changes: {events['valid']} valid, "
          f"{events['invalid']} invalid; endpoint bounces {events['bounces']}, collector "
          f"outages {events['collector_flaps']}, redis restarts {events['redis_restarts']}")
    print(f"soak: requests {total}, failed {failed} (goal 0), by status {by_status}")
    first = min(minutes) if minutes else 0
    for m in sorted(minutes):
        v = sorted(minutes[m])
        p99 = v[min(len(v) - 1, int(len(v) * 0.99))]
        print(f"soak: minute {m - first + 1:2d}: {len(v):6d} requests, p99 {p99:7.2f} ms")
    warm = rss.get("warm", rss["start"])
    growth = (rss["end"] - warm) * 100.0 / max(warm, 1)
    print(f"soak: RSS start {rss['start'] / 1024:.1f} MiB, after warm-up {warm / 1024:.1f} MiB, "
          f"end {rss['end'] / 1024:.1f} MiB (growth {growth:+.1f} %, goal < 10 %)")
    if args.keep:
        print("soak: kept", work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed or growth >= 10 or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
