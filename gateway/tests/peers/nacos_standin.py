"""A loopback stand-in for a Nacos 2.x server, for the `nacos`, `nacos2` and `nacos3`
registries and the "Nacos as the config store" mode.

It speaks the wire protocols real clients use, and nothing more, so no test can come to
rely on an endpoint real Nacos lacks:

- HTTP under the context path `/nacos` on `--port`: the v1 open API for naming
  (`/v1/ns/instance` POST/PUT/DELETE/GET, `/v1/ns/instance/list`, `/v1/ns/instance/beat`
  PUT, `/v1/ns/service/list`), config (`/v1/cs/configs` GET/POST/DELETE with
  `search=accurate|blur` pages, `/v1/cs/configs/listener` POST long polling) and login
  (`/v1/auth/login`, `/v1/auth/users/login`). Any other path answers 404, a known path
  with another method 405, a missing or malformed parameter 400, with Nacos's bodies.
- gRPC on the HTTP port + 1000 (clients derive it so): services `Request/request` and
  `BiRequestStream/requestBiStream` carrying `Payload{Metadata{type, clientIp, headers},
  google.protobuf.Any body}` whose body is the JSON of the Java request class named by
  `type`. Handled: ServerCheckRequest, ConnectionSetupRequest (bi-stream; answered with
  SetupAckRequest when it carries an ability table), HealthCheckRequest,
  InstanceRequest, BatchInstanceRequest, ServiceListRequest, ServiceQueryRequest,
  SubscribeServiceRequest (then NotifySubscriberRequest pushes on change),
  ConfigPublishRequest, ConfigQueryRequest, ConfigRemoveRequest,
  ConfigBatchListenRequest (then ConfigChangeNotifyRequest pushes), and the clients'
  answers on the bi-stream. Other types get ErrorResponse 302 "RequestHandler Not Found"
  like Nacos; a request on a connection that has not set up its bi-stream gets 301
  "Connection is unregistered.".

One store serves both: an instance registered over gRPC is listed over HTTP and the
other way round, a config published over HTTP is pushed to gRPC listeners.

Checked against Nacos 2.5.1's source (alibaba/nacos tag 2.5.1): InstanceController,
ServiceController, ServiceNameFilter, HttpRequestInstanceBuilder, ServiceUtil,
InstanceOperatorClientImpl, ServiceStorage, DefaultInstanceIdGenerator, NamingUtils,
ResponseExceptionHandler (naming); ConfigController, ConfigServletInner,
LongPollingService, MD5Util, ParamUtils, NamespaceUtil, ConfigOperationService,
ExternalConfigInfoPersistServiceImpl and the MySQL ConfigInfoMapper (config);
UserController and AuthFilter (auth); GrpcRequestAcceptor, GrpcBiStreamRequestAcceptor
and the naming/config gRPC request handlers; the api module's request/response classes
for the JSON field names. Facts that shaped this file:
- v1 naming: `serviceName` is joined with `groupName` (default DEFAULT_GROUP) into
  `GROUP@@name` before anything else; `namespaceId` defaults to `public`; instance ids
  are `ip#port#cluster#GROUP@@name`; an HTTP client (ip:port) owns one instance per
  service, so registering again replaces it; deregistering an unknown one says `ok`;
  `PUT` updates weight, enabled and metadata; a service is ephemeral or persistent
  by its first instance and refuses the other kind (400). `/instance/list` answers
  the ServiceInfo JSON with `name` = `GROUP@@name` and only enabled instances
  (`healthyOnly` drops the unhealthy ones). `/service/list` needs `pageNo` and
  `pageSize` and answers `{"count", "doms"}` with bare names. A service stays listed, empty, after its last
  instance went (Nacos removes empty services after 60 s: `--empty-service-ttl`).
- Ephemeral instances registered over HTTP turn unhealthy when no beat came for 15 s
  and are removed after 30 s (`--heartbeat-timeout`, `--ip-delete-timeout`; the
  instance metadata `preserved.heart.beat.timeout` / `preserved.ip.delete.timeout`
  override them per instance, as in Nacos). A beat for an unknown instance with a
  `beat` body registers it; without one it answers code 20404. gRPC instances live as
  long as their connection: its end removes them at once.
- v1 config: `tenant` `public` is `""`; dataId/group characters are letters, digits
  and `_-.:`; publish answers `true` and honours the `casMd5` header (a mismatch
  answers 500); get answers the raw content with `Content-MD5` and `Config-Type`
  headers, or 404 "config data not exist"; `search=accurate` matches exactly (blank =
  any) and `search=blur` is SQL LIKE with `*` as `%`; page items carry `md5: null` as
  Nacos's page query does not select it. The listener takes the form field
  `Listening-Configs` (`dataId^2group^2md5[^2tenant]^1`...), answers at once when an md5
  differs, else holds the request until a change or the `Long-Pulling-Timeout` header
  (minus 500 ms, at least 10 s) ends it, and answers the changed keys URL-encoded
  (`dataId%02group[%02tenant]%01`). Without the header it answers at once.
- Auth (`--auth user:pass`): login takes `username`/`password` and answers
  `{"accessToken", "tokenTtl": 18000, "globalAdmin": true, "username"}` or 403
  "user not found!". Every other call (HTTP: `accessToken` query or form parameter, or
  header; gRPC: the `accessToken` header of the request) needs a valid token, else 403
  (gRPC: errorCode 403). Without `--auth` calls need no token and login knows the
  default user nacos/nacos.

Left out (not needed by the gateway or the two SDKs): persistent instances' server-side
health checks (they keep the health they were registered with), service metadata and
its protect threshold, selectors, the console and v2/v3 HTTP APIs, beta/tag (gray)
configs, config history, namespaces as objects (any namespace id works), clustering,
Distro/Raft, the UDP push of v1 clients, and KMS encryption. Tokens are opaque strings,
not JWTs.

Test controls on a separate listener (`control` in the READY line), which stays up when
Nacos "goes down":
  POST /instance  {"service", "ip", "port", ["group", "namespace", "cluster",
                  "healthy", "weight", "enabled"]}  set those fields directly (404 if
                  no such instance)
  POST /drop-grpc close every gRPC connection (the Rust nacos-sdk reconnects and
                  registers again; nacos-sdk-python 2.0.11's v2 client does not: its
                  health check takes 301 "unregistered" for healthy)
  POST /down      stop answering: both listeners close and open connections are cut
  POST /up        come back on the same ports
  GET  /state     the store as JSON (services, instances, configs, connections)

Usage: nacos_standin.py [--port 0] [--auth user:pass] [--record FILE] ...; prints
`READY {"control": c, "grpc": p+1000, "http": p}`; exits on stdin EOF.
"""

import hashlib
import json
import queue
import secrets
import socket
import threading
import time
import uuid
from concurrent import futures
from urllib.parse import parse_qs, quote, unquote, urlsplit

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

import peerlib

DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_NAMESPACE = "public"
DEFAULT_CLUSTER = "DEFAULT"
TOKEN_TTL = 18000
LONG_POLL_DELAY_MS = 500
MIN_LONG_POLL_MS = 10000
WORD_SEP = "\x02"
LINE_SEP = "\x01"
CONFIG_TYPES = {"properties", "xml", "json", "text", "html", "yaml", "toml"}
CONTENT_TYPES = {
    "json": "application/json;charset=UTF-8",
    "xml": "application/xml;charset=UTF-8",
    "html": "text/html;charset=UTF-8",
    "yaml": "text/yaml;charset=UTF-8",
}
CLUSTER_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")


