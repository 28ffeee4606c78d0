"""gRPC peer for gateway/tests/grpc.rs: a grpcio server and a grpcio client.

No protoc: the service `test.Echo` is a generic handler on raw bytes (messages are
UTF-8 text), so the wire is real gRPC framing without generated stubs.

server: `READY {"grpc": port, "reset": port, "close": port, "midreset": port, "hang": port,
  "midhang": port}`
  test.Echo/Echo       unary: the request back; initial metadata `x-initial`, trailing
                       metadata `x-trailer` (text) and `x-trace-bin` (binary); any size
  test.Echo/Count      server streaming: N messages `m0..m{N-1}` for the request "N"
  test.Echo/Sum        client streaming: the sum of the integers sent
  test.Echo/Chat       bidirectional: `echo:<msg>` for each message, as it arrives
  test.Echo/Sleep      unary: sleeps the requested milliseconds (records the deadline left)
  test.Echo/Fail       unary: RESOURCE_EXHAUSTED with trailing metadata (trailers-only)
  test.Echo/FailAfter  server streaming: two messages, then ABORTED with trailing metadata
Raw HTTP/2 listeners stand in for a backend that breaks, each once the request has
ended: `reset` answers every stream with RST_STREAM, `close` closes the connection, `midreset` sends
response headers and one message, then RST_STREAM; `hang` never answers and `midhang`
stops after the headers and one message (so only the gateway's timeout can end those).

client: runs the named calls through `--target` and prints one JSON object per call:
  {"call", "code", "details", "initial", "trailing", "messages", "ms"}
"""

import json
import os
import socket
import struct
import sys
import threading
import time

import peerlib

SERVICE = "test.Echo"


def identity(b):
    return b


def md_dict(md):
    """Metadata as {key: text}, binary values as hex (`-bin` keys)."""
    out = {}
    for k, v in md or ():
        if isinstance(v, bytes):
            v = v.hex()
        out[k] = v
    return out


# ---------------------------------------------------------------- server


