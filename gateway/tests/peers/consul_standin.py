"""A loopback stand-in for one Consul agent (a server, single node, one datacenter) and the
part of its HTTP API that registering services and watching their health uses:

- agent: PUT /v1/agent/service/register (`replace-existing-checks`),
  /v1/agent/service/deregister/<id>, /v1/agent/service/maintenance/<id>,
  /v1/agent/maintenance, /v1/agent/check/register, /v1/agent/check/deregister/<id>,
  /v1/agent/check/{pass,warn,fail}/<id> (`note`), /v1/agent/check/update/<id>;
  GET /v1/agent/services, /v1/agent/checks, /v1/agent/self;
- catalog: GET /v1/catalog/services, /v1/catalog/service/<name>, /v1/catalog/nodes,
  /v1/catalog/datacenters;
- health: GET /v1/health/service/<name> (`passing`, `tag`), /v1/health/checks/<name>;
- status: GET /v1/status/leader, /v1/status/peers.

Reads take `dc` (another datacenter: 500 "No path to datacenter"), `stale`, `consistent`,
`cached`, and block as Consul's do: `index` (answer at once when the resource's index is
past it, else wait for a change) and `wait` (Go duration, default 5m, at most 10m, plus up
to wait/16 of jitter); every answer carries `X-Consul-Index`, `X-Consul-KnownLeader` and
`X-Consul-LastContact`. Indexes are per service (its instances and their checks), the
catalog's for the service list, as Consul's state store keeps them.

Checks: TTL (`pass`/`warn`/`fail` calls; expiry makes them critical, output "TTL
expired"), HTTP (GET every `Interval`, 2xx passing, 429 warning, else critical) and TCP
(connect). New checks start critical unless `Status` says otherwise; one check of a
service gets id `service:<id>`, several `service:<id>:<n>`. The node's `serfHealth` check
is passing (the control endpoint flips it). `DeregisterCriticalServiceAfter` is honoured.

ACLs: with --token T every request must carry T (`X-Consul-Token`, `Authorization:
Bearer`, or `?token=`): another token gets 403 "ACL not found"; none (the anonymous token,
default deny) sees empty reads and gets 403 "Permission denied" on writes.

Strict where Consul is lenient: a query parameter this stand-in does not implement gets
400 (Consul ignores unknown ones), so a client relying on one fails loudly; unknown JSON
keys in a registration get 400 as in Consul ("has invalid keys"). Unknown paths: 404.

Control listener: POST /down and /up (the API listener closes every connection and stops
listening, then listens again on the same port), POST /check {"id", "status", "output"}
sets any check's status, POST /node {"status"} sets serfHealth, GET /state dumps it all.
Records {"kind": "request", "method", "path", "query", "token"} per API request.
"""

import json
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import peerlib

NODE_ID = "5e9d8c3a-0d1b-4c8e-9f4e-2b7f6a1c0d11"
LEADER = "127.0.0.1:8300"
MAX_WAIT = 600.0
DEFAULT_WAIT = 300.0


def go_duration(s):
    """Seconds in a Go duration string ("10s", "1m30s", "250ms"); a bare number is
    seconds as the HTTP API reads it. ValueError otherwise."""
    s = s.strip()
    if re.fullmatch(r"\d+", s):
        return float(s)
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ValueError(s)
    return sum(float(n) * units[u] for n, u in parts)


def lower_keys(d):
    """Consul decodes registrations case-insensitively, snake_case too."""
    return {k.replace("_", "").lower(): v for k, v in d.items()} if isinstance(d, dict) else d


SERVICE_KEYS = {
    "id", "name", "tags", "address", "port", "meta", "weights", "check", "checks",
    "enabletagoverride", "taggedaddresses", "kind", "proxy", "connect", "socketpath",
    "locality", "namespace", "partition",
}
CHECK_KEYS = {
    "id", "checkid", "name", "notes", "status", "serviceid", "ttl", "http", "header",
    "method", "body", "tlsskipverify", "tlsservername", "tcp", "interval", "timeout",
    "deregistercriticalserviceafter", "args", "scriptargs", "grpc", "grpcusetls",
    "successbeforepassing", "failuresbeforecritical", "failuresbeforewarning", "outputmaxsize",
}


