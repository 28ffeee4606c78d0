"""One instance registered by the official Eureka client (py-eureka-client): it
registers, heartbeats every --renew seconds and fetches the registry (full, then
deltas) as the client does on its own. The control listener drives it:

POST /status {"status": "OUT_OF_SERVICE"}  the client's status update (an override)
POST /delete-override                      the client's override removal
POST /stop                                 the client's stop (DOWN, then cancel); exits
POST /vanish                               exits without a word (the lease expires)
GET  /apps                                 what the client discovered:
                                           {"APP": [[instanceId, status, port], ...]}
"""

import asyncio
import json
import os
import threading

import py_eureka_client.eureka_client as eureka_client

import peerlib


def main():
    p = peerlib.base_args(__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="the Eureka server's URL, .../eureka")
    p.add_argument("--app", required=True)
    p.add_argument("--id", required=True, help="instance id")
    p.add_argument("--ip", default=peerlib.LOOPBACK)
    p.add_argument("--port", type=int, required=True, help="the instance's port")
    p.add_argument("--renew", type=int, default=1, help="heartbeat and fetch interval, seconds")
    p.add_argument("--duration", type=int, default=3, help="lease duration, seconds")
    p.add_argument("--metadata", default="{}", help="JSON object")
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    recorder = peerlib.Recorder(a.record)
    client = eureka_client.EurekaClient(
        eureka_server=a.server, app_name=a.app, instance_id=a.id, instance_host=a.ip,
        instance_ip=a.ip, instance_port=a.port, renewal_interval_in_secs=a.renew,
        duration_in_secs=a.duration, metadata=json.loads(a.metadata),
    )
    lock = threading.Lock()

    def run(coro):
        # The client's calls are coroutines; each control call gets its own loop, as the
        # client's heartbeat thread does.
        with lock:
            loop = asyncio.new_event_loop()
            try:
                return loop.run_until_complete(coro)
            finally:
                loop.close()

    run(client.start())

    class Control(peerlib.JsonHandler):
        def do_GET(self):
            if self.path != "/apps":
                return self.reply(404, {"error": "not found"})
            apps = client.applications
            out = {} if apps is None else {
                app.name: [[i.instanceId, i.status, i.port.port] for i in app.instances]
                for app in apps.applications
            }
            self.reply(200, out)

        def do_POST(self):
            body = json.loads(self.body() or b"{}")
            recorder.record({"kind": "control", "path": self.path, "body": body})
            if self.path == "/status":
                run(client.status_update(body["status"]))
            elif self.path == "/delete-override":
                run(client.delete_status_override())
            elif self.path == "/stop":
                run(client.stop())
                self.reply(200, {"ok": True})
                os._exit(0)
            elif self.path == "/vanish":
                self.reply(200, {"ok": True})
                os._exit(0)
            else:
                return self.reply(404, {"error": "not found"})
            self.reply(200, {"ok": True})

    control = peerlib.serve_http(Control)
    peerlib.ready(control=control.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