def serve(a):
    import grpc
    from concurrent import futures

    rec = peerlib.Recorder(a.record)

    def note(method, context, **extra):
        r = context.time_remaining()
        rec.record(
            {
                "kind": "call",
                "method": method,
                "metadata": md_dict(context.invocation_metadata()),
                "time_remaining": r,
                **extra,
            }
        )

    def echo(req, context):
        note("Echo", context)
        context.send_initial_metadata([("x-initial", "yes")])
        # (A large message is named by its length: metadata is small and printable.)
        said = req.decode() if len(req) <= 64 else f"{len(req)} bytes"
        context.set_trailing_metadata(
            [("x-trailer", "echo:" + said), ("x-trace-bin", b"\x00\x01\xfe")]
        )
        return req

    def count(req, context):
        note("Count", context)
        n = int(req.decode())
        context.set_trailing_metadata([("x-count", str(n))])
        for i in range(n):
            yield f"m{i}".encode()

    def total(it, context):
        note("Sum", context)
        return str(sum(int(m.decode()) for m in it)).encode()

    def chat(it, context):
        note("Chat", context)
        for m in it:
            yield b"echo:" + m

    def sleep(req, context):
        note("Sleep", context)
        time.sleep(int(req.decode()) / 1000.0)
        return b"slept"

    def fail(req, context):
        note("Fail", context)
        context.set_trailing_metadata([("x-error-detail", "quota"), ("x-why-bin", b"\x01\x02")])
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota exceeded: 100% used")

    def fail_after(req, context):
        note("FailAfter", context)
        yield b"first"
        yield b"second"
        context.set_trailing_metadata([("x-error-detail", "late")])
        context.abort(grpc.StatusCode.ABORTED, "aborted after two messages")

    h = grpc
    handlers = {
        "Echo": h.unary_unary_rpc_method_handler(echo, identity, identity),
        "Count": h.unary_stream_rpc_method_handler(count, identity, identity),
        "Sum": h.stream_unary_rpc_method_handler(total, identity, identity),
        "Chat": h.stream_stream_rpc_method_handler(chat, identity, identity),
        "Sleep": h.unary_unary_rpc_method_handler(sleep, identity, identity),
        "Fail": h.unary_unary_rpc_method_handler(fail, identity, identity),
        "FailAfter": h.unary_stream_rpc_method_handler(fail_after, identity, identity),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port(f"{peerlib.LOOPBACK}:0")
    server.start()
    ports = {"grpc": port}
    for mode in ("reset", "close", "midreset", "hang", "midhang"):
        ports[mode] = raw_h2(mode, rec)
    peerlib.ready(**ports)
    peerlib.block_forever()


# A few HTTP/2 frames by hand (RFC 9113 section 4.1): enough to accept a client and break
# its streams in chosen ways.
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
INTERNAL_ERROR = 2
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# HPACK: `:status: 200` (static index 8), then content-type (static name 31) as a literal
# without indexing: 0x0f 0x10, length 16, "application/grpc".
GRPC_200 = b"\x88\x0f\x10\x10application/grpc"


def frame(ftype, flags, stream, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, stream) + payload


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def raw_conn(sock, mode, rec):
    try:
        if read_exact(sock, len(PREFACE)) != PREFACE:
            return
        sock.sendall(frame(SETTINGS, 0, 0))
        while True:
            head = read_exact(sock, 9)
            hi, lo, ftype, flags, stream = struct.unpack(">BHBBI", head)
            payload = read_exact(sock, (hi << 16) | lo)
            stream &= 0x7FFFFFFF
            if ftype == SETTINGS and not flags & ACK:
                sock.sendall(frame(SETTINGS, ACK, 0))
            elif ftype == PING and not flags & ACK:
                sock.sendall(frame(PING, ACK, 0, payload))
            elif ftype == GOAWAY:
                return
            elif ftype in (HEADERS, CONTINUATION) and flags & END_HEADERS:
                rec.record({"kind": "raw", "mode": mode, "stream": stream})
            if ftype in (HEADERS, DATA) and flags & END_STREAM:
                # Break the stream once the request has ended, so the gateway has
                # written the whole body: a reset that lands while the body is still
                # going out reaches the proxy as a write to a closed stream, without
                # its reason (see the note at `remote_reset` in the gateway).
                if mode == "hang":
                    continue
                if mode == "close":
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                if mode in ("midreset", "midhang"):
                    msg = b"partial"
                    sock.sendall(
                        frame(HEADERS, END_HEADERS, stream, GRPC_200)
                        + frame(DATA, 0, stream, b"\x00" + struct.pack(">I", len(msg)) + msg)
                    )
                    if mode == "midhang":
                        continue
                    # The message must reach the client before the stream breaks.
                    time.sleep(0.2)
                sock.sendall(frame(RST_STREAM, 0, stream, struct.pack(">I", INTERNAL_ERROR)))
    except (EOFError, OSError):
        pass
    finally:
        sock.close()


def raw_h2(mode, rec):
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((peerlib.LOOPBACK, 0))
    lst.listen(64)

    def accept():
        while True:
            s, _ = lst.accept()
            threading.Thread(target=raw_conn, args=(s, mode, rec), daemon=True).start()

    threading.Thread(target=accept, name=f"raw-{mode}", daemon=True).start()
    return lst.getsockname()[1]


# ---------------------------------------------------------------- client


def channel(a, authority):
    import grpc

    opts = [("grpc.default_authority", authority), ("grpc.enable_retries", 0)]
    if a.ca:
        with open(a.ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        opts.append(("grpc.ssl_target_name_override", authority))
        return grpc.secure_channel(a.target, creds, options=opts)
    return grpc.insecure_channel(a.target, options=opts)


def result(name, call, messages, start, error=None):
    src = error if error is not None else call
    code = src.code()
    out = {
        "call": name,
        "code": code.name if code else None,
        "details": src.details(),
        "initial": md_dict(src.initial_metadata()) if hasattr(src, "initial_metadata") else {},
        "trailing": md_dict(src.trailing_metadata()),
        "messages": [m.decode(errors="replace") for m in messages],
        "ms": round((time.monotonic() - start) * 1000.0, 1),
    }
    return out


def unary(ch, method, req, name, timeout=30.0, metadata=()):
    fn = ch.unary_unary(f"/{SERVICE}/{method}" if "/" not in method else method, identity, identity)
    start = time.monotonic()
    try:
        resp, call = fn.with_call(req, timeout=timeout, metadata=metadata)
        return result(name, call, [resp], start)
    except Exception as e:  # grpc.RpcError is also the call
        return result(name, None, [], start, error=e)


def server_stream(ch, method, req, name, timeout=30.0):
    fn = ch.unary_stream(f"/{SERVICE}/{method}" if "/" not in method else method, identity, identity)
    start = time.monotonic()
    call = fn(req, timeout=timeout)
    got = []
    try:
        for m in call:
            got.append(m)
        return result(name, call, got, start)
    except Exception as e:
        return result(name, None, got, start, error=e)


def client_stream(ch, name):
    fn = ch.stream_unary(f"/{SERVICE}/Sum", identity, identity)
    start = time.monotonic()
    try:
        resp, call = fn.with_call(iter([b"1", b"2", b"3", b"4", b"30"]), timeout=30.0)
        return result(name, call, [resp], start)
    except Exception as e:
        return result(name, None, [], start, error=e)


def bidi(ch, name):
    """Each message is sent only after the answer to the one before arrived: the gateway
    must stream both ways at once (a proxy that buffers either side deadlocks here)."""
    import queue

    fn = ch.stream_stream(f"/{SERVICE}/Chat", identity, identity)
    q = queue.Queue()
    words = [b"one", b"two", b"three"]

    def requests():
        for w in words:
            yield w
            if q.get(timeout=20) is None:
                return

    start = time.monotonic()
    call = fn(requests(), timeout=30.0)
    got = []
    try:
        for m in call:
            got.append(m)
            q.put(m)
        return result(name, call, got, start)
    except Exception as e:
        q.put(None)
        return result(name, None, got, start, error=e)


def big(ch, name):
    """A 3 MiB message each way (over HTTP/2's flow-control windows): digests of what was
    sent and what came back, not the bytes."""
    import hashlib

    body = bytes(range(256)) * (3 * 4096)
    fn = ch.unary_unary(f"/{SERVICE}/Echo", identity, identity)
    start = time.monotonic()
    resp, call = fn.with_call(body, timeout=30.0)
    return {
        "call": name,
        "code": call.code().name,
        "sent": hashlib.sha256(body).hexdigest(),
        "received": hashlib.sha256(resp).hexdigest(),
        "size": len(resp),
        "ms": round((time.monotonic() - start) * 1000.0, 1),
    }


def bench(ch, name, n):
    """n unary calls one after another: latency percentiles (ms)."""
    fn = ch.unary_unary(f"/{SERVICE}/Echo", identity, identity)
    lat = []
    for _ in range(n):
        t = time.monotonic()
        fn(b"x" * 64, timeout=30.0)
        lat.append((time.monotonic() - t) * 1000.0)
    lat.sort()
    pick = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 3)
    return {"call": name, "code": "OK", "n": n, "p50": pick(0.5), "p99": pick(0.99)}


def run_client(a):
    ch = channel(a, a.authority)
    calls = {
        "unary": lambda: unary(ch, "Echo", b"hello", "unary", metadata=[("x-client", "c1")]),
        "server_stream": lambda: server_stream(ch, "Count", b"5", "server_stream"),
        "client_stream": lambda: client_stream(ch, "client_stream"),
        "bidi": lambda: bidi(ch, "bidi"),
        "fail": lambda: unary(ch, "Fail", b"", "fail"),
        "fail_after": lambda: server_stream(ch, "FailAfter", b"", "fail_after"),
        "sleep_ok": lambda: unary(ch, "Sleep", b"50", "sleep_ok", timeout=20.0),
        "deadline": lambda: unary(ch, "Sleep", b"3000", "deadline", timeout=0.5),
        "reset": lambda: unary(ch, "/reset.Before/Call", b"x", "reset"),
        "close": lambda: unary(ch, "/reset.Close/Call", b"x", "close"),
        "midreset": lambda: server_stream(ch, "/reset.Mid/Call", b"x", "midreset"),
        "denied": lambda: unary(ch, "/denied.Svc/Call", b"x", "denied"),
        "no_route": lambda: unary(channel(a, "nowhere.test"), "Echo", b"x", "no_route"),
        "big": lambda: big(ch, "big"),
        "bench": lambda: bench(ch, "bench", a.n),
    }
    for name in a.calls.split(","):
        print(json.dumps(calls[name](), sort_keys=True), flush=True)


def main():
    p = peerlib.base_args(__doc__.splitlines()[0])
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--target", help="client: host:port to dial")
    p.add_argument("--authority", default="grpc.test", help="client: :authority (and TLS name)")
    p.add_argument("--ca", help="client: dial TLS trusting this CA (PEM file)")
    p.add_argument("--calls", default="unary", help="client: comma-separated call names")
    p.add_argument("--n", type=int, default=200, help="client: calls for `bench`")
    a = p.parse_args()
    if a.mode == "server":
        peerlib.start_lifetime(a.max_seconds)
        serve(a)
    else:
        # The client's stdin may be closed from the start: only the deadline bounds it.
        def deadline():
            time.sleep(a.max_seconds)
            os._exit(3)

        threading.Thread(target=deadline, daemon=True).start()
        run_client(a)
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