class BadRequest(Exception):
    pass


class Forbidden(Exception):
    pass


class NotFound(Exception):
    pass


class State:
    def __init__(self, dc, node, address):
        self.dc, self.node, self.address = dc, node, address
        self.cv = threading.Condition()
        self.index = 10
        self.catalog_index = 10
        self.service_index = {}  # service name -> modify index
        self.services = {}  # service id -> service dict
        self.checks = {}  # check id -> check dict
        self.checks["serfHealth"] = self._check(
            "serfHealth", "Serf Health Status", "", "", "passing", {}, output="Agent alive and reachable"
        )
        self.checks["serfHealth"]["Type"] = ""

    # --- indexes -------------------------------------------------------------

    def _bump(self, *names, catalog=False):
        self.index += 1
        for n in names:
            if n:
                self.service_index[n] = self.index
        if catalog:
            self.catalog_index = self.index
        self.cv.notify_all()

    def _bump_all(self):
        self._bump(*self._names())

    def _names(self):
        return {"consul"} | {s["Service"] for s in self.services.values()}

    def health_index(self, name):
        return self.service_index.get(name, self.catalog_index)

    # --- services and checks -------------------------------------------------

    def _check(self, cid, name, sid, sname, status, spec, output=""):
        return {
            "Node": self.node, "CheckID": cid, "Name": name, "Status": status,
            "Notes": spec.get("notes", "") or "", "Output": output, "ServiceID": sid,
            "ServiceName": sname, "ServiceTags": [], "Type": spec.get("_type", ""),
            "Interval": spec.get("interval", "") or "", "Timeout": spec.get("timeout", "") or "",
            "ExposedPort": 0, "Definition": {}, "CreateIndex": self.index, "ModifyIndex": self.index,
            # HTTP/TCP: when to run next; TTL: when it expires.
            "_spec": spec, "_next": time.monotonic() + spec.get("_ttl", 0), "_critical_since": time.monotonic() if status == "critical" else None,
        }

    @staticmethod
    def check_spec(raw):
        c = lower_keys(raw)
        extra = set(c) - CHECK_KEYS
        if extra:
            raise BadRequest(f"Request decode failed: 1 error(s) decoding:\n\n* '' has invalid keys: {', '.join(sorted(extra))}")
        if c.get("args") or c.get("scriptargs"):
            raise BadRequest("Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true")
        kinds = [k for k in ("ttl", "http", "tcp", "grpc") if c.get(k)]
        if len(kinds) != 1:
            raise BadRequest("Invalid check: TTL must be > 0 for TTL checks" if not kinds else "Invalid check: more than one check type")
        c["_type"] = kinds[0]
        if kinds[0] == "ttl":
            c["_ttl"] = go_duration(str(c["ttl"]))
            if c["_ttl"] <= 0:
                raise BadRequest("Invalid check: TTL must be > 0 for TTL checks")
        else:
            if not c.get("interval"):
                raise BadRequest("Invalid check: Interval must be > 0 for Script, HTTP, H2PING, or TCP checks")
            c["_interval"] = go_duration(str(c["interval"]))
            c["_timeout"] = go_duration(str(c["timeout"])) if c.get("timeout") else 10.0
        if c.get("deregistercriticalserviceafter"):
            c["_dereg"] = go_duration(str(c["deregistercriticalserviceafter"]))
        status = c.get("status") or "critical"
        if status not in ("passing", "warning", "critical"):
            raise BadRequest(f"Invalid check status: \"{status}\"")
        c["status"] = status
        return c

    def register(self, body, replace_checks):
        s = lower_keys(body)
        extra = set(s) - SERVICE_KEYS
        if extra:
            raise BadRequest(f"Request decode failed: 1 error(s) decoding:\n\n* '' has invalid keys: {', '.join(sorted(extra))}")
        name = s.get("name") or ""
        if not name:
            raise BadRequest("Missing service name")
        sid = s.get("id") or name
        weights = lower_keys(s.get("weights") or {})
        passing_w = int(weights.get("passing", 1) or 0) if weights else 1
        warning_w = int(weights.get("warning", 1)) if weights else 1
        if passing_w < 1:
            raise BadRequest("Passing must be greater than 0")
        raw_checks = []
        if s.get("check"):
            raw_checks.append(s["check"])
        raw_checks += list(s.get("checks") or [])
        specs = [self.check_spec(c) for c in raw_checks]
        with self.cv:
            old = self.services.get(sid)
            self.services[sid] = {
                "ID": sid, "Service": name, "Tags": list(s.get("tags") or []),
                "Address": s.get("address") or "", "Port": int(s.get("port") or 0),
                "Meta": dict(s.get("meta") or {}), "Weights": {"Passing": passing_w, "Warning": warning_w},
                "EnableTagOverride": bool(s.get("enabletagoverride", False)),
                "TaggedAddresses": s.get("taggedaddresses") or {}, "Kind": s.get("kind") or "",
                "Datacenter": self.dc,
                "CreateIndex": old["CreateIndex"] if old else self.index + 1, "ModifyIndex": self.index + 1,
            }
            if replace_checks or specs:
                for cid in [cid for cid, c in self.checks.items() if c["ServiceID"] == sid and not cid.startswith("_service_maintenance:")]:
                    if replace_checks or cid.startswith(f"service:{sid}"):
                        del self.checks[cid]
            for n, spec in enumerate(specs, 1):
                cid = spec.get("checkid") or spec.get("id") or (f"service:{sid}" if len(specs) == 1 else f"service:{sid}:{n}")
                cname = spec.get("name") or f"Service '{name}' check"
                self.checks[cid] = self._check(cid, cname, sid, name, spec["status"], spec)
            self._bump(name, old["Service"] if old else None, catalog=True)

    def deregister(self, sid):
        with self.cv:
            svc = self.services.pop(sid, None)
            if svc is None:
                raise NotFound(f'Unknown service ID "{sid}". Ensure that the service ID is passed, not the service name.')
            for cid in [cid for cid, c in self.checks.items() if c["ServiceID"] == sid]:
                del self.checks[cid]
            self._bump(svc["Service"], catalog=True)

    def register_check(self, body):
        spec = self.check_spec(body)
        name = spec.get("name") or ""
        if not name:
            raise BadRequest("Missing check name")
        with self.cv:
            sid = spec.get("serviceid") or ""
            svc = self.services.get(sid) if sid else None
            if sid and svc is None:
                raise NotFound(f'ServiceID "{sid}" does not exist')
            cid = spec.get("checkid") or spec.get("id") or name
            self.checks[cid] = self._check(cid, name, sid, svc["Service"] if svc else "", spec["status"], spec)
            self._touch_check(self.checks[cid])

    def deregister_check(self, cid):
        with self.cv:
            c = self.checks.pop(cid, None)
            if c is None:
                raise NotFound(f'Unknown check ID "{cid}". Ensure that the check ID is passed, not the check name.')
            self._touch_check(c)

    def _touch_check(self, c):
        if c["ServiceID"]:
            self._bump(c["ServiceName"])
        else:
            self._bump_all()

    def set_check(self, cid, status, output, ttl_only=False):
        with self.cv:
            c = self.checks.get(cid)
            if c is None:
                raise NotFound(f'Unknown check ID "{cid}". Ensure that the check ID is passed, not the check name.')
            if ttl_only and c["_spec"].get("_type") != "ttl":
                raise BadRequest(f'CheckID "{cid}" does not have associated TTL')
            if c["_spec"].get("_type") == "ttl":
                c["_next"] = time.monotonic() + c["_spec"]["_ttl"]
            self._set_status(c, status, output)

    def _set_status(self, c, status, output):
        if c["Status"] == status and c["Output"] == output:
            return
        if status == "critical" and c["Status"] != "critical":
            c["_critical_since"] = time.monotonic()
        elif status != "critical":
            c["_critical_since"] = None
        c["Status"], c["Output"] = status, output
        c["ModifyIndex"] = self.index + 1
        self._touch_check(c)

    def maintenance(self, sid, enable, reason):
        with self.cv:
            if sid is not None and sid not in self.services:
                raise NotFound(f'Unknown service ID "{sid}". Ensure that the service ID is passed, not the service name.')
            cid = f"_service_maintenance:{sid}" if sid is not None else "_node_maintenance"
            if enable:
                name = "Service Maintenance Mode" if sid is not None else "Node Maintenance Mode"
                svc = self.services.get(sid) if sid is not None else None
                c = self._check(cid, name, sid or "", svc["Service"] if svc else "", "critical", {}, output="")
                c["Notes"] = reason or ("Maintenance mode is enabled for this service, but no reason was provided. This is a default message." if sid is not None else "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.")
                self.checks[cid] = c
                self._touch_check(c)
            elif cid in self.checks:
                self._touch_check(self.checks.pop(cid))

    # --- the check runner ----------------------------------------------------

    def run_checks(self):
        """Run due HTTP/TCP checks, expire TTLs, reap long-critical services."""
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self.cv:
                due = [c for c in self.checks.values() if c["_spec"].get("_type") in ("http", "tcp") and c["_next"] <= now]
                for c in due:
                    c["_next"] = now + c["_spec"]["_interval"]
                for c in list(self.checks.values()):
                    if c["_spec"].get("_type") == "ttl" and c["_next"] <= now and c["Status"] != "critical":
                        self._set_status(c, "critical", "TTL expired")
                reap = [c["ServiceID"] for c in self.checks.values()
                        if c["_spec"].get("_dereg") and c["_critical_since"] is not None
                        and now - c["_critical_since"] >= c["_spec"]["_dereg"]]
            for c in due:
                status, output = probe(c["_spec"])
                with self.cv:
                    if self.checks.get(c["CheckID"]) is c:
                        self._set_status(c, status, output)
            for sid in set(reap):
                try:
                    self.deregister(sid)
                except NotFound:
                    pass

    # --- reads ---------------------------------------------------------------

    def node_json(self):
        return {
            "ID": NODE_ID, "Node": self.node, "Address": self.address, "Datacenter": self.dc,
            "TaggedAddresses": {"lan": self.address, "wan": self.address}, "Meta": {"consul-network-segment": ""},
            "CreateIndex": 5, "ModifyIndex": 5,
        }

    def consul_service(self):
        return {
            "ID": "consul", "Service": "consul", "Tags": [], "Address": "", "Port": 8300, "Meta": {},
            "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False, "Datacenter": self.dc,
            "TaggedAddresses": {}, "Kind": "", "CreateIndex": 5, "ModifyIndex": 5,
        }

    def all_services(self):
        return [self.consul_service()] + sorted(self.services.values(), key=lambda s: s["ID"])

    @staticmethod
    def public(c):
        return {k: v for k, v in c.items() if not k.startswith("_")}

    def health(self, name, passing, tags):
        out = []
        for s in self.all_services():
            if s["Service"] != name:
                continue
            if tags and not all(t in s["Tags"] for t in tags):
                continue
            checks = [self.public(c) for c in self.checks.values()
                      if c["ServiceID"] == "" or (c["ServiceID"] == s["ID"])]
            if s["ID"] == "consul":
                checks = [self.public(c) for c in self.checks.values() if c["ServiceID"] == ""]
            if passing and any(c["Status"] == "critical" for c in checks):
                continue
            out.append({"Node": self.node_json(), "Service": dict(s), "Checks": checks})
        return out

    def catalog_services(self):
        out = {}
        for s in self.all_services():
            tags = out.setdefault(s["Service"], [])
            for t in s["Tags"]:
                if t not in tags:
                    tags.append(t)
        return out

    def catalog_service(self, name, tags):
        n = self.node_json()
        out = []
        for s in self.all_services():
            if s["Service"] != name or (tags and not all(t in s["Tags"] for t in tags)):
                continue
            out.append({
                "ID": n["ID"], "Node": n["Node"], "Address": n["Address"], "Datacenter": self.dc,
                "TaggedAddresses": n["TaggedAddresses"], "NodeMeta": n["Meta"],
                "ServiceID": s["ID"], "ServiceName": s["Service"], "ServiceTags": s["Tags"],
                "ServiceAddress": s["Address"], "ServicePort": s["Port"], "ServiceMeta": s["Meta"],
                "ServiceWeights": s["Weights"], "ServiceEnableTagOverride": s["EnableTagOverride"],
                "ServiceTaggedAddresses": s["TaggedAddresses"], "ServiceKind": s["Kind"],
                "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"],
            })
        return out


