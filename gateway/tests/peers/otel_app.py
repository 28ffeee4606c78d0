"""An HTTP upstream instrumented with the OpenTelemetry Python SDK.

Each request's trace context is extracted with a composite of the W3C TraceContext and
B3 (multi-header and single `b3`) propagators, in `--propagators` order (a later one
overrides an earlier one when both find a context; default: W3C wins). A SERVER span is
started as the child of what was extracted (sampling: the SDK default, parent-based
always-on) and, when it is sampled, recorded to `--record` as
  {"kind": "span", "span": {"name", "trace_id", "span_id", "parent_span_id" (hex or
   null), "kind", "attributes", "status", "sampled"}}
and exported to `--otlp-grpc host:port` / `--otlp-http URL` when given.

Every answer is JSON: {"app", "method", "path", "headers" (lowercase names),
"extracted": {"tracecontext"|"b3"|"composite": {"trace_id", "span_id", "sampled",
"trace_state"} or null}, "trace_id", "parent_span_id" (the composite result, or null),
"span_id" (the server span's)}. `/status/<code>...` answers with that status;
`/delay/<ms>...` waits first.

READY {"http": port}.
"""

import time

from opentelemetry import trace
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import peerlib

PROPAGATORS = {
    "tracecontext": TraceContextTextMapPropagator,
    "b3multi": B3MultiFormat,
    "b3": B3SingleFormat,
}


def ctx_info(ctx):
    sc = trace.get_current_span(ctx).get_span_context()
    if not sc.is_valid:
        return None
    return {
        "trace_id": trace.format_trace_id(sc.trace_id),
        "span_id": trace.format_span_id(sc.span_id),
        "sampled": sc.trace_flags.sampled,
        "trace_state": sc.trace_state.to_header(),
    }


def attr_value(v):
    return list(v) if isinstance(v, tuple) else v


class Recording(SpanExporter):
    """Writes finished spans to the record file (the in-memory exporter's file twin)."""

    def __init__(self, rec):
        self.rec = rec

    def export(self, spans):
        for s in spans:
            self.rec.record(
                {
                    "kind": "span",
                    "span": {
                        "name": s.name,
                        "trace_id": trace.format_trace_id(s.context.trace_id),
                        "span_id": trace.format_span_id(s.context.span_id),
                        "parent_span_id": trace.format_span_id(s.parent.span_id) if s.parent else None,
                        "kind": s.kind.name,
                        "attributes": {k: attr_value(v) for k, v in (s.attributes or {}).items()},
                        "status": s.status.status_code.name,
                        "sampled": s.context.trace_flags.sampled,
                        "service": s.resource.attributes.get("service.name"),
                    },
                }
            )
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def main():
    p = peerlib.base_args(__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--service", default="otel-app")
    p.add_argument("--propagators", default="b3multi,b3,tracecontext")
    p.add_argument("--otlp-grpc", default="", help="host:port of an OTLP gRPC receiver")
    p.add_argument("--otlp-http", default="", help="URL of an OTLP/HTTP endpoint (…/v1/traces)")
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    rec = peerlib.Recorder(a.record)

    provider = TracerProvider(resource=Resource.create({"service.name": a.service}))
    # Simple (synchronous) processors: a span is exported as soon as it ends, so tests
    # need no flush interval.
    provider.add_span_processor(SimpleSpanProcessor(Recording(rec)))
    if a.otlp_grpc:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=a.otlp_grpc, insecure=True, timeout=5))
        )
    if a.otlp_http:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        provider.add_span_processor(SimpleSpanProcessor(HttpExporter(endpoint=a.otlp_http, timeout=5)))
    tracer = provider.get_tracer("otel_app")

    single = {name: cls() for name, cls in PROPAGATORS.items()}
    composite = CompositePropagator([PROPAGATORS[n.strip()]() for n in a.propagators.split(",") if n.strip()])

    class App(peerlib.JsonHandler):
        def _answer(self):
            self.body()
            headers = peerlib.headers_dict(self.headers)
            extracted = {"tracecontext": ctx_info(single["tracecontext"].extract(headers))}
            # B3 multi and single share one extractor (either header form); one entry.
            extracted["b3"] = ctx_info(single["b3multi"].extract(headers))
            ctx = composite.extract(headers)
            extracted["composite"] = ctx_info(ctx)
            path = self.path
            route = path.split("?")[0]
            parts = route.split("/")
            status = 200
            if len(parts) > 2 and parts[1] == "status" and parts[2].isdigit():
                status = int(parts[2])
            if len(parts) > 2 and parts[1] == "delay" and parts[2].isdigit():
                time.sleep(int(parts[2]) / 1000.0)
            with tracer.start_as_current_span(
                f"{self.command} {route}",
                context=ctx,
                kind=trace.SpanKind.SERVER,
                attributes={
                    "http.request.method": self.command,
                    "url.path": route,
                    "http.response.status_code": status,
                },
            ) as span:
                sc = span.get_span_context()
                c = extracted["composite"]
                self.reply(
                    status,
                    {
                        "app": a.service,
                        "method": self.command,
                        "path": path,
                        "headers": headers,
                        "extracted": extracted,
                        "trace_id": trace.format_trace_id(sc.trace_id),
                        "parent_span_id": c["span_id"] if c else None,
                        "span_id": trace.format_span_id(sc.span_id),
                    },
                )

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    srv = peerlib.serve_http(App, a.port)
    peerlib.ready(http=srv.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
