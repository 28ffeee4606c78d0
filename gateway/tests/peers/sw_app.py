"""An HTTP upstream traced by the real SkyWalking Python agent (apache-skywalking 1.2.0).

The agent reports over gRPC to `--collector` (sw_collector.py, or the real OAP); its
`http_server` plugin (the only plugin enabled) opens an Entry span per request, reading
`sw8` and referencing the caller's segment and span when the header is valid by the
agent's rules.

Every answer is JSON: {"app", "method", "path", "headers" (lowercase names),
"sw": {"trace_id", "segment_id"} of this request's segment, or null if the agent
ignored the request}.
Paths `/status/<code>...` answer with that status; `/delay/<ms>...` wait first.

READY {"http": port}.
"""

import time

import peerlib


def main():
    p = peerlib.base_args(__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--collector", required=True, help="host:port of the gRPC collector")
    p.add_argument("--service", default="backend-app")
    p.add_argument("--instance", required=True)
    p.add_argument("--authentication", default="", help="token sent as `authentication` metadata")
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)

    # Configured before start(): start() installs the plugins and opens the channel.
    from skywalking import agent, config

    config.init(
        agent_collector_backend_services=a.collector,
        agent_protocol="grpc",
        agent_name=a.service,
        agent_instance_name=a.instance,
        agent_authentication=a.authentication,
        # Only what the tests look at: segments and the heartbeat.
        agent_profile_active=False,
        agent_meter_reporter_active=False,
        agent_pvm_meter_reporter_active=False,
        agent_log_reporter_active=False,
        # Every plugin but http.server's: the others would trace the agent's own gRPC.
        agent_disable_plugins=[r"sw_(?!http_server$)"],
        # The agent ignores static-file suffixes (.js, .png...) by default; nothing here
        # should be. (An empty list would make its pattern match every path.)
        agent_ignore_suffix=".sw-app-ignores-nothing",
        agent_logging_level="INFO",
    )
    agent.start()

    from skywalking.trace.context import SpanContext
    from skywalking.trace.span import NoopSpan

    class App(peerlib.JsonHandler):
        def _answer(self):
            self.body()
            path = self.path
            status = 200
            parts = path.split("?")[0].split("/")
            if len(parts) > 2 and parts[1] == "status" and parts[2].isdigit():
                status = int(parts[2])
            if len(parts) > 2 and parts[1] == "delay" and parts[2].isdigit():
                time.sleep(int(parts[2]) / 1000.0)
            # No active span: the agent ignored the request (e.g. an invalid sw8).
            span = SpanContext.peek()
            sw = None
            if span is not None and not isinstance(span, NoopSpan):
                seg = span.context.segment
                sw = {"trace_id": str(seg.related_traces[0]), "segment_id": str(seg.segment_id)}
            self.reply(
                status,
                {
                    "app": a.service,
                    "method": self.command,
                    "path": path,
                    "headers": peerlib.headers_dict(self.headers),
                    "sw": sw,
                },
            )

        # The plugin wraps each do_<METHOD> it finds on the handler.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    srv = peerlib.serve_http(App, a.port)
    peerlib.ready(http=srv.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
