"""A SkyWalking OAP stand-in: the gRPC services an agent reports to, built on the protocol
stubs shipped in apache-skywalking 1.2.0 (`skywalking.protocol`).

Serves `skywalking.v3.TraceSegmentReportService` (collect, collectInSync), the same
service without a package (the deprecated path cpp2sky's own client uses) and
`skywalking.v3.ManagementService` (reportInstanceProperties, keepAlive: the Python agent's
heartbeat). Records, one JSON line each:
  {"kind": "segment", "service": <gRPC service path>, "method": "collect"|"collectInSync",
   "authentication": <metadata value or null>, "metadata": {...}, "segment": SegmentObject}
  {"kind": "properties"|"keepalive", "authentication": ..., "metadata": ..., "message": ...}
  {"kind": "rejected", "service": ..., "method": ..., "code": <gRPC code>}  (fault injected)
Messages are proto3 JSON with every field present (so spanId 0 and spanType "Entry" show);
enums are names and int64 values (times) are decimal strings, as OAP's HTTP API takes them.

READY {"grpc": port, "control": port}; POST /fault on the control port sets
{"grpc_code": "UNAVAILABLE", "delay_ms": N}.
"""

from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToDict

import peerlib
from skywalking.protocol.common.Command_pb2 import Commands
from skywalking.protocol.language_agent import Tracing_pb2_grpc, TracingCompat_pb2_grpc
from skywalking.protocol.management import Management_pb2_grpc


def to_dict(msg):
    return MessageToDict(msg, always_print_fields_with_no_presence=True)


def call_meta(context):
    md = {}
    for k, v in context.invocation_metadata():
        if not k.endswith("-bin"):
            md[k] = v
    return md


class Segments:
    def __init__(self, service, rec, fault):
        self.service = service
        self.rec = rec
        self.fault = fault

    def _admit(self, method, context):
        code = self.fault.snapshot()["grpc_code"]
        if code:
            self.rec.record({"kind": "rejected", "service": self.service, "method": method, "code": code})
        peerlib.grpc_abort_if_faulted(self.fault, context)

    def _record(self, method, seg, md):
        self.rec.record(
            {
                "kind": "segment",
                "service": self.service,
                "method": method,
                "authentication": md.get("authentication"),
                "metadata": md,
                "segment": to_dict(seg),
            }
        )

    def collect(self, request_iterator, context):
        self._admit("collect", context)
        md = call_meta(context)
        # Recorded as each message arrives: agents keep one stream open for many segments.
        for seg in request_iterator:
            self._record("collect", seg, md)
        return Commands()

    def collectInSync(self, request, context):
        self._admit("collectInSync", context)
        md = call_meta(context)
        for seg in request.segments:
            self._record("collectInSync", seg, md)
        return Commands()


def segment_servicer(base, service, rec, fault):
    class S(base):
        pass

    impl = Segments(service, rec, fault)
    s = S()
    s.collect = impl.collect
    s.collectInSync = impl.collectInSync
    return s


class Management(Management_pb2_grpc.ManagementServiceServicer):
    def __init__(self, rec, fault):
        self.rec = rec
        self.fault = fault

    def _record(self, kind, request, context):
        peerlib.grpc_abort_if_faulted(self.fault, context)
        md = call_meta(context)
        self.rec.record(
            {
                "kind": kind,
                "authentication": md.get("authentication"),
                "metadata": md,
                "message": to_dict(request),
            }
        )
        return Commands()

    def reportInstanceProperties(self, request, context):
        return self._record("properties", request, context)

    def keepAlive(self, request, context):
        return self._record("keepalive", request, context)


def main():
    p = peerlib.base_args(__doc__)
    p.add_argument("--port", type=int, default=0)
    peerlib.add_fault_args(p)
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    rec = peerlib.Recorder(a.record)
    fault = peerlib.fault_from_args(a)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    Tracing_pb2_grpc.add_TraceSegmentReportServiceServicer_to_server(
        segment_servicer(
            Tracing_pb2_grpc.TraceSegmentReportServiceServicer,
            "skywalking.v3.TraceSegmentReportService",
            rec,
            fault,
        ),
        server,
    )
    TracingCompat_pb2_grpc.add_TraceSegmentReportServiceServicer_to_server(
        segment_servicer(
            TracingCompat_pb2_grpc.TraceSegmentReportServiceServicer,
            "TraceSegmentReportService",
            rec,
            fault,
        ),
        server,
    )
    Management_pb2_grpc.add_ManagementServiceServicer_to_server(Management(rec, fault), server)
    port = server.add_insecure_port(f"{peerlib.LOOPBACK}:{a.port}")
    if port == 0:
        raise SystemExit(f"cannot bind {peerlib.LOOPBACK}:{a.port}")
    server.start()
    control = peerlib.serve_control(fault)
    peerlib.ready(grpc=port, control=control.server_address[1])
    server.wait_for_termination()


if __name__ == "__main__":
    main()
