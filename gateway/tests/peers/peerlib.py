"""Shared plumbing for the test peers: bounded lifetime, the READY line, the JSON-lines
record file, and a small HTTP control endpoint for fault injection.

Contract with the Rust harness (gateway/tests/support/src/tracing_peers.rs):
- stdout carries exactly one line, `READY {"name": port, ...}`, once every listener is up;
- every recorded item is one JSON object per line in the `--record` file, written whole
  under a lock, so a reader sees complete lines (a torn last line is skipped);
- the peer exits when its stdin reaches EOF (the test process is gone or dropped it), or
  after `--max-seconds`, so a crashed test leaves nothing running.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = "127.0.0.1"


def base_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--record", help="append what was received here, one JSON object a line")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=1800.0,
        help="exit after this long even if stdin stays open",
    )
    return p


def start_lifetime(max_seconds):
    """Exit (without cleanup: nothing here needs it) on stdin EOF or after max_seconds."""

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except Exception:
            pass
        os._exit(0)

    def deadline():
        time.sleep(max_seconds)
        os._exit(0)

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    threading.Thread(target=deadline, name="deadline", daemon=True).start()


def ready(**ports):
    print("READY " + json.dumps(ports, sort_keys=True), flush=True)


class Recorder:
    def __init__(self, path):
        self._lock = threading.Lock()
        self._f = open(path, "a", encoding="utf-8") if path else None

    def record(self, obj):
        if self._f is None:
            return
        line = json.dumps(obj, sort_keys=True) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()


class Fault:
    """What a receiver does to the next calls: answer with `status` (HTTP) or abort with
    `grpc_code` (gRPC), after sleeping `delay_ms`. Changed at run time by POST /fault."""

    def __init__(self, status=0, grpc_code="", delay_ms=0):
        self._lock = threading.Lock()
        self.status = status
        self.grpc_code = grpc_code
        self.delay_ms = delay_ms

    def set(self, d):
        with self._lock:
            self.status = int(d.get("status", 0) or 0)
            self.grpc_code = str(d.get("grpc_code", "") or "")
            self.delay_ms = int(d.get("delay_ms", 0) or 0)

    def snapshot(self):
        with self._lock:
            return {"status": self.status, "grpc_code": self.grpc_code, "delay_ms": self.delay_ms}

    def delay(self):
        ms = self.snapshot()["delay_ms"]
        if ms > 0:
            time.sleep(ms / 1000.0)


def add_fault_args(p):
    p.add_argument("--status", type=int, default=0, help="answer every call with this HTTP status")
    p.add_argument("--grpc-code", default="", help="abort every gRPC call with this code name")
    p.add_argument("--delay-ms", type=int, default=0, help="sleep this long before answering")


def fault_from_args(a):
    return Fault(a.status, a.grpc_code, a.delay_ms)


def grpc_abort_if_faulted(fault, context):
    """Sleep the configured delay; abort the call if a gRPC fault is set."""
    import grpc

    fault.delay()
    code = fault.snapshot()["grpc_code"]
    if code:
        context.abort(getattr(grpc.StatusCode, code.upper()), "fault injected by the test")


def headers_dict(headers):
    """Request headers as {lowercase name: value}, repeated names joined with ", "."""
    out = {}
    for k, v in headers.items():
        k = k.lower()
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


class JsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler with small helpers; logs to stderr only."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            import gzip

            data = gzip.decompress(data)
        return data

    def reply(self, status, body=b"", content_type="application/json", extra=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def serve_http(handler_cls, port=0):
    srv = ThreadingHTTPServer((LOOPBACK, port), handler_cls)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, name="http", daemon=True).start()
    return srv


def serve_control(fault):
    """POST /fault {"status","grpc_code","delay_ms"} replaces the fault; GET /fault reads it."""

    class Control(JsonHandler):
        def do_GET(self):
            self.reply(200, fault.snapshot())

        def do_POST(self):
            if self.path != "/fault":
                self.reply(404, {"error": "not found"})
                return
            fault.set(json.loads(self.body() or b"{}"))
            self.reply(200, fault.snapshot())

    return serve_http(Control)


def block_forever():
    while True:
        time.sleep(3600)


class Switchable:
    """An HTTP server that can go down and come back on the same port, as a registry
    that restarts does: `down()` closes the listener and every open connection (a
    blocked long poll sees its connection reset), `up()` listens again."""

    def __init__(self, handler_cls, port=0):
        self._handler_cls = handler_cls
        self._lock = threading.Lock()
        self._conns = set()
        self.port = port
        self.srv = None
        self.is_up = False
        self.up()

    def _track(self, sock, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def up(self):
        with self._lock:
            if self.is_up:
                return
            outer = self

            class Server(ThreadingHTTPServer):
                daemon_threads = True
                allow_reuse_address = True

                def process_request_thread(self, request, client_address):
                    outer._track(request, True)
                    try:
                        super().process_request_thread(request, client_address)
                    finally:
                        outer._track(request, False)

            self.srv = Server((LOOPBACK, self.port), self._handler_cls)
            self.port = self.srv.server_address[1]
            threading.Thread(target=self.srv.serve_forever, name="http", daemon=True).start()
            self.is_up = True

    def down(self):
        import socket

        with self._lock:
            if not self.is_up:
                return
            srv, conns = self.srv, list(self._conns)
            self.is_up = False
        srv.shutdown()
        srv.server_close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