def now_ms():
    return int(time.time() * 1000)


def md5_hex(s):
    return hashlib.md5(s.encode("utf-8")).hexdigest()


def valid_name(s):
    """Nacos's ParamUtils.isValid: letters, digits and `_-.:`."""
    return s is not None and all(c.isalnum() or c in "_-.:" for c in s)


def parse_bool(s, default):
    """Java's ConvertUtils.toBoolean: `true`/`on`/`yes`/`y`/`1`... are true."""
    if s is None or s.strip() == "":
        return default
    return s.strip().lower() in ("true", "on", "yes", "y", "t", "1")


def config_tenant(t):
    """NamespaceUtil.processNamespaceParameter: blank, `public` and `null` are ``."""
    if t is None or t.strip() == "" or t.strip().lower() in ("public", "null"):
        return ""
    return t.strip()


class NacosError(Exception):
    """An answer other than success: HTTP status (and gRPC error code) and body."""

    def __init__(self, status, message, json_error=False):
        super().__init__(message)
        self.status = status
        self.message = message
        # Spring's own error page (JSON) rather than a handler's plain text.
        self.json_error = json_error


# ---- the store ----------------------------------------------------------------------


class Instance:
    def __init__(self, ip, port, weight=1.0, healthy=True, enabled=True, ephemeral=True,
                 cluster=DEFAULT_CLUSTER, metadata=None, instance_id=None):
        self.ip = ip
        self.port = int(port)
        self.weight = float(weight)
        self.healthy = bool(healthy)
        self.enabled = bool(enabled)
        self.ephemeral = bool(ephemeral)
        self.cluster = cluster or DEFAULT_CLUSTER
        self.metadata = dict(metadata or {})
        self.instance_id = instance_id
        self.last_beat = time.monotonic()

    def timeouts(self, args):
        """(heartbeat timeout, ip delete timeout) in seconds, metadata first."""

        def md(key, default):
            v = self.metadata.get(key)
            try:
                return int(v) / 1000.0 if v is not None else default
            except ValueError:
                return default

        return (md("preserved.heart.beat.timeout", args.heartbeat_timeout),
                md("preserved.ip.delete.timeout", args.ip_delete_timeout))

    def to_json(self, grouped_name):
        def md_int(key, default):
            try:
                return int(self.metadata.get(key, default))
            except ValueError:
                return default

        return {
            "instanceId": self.instance_id or f"{self.ip}#{self.port}#{self.cluster}#{grouped_name}",
            "ip": self.ip,
            "port": self.port,
            "weight": self.weight,
            "healthy": self.healthy,
            "enabled": self.enabled,
            "ephemeral": self.ephemeral,
            "clusterName": self.cluster,
            "serviceName": grouped_name,
            "metadata": self.metadata,
            "instanceHeartBeatInterval": md_int("preserved.heart.beat.interval", 5000),
            "instanceHeartBeatTimeOut": md_int("preserved.heart.beat.timeout", 15000),
            "ipDeleteTimeout": md_int("preserved.ip.delete.timeout", 30000),
            "instanceIdGenerator": self.metadata.get("preserved.instance.id.generator", "simple"),
        }


class Service:
    def __init__(self, ephemeral):
        # client id -> [Instance]; an HTTP client is "ip:port#ephemeral", a gRPC client
        # its connection id. Nacos keeps one publish per client and service.
        self.publishers = {}
        self.emptied_at = time.monotonic()
        # Fixed by the first registration: Nacos 2 refuses the other kind afterwards.
        self.ephemeral = ephemeral

    def instances(self):
        return [i for lst in self.publishers.values() for i in lst]