def probe(spec):
    if spec["_type"] == "tcp":
        host, _, port = str(spec["tcp"]).rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=spec["_timeout"]):
                return "passing", f"TCP connect {spec['tcp']}: Success"
        except OSError as e:
            return "critical", f"dial tcp {spec['tcp']}: {e}"
    req = urllib.request.Request(str(spec["http"]), method=spec.get("method") or "GET")
    for k, vs in (spec.get("header") or {}).items():
        for v in vs:
            req.add_header(k, v)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=spec["_timeout"]) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except OSError as e:
        return "critical", f"Get \"{spec['http']}\": {e}"
    status = "passing" if 200 <= code < 300 else "warning" if code == 429 else "critical"
    return status, f"HTTP {req.get_method()} {spec['http']}: {code} Output: "


READ_PARAMS = {"dc", "index", "wait", "stale", "consistent", "cached", "token"}


def make_handler(state, token, recorder):
    class Api(peerlib.JsonHandler):
        def _token(self):
            t = self.headers.get("X-Consul-Token")
            if not t:
                auth = self.headers.get("Authorization") or ""
                if auth.startswith("Bearer "):
                    t = auth[7:].strip()
            if not t:
                t = (self.q.get("token") or [""])[0]
            return t

        def _answer(self, code, body, index=None):
            extra = [("X-Consul-Default-ACL-Policy", "deny" if token else "allow")]
            if index is not None:
                extra += [
                    ("X-Consul-Index", str(index)),
                    ("X-Consul-KnownLeader", "true"),
                    ("X-Consul-LastContact", "0"),
                    ("X-Consul-Effective-Consistency", "leader"),
                ]
            if isinstance(body, (dict, list)) or body is None:
                self.reply(code, json.dumps(body).encode(), "application/json", extra)
            elif isinstance(body, bool):
                self.reply(code, b"true" if body else b"false", "application/json", extra)
            else:
                self.reply(code, body.encode(), "text/plain; charset=utf-8", extra)

        def _params(self, allowed):
            extra = set(self.q) - allowed
            if extra:
                raise BadRequest(f"stand-in: query parameter(s) not supported: {', '.join(sorted(extra))}")
            dc = (self.q.get("dc") or [""])[0]
            if dc and dc != state.dc:
                raise RuntimeError("No path to datacenter")

        def _flag(self, name):
            if name not in self.q:
                return False
            v = (self.q[name] or [""])[0].lower()
            return v not in ("false", "0")

        def _blocking_read(self, index_of, produce):
            """Answer `produce()` at the resource's index, blocking as Consul does."""
            raw_index = (self.q.get("index") or [None])[0]
            try:
                min_index = int(raw_index) if raw_index not in (None, "") else 0
            except ValueError:
                raise BadRequest("Invalid index")
            raw_wait = (self.q.get("wait") or [None])[0]
            try:
                wait = go_duration(raw_wait) if raw_wait not in (None, "") else DEFAULT_WAIT
            except ValueError:
                raise BadRequest("Invalid wait time")
            wait = min(wait, MAX_WAIT)
            deadline = time.monotonic() + wait + random.uniform(0, wait / 16)
            with state.cv:
                if min_index > 0:
                    while index_of() <= min_index and state_up():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        state.cv.wait(min(left, 0.5))
                idx = max(index_of(), 1)
                body = produce()
            if not state_up():
                # Going down: a stopped agent's connections just end, unanswered.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self._answer(200, body, idx)

        def _dispatch(self):
            u = urllib.parse.urlsplit(self.path)
            self.q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
            path = urllib.parse.unquote(u.path)
            tok = self._token()
            recorder.record({"kind": "request", "method": self.command, "path": path, "query": u.query, "token": tok})
            self.anonymous = False
            if token:
                if tok and tok != token:
                    raise Forbidden("ACL not found")
                self.anonymous = not tok
            m = self.command
            write = m in ("PUT", "POST", "DELETE")
            if write and self.anonymous:
                raise Forbidden("Permission denied: anonymous token lacks permission")
            routes = [
                ("GET", r"/v1/status/leader", lambda: self.reply(200, json.dumps(LEADER).encode())),
                ("GET", r"/v1/status/peers", lambda: self.reply(200, json.dumps([LEADER]).encode())),
                ("GET", r"/v1/catalog/datacenters", lambda: self.reply(200, json.dumps([state.dc]).encode())),
                ("GET", r"/v1/catalog/services", self.catalog_services),
                ("GET", r"/v1/catalog/service/(?P<name>[^/]+)", self.catalog_service),
                ("GET", r"/v1/catalog/nodes", self.catalog_nodes),
                ("GET", r"/v1/health/service/(?P<name>[^/]+)", self.health_service),
                ("GET", r"/v1/health/checks/(?P<name>[^/]+)", self.health_checks),
                ("GET", r"/v1/agent/services", self.agent_services),
                ("GET", r"/v1/agent/checks", self.agent_checks),
                ("GET", r"/v1/agent/self", self.agent_self),
                ("PUT", r"/v1/agent/service/register", self.service_register),
                ("PUT", r"/v1/agent/service/deregister/(?P<id>.+)", self.service_deregister),
                ("PUT", r"/v1/agent/service/maintenance/(?P<id>.+)", self.service_maintenance),
                ("PUT", r"/v1/agent/maintenance", self.node_maintenance),
                ("PUT", r"/v1/agent/check/register", self.check_register),
                ("PUT", r"/v1/agent/check/deregister/(?P<id>.+)", self.check_deregister),
                ("PUT", r"/v1/agent/check/(?P<st>pass|warn|fail)/(?P<id>.+)", self.check_ttl),
                ("PUT", r"/v1/agent/check/update/(?P<id>.+)", self.check_update),
            ]
            known = False
            for method, pattern, fn in routes:
                mt = re.fullmatch(pattern, path)
                if not mt:
                    continue
                known = True
                if method == m:
                    self.args = mt.groupdict()
                    return fn()
            if known:
                self.reply(405, f"method {m} not allowed".encode(), "text/plain; charset=utf-8")
            else:
                self.reply(404, b"404 page not found\n", "text/plain; charset=utf-8")

        def _handle(self):
            try:
                self._dispatch()
            except BadRequest as e:
                self._answer(400, str(e))
            except Forbidden as e:
                self._answer(403, str(e))
            except NotFound as e:
                self._answer(404, str(e))
            except RuntimeError as e:
                self._answer(500, str(e))
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True

        do_GET = do_PUT = do_POST = do_DELETE = _handle

        # --- reads ---------------------------------------------------------

        def catalog_services(self):
            self._params(READ_PARAMS)
            self._blocking_read(lambda: state.catalog_index,
                                lambda: {} if self.anonymous else state.catalog_services())

        def catalog_service(self):
            self._params(READ_PARAMS | {"tag"})
            name = self.args["name"]
            self._blocking_read(lambda: state.health_index(name),
                                lambda: [] if self.anonymous else state.catalog_service(name, self.q.get("tag") or []))

        def catalog_nodes(self):
            self._params(READ_PARAMS)
            self._blocking_read(lambda: 5, lambda: [] if self.anonymous else [state.node_json()])

        def health_service(self):
            self._params(READ_PARAMS | {"passing", "tag"})
            name = self.args["name"]
            passing = self._flag("passing")
            tags = self.q.get("tag") or []
            self._blocking_read(lambda: state.health_index(name),
                                lambda: [] if self.anonymous else state.health(name, passing, tags))

        def health_checks(self):
            self._params(READ_PARAMS)
            name = self.args["name"]
            self._blocking_read(lambda: state.health_index(name), lambda: [] if self.anonymous else [
                state.public(c) for c in state.checks.values() if c["ServiceName"] == name])

        def agent_services(self):
            self._params({"token"})
            with state.cv:
                body = {} if self.anonymous else {sid: dict(s) for sid, s in state.services.items()}
            self.reply(200, json.dumps(body).encode())

        def agent_checks(self):
            self._params({"token"})
            with state.cv:
                body = {} if self.anonymous else {cid: state.public(c) for cid, c in state.checks.items()}
            self.reply(200, json.dumps(body).encode())

        def agent_self(self):
            self._params({"token"})
            self.reply(200, json.dumps({
                "Config": {"Datacenter": state.dc, "NodeName": state.node, "NodeID": NODE_ID, "Server": True, "Version": "1.21.0"},
                "Member": {"Name": state.node, "Addr": state.address, "Port": 8301, "Status": 1},
                "Meta": {"consul-network-segment": ""},
            }).encode())

        # --- writes --------------------------------------------------------

        def _json_body(self):
            raw = self.body()
            try:
                return json.loads(raw or b"{}")
            except ValueError as e:
                raise BadRequest(f"Request decode failed: {e}")

        def service_register(self):
            self._params({"replace-existing-checks", "token"})
            state.register(self._json_body(), self._flag("replace-existing-checks"))
            self.reply(200, b"", "text/plain; charset=utf-8")

        def service_deregister(self):
            self._params({"token"})
            state.deregister(self.args["id"])
            self.reply(200, b"", "text/plain; charset=utf-8")

        def _enable(self):
            v = (self.q.get("enable") or [""])[0].lower()
            if v not in ("true", "false"):
                raise BadRequest("Missing value for enable")
            return v == "true"

        def service_maintenance(self):
            self._params({"enable", "reason", "token"})
            state.maintenance(self.args["id"], self._enable(), (self.q.get("reason") or [""])[0])
            self.reply(200, b"", "text/plain; charset=utf-8")

        def node_maintenance(self):
            self._params({"enable", "reason", "token"})
            state.maintenance(None, self._enable(), (self.q.get("reason") or [""])[0])
            self.reply(200, b"", "text/plain; charset=utf-8")

        def check_register(self):
            self._params({"token"})
            state.register_check(self._json_body())
            self.reply(200, b"", "text/plain; charset=utf-8")

        def check_deregister(self):
            self._params({"token"})
            state.deregister_check(self.args["id"])
            self.reply(200, b"", "text/plain; charset=utf-8")

        def check_ttl(self):
            self._params({"note", "token"})
            status = {"pass": "passing", "warn": "warning", "fail": "critical"}[self.args["st"]]
            state.set_check(self.args["id"], status, (self.q.get("note") or [""])[0], ttl_only=True)
            self.reply(200, b"", "text/plain; charset=utf-8")

        def check_update(self):
            self._params({"token"})
            b = lower_keys(self._json_body())
            status = b.get("status") or ""
            if status not in ("passing", "warning", "critical"):
                raise BadRequest(f'Invalid check status: "{status}"')
            state.set_check(self.args["id"], status, b.get("output") or "", ttl_only=True)
            self.reply(200, b"", "text/plain; charset=utf-8")

    return Api


