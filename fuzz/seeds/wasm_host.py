#!/usr/bin/env python3
"""Writes the wasm_host target's seeds (fuzz/corpus/wasm_host/): scripts for the driver
module of gateway/src/fuzzing/wasm_host.rs (its module doc gives the format), written as
named host calls. FUNCTIONS is the op order, as `gateway::fuzzing::wasm_host_functions()`
lists it; refresh it when the host links new functions (seeds stay valid inputs either
way, they only call other functions).

Usage: python3 fuzz/seeds/wasm_host.py   (from the repository root)
"""
import os
import struct

FUNCTIONS = """
env.proxy_add_header_map_value env.proxy_call_foreign_function env.proxy_clear_route_cache
env.proxy_close_stream env.proxy_continue_request env.proxy_continue_response
env.proxy_continue_stream env.proxy_define_metric env.proxy_dequeue_shared_queue env.proxy_done
env.proxy_enqueue_shared_queue env.proxy_get_buffer_bytes env.proxy_get_buffer_status
env.proxy_get_configuration env.proxy_get_current_time_nanoseconds
env.proxy_get_header_map_pairs env.proxy_get_header_map_size env.proxy_get_header_map_value
env.proxy_get_log_level env.proxy_get_metric env.proxy_get_property env.proxy_get_shared_data
env.proxy_get_status env.proxy_get_upstream_hosts env.proxy_grpc_call env.proxy_grpc_cancel
env.proxy_grpc_close env.proxy_grpc_send env.proxy_grpc_stream env.proxy_http_call
env.proxy_increment_metric env.proxy_inject_encoded_data_to_filter_chain env.proxy_log
env.proxy_record_metric env.proxy_redis_call env.proxy_redis_init
env.proxy_register_shared_queue env.proxy_remove_header_map_value
env.proxy_replace_header_map_value env.proxy_resolve_shared_queue env.proxy_send_local_response
env.proxy_set_buffer_bytes env.proxy_set_effective_context env.proxy_set_header_map_pairs
env.proxy_set_property env.proxy_set_shared_data env.proxy_set_tick_period_milliseconds
env.proxy_set_upstream_override_host
args_get args_sizes_get clock_res_get clock_time_get environ_get environ_sizes_get fd_advise
fd_allocate fd_close fd_datasync fd_fdstat_get fd_fdstat_set_flags fd_fdstat_set_rights
fd_filestat_get fd_filestat_set_size fd_filestat_set_times fd_pread fd_prestat_dir_name
fd_prestat_get fd_pwrite fd_read fd_readdir fd_renumber fd_seek fd_sync fd_tell fd_write
path_create_directory path_filestat_get path_filestat_set_times path_link path_open
path_readlink path_remove_directory path_rename path_symlink path_unlink_file poll_oneoff
proc_exit proc_raise random_get sched_yield sock_accept sock_recv sock_send sock_shutdown
""".split()
OPS = {name.removeprefix("env."): i for i, name in enumerate(FUNCTIONS)}

# Callbacks, in the order the driver makes them (each runs one segment); after the
# response body come the answers to the calls made so far, one callback each, then tick,
# queue ready, done, log and delete.
CONFIGURE, CONTEXT, REQ_HEADERS, REQ_BODY, RESP_HEADERS, RESP_BODY, FIRST_ANSWER = range(7)


class Script:
    def __init__(self):
        self.segments = []
        self.data = []  # (label, bytes)

    def blob(self, b):
        self.data.append(b if isinstance(b, bytes) else b.encode())
        return ("data", len(self.data) - 1)

    def text(self, b):
        """A blob and its length, as `(ptr, len)` arguments."""
        b = b if isinstance(b, bytes) else b.encode()
        return self.blob(b), L(len(b))

    def call(self, seg, name, *args):
        while len(self.segments) <= seg:
            self.segments.append([])
        self.segments[seg].append((OPS[name], args))

    def render(self):
        ops_len = sum(1 + 5 * len(a) for s in self.segments for _, a in s)
        pad = 32
        offsets, off = [], ops_len + pad
        for b in self.data:
            offsets.append(off)
            off += len(b)
        out = bytearray()
        for seg in self.segments:
            for op, args in seg:
                out.append(op)
                for a in args:
                    mode, v = a
                    if mode == "data":
                        mode, v = 1, offsets[v]
                    out.append(mode)
                    out += struct.pack("<I", v & 0xFFFFFFFF)
            out.append(0xFF)
        assert len(self.segments) < pad
        out += b"\xff" * (pad - len(self.segments))
        for b in self.data:
            out += b
        assert len(out) == off
        return bytes(out)


