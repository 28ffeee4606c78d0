"""Drives a Nacos server with the official Python SDK (PyPI nacos-sdk-python), to show
that nacos_standin.py answers as Nacos does: `v1` uses its HTTP client
(`nacos.NacosClient`), `v2` its gRPC naming and config services (`v2.nacos`).

Each step checks what the SDK got back and prints `STEP <name> <json>` with what it saw;
any failed check raises, so the process exits non-zero with the traceback. The last line
is `DONE`. Waits are polls bounded by --wait seconds.

Usage: nacos_client.py v1|v2 --server 127.0.0.1:PORT [--user U --password P]
       [--work DIR]  (the SDK's snapshot, cache and log files go under DIR)
       [--control HOST:PORT]  (v2: the stand-in's control listener, to see its state)
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.request


def step(step_name, **seen):
    print("STEP " + step_name + " " + json.dumps(seen, sort_keys=True), flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def poll(what, fn, bound):
    """fn() until truthy, at most `bound` seconds."""
    deadline = time.monotonic() + bound
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {bound}s waiting for {what}")
        time.sleep(0.05)


# ---- v1: HTTP -----------------------------------------------------------------------

# The v1 clients made, so that their multiprocessing managers (a server process each
# config watcher starts) are shut down: they would outlive us, holding our stdout.
CLIENTS = []


def shutdown_v1_clients():
    for c in CLIENTS:
        mgr = getattr(c, "process_mgr", None)
        if mgr is not None:
            try:
                mgr.shutdown()
            except Exception:
                pass



def run_v1(a):
    import nacos
    from nacos.exception import NacosException

    def client(user=None, password=None):
        c = nacos.NacosClient(a.server, namespace="", username=user, password=password)
        # Snapshots and failover files default to the working directory.
        c.set_options(snapshot_base=os.path.join(a.work, "snapshot"),
                      failover_base=os.path.join(a.work, "failover"), pulling_timeout=30)
        return c

    c = client(a.user, a.password)
    CLIENTS.append(c)
    if a.user:
        c.get_access_token(force_refresh=True)
        check(c.token, "login gave a token")
        step("login", token_len=len(c.token), ttl=c.token_ttl)
        anon = client()
        try:
            anon.list_naming_instance("svc-a")
            raise AssertionError("a call without a token was accepted")
        except NacosException as e:
            check("Insufficient privilege" in str(e), f"403 for no token, got {e}")
            step("no_token_rejected", error=str(e))

    # naming
    check(c.add_naming_instance("svc-a", "10.0.0.1", 8080, cluster_name="c1", weight=2.5,
                                metadata={"version": "v1"}), "register 10.0.0.1")
    check(c.add_naming_instance("svc-a", "10.0.0.2", 8080, cluster_name="c1"), "register 10.0.0.2")
    check(c.add_naming_instance("svc-b", "10.0.0.3", 9090, group_name="G2"), "register svc-b in G2")
    got = c.list_naming_instance("svc-a")
    hosts = sorted((h["ip"], h["port"], h["weight"], h["clusterName"], h["healthy"]) for h in got["hosts"])
    check(got["name"] == "DEFAULT_GROUP@@svc-a", f"name is GROUP@@svc: {got['name']}")
    check(hosts == [("10.0.0.1", 8080, 2.5, "c1", True), ("10.0.0.2", 8080, 1.0, "c1", True)], f"hosts {hosts}")
    step("list", name=got["name"], hosts=got["hosts"])
    check(c.list_naming_instance("svc-a", clusters="nope")["hosts"] == [], "another cluster has none")
    g2 = c.list_naming_instance("svc-b", group_name="G2")
    check([h["ip"] for h in g2["hosts"]] == ["10.0.0.3"], f"svc-b in G2: {g2}")
    detail = c.get_naming_instance("svc-a", "10.0.0.1", 8080, cluster_name="c1")
    check(detail["metadata"] == {"version": "v1"} and detail["weight"] == 2.5, f"detail {detail}")
    step("detail", detail=detail)

    check(c.modify_naming_instance("svc-a", "10.0.0.2", 8080, cluster_name="c1", weight=7,
                                   metadata={"zone": "z"}), "modify")
    h2 = [h for h in c.list_naming_instance("svc-a")["hosts"] if h["ip"] == "10.0.0.2"][0]
    check(h2["weight"] == 7.0 and h2["metadata"] == {"zone": "z"}, f"modified {h2}")
    beat = c.send_heartbeat("svc-a", "10.0.0.1", 8080, cluster_name="c1")
    check(beat.get("code") == 10200 and beat.get("clientBeatInterval") == 5000, f"beat {beat}")
    step("beat", answer=beat)
    check(c.remove_naming_instance("svc-a", "10.0.0.2", 8080, cluster_name="c1"), "deregister")
    left = [h["ip"] for h in c.list_naming_instance("svc-a")["hosts"]]
    check(left == ["10.0.0.1"], f"after deregister {left}")
    step("deregister", left=left)

    # config
    check(c.publish_config("app.yaml", "G", "a: 1\n", config_type="yaml"), "publish")
    check(c.get_config("app.yaml", "G", no_snapshot=True) == "a: 1\n", "get after publish")
    check(c.publish_config("other.yaml", "G", "b: 2\n"), "publish other")
    page = c.get_configs(group="G", no_snapshot=True)
    ids = sorted(i["dataId"] for i in page["pageItems"])
    check(page["totalCount"] == 2 and ids == ["app.yaml", "other.yaml"], f"page {page}")
    step("configs", page=page)

    fired = []
    ev = threading.Event()

    def on_change(arg):
        fired.append(arg)
        ev.set()

    c.add_config_watcher("app.yaml", "G", on_change)
    time.sleep(1.5)  # the watcher's first long poll is on its way
    t0 = time.monotonic()
    check(c.publish_config("app.yaml", "G", "a: 2\n", config_type="yaml"), "publish change")
    check(ev.wait(a.wait), "the config watcher fired")
    took = time.monotonic() - t0
    check(fired[-1]["content"] == "a: 2\n", f"watcher content {fired[-1]}")
    step("watcher", content=fired[-1]["content"], seconds=round(took, 3))

    check(c.remove_config("app.yaml", "G"), "remove")
    check(c.get_config("app.yaml", "G", no_snapshot=True) is None, "gone after remove")
    step("removed")


def control_state(a):
    """The stand-in's /state (its test control listener)."""
    with urllib.request.urlopen(f"http://{a.control}/state", timeout=5) as r:
        return json.loads(r.read())


