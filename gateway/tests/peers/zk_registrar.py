"""Registers service instances in a real ZooKeeper the way Dubbo and Spring Cloud write
them, with the kazoo client, for gateway/tests/registry_zookeeper.rs.

- Dubbo (ZookeeperRegistry): an ephemeral node
  `/dubbo/<interface>/providers/<URL.encode(url.toFullString())>`, the URL being
  `dubbo://ip:port/<interface>?<parameters sorted by name>`, parents persistent.
- Spring Cloud Zookeeper (Curator ServiceDiscovery): an ephemeral node
  `<root>/<service>/<id>` holding the ServiceInstance JSON of Curator's
  JsonInstanceSerializer, with a ZookeeperInstance payload. Curator makes the parents
  container nodes; kazoo cannot, so they are persistent here (nothing reads the difference).

Control listener (POST, JSON bodies; each answers once ZooKeeper acknowledged the write):
- /dubbo {"interface", "address", "port", "params": {...}} -> {"path"}
- /spring {"service", "address", "port", "id"?, "metadata"?, "root"?} -> {"path"}
- /delete {"path"} -> {}

The kazoo session retries its connection forever, so a ZooKeeper restart keeps the
session (and its ephemeral nodes) when it comes back within the session timeout.
"""

import json
import time
import uuid
from urllib.parse import quote_plus

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

import peerlib


def java_url_encode(s):
    # java.net.URLEncoder: letters, digits and ".-*_" stay, space -> "+", the rest %XX.
    return quote_plus(s, safe="*").replace("~", "%7E")


def dubbo_node(interface, address, port, params):
    query = "&".join(f"{k}={params[k]}" for k in sorted(params))
    url = f"dubbo://{address}:{port}/{interface}" + (f"?{query}" if query else "")
    return f"/dubbo/{interface}/providers/{java_url_encode(url)}"


def spring_instance(service, address, port, instance_id, metadata):
    return {
        "name": service,
        "id": instance_id,
        "address": address,
        "port": port,
        "sslPort": None,
        "payload": {
            "@class": "org.springframework.cloud.zookeeper.discovery.ZookeeperInstance",
            "id": f"{service}-{port}",
            "name": service,
            "metadata": metadata,
        },
        "registrationTimeUTC": int(time.time() * 1000),
        "serviceType": "DYNAMIC",
        "uriSpec": {
            "parts": [
                {"value": "scheme", "variable": True},
                {"value": "://", "variable": False},
                {"value": "address", "variable": True},
                {"value": ":", "variable": False},
                {"value": "port", "variable": True},
            ]
        },
    }


def main():
    p = peerlib.base_args(__doc__)
    p.add_argument("--zk", required=True, help="ZooKeeper host:port")
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    rec = peerlib.Recorder(a.record)

    zk = KazooClient(
        hosts=a.zk,
        timeout=10.0,
        connection_retry=KazooRetry(max_tries=-1, delay=0.2, max_delay=1.0),
        command_retry=KazooRetry(max_tries=20, delay=0.2, max_delay=1.0),
    )
    zk.start(timeout=30)

    def create_ephemeral(path, data=b""):
        parent = path.rsplit("/", 1)[0]
        zk.ensure_path(parent)
        zk.create(path, data, ephemeral=True)
        rec.record({"kind": "created", "path": path})
        return path

    class Control(peerlib.JsonHandler):
        def do_POST(self):
            try:
                d = json.loads(self.body() or b"{}")
                if self.path == "/dubbo":
                    node = dubbo_node(d["interface"], d["address"], d["port"], d.get("params", {}))
                    self.reply(200, {"path": create_ephemeral(node)})
                elif self.path == "/spring":
                    root = d.get("root", "/services").rstrip("/")
                    iid = d.get("id") or str(uuid.uuid4())
                    body = spring_instance(
                        d["service"], d["address"], d["port"], iid, d.get("metadata", {})
                    )
                    node = f"{root}/{d['service']}/{iid}"
                    self.reply(200, {"path": create_ephemeral(node, json.dumps(body).encode())})
                elif self.path == "/delete":
                    zk.delete(d["path"])
                    rec.record({"kind": "deleted", "path": d["path"]})
                    self.reply(200, {})
                else:
                    self.reply(404, {"error": "not found"})
            except Exception as e:  # the test reads the reason
                self.reply(500, {"error": repr(e)})

    srv = peerlib.serve_http(Control)
    peerlib.ready(control=srv.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