class Store:
    """Services and configs, shared by HTTP and gRPC. One lock; listeners are called
    after it is released."""

    def __init__(self, args, recorder):
        self.args = args
        self.recorder = recorder
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.services = {}  # (namespace, group, name) -> Service
        self.configs = {}  # (tenant, group, dataId) -> dict
        self.config_seq = 0
        self.naming_listeners = []  # fn(service key)
        self.config_listeners = []  # fn(config key)

    # naming

    def _changed_service(self, key):
        for fn in list(self.naming_listeners):
            fn(key)

    def register(self, key, client, instances, via, replace=True):
        ephemeral = all(i.ephemeral for i in instances)
        with self.lock:
            svc = self.services.setdefault(key, Service(ephemeral))
            if svc.ephemeral != ephemeral:
                kind = "ephemeral" if svc.ephemeral else "persistent"
                other = "persistent" if svc.ephemeral else "ephemeral"
                raise NacosError(400, f"Current service {key[1]}@@{key[2]} is {kind} service, can't register "
                                      f"{other} instance.")
            if replace:
                svc.publishers[client] = list(instances)
            else:
                svc.publishers.setdefault(client, []).extend(instances)
        for inst in instances:
            self.recorder.record({"kind": "register", "via": via, "namespace": key[0], "group": key[1],
                                  "service": key[2], "ip": inst.ip, "port": inst.port, "weight": inst.weight,
                                  "cluster": inst.cluster, "ephemeral": inst.ephemeral,
                                  "metadata": inst.metadata})
        self._changed_service(key)

    def deregister(self, key, client, via, ip=None, port=None):
        with self.lock:
            svc = self.services.get(key)
            if svc is None or client not in svc.publishers:
                return False
            del svc.publishers[client]
            if not svc.instances():
                svc.emptied_at = time.monotonic()
        self.recorder.record({"kind": "deregister", "via": via, "namespace": key[0], "group": key[1],
                              "service": key[2], "ip": ip, "port": port})
        self._changed_service(key)
        return True

    def drop_client(self, client):
        """A gRPC connection ended: its instances go (Nacos: ClientDisconnectEvent)."""
        changed = []
        with self.lock:
            for key, svc in self.services.items():
                if svc.publishers.pop(client, None) is not None:
                    changed.append(key)
                    if not svc.instances():
                        svc.emptied_at = time.monotonic()
        for key in changed:
            self.recorder.record({"kind": "deregister", "via": "disconnect", "namespace": key[0],
                                  "group": key[1], "service": key[2], "client": client})
            self._changed_service(key)

    def find(self, key, ip, port, cluster=None):
        svc = self.services.get(key)
        if svc is None:
            return None
        for inst in svc.instances():
            if inst.ip == ip and inst.port == int(port) and (cluster is None or inst.cluster == cluster):
                return inst
        return None

    def update(self, key, ip, port, cluster, fields):
        """Set fields of one instance; False when there is none."""
        with self.lock:
            inst = self.find(key, ip, port, cluster)
            if inst is None:
                return False
            for k, v in fields.items():
                setattr(inst, k, v)
        self._changed_service(key)
        return True

    def service_info(self, key, clusters="", healthy_only=False):
        """ServiceUtil.selectInstances: enabled instances of the clusters asked for."""
        with self.lock:
            svc = self.services.get(key)
            insts = list(svc.instances()) if svc else []
            grouped = f"{key[1]}@@{key[2]}"
            wanted = {c for c in clusters.split(",") if c} if clusters else set()
            hosts = [i.to_json(grouped) for i in insts
                     if (not wanted or i.cluster in wanted) and i.enabled and (not healthy_only or i.healthy)]
        return {
            "name": key[2], "groupName": key[1], "clusters": clusters or "", "cacheMillis": 10000,
            "hosts": hosts, "lastRefTime": now_ms(), "checksum": "", "allIPs": False,
            "reachProtectionThreshold": False, "valid": True,
        }

    def service_names(self, namespace, group):
        with self.lock:
            return sorted(n for (ns, g, n) in self.services if ns == namespace and g == group)

    def expire(self):
        """Heartbeat timeouts of HTTP ephemeral instances, and empty services' removal."""
        changed = set()
        t = time.monotonic()
        with self.lock:
            for key, svc in list(self.services.items()):
                for client, lst in list(svc.publishers.items()):
                    if not client.endswith("#true"):
                        continue  # gRPC clients live with their connection
                    for inst in list(lst):
                        hb_timeout, delete_timeout = inst.timeouts(self.args)
                        idle = t - inst.last_beat
                        if idle > delete_timeout:
                            lst.remove(inst)
                            changed.add(key)
                            self.recorder.record({"kind": "expire", "namespace": key[0], "group": key[1],
                                                  "service": key[2], "ip": inst.ip, "port": inst.port})
                        elif idle > hb_timeout and inst.healthy:
                            inst.healthy = False
                            changed.add(key)
                    if not lst:
                        del svc.publishers[client]
                        if not svc.instances():
                            svc.emptied_at = t
                if not svc.instances() and t - svc.emptied_at > self.args.empty_service_ttl:
                    del self.services[key]
        for key in changed:
            self._changed_service(key)

    # config

    def config_get(self, key):
        with self.lock:
            c = self.configs.get(key)
            return dict(c) if c else None

    def config_md5(self, key):
        with self.lock:
            c = self.configs.get(key)
            return c["md5"] if c else ""

    def config_publish(self, key, content, ctype, app_name, cas_md5, via):
        with self.lock:
            old = self.configs.get(key)
            if cas_md5 and old is not None and old["md5"] != cas_md5:
                raise NacosError(500, "Cas publish fail, server md5 may have changed.")
            if old is None:
                self.config_seq += 1
            self.configs[key] = {
                "id": old["id"] if old else self.config_seq,
                "content": content, "md5": md5_hex(content), "type": ctype,
                "appName": app_name or (old or {}).get("appName") or "", "lastModified": now_ms(),
            }
            self.cond.notify_all()
        self.recorder.record({"kind": "config_publish", "via": via, "tenant": key[0], "group": key[1],
                              "dataId": key[2], "content": content, "type": ctype})
        for fn in list(self.config_listeners):
            fn(key)

    def config_remove(self, key, via):
        with self.lock:
            existed = self.configs.pop(key, None) is not None
            self.cond.notify_all()
        self.recorder.record({"kind": "config_remove", "via": via, "tenant": key[0], "group": key[1],
                              "dataId": key[2], "existed": existed})
        for fn in list(self.config_listeners):
            fn(key)

    def config_page(self, tenant, data_id, group, page_no, page_size, like):
        def match(pattern, value):
            if not pattern:
                return True
            if not like:
                return pattern == value
            return like_match(pattern.replace("*", "%"), value)

        with self.lock:
            rows = sorted(((k, v) for k, v in self.configs.items()), key=lambda kv: kv[1]["id"])
            rows = [(k, v) for k, v in rows
                    if (match(tenant, k[0]) if like else k[0] == tenant)
                    and match(data_id, k[2]) and match(group, k[1])]
        total = len(rows)
        pages = (total + page_size - 1) // page_size if page_size > 0 else 0
        start = max(page_no - 1, 0) * page_size
        items = [{
            "id": str(v["id"]), "dataId": k[2], "group": k[1], "content": v["content"], "md5": None,
            "encryptedDataKey": "", "tenant": k[0], "appName": v["appName"], "type": v["type"],
        } for k, v in rows[start:start + page_size]] if page_no <= max(pages, 1) else []
        return {"totalCount": total, "pageNumber": page_no, "pagesAvailable": pages, "pageItems": items}

    # state for the control endpoint

    def snapshot(self):
        with self.lock:
            return {
                "services": [{
                    "namespace": k[0], "group": k[1], "name": k[2],
                    "instances": [dict(i.to_json(f"{k[1]}@@{k[2]}"), client=c)
                                  for c, lst in s.publishers.items() for i in lst],
                } for k, s in sorted(self.services.items())],
                "configs": [{"tenant": k[0], "group": k[1], "dataId": k[2], "md5": v["md5"],
                             "content": v["content"], "type": v["type"]}
                            for k, v in sorted(self.configs.items())],
            }


def like_match(pattern, value):
    """SQL LIKE: `%` any run, `_` any one character."""
    import re

    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.S) is not None


# ---- auth ---------------------------------------------------------------------------


class Auth:
    def __init__(self, spec):
        self.enabled = spec is not None
        user, _, password = (spec or "nacos:nacos").partition(":")
        self.user, self.password = user, password
        self.tokens = {}
        self.lock = threading.Lock()

    def login(self, username, password):
        if username != self.user or password != self.password:
            raise NacosError(403, "user not found!")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = time.time() + TOKEN_TTL
        return {"accessToken": token, "tokenTtl": TOKEN_TTL, "globalAdmin": True, "username": username}

    def check(self, token):
        if not self.enabled:
            return
        if not token:
            raise NacosError(403, "user not found!", json_error=True)
        with self.lock:
            exp = self.tokens.get(token)
        if exp is None:
            raise NacosError(403, "token invalid!", json_error=True)
        if exp < time.time():
            raise NacosError(403, "token expired!", json_error=True)


# ---- HTTP: the v1 open API ----------------------------------------------------------


def spring_error(status, path, message=None):
    """Spring Boot's JSON error page, as Nacos answers unknown paths and filter errors."""
    reasons = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
               500: "Internal Server Error"}
    body = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime()), "status": status,
            "error": reasons.get(status, ""), "path": path}
    if message is not None:
        body["message"] = message
    return body


class Params:
    """Servlet getParameter over the query string, then the form body (Spring's form
    filter parses it for PUT, PATCH and DELETE too)."""

    def __init__(self, query, form):
        self.q = parse_qs(query, keep_blank_values=True)
        self.f = parse_qs(form, keep_blank_values=True) if form else {}

    def get(self, k):
        for src in (self.q, self.f):
            if k in src:
                return src[k][0]
        return None

    def optional(self, k, default):
        """WebUtils.optional: blank is the default."""
        v = self.get(k)
        return default if v is None or v.strip() == "" else v

    def required(self, k):
        """WebUtils.required (naming): empty is missing."""
        v = self.get(k)
        if v is None or v == "":
            raise NacosError(400, f"Param '{k}' is required.")
        return v

    def request_param(self, k):
        """Spring's @RequestParam (config): only an absent parameter is missing."""
        v = self.get(k)
        if v is None:
            raise NacosError(400, f"Required request parameter '{k}' for method parameter type String is "
                                  f"not present", json_error=True)
        return v

    def int_param(self, k):
        v = self.request_param(k)
        try:
            return int(v)
        except ValueError:
            raise NacosError(400, f"Failed to convert value of type 'java.lang.String' to required type "
                                  f"'int'; For input string: \"{v}\"", json_error=True)