# ---- v2: gRPC -----------------------------------------------------------------------


def raw_grpc_checks(a):
    """With the SDK's own Payload stubs: what a server says to requests the SDK never
    sends wrong (an unknown type; a request before the bi-stream's setup)."""
    import grpc
    from google.protobuf.any_pb2 import Any
    from v2.nacos.transport.grpcauto.nacos_grpc_service_pb2 import Metadata, Payload

    host, port = a.server.rsplit(":", 1)
    with grpc.insecure_channel(f"{host}:{int(port) + 1000}") as ch:
        call = ch.unary_unary("/Request/request", request_serializer=Payload.SerializeToString,
                              response_deserializer=Payload.FromString)

        def ask(type_name, body):
            p = Payload(metadata=Metadata(type=type_name, clientIp="127.0.0.1"),
                        body=Any(value=json.dumps(body).encode()))
            r = call(p, timeout=5)
            return r.metadata.type, json.loads(r.body.value)

        t, b = ask("ServerCheckRequest", {"headers": {}, "requestId": "1"})
        check(t == "ServerCheckResponse" and b["connectionId"], f"server check: {t} {b}")
        t, b = ask("NoSuchRequest", {})
        check(t == "ErrorResponse" and b["errorCode"] == 302, f"unknown type: {t} {b}")
        t, b = ask("InstanceRequest", {"namespace": "public", "serviceName": "x", "groupName": "DEFAULT_GROUP",
                                       "type": "registerInstance", "instance": {"ip": "1.1.1.1", "port": 1}})
        check(t == "ErrorResponse" and b["errorCode"] == 301, f"before setup: {t} {b}")
        step("raw_grpc", unregistered=b["message"])



