"""A Zipkin v2 collector stand-in: `POST /api/v2/spans` with a JSON array of spans (gzip
accepted), answered 202 as Zipkin does.

Records one JSON line per accepted POST:
  {"kind": "post", "headers": {...} (lowercase), "spans": [span, ...]}
and, when a fault is set, {"kind": "rejected", "status": N, "headers": {...}} instead.
Faults: `--status N` / `--delay-ms N` from the start, or at run time
POST /fault {"status": N, "delay_ms": N} on the control port (status 0 = normal).

READY {"http": port, "control": port}.
"""

import json

import peerlib


def handler(rec, fault):
    class H(peerlib.JsonHandler):
        def do_POST(self):
            body = self.body()
            headers = peerlib.headers_dict(self.headers)
            if self.path.split("?")[0] != "/api/v2/spans":
                self.reply(404, {"error": "not found"})
                return
            fault.delay()
            status = fault.snapshot()["status"]
            if status:
                rec.record({"kind": "rejected", "status": status, "headers": headers})
                self.reply(status, {"error": "fault injected by the test"})
                return
            try:
                spans = json.loads(body)
                if not isinstance(spans, list):
                    raise ValueError("not a JSON array")
            except Exception as e:  # Zipkin answers 400 to a body it cannot read
                self.reply(400, {"error": str(e)})
                return
            rec.record({"kind": "post", "headers": headers, "spans": spans})
            self.reply(202, b"")

    return H


def main():
    p = peerlib.base_args(__doc__)
    p.add_argument("--port", type=int, default=0)
    peerlib.add_fault_args(p)
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    fault = peerlib.fault_from_args(a)
    srv = peerlib.serve_http(handler(peerlib.Recorder(a.record), fault), a.port)
    control = peerlib.serve_control(fault)
    peerlib.ready(http=srv.server_address[1], control=control.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