SERVER = {}


def state_up():
    s = SERVER.get("api")
    return s is not None and s.is_up


def make_control(state):
    class Control(peerlib.JsonHandler):
        def do_GET(self):
            if self.path != "/state":
                return self.reply(404, {"error": "not found"})
            with state.cv:
                body = {
                    "up": state_up(), "index": state.index,
                    "services": state.services,
                    "checks": {k: state.public(c) for k, c in state.checks.items()},
                }
            self.reply(200, body)

        def do_POST(self):
            body = json.loads(self.body() or b"{}")
            if self.path == "/down":
                SERVER["api"].down()
                with state.cv:
                    state.cv.notify_all()
            elif self.path == "/up":
                SERVER["api"].up()
            elif self.path == "/check":
                try:
                    state.set_check(body["id"], body["status"], body.get("output", "set by the test"))
                except (NotFound, BadRequest) as e:
                    return self.reply(404, {"error": str(e)})
            elif self.path == "/node":
                state.set_check("serfHealth", body["status"], body.get("output", "set by the test"))
            else:
                return self.reply(404, {"error": "not found"})
            self.reply(200, {"up": state_up()})

    return Control


def main():
    p = peerlib.base_args(__doc__.splitlines()[0])
    p.add_argument("--token", default="", help="ACL token every request must carry (default: ACLs off)")
    p.add_argument("--dc", default="dc1", help="the datacenter's name")
    p.add_argument("--node", default="standin", help="the node's name")
    p.add_argument("--address", default="127.0.0.1", help="the node's address")
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    recorder = peerlib.Recorder(a.record)
    state = State(a.dc, a.node, a.address)
    SERVER["api"] = peerlib.Switchable(make_handler(state, a.token, recorder))
    control = peerlib.serve_http(make_control(state))
    threading.Thread(target=state.run_checks, name="checks", daemon=True).start()
    peerlib.ready(http=SERVER["api"].port, control=control.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