async def run_v2_async(a):
    from v2.nacos import (ClientConfigBuilder, ConfigParam, DeregisterInstanceParam, GRPCConfig,
                          ListInstanceParam, ListServiceParam, NacosConfigService, NacosNamingService,
                          RegisterInstanceParam, SubscribeServiceParam)

    b = (ClientConfigBuilder().server_address(a.server).namespace_id("public")
         .log_dir(os.path.join(a.work, "logs")).cache_dir(os.path.join(a.work, "cache"))
         .log_level(logging.INFO).grpc_config(GRPCConfig(grpc_timeout=5000)))
    if a.user:
        b = b.username(a.user).password(a.password)
    cfg = b.build()
    raw_grpc_checks(a)
    naming = await NacosNamingService.create_naming_service(cfg)
    check(await naming.server_health(), "naming connected")
    step("connected")
    if a.user:
        from v2.nacos import NacosException

        anon_cfg = (ClientConfigBuilder().server_address(a.server).namespace_id("public")
                    .log_dir(os.path.join(a.work, "logs-anon")).cache_dir(os.path.join(a.work, "cache-anon"))
                    .grpc_config(GRPCConfig(grpc_timeout=5000)).build())
        anon = await NacosNamingService.create_naming_service(anon_cfg)
        try:
            await anon.register_instance(RegisterInstanceParam(service_name="svc-anon", ip="10.1.9.9", port=1))
            raise AssertionError("a register without a token was accepted")
        except NacosException as e:
            check("403" in str(e) or "user not found" in str(e), f"refused for no token: {e}")
            step("no_token_rejected", error=str(e))

    pushes = []

    async def on_push(instances):
        pushes.append(sorted((i.ip, i.port) for i in instances))

    check(await naming.register_instance(RegisterInstanceParam(
        service_name="svc-g", ip="10.1.0.1", port=8080, weight=3.0, metadata={"v": "1"})), "v2 register")
    await naming.subscribe(SubscribeServiceParam(service_name="svc-g", subscribe_callback=on_push))

    insts = await naming.list_instances(ListInstanceParam(service_name="svc-g", subscribe=False,
                                                          healthy_only=None))
    check([(i.ip, i.port, i.weight) for i in insts] == [("10.1.0.1", 8080, 3.0)], f"v2 list {insts}")
    step("list", instances=[i.model_dump() for i in insts])

    # A second instance from another connection (its own naming service) is pushed.
    other = await NacosNamingService.create_naming_service(cfg)
    check(await other.register_instance(RegisterInstanceParam(
        service_name="svc-g", ip="10.1.0.2", port=8080)), "second register")
    deadline = time.monotonic() + a.wait
    while [("10.1.0.1", 8080), ("10.1.0.2", 8080)] not in pushes:
        check(time.monotonic() < deadline, f"push with both instances; pushes {pushes}")
        await asyncio.sleep(0.05)
    step("push_add", pushes=pushes)

    services = await naming.list_services(ListServiceParam(namespace_id="public"))
    check("svc-g" in services.services and services.count >= 1, f"service list {services}")
    step("services", count=services.count, services=services.services)

    check(await other.deregister_instance(DeregisterInstanceParam(
        service_name="svc-g", ip="10.1.0.2", port=8080)), "deregister")
    deadline = time.monotonic() + a.wait
    while pushes[-1] != [("10.1.0.1", 8080)]:
        check(time.monotonic() < deadline, f"push after deregister; pushes {pushes}")
        await asyncio.sleep(0.05)
    step("push_remove", last=pushes[-1])
    # (The SDK's NacosNamingService.shutdown fails in 2.0.11: the process exit ends it.)

    # config
    config = await NacosConfigService.create_config_service(cfg)
    check(await config.publish_config(ConfigParam(data_id="gw.yaml", group="G", content="x: 1", type="yaml")),
          "v2 publish")
    check(await config.get_config(ConfigParam(data_id="gw.yaml", group="G")) == "x: 1", "v2 get")
    changes = []
    got_change = asyncio.Event()

    async def on_config(tenant, data_id, group, content):
        changes.append(content)
        got_change.set()

    await config.add_listener("gw.yaml", "G", on_config)
    # The SDK sends its listen request from a loop that runs every 5 s; wait for the
    # server to hold it, so what follows shows the server's push, not the next loop.
    deadline = time.monotonic() + a.wait
    while not any(["", "G", "gw.yaml"] in c["listens"] or ["public", "G", "gw.yaml"] in c["listens"]
                  for c in control_state(a)["connections"]):
        check(time.monotonic() < deadline, "the server holds the config listener")
        await asyncio.sleep(0.05)
    t0 = time.monotonic()
    check(await config.publish_config(ConfigParam(data_id="gw.yaml", group="G", content="x: 2", type="yaml")),
          "v2 publish change")
    await asyncio.wait_for(got_change.wait(), a.wait)
    check(changes[-1] == "x: 2", f"listener got {changes}")
    step("listener", changes=changes, seconds=round(time.monotonic() - t0, 3))
    check(await config.remove_config(ConfigParam(data_id="gw.yaml", group="G")), "v2 remove")
    gone = await config.get_config(ConfigParam(data_id="gw.yaml", group="G"))
    check(gone in (None, ""), f"v2 get after remove: {gone!r}")
    step("removed")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["v1", "v2"])
    p.add_argument("--server", required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--work", default=".")
    p.add_argument("--control", help="the stand-in's control listener (host:port), for v2")
    p.add_argument("--wait", type=float, default=10.0)
    a = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    if a.mode == "v1":
        try:
            run_v1(a)
        finally:
            shutdown_v1_clients()
    else:
        # Not asyncio.run: cancelling the SDK's own tasks at the end can hang.
        asyncio.new_event_loop().run_until_complete(run_v2_async(a))
    print("DONE", flush=True)
    # The v1 SDK's puller threads and multiprocessing manager would keep us alive.
    os._exit(0)


if __name__ == "__main__":
    main()