def L(v):  # the value itself
    return (0, v)


def X(off):  # a pointer into the scratch area (out-parameters)
    return (2, off)


def N(v):  # a small number (sizes)
    return (3, v)


def D(off):  # the word a call wrote at scratch offset `off`
    return (4, off)


def E(back):  # `back` bytes below the end of linear memory
    return (5, back)


def pairs(items):
    head = struct.pack("<I", len(items))
    body = b""
    for k, v in items:
        head += struct.pack("<II", len(k), len(v))
        body += k + b"\0" + v + b"\0"
    return head + body


seeds = {}

# A plugin reading and editing headers as the SDKs do.
s = Script()
k, kl = s.text(b":path")
s.call(REQ_HEADERS, "proxy_get_header_map_value", L(0), k, kl, X(0), X(4))
s.call(REQ_HEADERS, "proxy_log", L(2), D(0), D(4))
k2, k2l = s.text(b"x-plugin")
v2, v2l = s.text(b"on")
s.call(REQ_HEADERS, "proxy_add_header_map_value", L(0), k2, k2l, v2, v2l)
k3, k3l = s.text(b"cookie")
s.call(REQ_HEADERS, "proxy_remove_header_map_value", L(0), k3, k3l)
k4, k4l = s.text(b"server")
v4, v4l = s.text(b"gateway")
s.call(RESP_HEADERS, "proxy_replace_header_map_value", L(2), k4, k4l, v4, v4l)
s.call(RESP_HEADERS, "proxy_get_header_map_pairs", L(2), X(8), X(12))
s.call(RESP_HEADERS, "proxy_get_header_map_size", L(0), X(16))
seeds["headers"] = s

# Pseudo-headers rewritten (route keys), and a header value with CR LF (must be refused).
s = Script()
p, pl = s.text(b":path")
nv, nvl = s.text(b"/rewritten?x=1")
s.call(REQ_HEADERS, "proxy_replace_header_map_value", L(0), p, pl, nv, nvl)
a, al = s.text(b":authority")
av, avl = s.text(b"other.test:8080")
s.call(REQ_HEADERS, "proxy_replace_header_map_value", L(0), a, al, av, avl)
m, ml = s.text(b":method")
mv, mvl = s.text(b"PUT")
s.call(REQ_HEADERS, "proxy_replace_header_map_value", L(0), m, ml, mv, mvl)
bad, badl = s.text(b"x-evil")
bv, bvl = s.text(b"a\r\nInjected: 1")
s.call(REQ_HEADERS, "proxy_add_header_map_value", L(0), bad, badl, bv, bvl)
st, stl = s.text(b":status")
sv, svl = s.text(b"201")
s.call(RESP_HEADERS, "proxy_replace_header_map_value", L(2), st, stl, sv, svl)
seeds["pseudo_headers"] = s

# Whole header maps replaced from serialized pairs.
s = Script()
pr = pairs([(b":method", b"GET"), (b":path", b"/p"), (b":authority", b"h.test"), (b"x-a", b"1")])
pp = s.blob(pr)
s.call(REQ_HEADERS, "proxy_set_header_map_pairs", L(0), pp, L(len(pr)))
pr2 = pairs([(b"content-type", b"text/plain"), (b"x-b", b"")])
pp2 = s.blob(pr2)
s.call(RESP_HEADERS, "proxy_set_header_map_pairs", L(2), pp2, L(len(pr2)))
# Pairs that claim more than they hold.
bogus = struct.pack("<I", 0x7FFFFFFF) + struct.pack("<II", 5, 0xFFFFFFF0) + b"x\0"
bp = s.blob(bogus)
s.call(REQ_HEADERS, "proxy_set_header_map_pairs", L(0), bp, L(len(bogus)))
seeds["header_pairs"] = s

