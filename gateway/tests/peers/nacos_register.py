"""Registers service instances in a Nacos server with the official Python SDK (PyPI
nacos-sdk-python), as applications do, for the gateway's registry tests.

`v1` uses the SDK's HTTP client (`nacos.NacosClient`): instances are ephemeral and kept
alive by the SDK's own heartbeat task (every --beat seconds). `v2` uses its gRPC naming
service (`v2.nacos.NacosNamingService`), one connection per instance, since Nacos 2
keeps one instance per service and connection.

Control listener (`control` in the READY line), JSON bodies, JSON answers:
  POST /register   {"service", "ip", "port", ["group", "weight", "metadata"]}
  POST /weight     {"service", "ip", "port", "weight", ["group"]}  (v1: the SDK's
                   modify call; v2: registers again with the new weight, as the SDK's
                   update does)
  POST /stop-beat  {"service", "ip", "port"}  (v1: the SDK's heartbeat task stops, so the
                   server marks the instance unhealthy after its beat timeout)
  POST /deregister {"service", "ip", "port", ["group"]}
Each answers {"ok": true} once the SDK call returned success, else 500 with the error.
"""

import asyncio
import json
import logging
import os
import sys
import threading
import traceback

import peerlib


# Named on every call: the SDK's register would otherwise send the cluster "None" and
# its modify none (Nacos's "DEFAULT"), and the modify would miss the instance.
CLUSTER = "DEFAULT"


class V1:
    def __init__(self, server, work, beat):
        import nacos

        self.beat = beat
        self.c = nacos.NacosClient(server, namespace="")
        # Snapshots and failover files default to the working directory.
        self.c.set_options(snapshot_base=os.path.join(work, "snapshot"),
                           failover_base=os.path.join(work, "failover"))

    def register(self, d):
        return self.c.add_naming_instance(
            d["service"], d["ip"], d["port"], cluster_name=CLUSTER,
            weight=float(d.get("weight", 1.0)), metadata=d.get("metadata") or None,
            group_name=d.get("group", "DEFAULT_GROUP"), heartbeat_interval=self.beat)

    def weight(self, d):
        return self.c.modify_naming_instance(
            d["service"], d["ip"], d["port"], cluster_name=CLUSTER,
            weight=float(d["weight"]), group_name=d.get("group", "DEFAULT_GROUP"))

    def stop_beat(self, d):
        # The SDK keys its heartbeat tasks by service#ip#port; stopping one is what a
        # hung or partitioned application looks like to the server.
        task = self.c.heartbeats.get("%s#%s#%s" % (d["service"], d["ip"], d["port"]))
        if task is None:
            return False
        task.stop()
        return True

    def deregister(self, d):
        return self.c.remove_naming_instance(
            d["service"], d["ip"], d["port"], cluster_name=CLUSTER,
            group_name=d.get("group", "DEFAULT_GROUP"))


class V2:
    def __init__(self, server, work):
        self.server = server
        self.work = work
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="sdk-loop", daemon=True).start()
        self.services = {}

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def naming_for(self, key):
        from v2.nacos import ClientConfigBuilder, GRPCConfig, NacosNamingService

        if key not in self.services:
            n = len(self.services)
            cfg = (ClientConfigBuilder().server_address(self.server).namespace_id("public")
                   .log_dir(os.path.join(self.work, f"logs-{n}"))
                   .cache_dir(os.path.join(self.work, f"cache-{n}"))
                   .log_level(logging.INFO).grpc_config(GRPCConfig(grpc_timeout=5000)).build())
            self.services[key] = await NacosNamingService.create_naming_service(cfg)
        return self.services[key]

    async def _register(self, d):
        from v2.nacos import RegisterInstanceParam

        naming = await self.naming_for((d["service"], d["ip"], d["port"]))
        return await naming.register_instance(RegisterInstanceParam(
            service_name=d["service"], group_name=d.get("group", "DEFAULT_GROUP"),
            ip=d["ip"], port=d["port"], weight=float(d.get("weight", 1.0)),
            metadata=d.get("metadata") or {}))

    def register(self, d):
        return self.run(self._register(d))

    def weight(self, d):
        return self.run(self._register(d))

    def stop_beat(self, d):
        raise ValueError("v2 instances have no heartbeat: their connection keeps them")

    async def _deregister(self, d):
        from v2.nacos import DeregisterInstanceParam

        naming = await self.naming_for((d["service"], d["ip"], d["port"]))
        return await naming.deregister_instance(DeregisterInstanceParam(
            service_name=d["service"], group_name=d.get("group", "DEFAULT_GROUP"),
            ip=d["ip"], port=d["port"]))

    def deregister(self, d):
        return self.run(self._deregister(d))


def main():
    p = peerlib.base_args(__doc__)
    p.add_argument("mode", choices=["v1", "v2"])
    p.add_argument("--server", required=True, help="the Nacos server's HOST:PORT (HTTP)")
    p.add_argument("--work", required=True, help="the SDK's cache, snapshot and log files")
    p.add_argument("--beat", type=float, default=1.0, help="v1 heartbeat interval, seconds")
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    rec = peerlib.Recorder(a.record)
    sdk = V1(a.server, a.work, a.beat) if a.mode == "v1" else V2(a.server, a.work)
    actions = {"/register": sdk.register, "/weight": sdk.weight,
               "/stop-beat": sdk.stop_beat, "/deregister": sdk.deregister}
    lock = threading.Lock()

    class Control(peerlib.JsonHandler):
        def do_POST(self):
            act = actions.get(self.path)
            if act is None:
                self.reply(404, {"error": "not found"})
                return
            d = json.loads(self.body() or b"{}")
            try:
                with lock:
                    ok = act(d)
            except Exception as e:
                traceback.print_exc()
                self.reply(500, {"error": f"{type(e).__name__}: {e}"})
                return
            rec.record({"action": self.path, "request": d, "ok": bool(ok)})
            self.reply(200 if ok else 500, {"ok": bool(ok)})

    srv = peerlib.serve_http(Control)
    peerlib.ready(control=srv.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