def grouped_service(p):
    """ServiceNameFilter: serviceName becomes `group@@name`; then the namespace."""
    name = (p.get("serviceName") or "").strip()
    group = p.get("groupName")
    if group is None or group.strip() == "":
        group = DEFAULT_GROUP
    if name and "@@" not in name:
        name = f"{group}@@{name}"
    if not name:
        raise NacosError(400, "Param 'serviceName' is required.")
    g, sep, n = name.partition("@@")
    if not sep or not n:
        raise NacosError(400, "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'")
    if not g:
        raise NacosError(400, "Param 'serviceName' is illegal, groupName can't be empty")
    return (p.optional("namespaceId", DEFAULT_NAMESPACE), g, n)


def instance_from(p, for_update=False):
    """HttpRequestInstanceBuilder."""
    ip = p.required("ip")
    try:
        port = int(p.required("port"))
        weight = float(p.optional("weight", "1"))
    except ValueError as e:
        raise NacosError(500, f"java.lang.NumberFormatException: {e}")
    if weight > 10000 or weight < 0:
        raise NacosError(400, "instance format invalid: The weights range from 0.0 to 10000.0")
    cluster = p.optional("clusterName", "") or p.optional("cluster", DEFAULT_CLUSTER)
    if not set(cluster) <= CLUSTER_CHARS:
        raise NacosError(400, f"Instance 'clusterName' should be characters with only 0-9a-zA-Z-. "
                              f"(current: {cluster})")
    enabled_s = p.optional("enabled", "")
    enabled = parse_bool(enabled_s, True) if enabled_s else parse_bool(p.optional("enable", "true"), True)
    metadata = {}
    md = p.get("metadata")
    if md:
        try:
            metadata = {str(k): str(v) for k, v in json.loads(md).items()}
        except (ValueError, AttributeError):
            # UtilsAndCommons.parseMetadata's old form: k=v,k=v
            for kv in md.split(","):
                k, eq, v = kv.partition("=")
                if not eq:
                    raise NacosError(400, f"metadata format incorrect:{md}")
                metadata[k] = v
    return Instance(ip, port, weight=weight, healthy=parse_bool(p.get("healthy"), True),
                    enabled=enabled, ephemeral=parse_bool(p.get("ephemeral"), True), cluster=cluster,
                    metadata=metadata)


