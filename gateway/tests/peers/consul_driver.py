"""Drives the official Consul client (py-consul) for the tests: each POST /call on the
control listener makes one client call and answers its result, so a test proves that a
stand-in answers what the real client sends and expects.

POST /call {"op": "agent.service.register", "args": [...], "kwargs": {...},
            "check": {"kind": "ttl", "args": ["30s"]}}
  -> {"ok": true, "result": ...} or {"ok": false, "error": "<exception type>: <text>"}
"check", when given, becomes kwargs["check"] = consul.Check.<kind>(*args).
"""

import json

import consul

import peerlib


def main():
    p = peerlib.base_args(__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="the Consul agent's HTTP port (on loopback)")
    p.add_argument("--token", default=None, help="ACL token the client sends")
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    recorder = peerlib.Recorder(a.record)
    client = consul.Consul(host=peerlib.LOOPBACK, port=a.port, token=a.token)

    class Control(peerlib.JsonHandler):
        def do_POST(self):
            if self.path != "/call":
                return self.reply(404, {"error": "not found"})
            call = json.loads(self.body() or b"{}")
            fn = client
            for part in call["op"].split("."):
                fn = getattr(fn, part)
            kwargs = dict(call.get("kwargs") or {})
            if call.get("check"):
                c = call["check"]
                kwargs["check"] = getattr(consul.Check, c["kind"])(*c.get("args", []))
            try:
                out = {"ok": True, "result": fn(*call.get("args", []), **kwargs)}
            except Exception as e:  # the client's own exceptions are the answer
                out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            recorder.record({"kind": "call", "op": call["op"], "out": out})
            self.reply(200, out)

    control = peerlib.serve_http(Control)
    peerlib.ready(control=control.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