# Bodies read and replaced, and the plugin configuration read again.
s = Script()
s.call(CONFIGURE, "proxy_get_configuration", X(0), X(4))
s.call(REQ_BODY, "proxy_get_buffer_status", L(0), X(8), X(12))
s.call(REQ_BODY, "proxy_get_buffer_bytes", L(0), L(0), L(64), X(16), X(20))
nb = s.blob(b'{"name":"changed"}')
s.call(REQ_BODY, "proxy_set_buffer_bytes", L(0), L(0), L(0xFFFFFFFF), nb, L(18))
s.call(RESP_BODY, "proxy_get_buffer_bytes", L(1), L(4), L(8), X(24), X(28))
s.call(RESP_BODY, "proxy_set_buffer_bytes", L(1), L(100), L(5), nb, L(18))
seeds["bodies"] = s

# Properties: request facts, plugin facts, set and read back.
s = Script()
for i, path in enumerate([b"request\0path", b"request\0headers\0host", b"source\0address",
                          b"route_name", b"plugin_vm_memory", b"cluster_name",
                          b"request\0time", b"connection\0id", b"upstream\0address"]):
    pb = s.blob(path)
    s.call(REQ_HEADERS, "proxy_get_property", pb, L(len(path)), X(8 * i), X(8 * i + 4))
sp = s.blob(b"x\0y")
spv = s.blob(b"v")
s.call(REQ_HEADERS, "proxy_set_property", sp, L(3), spv, L(1))
s.call(RESP_HEADERS, "proxy_get_property", sp, L(3), X(100), X(104))
rb = s.blob(b"wasm_need_rebuild")
tv = s.blob(b"true")
s.call(RESP_BODY, "proxy_set_property", rb, L(17), tv, L(4))
seeds["properties"] = s

# Two HTTP calls (one with its token pointer at the end of memory), the first answer read
# in its callback.
s = Script()
cl = s.blob(b"outbound|80||auth.static")
hp = pairs([(b":method", b"GET"), (b":path", b"/check"), (b":authority", b"auth")])
hb = s.blob(hp)
body = s.blob(b"ping")
s.call(REQ_HEADERS, "proxy_http_call", cl, L(24), hb, L(len(hp)), body, L(4), hb, L(0), L(500), X(0))
s.call(REQ_HEADERS, "proxy_http_call", cl, L(24), hb, L(len(hp)), body, L(4), hb, L(0), L(0), E(2))
s.call(FIRST_ANSWER, "proxy_get_header_map_pairs", L(6), X(8), X(12))
s.call(FIRST_ANSWER, "proxy_get_buffer_bytes", L(4), L(0), L(100), X(16), X(20))
s.call(FIRST_ANSWER, "proxy_get_header_map_value", L(7), cl, L(11), X(40), X(44))
s.call(FIRST_ANSWER, "proxy_get_status", X(24), X(28), X(32))
s.call(FIRST_ANSWER, "proxy_http_call", cl, L(24), hb, L(len(hp)), body, L(4), hb, L(0), L(500), X(0))
s.call(FIRST_ANSWER, "proxy_continue_stream", L(0))
seeds["http_call"] = s

# Shared data (with CAS) and shared queues.
s = Script()
kk = s.blob(b"counter")
vv = s.blob(b"42")
s.call(CONFIGURE, "proxy_set_shared_data", kk, L(7), vv, L(2), L(0))
s.call(REQ_HEADERS, "proxy_get_shared_data", kk, L(7), X(0), X(4), X(8))
s.call(REQ_HEADERS, "proxy_set_shared_data", kk, L(7), vv, L(2), D(8))
s.call(REQ_HEADERS, "proxy_set_shared_data", kk, L(7), vv, L(2), L(12345))
qn = s.blob(b"events")
vm = s.blob(b"fuzz.driver")
s.call(CONFIGURE, "proxy_register_shared_queue", qn, L(6), X(16))
s.call(REQ_BODY, "proxy_resolve_shared_queue", vm, L(11), qn, L(6), X(20))
s.call(REQ_BODY, "proxy_enqueue_shared_queue", D(20), vv, L(2))
s.call(RESP_HEADERS, "proxy_dequeue_shared_queue", D(16), X(24), X(28))
s.call(RESP_HEADERS, "proxy_dequeue_shared_queue", L(999), X(24), X(28))
seeds["shared"] = s

# Metrics of every kind.
s = Script()
for kind, name in [(0, b"fuzz_counter"), (1, b"fuzz_gauge"), (2, b"fuzz_histogram")]:
    nb = s.blob(name)
    s.call(CONFIGURE, "proxy_define_metric", L(kind), nb, L(len(name)), X(4 * kind))