class Routes:
    """The v1 endpoints: path -> {method: handler(ctx) -> (status, body, content type, headers)}."""

    def __init__(self, nacos):
        self.n = nacos
        self.table = {
            "/nacos/v1/ns/instance": {"POST": self.ns_register, "DELETE": self.ns_deregister,
                                      "PUT": self.ns_update, "PATCH": self.ns_patch, "GET": self.ns_detail},
            "/nacos/v1/ns/instance/list": {"GET": self.ns_list},
            "/nacos/v1/ns/instance/beat": {"PUT": self.ns_beat},
            "/nacos/v1/ns/service/list": {"GET": self.ns_service_list},
            "/nacos/v1/cs/configs": {"GET": self.cs_get, "POST": self.cs_publish, "DELETE": self.cs_delete},
            "/nacos/v1/cs/configs/listener": {"POST": self.cs_listener},
            "/nacos/v1/auth/login": {"POST": self.login},
            "/nacos/v1/auth/users/login": {"POST": self.login},
        }

    @staticmethod
    def text(s, status=200):
        return status, s.encode(), "text/plain;charset=UTF-8", ()

    @staticmethod
    def json(obj, status=200):
        return status, json.dumps(obj).encode(), "application/json", ()

    # naming

    def ns_register(self, ctx):
        key = grouped_service(ctx.p)
        inst = instance_from(ctx.p)
        inst.instance_id = f"{inst.ip}#{inst.port}#{inst.cluster}#{key[1]}@@{key[2]}"
        client = f"{inst.ip}:{inst.port}#{str(inst.ephemeral).lower()}"
        self.n.store.register(key, client, [inst], "http")
        return self.text("ok")

    def ns_deregister(self, ctx):
        key = grouped_service(ctx.p)
        inst = instance_from(ctx.p)
        client = f"{inst.ip}:{inst.port}#{str(inst.ephemeral).lower()}"
        self.n.store.deregister(key, client, "http", inst.ip, inst.port)
        return self.text("ok")

    def ns_update(self, ctx):
        key = grouped_service(ctx.p)
        inst = instance_from(ctx.p)
        with self.n.store.lock:
            if key not in self.n.store.services:
                raise NacosError(400, f"service not found, namespace: {key[0]}, service: Service{{namespace='"
                                      f"{key[0]}', group='{key[1]}', name='{key[2]}', ephemeral={str(inst.ephemeral).lower()}}}")
        # Nacos keeps the update beside the instance and lays it over: weight and
        # enabled replace (defaults included), metadata keys are added or replaced.
        with self.n.store.lock:
            old = self.n.store.find(key, inst.ip, inst.port, inst.cluster)
            metadata = dict(old.metadata if old else {}, **inst.metadata)
        self.n.store.update(key, inst.ip, inst.port, inst.cluster,
                            {"weight": inst.weight, "enabled": inst.enabled, "metadata": metadata})
        return self.text("ok")

    def ns_patch(self, ctx):
        key = grouped_service(ctx.p)
        ip = ctx.p.required("ip")
        port = int(ctx.p.required("port"))
        cluster = ctx.p.optional("clusterName", "") or ctx.p.optional("cluster", DEFAULT_CLUSTER)
        fields = {}
        if ctx.p.optional("weight", ""):
            fields["weight"] = float(ctx.p.get("weight"))
        if ctx.p.optional("healthy", ""):
            fields["healthy"] = parse_bool(ctx.p.get("healthy"), True)
        if ctx.p.optional("enabled", ""):
            fields["enabled"] = parse_bool(ctx.p.get("enabled"), True)
        if ctx.p.optional("metadata", ""):
            fields["metadata"] = instance_from(ctx.p).metadata
        if not self.n.store.update(key, ip, port, cluster, fields):
            raise NacosError(500, f"instance not exist: {ip}:{port}")
        return self.text("ok")

    def ns_detail(self, ctx):
        key = grouped_service(ctx.p)
        cluster = ctx.p.optional("clusterName", DEFAULT_CLUSTER)
        ip = ctx.p.required("ip")
        port = int(ctx.p.required("port"))
        with self.n.store.lock:
            if key not in self.n.store.services:
                raise NacosError(404, f"no service {key[1]}@@{key[2]} found!")
            inst = self.n.store.find(key, ip, port, cluster)
            if inst is None:
                raise NacosError(404, "no matched ip found!")
            j = inst.to_json(f"{key[1]}@@{key[2]}")
        return self.json({"service": f"{key[1]}@@{key[2]}", "ip": ip, "port": port, "clusterName": cluster,
                          "weight": j["weight"], "healthy": j["healthy"], "instanceId": j["instanceId"],
                          "metadata": j["metadata"]})

    def ns_list(self, ctx):
        key = grouped_service(ctx.p)
        info = self.n.store.service_info(key, ctx.p.optional("clusters", ""),
                                         (ctx.p.optional("healthyOnly", "false")).lower() == "true")
        # InstanceOperatorClientImpl.listInstance: "adapt for v1.x sdk".
        info["name"] = f"{key[1]}@@{key[2]}"
        return self.json(info)

    def ns_beat(self, ctx):
        key = grouped_service(ctx.p)
        beat = ctx.p.optional("beat", "")
        cluster = ctx.p.optional("clusterName", DEFAULT_CLUSTER)
        ip = ctx.p.optional("ip", "")
        port = int(ctx.p.optional("port", "0"))
        info = None
        if beat:
            try:
                info = json.loads(beat)
            except ValueError:
                raise NacosError(500, "beat is not JSON")
            cluster = info.get("cluster") or cluster
            ip, port = info.get("ip", ""), int(info.get("port", 0))
        store = self.n.store
        client = f"{ip}:{port}#true"
        with store.lock:
            svc = store.services.get(key)
            lst = svc.publishers.get(client) if svc else None
        if not lst:
            if info is None:
                return self.json({"clientBeatInterval": 5000, "code": 20404, "lightBeatEnabled": True})
            meta = {str(k): str(v) for k, v in (info.get("metadata") or {}).items()}
            inst = Instance(ip, port, weight=info.get("weight", 1.0), ephemeral=True, cluster=cluster,
                            metadata=meta)
            inst.instance_id = f"{ip}#{port}#{cluster}#{key[1]}@@{key[2]}"
            store.register(key, client, [inst], "http-beat")
            lst = [inst]
        revived = False
        with store.lock:
            for inst in lst:
                inst.last_beat = time.monotonic()
                if not inst.healthy:
                    inst.healthy = True
                    revived = True
        if revived:
            store._changed_service(key)
        return self.json({"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True})

    def ns_service_list(self, ctx):
        try:
            page_no = int(ctx.p.required("pageNo"))
            page_size = int(ctx.p.required("pageSize"))
        except ValueError:
            page_no, page_size = 0, 0  # NumberUtils.toInt's default
        names = self.n.store.service_names(ctx.p.optional("namespaceId", DEFAULT_NAMESPACE),
                                           ctx.p.optional("groupName", DEFAULT_GROUP))
        start = max((page_no - 1) * page_size, 0)
        doms = names[start:start + page_size] if start < len(names) else []
        return self.json({"count": len(names), "doms": doms})

    # config

    def _config_key(self, p, what):
        data_id = p.request_param("dataId")
        group = p.request_param("group")
        tenant = p.get("tenant") or ""
        if tenant.strip() and not valid_name(tenant.strip()):
            raise NacosError(400, "invalid tenant")
        if not data_id.strip() or not valid_name(data_id.strip()):
            raise NacosError(400, f"invalid dataId : {data_id}")
        if not group.strip() or not valid_name(group):
            raise NacosError(400, f"invalid group : {group}")
        return (config_tenant(tenant), group, data_id)

    def cs_get(self, ctx):
        search = ctx.p.get("search")
        if search in ("accurate", "blur"):
            data_id = ctx.p.request_param("dataId")
            group = ctx.p.request_param("group")
            page_no = ctx.p.int_param("pageNo")
            page_size = ctx.p.int_param("pageSize")
            tenant = (ctx.p.get("tenant") or "").strip()
            return self.json(self.n.store.config_page(tenant, data_id, group, page_no, page_size,
                                                      like=search == "blur"))
        key = self._config_key(ctx.p, "get")
        c = self.n.store.config_get(key)
        if c is None:
            return self.text("config data not exist\n", 404)
        headers = (("Config-Type", c["type"]), ("Content-MD5", c["md5"]), ("Pragma", "no-cache"),
                   ("Cache-Control", "no-cache,no-store"),
                   ("Last-Modified", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(c["lastModified"] / 1000))))
        return 200, c["content"].encode(), CONTENT_TYPES.get(c["type"], "text/plain;charset=UTF-8"), headers

    def cs_publish(self, ctx):
        key = self._config_key(ctx.p, "publish")
        content = ctx.p.request_param("content")
        if content.strip() == "":
            raise NacosError(400, f"content is blank : {content}")
        ctype = ctx.p.get("type")
        if ctype not in CONFIG_TYPES:
            ctype = "text"
        self.n.store.config_publish(key, content, ctype, ctx.p.get("appName"),
                                    ctx.headers.get("casmd5"), "http")
        return self.json(True)

    def cs_delete(self, ctx):
        key = self._config_key(ctx.p, "rm")
        self.n.store.config_remove(key, "http")
        return self.json(True)

    def cs_listener(self, ctx):
        probe = ctx.p.get("Listening-Configs")
        if probe is None or probe.strip() == "":
            raise NacosError(400, "invalid probeModify")
        probe = unquote(probe.replace("+", " "))  # URLDecoder.decode, again
        wanted = parse_listening(probe)
        store = self.n.store

        def changed():
            return [(d, g, t) for (d, g, t), md5 in wanted.items() if store.config_md5((config_tenant(t), g, d)) != md5]

        hdr = ctx.headers.get("long-pulling-timeout")
        result = changed()
        if not result and hdr is not None and (ctx.headers.get("long-pulling-timeout-no-hangup") or "").lower() != "true":
            try:
                timeout_ms = max(MIN_LONG_POLL_MS, int(hdr) - LONG_POLL_DELAY_MS)
            except ValueError:
                raise NacosError(500, f'For input string: "{hdr}"')
            timeout_ms = min(timeout_ms, self.n.args.max_long_poll_ms) if self.n.args.max_long_poll_ms else timeout_ms
            deadline = time.monotonic() + timeout_ms / 1000.0
            gen = self.n.down_gen
            with store.cond:
                while True:
                    result = changed()
                    left = deadline - time.monotonic()
                    if result or left <= 0 or self.n.down_gen != gen:
                        break
                    store.cond.wait(min(left, 1.0))
            if self.n.down_gen != gen:
                raise ConnectionAbortedError("going down")
            if not result:
                # ClientLongPolling's timeout completes the request with no body.
                return 200, b"", "text/html;charset=UTF-8", (("Pragma", "no-cache"),
                                                              ("Cache-Control", "no-cache,no-store"))
        body = "".join(WORD_SEP.join([d, g] + ([t] if t.strip() else [])) + LINE_SEP for d, g, t in result)
        body = quote(body, safe="*").replace("%20", "+") + "\n"
        return 200, body.encode(), "text/html;charset=UTF-8", (("Pragma", "no-cache"),
                                                                ("Cache-Control", "no-cache,no-store"))

    # auth

    def login(self, ctx):
        username = ctx.p.get("username")
        password = ctx.p.get("password")
        if username is None or password is None:
            raise NacosError(400, f"Required request parameter '{'username' if username is None else 'password'}' "
                                  f"for method parameter type String is not present", json_error=True)
        tok = self.n.auth.login(username, password)
        return 200, json.dumps(tok).encode(), "application/json", (("Authorization", "Bearer " + tok["accessToken"]),)


def parse_listening(s):
    """MD5Util.getClientMd5Map: {(dataId, group, tenant): md5}."""
    out = {}
    for line in s.split(LINE_SEP):
        if not line:
            continue
        parts = line.split(WORD_SEP)
        if len(parts) < 3 or len(parts) > 4:
            raise NacosError(400, "invalid probeModify")
        if len(parts) == 3:
            out[(parts[0], parts[1], "")] = parts[2]
        else:
            out[(parts[0], parts[1], parts[3])] = parts[2]
    return out


class Ctx:
    def __init__(self, p, headers):
        self.p = p
        self.headers = headers


def make_http_handler(nacos):
    routes = Routes(nacos)

    class Handler(peerlib.JsonHandler):
        def setup(self):
            super().setup()
            with nacos.http_conns_lock:
                nacos.http_conns.add(self.connection)

        def finish(self):
            with nacos.http_conns_lock:
                nacos.http_conns.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def handle_any(self):
            u = urlsplit(self.path)
            path = u.path
            form = b""
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                form = self.rfile.read(n)
            ctype = (self.headers.get("Content-Type") or "").lower()
            form_s = form.decode("utf-8", "replace") if "x-www-form-urlencoded" in ctype or not ctype else ""
            p = Params(u.query, form_s)
            headers = peerlib.headers_dict(self.headers)
            methods = routes.table.get(path.rstrip("/") if path != "/" else path)
            try:
                if methods is None:
                    raise NacosError(404, None, json_error=True)
                fn = methods.get(self.command)
                if fn is None:
                    raise NacosError(405, f"Request method '{self.command}' is not supported", json_error=True)
                if fn != routes.login:
                    token = p.get("accessToken") or headers.get("accesstoken")
                    auth = headers.get("authorization") or ""
                    if not token and auth.startswith("Bearer "):
                        token = auth[len("Bearer "):]
                    nacos.auth.check(token)
                status, body, content_type, extra = fn(Ctx(p, headers))
            except NacosError as e:
                if e.json_error:
                    status, body, content_type, extra = (
                        e.status, json.dumps(spring_error(e.status, path, e.message)).encode(), "application/json",
                        (("Allow", ", ".join(methods)),) if e.status == 405 else ())
                else:
                    status, body, content_type, extra = e.status, (e.message or "").encode(), \
                        "text/plain;charset=UTF-8", ()
            except ConnectionAbortedError:
                self.close_connection = True
                return
            self.reply(status, body, content_type, extra)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

    return Handler


# ---- gRPC: the Nacos 2 protocol -----------------------------------------------------


def build_payload_classes():
    """Payload and Metadata as in Nacos's nacos_grpc_service.proto (no package), built
    from a descriptor made here, so no protoc step is needed."""
    fd = descriptor_pb2.FileDescriptorProto(name="nacos_standin_payload.proto", syntax="proto3",
                                            dependency=["google/protobuf/any.proto"])
    F = descriptor_pb2.FieldDescriptorProto
    md = fd.message_type.add(name="Metadata")
    md.field.add(name="type", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    md.field.add(name="clientIp", number=8, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    md.field.add(name="headers", number=7, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                 type_name=".Metadata.HeadersEntry")
    entry = md.nested_type.add(name="HeadersEntry")
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.options.map_entry = True
    pl = fd.message_type.add(name="Payload")
    pl.field.add(name="metadata", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL, type_name=".Metadata")
    pl.field.add(name="body", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                 type_name=".google.protobuf.Any")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fd)
    payload = message_factory.GetMessageClass(pool.FindMessageTypeByName("Payload"))
    return payload


Payload = build_payload_classes()


def payload(type_name, body, headers=None):
    p = Payload()
    p.metadata.type = type_name
    p.metadata.clientIp = peerlib.LOOPBACK
    for k, v in (headers or {}).items():
        p.metadata.headers[k] = v
    p.body.value = json.dumps(body).encode()
    return p


def response(type_name, body=None, request_id=None):
    """A Response subclass's JSON (Jackson, nulls left out)."""
    b = {"resultCode": 200, "errorCode": 0, "success": True}
    if request_id:
        b["requestId"] = request_id
    b.update(body or {})
    return payload(type_name, b)


def error_response(type_name, error_code, message, result_code=500):
    return payload(type_name, {"resultCode": result_code, "errorCode": error_code, "message": message,
                               "success": False})


class Conn:
    """One client connection: its bi-stream's outbound queue, subscriptions, listens."""

    def __init__(self, conn_id, peer):
        self.id = conn_id
        self.peer = peer
        self.out = queue.Queue()
        self.registered = False
        self.labels = {}
        self.version = ""
        self.subscriptions = {}  # service key -> clusters
        self.listens = {}  # normalized config key -> (dataId, group, tenant as sent)
        self.last_active = time.monotonic()
        self.acks = {}  # requestId -> threading.Event
        self.closed = False

    def push(self, type_name, body):
        """Send a server request on the bi-stream; returns its requestId."""
        rid = str(uuid.uuid4().int % 10 ** 12)
        ev = threading.Event()
        self.acks[rid] = ev
        self.out.put(payload(type_name, dict(body, requestId=rid, headers={})))
        return rid, ev

    def close(self):
        self.closed = True
        self.out.put(None)


class GrpcSide:
    def __init__(self, nacos):
        self.n = nacos
        self.lock = threading.Lock()
        self.by_peer = {}  # transport peer -> connection id (Nacos: one per transport)
        self.conns = {}  # connection id -> Conn
        self.server = None
        self.pushq = queue.Queue()
        nacos.store.naming_listeners.append(lambda key: self.pushq.put(("naming", key)))
        nacos.store.config_listeners.append(lambda key: self.pushq.put(("config", key)))
        threading.Thread(target=self.pusher, name="push", daemon=True).start()
        threading.Thread(target=self.detector, name="detect", daemon=True).start()
        self.handlers = {
            "HealthCheckRequest": (False, lambda r, c: response("HealthCheckResponse")),
            "InstanceRequest": (True, self.instance),
            "BatchInstanceRequest": (True, self.batch_instance),
            "ServiceListRequest": (True, self.service_list),
            "ServiceQueryRequest": (True, self.service_query),
            "SubscribeServiceRequest": (True, self.subscribe),
            "ConfigPublishRequest": (True, self.config_publish),
            "ConfigQueryRequest": (True, self.config_query),
            "ConfigRemoveRequest": (True, self.config_remove),
            "ConfigBatchListenRequest": (True, self.config_listen),
        }

    # listeners and connections

    def start(self, port):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("Request", {
            "request": grpc.unary_unary_rpc_method_handler(
                self.request, request_deserializer=Payload.FromString,
                response_serializer=Payload.SerializeToString)}),
            grpc.method_handlers_generic_handler("BiRequestStream", {
                "requestBiStream": grpc.stream_stream_rpc_method_handler(
                    self.bi_stream, request_deserializer=Payload.FromString,
                    response_serializer=Payload.SerializeToString)})])
        bound = server.add_insecure_port(f"{peerlib.LOOPBACK}:{port}")
        if bound != port:
            server.stop(0)
            raise OSError(f"cannot bind gRPC port {port}")
        server.start()
        self.server = server

    def stop(self):
        with self.lock:
            conns = list(self.conns.values())
        for c in conns:
            c.close()
        if self.server is not None:
            self.server.stop(0).wait(5)
            self.server = None

    def conn_id(self, peer):
        with self.lock:
            cid = self.by_peer.get(peer)
            if cid is None:
                # Nacos: System.currentTimeMillis() + "_" + remoteIp + "_" + remotePort
                addr = peer.split(":", 1)[1] if ":" in peer else peer
                ip, _, port = addr.rpartition(":")
                cid = f"{now_ms()}_{ip.strip('[]')}_{port}"
                self.by_peer[peer] = cid
            return cid

    def unregister(self, conn):
        with self.lock:
            if self.conns.get(conn.id) is conn:
                del self.conns[conn.id]
            if self.by_peer.get(conn.peer) == conn.id:
                del self.by_peer[conn.peer]
        conn.close()
        self.n.store.drop_client(conn.id)

    # unary requests

    def request(self, req, context):
        t = req.metadata.type
        if t == "ServerCheckRequest":
            return response("ServerCheckResponse", {"connectionId": self.conn_id(context.peer()),
                                                    "supportAbilityNegotiation": True})
        h = self.handlers.get(t)
        if h is None:
            return error_response("ErrorResponse", 302, "RequestHandler Not Found")
        cid = self.conn_id(context.peer())
        with self.lock:
            conn = self.conns.get(cid)
        if conn is None or not conn.registered:
            return error_response("ErrorResponse", 301, "Connection is unregistered.")
        try:
            body = json.loads(req.body.value.decode("utf-8"))
        except ValueError as e:
            return error_response("ErrorResponse", 502, str(e))
        headers = dict(body.get("headers") or {})
        headers.update(dict(req.metadata.headers))
        conn.last_active = time.monotonic()
        secured, fn = h
        resp_type = t.replace("Request", "Response")
        if resp_type == "ServiceQueryResponse":
            resp_type = "QueryServiceResponse"
        if resp_type == "ConfigBatchListenResponse":
            resp_type = "ConfigChangeBatchListenResponse"
        if secured:
            try:
                self.n.auth.check(headers.get("accessToken"))
            except NacosError as e:
                return error_response(resp_type, 403, e.message)
        try:
            return fn(body, conn)
        except NacosError as e:
            return error_response(resp_type, e.status, e.message)

    # naming

    @staticmethod
    def naming_key(body):
        return (body.get("namespace") or "", body.get("groupName") or DEFAULT_GROUP, body.get("serviceName") or "")

    @staticmethod
    def instance_of(j, key):
        # InstanceRequest and BatchInstanceRequest go to the ephemeral client operations
        # whatever the instance says (persistent ones are PersistentInstanceRequest).
        inst = Instance(j.get("ip"), j.get("port") or 0, weight=j.get("weight", 1.0),
                        healthy=j.get("healthy", True), enabled=j.get("enabled", True),
                        ephemeral=True, cluster=j.get("clusterName") or DEFAULT_CLUSTER,
                        metadata={str(k): str(v) for k, v in (j.get("metadata") or {}).items()},
                        instance_id=j.get("instanceId") or None)
        if not inst.instance_id:
            inst.instance_id = f"{inst.ip}#{inst.port}#{inst.cluster}#{key[1]}@@{key[2]}"
        if not set(inst.cluster) <= CLUSTER_CHARS:
            raise NacosError(400, f"Instance 'clusterName' should be characters with only 0-9a-zA-Z-. "
                                  f"(current: {inst.cluster})")
        return inst

    def instance(self, body, conn):
        key = self.naming_key(body)
        typ = body.get("type")
        if typ == "registerInstance":
            self.n.store.register(key, conn.id, [self.instance_of(body.get("instance") or {}, key)], "grpc")
        elif typ == "deregisterInstance":
            inst = body.get("instance") or {}
            self.n.store.deregister(key, conn.id, "grpc", inst.get("ip"), inst.get("port"))
        else:
            raise NacosError(400, f"Unsupported request type {typ}")
        return response("InstanceResponse", {"type": typ})

    def batch_instance(self, body, conn):
        key = self.naming_key(body)
        typ = body.get("type")
        if typ != "batchRegisterInstance":
            raise NacosError(400, f"Unsupported request type {typ}")
        insts = [self.instance_of(j, key) for j in body.get("instances") or []]
        self.n.store.register(key, conn.id, insts, "grpc")
        return response("BatchInstanceResponse", {"type": typ})

    def service_list(self, body, conn):
        key = self.naming_key(body)
        names = self.n.store.service_names(key[0], key[1])
        page_no, page_size = int(body.get("pageNo") or 0), int(body.get("pageSize") or 0)
        start = max((page_no - 1) * page_size, 0)
        return response("ServiceListResponse", {"count": len(names),
                                                "serviceNames": names[start:start + page_size]})

    def service_query(self, body, conn):
        key = self.naming_key(body)
        info = self.n.store.service_info(key, body.get("cluster") or "", bool(body.get("healthyOnly")))
        return response("QueryServiceResponse", {"serviceInfo": info})

    def subscribe(self, body, conn):
        key = self.naming_key(body)
        clusters = body.get("clusters") or ""
        info = self.n.store.service_info(key, clusters, False)
        if body.get("subscribe", True):
            conn.subscriptions[key] = clusters
            self.n.recorder.record({"kind": "subscribe", "namespace": key[0], "group": key[1],
                                    "service": key[2], "connection": conn.id})
        else:
            conn.subscriptions.pop(key, None)
        return response("SubscribeServiceResponse", {"serviceInfo": info, "message": "success"})

    # config

    @staticmethod
    def config_key(body):
        data_id, group = body.get("dataId") or "", body.get("group") or ""
        if not data_id.strip() or not valid_name(data_id.strip()):
            raise NacosError(400, f"invalid dataId : {data_id}")
        if not group.strip() or not valid_name(group):
            raise NacosError(400, f"invalid group : {group}")
        return (config_tenant(body.get("tenant")), group, data_id)

    def config_publish(self, body, conn):
        key = self.config_key(body)
        content = body.get("content") or ""
        if not content.strip():
            return error_response("ConfigPublishResponse", 400, f"content is blank : {content}")
        extra = body.get("additionMap") or {}
        ctype = extra.get("type") if extra.get("type") in CONFIG_TYPES else "text"
        try:
            self.n.store.config_publish(key, content, ctype, extra.get("appName"), body.get("casMd5")
                                        or extra.get("casMd5"), "grpc")
        except NacosError as e:
            return error_response("ConfigPublishResponse", 500, e.message)
        return response("ConfigPublishResponse")

    def config_query(self, body, conn):
        key = self.config_key(body)
        c = self.n.store.config_get(key)
        if c is None:
            return payload("ConfigQueryResponse", {"resultCode": 500, "errorCode": 300,
                                                   "message": "config data not exist", "success": False,
                                                   "lastModified": 0, "beta": False})
        return response("ConfigQueryResponse", {"content": c["content"], "encryptedDataKey": "",
                                                "contentType": c["type"], "md5": c["md5"],
                                                "lastModified": c["lastModified"], "beta": False})

    def config_remove(self, body, conn):
        key = self.config_key(body)
        self.n.store.config_remove(key, "grpc")
        return response("ConfigRemoveResponse")

    def config_listen(self, body, conn):
        changed = []
        for ctx in body.get("configListenContexts") or []:
            d, g, t = ctx.get("dataId") or "", ctx.get("group") or "", ctx.get("tenant") or ""
            key = (config_tenant(t), g, d)
            if body.get("listen", True):
                conn.listens[key] = (d, g, t)
                if self.n.store.config_md5(key) != (ctx.get("md5") or ""):
                    changed.append({"group": g, "dataId": d, "tenant": t})
            else:
                conn.listens.pop(key, None)
        return response("ConfigChangeBatchListenResponse", {"changedConfigs": changed})

    # the bi-stream

    def bi_stream(self, request_iterator, context):
        conn = Conn(self.conn_id(context.peer()), context.peer())

        def reader():
            try:
                for req in request_iterator:
                    conn.last_active = time.monotonic()
                    t = req.metadata.type
                    try:
                        body = json.loads(req.body.value.decode("utf-8") or "{}")
                    except ValueError:
                        continue
                    if t == "ConnectionSetupRequest":
                        conn.labels = body.get("labels") or {}
                        conn.version = body.get("clientVersion") or ""
                        conn.registered = True
                        with self.lock:
                            old = self.conns.get(conn.id)
                            self.conns[conn.id] = conn
                        if old is not None and old is not conn:
                            old.close()
                        self.n.recorder.record({"kind": "connect", "connection": conn.id,
                                                "clientVersion": conn.version, "labels": conn.labels})
                        if body.get("abilityTable") is not None:
                            conn.push("SetupAckRequest", {"abilityTable": {"supportPersistentInstanceByGrpc": True},
                                                          "module": "internal"})
                    elif t.endswith("Response"):
                        ev = conn.acks.pop(body.get("requestId") or "", None)
                        if ev is not None:
                            ev.set()
            except Exception:
                pass
            finally:
                conn.close()

        threading.Thread(target=reader, name=f"bi-{conn.id}", daemon=True).start()
        try:
            while True:
                item = conn.out.get()
                if item is None or not context.is_active():
                    break
                yield item
        finally:
            self.n.recorder.record({"kind": "disconnect", "connection": conn.id})
            self.unregister(conn)

    def pusher(self):
        """Pushes to subscribers and config listeners, outside the store's lock."""
        while True:
            kind, key = self.pushq.get()
            with self.lock:
                conns = [c for c in self.conns.values() if c.registered and not c.closed]
            for c in conns:
                if kind == "naming" and key in c.subscriptions:
                    info = self.n.store.service_info(key, c.subscriptions[key], False)
                    c.push("NotifySubscriberRequest", {"namespace": key[0], "serviceName": key[2],
                                                       "groupName": key[1], "serviceInfo": info,
                                                       "module": "naming"})
                elif kind == "config" and key in c.listens:
                    d, g, t = c.listens[key]
                    c.push("ConfigChangeNotifyRequest", {"dataId": d, "group": g, "tenant": t,
                                                         "module": "config"})

    def detector(self):
        """ConnectionManager's keep-alive check: a connection idle for --grpc-idle gets a
        ClientDetectionRequest; no answer within 3 s ends it."""
        while True:
            time.sleep(min(1.0, self.n.args.grpc_idle / 4))
            with self.lock:
                conns = [c for c in self.conns.values() if c.registered and not c.closed]
            for c in conns:
                if time.monotonic() - c.last_active > self.n.args.grpc_idle:
                    _, ev = c.push("ClientDetectionRequest", {"module": "internal"})
                    threading.Thread(target=self._await_detection, args=(c, ev), daemon=True).start()
                    c.last_active = time.monotonic()

    def _await_detection(self, conn, ev):
        if not ev.wait(3.0) and not conn.closed:
            self.n.recorder.record({"kind": "detect_failed", "connection": conn.id})
            self.unregister(conn)


