"""An OTLP trace receiver: gRPC `opentelemetry.proto.collector.trace.v1.TraceService/Export`
(the generated stubs of opentelemetry-proto) and OTLP/HTTP `POST /v1/traces` with a
binary protobuf body (gzip accepted).

Records one JSON line per ResourceSpans received:
  {"kind": "resource_spans", "transport": "grpc"|"http", "metadata": {...} (gRPC
   metadata or HTTP headers, lowercase), "resource_spans": ResourceSpans}
in the OTLP/JSON encoding: lowerCamelCase keys, trace and span ids as lowercase hex,
enums as integers (kind 2 = SERVER, 3 = CLIENT), 64-bit integers as decimal strings.
A call refused by an injected fault records {"kind": "rejected", "transport": ...}.

READY {"grpc": port, "http": port, "control": port}; POST /fault on the control port
sets {"status": <HTTP status for /v1/traces>, "grpc_code": "UNAVAILABLE",
"delay_ms": N}.
"""

import base64
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

import peerlib

ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def hex_ids(v):
    """proto3 JSON writes bytes as base64; OTLP/JSON writes ids as hex."""
    if isinstance(v, dict):
        return {k: (base64.b64decode(x).hex() if k in ID_KEYS and isinstance(x, str) else hex_ids(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [hex_ids(x) for x in v]
    return v


def otlp_json(msg):
    return hex_ids(MessageToDict(msg, use_integers_for_enums=True))


class Receiver:
    def __init__(self, rec, fault):
        self.rec = rec
        self.fault = fault

    def accept(self, transport, request, metadata):
        for rs in request.resource_spans:
            self.rec.record(
                {
                    "kind": "resource_spans",
                    "transport": transport,
                    "metadata": metadata,
                    "resource_spans": otlp_json(rs),
                }
            )


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver):
        self.r = receiver

    def Export(self, request, context):
        code = self.r.fault.snapshot()["grpc_code"]
        if code:
            self.r.rec.record({"kind": "rejected", "transport": "grpc", "code": code})
        peerlib.grpc_abort_if_faulted(self.r.fault, context)
        md = {k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")}
        self.r.accept("grpc", request, md)
        return trace_service_pb2.ExportTraceServiceResponse()


def http_handler(receiver):
    class H(peerlib.JsonHandler):
        def do_POST(self):
            body = self.body()
            headers = peerlib.headers_dict(self.headers)
            if self.path.split("?")[0] != "/v1/traces":
                self.reply(404, {"error": "not found"})
                return
            ctype = headers.get("content-type", "").split(";")[0].strip()
            if ctype != "application/x-protobuf":
                self.reply(415, {"error": f"unsupported content-type {ctype!r}"})
                return
            receiver.fault.delay()
            status = receiver.fault.snapshot()["status"]
            if status:
                receiver.rec.record({"kind": "rejected", "transport": "http", "status": status})
                self.reply(status, b"", "application/x-protobuf")
                return
            req = trace_service_pb2.ExportTraceServiceRequest()
            try:
                req.ParseFromString(body)
            except Exception as e:  # a malformed body is a 400 in OTLP/HTTP
                self.reply(400, {"error": str(e)})
                return
            receiver.accept("http", req, headers)
            out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.reply(200, out, "application/x-protobuf")

    return H


def main():
    p = peerlib.base_args(__doc__)
    p.add_argument("--grpc-port", type=int, default=0)
    p.add_argument("--http-port", type=int, default=0)
    peerlib.add_fault_args(p)
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    receiver = Receiver(peerlib.Recorder(a.record), peerlib.fault_from_args(a))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(receiver), server)
    gport = server.add_insecure_port(f"{peerlib.LOOPBACK}:{a.grpc_port}")
    if gport == 0:
        raise SystemExit(f"cannot bind {peerlib.LOOPBACK}:{a.grpc_port}")
    server.start()
    http = peerlib.serve_http(http_handler(receiver), a.http_port)
    control = peerlib.serve_control(receiver.fault)
    peerlib.ready(grpc=gport, http=http.server_address[1], control=control.server_address[1])
    server.wait_for_termination()


if __name__ == "__main__":
    main()