s.call(REQ_HEADERS, "proxy_increment_metric", D(0), L(5))
s.call(REQ_HEADERS, "proxy_increment_metric", D(4), L(0xFFFFFFFF))
s.call(REQ_HEADERS, "proxy_record_metric", D(8), L(250))
s.call(REQ_HEADERS, "proxy_record_metric", L(77), L(1))
s.call(REQ_HEADERS, "proxy_get_metric", D(0), X(16))
bad = s.blob(b"bad name with spaces")
s.call(REQ_HEADERS, "proxy_define_metric", L(9), bad, L(20), X(24))
seeds["metrics"] = s

# A local reply from the request headers, then the response callbacks.
s = Script()
det = s.blob(b"denied")
bod = s.blob(b"forbidden by plugin")
hp = pairs([(b"content-type", b"text/plain"), (b"x-reason", b"fuzz")])
hb = s.blob(hp)
s.call(REQ_HEADERS, "proxy_send_local_response", L(403), det, L(6), bod, L(19), hb, L(len(hp)), L(-1))
s.call(REQ_HEADERS, "proxy_send_local_response", L(99999), det, L(6), bod, L(19), hb, L(3), L(0))
s.call(RESP_HEADERS, "proxy_close_stream", L(1))
seeds["local_reply"] = s

# Out-of-bounds pointers and sizes on every kind of argument.
s = Script()
s.call(REQ_HEADERS, "proxy_get_header_map_value", L(0), E(2), L(100), X(0), X(4))
s.call(REQ_HEADERS, "proxy_get_header_map_value", L(0), L(0xFFFFFFF0), L(0xFFFFFFFF), X(0), X(4))
k, kl = s.text(b"host")
s.call(REQ_HEADERS, "proxy_get_header_map_value", L(0), k, kl, E(2), E(1))
s.call(REQ_HEADERS, "proxy_get_header_map_value", L(99), k, kl, X(0), X(4))
s.call(REQ_HEADERS, "proxy_add_header_map_value", L(0), k, kl, L(0x7FFFFFFF), L(0x7FFFFFFF))
s.call(REQ_HEADERS, "proxy_log", L(7), E(0), L(0x10000))
s.call(REQ_HEADERS, "proxy_log", L(-1), k, L(0))
s.call(REQ_BODY, "proxy_set_buffer_bytes", L(0), L(0x7FFFFFFF), L(0x7FFFFFFF), E(8), L(64))
s.call(REQ_BODY, "proxy_get_buffer_bytes", L(0), L(0xFFFFFFFF), L(0xFFFFFFFF), X(0), X(4))
s.call(REQ_BODY, "proxy_get_buffer_bytes", L(12), L(0), L(10), X(0), X(4))
s.call(RESP_HEADERS, "proxy_get_property", L(0xFFFFFFFF), L(2), X(0), X(4))
s.call(RESP_HEADERS, "proxy_set_property", k, kl, E(3), L(4096))
s.call(RESP_HEADERS, "proxy_get_header_map_pairs", L(2), E(4), E(0))
s.call(RESP_BODY, "proxy_get_current_time_nanoseconds", E(3))
s.call(RESP_BODY, "proxy_get_log_level", L(0xFFFFFFFC))
seeds["out_of_bounds"] = s

# WASI as plugins use it, then with bad iovecs and buffers.
s = Script()
s.call(CONFIGURE, "environ_sizes_get", X(0), X(4))
s.call(CONFIGURE, "args_sizes_get", X(8), X(12))
s.call(CONFIGURE, "clock_time_get", L(0), L(1000), X(16))
s.call(CONFIGURE, "random_get", X(32), L(16))
s.call(REQ_HEADERS, "fd_write", L(1), X(32), L(1), X(48))
s.call(REQ_HEADERS, "fd_write", L(2), E(4), L(0x10000000), X(48))
s.call(REQ_HEADERS, "fd_write", L(9), X(32), L(1), X(48))
s.call(REQ_HEADERS, "random_get", E(8), L(64))
s.call(REQ_HEADERS, "environ_get", E(4), E(2))
s.call(REQ_HEADERS, "fd_read", L(0), X(0), L(1), X(4))
s.call(REQ_HEADERS, "poll_oneoff", X(0), X(64), L(1), X(128))
s.call(REQ_HEADERS, "poll_oneoff", E(16), E(8), L(0x1000), X(128))
s.call(REQ_HEADERS, "fd_fdstat_get", L(1), E(2))
s.call(REQ_HEADERS, "path_open", L(3), L(0), X(0), L(4), L(0), L(0), L(0), L(0), X(8))
s.call(RESP_BODY, "sched_yield")
seeds["wasi"] = s