# ---- the process --------------------------------------------------------------------


class Nacos:
    def __init__(self, args):
        self.args = args
        self.recorder = peerlib.Recorder(args.record)
        self.store = Store(args, self.recorder)
        self.auth = Auth(args.auth)
        self.http = None
        self.http_conns = set()
        self.http_conns_lock = threading.Lock()
        self.down_gen = 0
        self.grpc = GrpcSide(self)
        self.http_port = None
        self.state_lock = threading.Lock()
        self.up = False

    def start(self, port):
        self.http = peerlib.serve_http(make_http_handler(self), port)
        self.http_port = self.http.server_address[1]
        try:
            self.grpc.start(self.http_port + 1000)
        except Exception:
            self.http.shutdown()
            self.http.server_close()
            raise
        self.up = True

    def go_down(self):
        with self.state_lock:
            if not self.up:
                return
            self.up = False
            self.http.shutdown()
            self.http.server_close()
            self.down_gen += 1
            with self.store.cond:
                self.store.cond.notify_all()
            with self.http_conns_lock:
                conns = list(self.http_conns)
            for s in conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.grpc.stop()
            self.recorder.record({"kind": "down"})

    def come_back(self):
        with self.state_lock:
            if self.up:
                return
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.start(self.http_port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self.recorder.record({"kind": "up"})

    def drop_grpc(self):
        with self.state_lock:
            if not self.up:
                return
            self.grpc.stop()
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.grpc.start(self.http_port + 1000)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self.recorder.record({"kind": "drop_grpc"})

    def expiry_loop(self):
        while True:
            time.sleep(min(0.5, self.args.heartbeat_timeout / 4))
            self.store.expire()


def serve_control(nacos):
    class Control(peerlib.JsonHandler):
        def do_GET(self):
            if self.path == "/state":
                with nacos.grpc.lock:
                    conns = [{"id": c.id, "subscriptions": [list(k) for k in c.subscriptions],
                              "listens": [list(k) for k in c.listens]} for c in nacos.grpc.conns.values()]
                self.reply(200, dict(nacos.store.snapshot(), connections=conns, up=nacos.up))
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.body() or b"{}")
            if self.path == "/instance":
                key = (body.get("namespace") or DEFAULT_NAMESPACE, body.get("group") or DEFAULT_GROUP,
                       body["service"])
                fields = {k: body[k] for k in ("healthy", "weight", "enabled") if k in body}
                if "healthy" in fields:
                    # A forced health stands until the next beat (as Nacos's own API).
                    fields["last_beat"] = time.monotonic()
                ok = nacos.store.update(key, body["ip"], body["port"], body.get("cluster"), fields)
                self.reply(200 if ok else 404, {"updated": ok})
            elif self.path == "/drop-grpc":
                nacos.drop_grpc()
                self.reply(200, {"ok": True})
            elif self.path == "/down":
                nacos.go_down()
                self.reply(200, {"ok": True})
            elif self.path == "/up":
                nacos.come_back()
                self.reply(200, {"ok": True})
            else:
                self.reply(404, {"error": "not found"})

    return peerlib.serve_http(Control)