# A plugin that exits (Go's panic path) in the middle of a stream.
s = Script()
msg = s.blob(b"panic: runtime error")
s.call(REQ_HEADERS, "fd_write", L(2), X(0), L(0), X(8))
s.call(REQ_BODY, "proxy_log", L(4), msg, L(20))
s.call(REQ_BODY, "proc_exit", L(2))
seeds["exit"] = s

# Redis: init of known and unknown clusters, then calls.
s = Script()
c1 = s.blob(b"outbound|6379||redis.static?db=2")
c2 = s.blob(b"outbound|6379||unknown.static")
user = s.blob(b"default")
pw = s.blob(b"secret")
s.call(CONFIGURE, "proxy_redis_init", c1, L(33), user, L(7), pw, L(6), L(1000))
s.call(CONFIGURE, "proxy_redis_init", c2, L(29), L(0), L(0), L(0), L(0), L(0))
cmd = s.blob(b"*2\r\n$4\r\nINCR\r\n$3\r\nkey\r\n")
part = s.blob(b"*2\r\n$4\r\nINCR\r\n")
s.call(REQ_HEADERS, "proxy_redis_call", c1, L(33), cmd, L(24), X(0))
s.call(REQ_HEADERS, "proxy_redis_call", c1, L(33), part, L(14), X(4))
s.call(REQ_HEADERS, "proxy_redis_call", c2, L(29), cmd, L(24), E(2))
seeds["redis"] = s

# Context juggling: effective context, done, continue, tick, foreign functions.
s = Script()
s.call(CONFIGURE, "proxy_set_tick_period_milliseconds", L(20))
s.call(REQ_HEADERS, "proxy_set_effective_context", L(1))
s.call(REQ_HEADERS, "proxy_continue_stream", L(0))
s.call(REQ_HEADERS, "proxy_set_effective_context", L(12345))
s.call(REQ_HEADERS, "proxy_get_header_map_size", L(0), X(0))
s.call(REQ_HEADERS, "proxy_set_effective_context", L(2))
s.call(REQ_HEADERS, "proxy_continue_request")
s.call(REQ_HEADERS, "proxy_clear_route_cache")
ff = s.blob(b"get_log_level")
ff2 = s.blob(b"set_global_max_requests_per_io_cycle")
arg = s.blob(struct.pack("<Q", 1000))
s.call(REQ_BODY, "proxy_call_foreign_function", ff, L(13), L(0), L(0), X(8), X(12))
s.call(REQ_BODY, "proxy_call_foreign_function", ff2, L(36), arg, L(8), X(8), X(12))
s.call(RESP_HEADERS, "proxy_continue_response")
s.call(RESP_HEADERS, "proxy_done")
s.call(RESP_BODY, "proxy_grpc_call", L(0), L(0), L(0), L(0), L(0), L(0), L(0), L(0), L(0), L(0), L(0), L(0), X(0))
s.call(RESP_BODY, "proxy_get_upstream_hosts", X(0), X(4))
seeds["contexts"] = s

# Re-entrant allocation: a large value makes the allocator grow memory mid-call.
s = Script()
big = s.blob(b"x-big")
s.call(REQ_HEADERS, "proxy_add_header_map_value", L(0), big, L(5), L(65536), L(60000))
s.call(REQ_HEADERS, "proxy_get_header_map_value", L(0), big, L(5), X(0), X(4))
s.call(REQ_HEADERS, "proxy_get_header_map_pairs", L(0), X(8), X(12))
s.call(REQ_BODY, "proxy_set_buffer_bytes", L(0), L(0), L(0), L(65536), L(0x200000))
s.call(REQ_BODY, "proxy_get_buffer_bytes", L(0), L(0), L(0x7FFFFFFF), X(16), X(20))
seeds["growth"] = s

out = "fuzz/corpus/wasm_host"
os.makedirs(out, exist_ok=True)
for name, script in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(script.render())
print(f"{len(seeds)} seeds in {out}")