def pick_ports(nacos, wanted):
    """HTTP on `wanted` (0: any free port whose +1000 is free too), gRPC on HTTP + 1000."""
    if wanted:
        nacos.start(wanted)
        return
    for _ in range(50):
        probe = socket.socket()
        probe.bind((peerlib.LOOPBACK, 0))
        port = probe.getsockname()[1]
        probe.close()
        if port + 1000 > 65535:
            continue
        try:
            nacos.start(port)
            return
        except OSError:
            continue
    raise SystemExit("no free port pair (p, p+1000) found")


def main():
    p = peerlib.base_args("A loopback stand-in for a Nacos 2.x server (HTTP v1 API and gRPC).")
    p.add_argument("--port", type=int, default=0, help="HTTP port (0: pick one whose +1000 is free)")
    p.add_argument("--auth", help="user:pass; enables auth (every call needs a token from login)")
    p.add_argument("--heartbeat-timeout", type=float, default=15.0,
                   help="seconds without a beat before an HTTP ephemeral instance is unhealthy (Nacos: 15)")
    p.add_argument("--ip-delete-timeout", type=float, default=30.0,
                   help="seconds without a beat before it is removed (Nacos: 30)")
    p.add_argument("--empty-service-ttl", type=float, default=60.0,
                   help="seconds an empty service stays listed (Nacos: 60)")
    p.add_argument("--grpc-idle", type=float, default=20.0,
                   help="seconds of silence before a gRPC connection is probed (Nacos: 20)")
    p.add_argument("--max-long-poll-ms", type=int, default=0,
                   help="cap a config long poll at this many ms (0: as the client asks, like Nacos)")
    args = p.parse_args()
    peerlib.start_lifetime(args.max_seconds)
    nacos = Nacos(args)
    pick_ports(nacos, args.port)
    threading.Thread(target=nacos.expiry_loop, name="expiry", daemon=True).start()
    control = serve_control(nacos)
    peerlib.ready(http=nacos.http_port, grpc=nacos.http_port + 1000, control=control.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
