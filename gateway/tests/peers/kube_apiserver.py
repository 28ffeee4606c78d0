"""A local stand-in for the Kubernetes API server, for the gateway's Kubernetes-mode tests.

No API server can run on the test machines, so this speaks the parts of the real wire
protocol that kube-rs (the gateway's watcher) and kubectl use: discovery (/api, /apis,
/api/v1, /apis/<group>/<version>, /version), lists with resourceVersion and limit/continue
pages, chunked watch streams of ADDED/MODIFIED/DELETED events with bookmarks, `410 Gone`
for a resourceVersion older than the compacted history, create/get/replace/patch
(merge, strategic merge as merge, JSON patch)/delete, the `status` subresource, field and
label selectors, and Status objects for errors. State lives in memory.

Objects are stored per group, resource, namespace and name: one version of a group
(Istio's v1, v1beta1 and v1alpha3) sees the same objects, with `apiVersion` set to the
version asked for, and Knative's `ingresses` are not Kubernetes' `ingresses`.

Test controls (not Kubernetes API) under /_stand-in/:
  POST /_stand-in/expire[?delete=PLURAL[.GROUP]/NS/NAME]  compact the history: open watches
                             get an ERROR 410 event and end, and later watches from an
                             older version get 410 too; `delete` removes an object unseen
                             (a bare PLURAL is the first group serving it: `ingresses` is
                             networking.k8s.io's)
  POST /_stand-in/hide?group=GROUP  serve that API group no more (as when its CRDs are not
                             installed): discovery answers 404 for it
  POST /_stand-in/outage?ms=N  end every watch and answer 503 to everything else for N ms
  GET  /_stand-in/requests   every request line seen so far, one per line

Usage: kube_apiserver.py PORT_FILE   (binds 127.0.0.1:0 and writes the port to PORT_FILE)
"""

import base64
import copy
import datetime
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# (group, version, plural, kind, namespaced, short names, has status)
RESOURCES = [
    ("", "v1", "namespaces", "Namespace", False, ["ns"], True),
    ("", "v1", "configmaps", "ConfigMap", True, ["cm"], False),
    ("", "v1", "secrets", "Secret", True, [], False),
    ("", "v1", "services", "Service", True, ["svc"], True),
    ("", "v1", "endpoints", "Endpoints", True, ["ep"], False),
    ("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, [], False),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", True, ["ing"], True),
    ("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, [], False),
    ("networking.higress.io", "v1", "mcpbridges", "McpBridge", True, [], True),
    ("extensions.higress.io", "v1alpha1", "wasmplugins", "WasmPlugin", True, [], True),
    ("networking.internal.knative.dev", "v1alpha1", "ingresses", "Ingress", True, ["kingress", "king"], True),
] + [
    ("networking.istio.io", version, plural, kind, True, short, True)
    for version in ("v1", "v1beta1", "v1alpha3")
    for plural, kind, short in (("gateways", "Gateway", ["gw"]),
                                ("virtualservices", "VirtualService", ["vs"]),
                                ("destinationrules", "DestinationRule", ["dr"]))
]

BOOKMARK_EVERY = 1.0  # seconds


def api_version(group, version):
    return f"{group}/{version}" if group else version


class Store:
    def __init__(self):
        self.cond = threading.Condition()
        self.rv = 1
        self.compacted = 0  # watches from a version below this get 410
        self.objects = {}  # (group, plural, ns, name) -> object
        self.events = []  # (rv, (group, plural), ns, type, object)
        self.hidden = set()  # API groups not served
        self.generation = 0  # bumped by expire/outage: ends open watches
        self.outage_until = 0.0
        self.requests = []
        self.add_namespace("default")
        self.add_namespace("higress-system")

    def add_namespace(self, name):
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}}
        self.write(("", "namespaces"), "", name, obj, "ADDED")

    def write(self, gr, ns, name, obj, typ):
        """gr: (group, plural)."""
        # Store obj (or drop it for DELETED) and record the event; caller holds no lock.
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta["resourceVersion"] = str(self.rv)
            if typ == "DELETED":
                self.objects.pop((*gr, ns, name), None)
            else:
                self.objects[(*gr, ns, name)] = obj
            self.events.append((self.rv, gr, ns, typ, copy.deepcopy(obj)))
            self.cond.notify_all()
            return obj


STORE = Store()


def served():
    """The resources of the groups not hidden."""
    with STORE.cond:
        hidden = set(STORE.hidden)
    return [r for r in RESOURCES if r[0] not in hidden]


def find_resource(group, version, plural):
    for r in served():
        if r[0] == group and r[1] == version and r[2] == plural:
            return r
    return None


def gr(res):
    """The storage key part of a resource: its group and plural, whatever the version."""
    return (res[0], res[2])


def as_version(res, obj):
    """obj as served at res's version."""
    obj["apiVersion"] = api_version(res[0], res[1])
    return obj


def status(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details:
        s["details"] = details
    return s


def merge_patch(target, patch):
    """RFC 7386; keys starting with `$` (strategic-merge directives) are dropped."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)

    def walk(path):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur, parts[-1]

    for op in ops:
        parent, last = walk(op["path"])
        kind = op["op"]
        if isinstance(parent, list):
            i = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(i, op["value"])
            elif kind == "remove":
                parent.pop(i)
            elif kind == "replace":
                parent[i] = op["value"]
            else:
                raise ValueError(f"unsupported op {kind}")
        else:
            if kind in ("add", "replace"):
                parent[last] = op["value"]
            elif kind == "remove":
                del parent[last]
            elif kind == "test":
                if parent.get(last) != op["value"]:
                    raise ValueError("test failed")
            else:
                raise ValueError(f"unsupported op {kind}")
    return doc


def selector_matches(obj, fields, labels):
    meta = obj.get("metadata", {})
    for cond in filter(None, (fields or "").split(",")):
        k, _, v = cond.partition("=")
        v = v.lstrip("=")
        neg = k.endswith("!")
        k = k.rstrip("!")
        actual = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace", "")}.get(k)
        if k == "type":
            actual = obj.get("type")
        if (actual == v) == neg:
            return False
    have = meta.get("labels", {}) or {}
    for cond in filter(None, (labels or "").split(",")):
        if "!=" in cond:
            k, v = cond.split("!=", 1)
            if have.get(k) == v:
                return False
        elif "=" in cond:
            k, v = cond.split("=", 1)
            if have.get(k) != v.lstrip("="):
                return False
        elif cond.startswith("!"):
            if cond[1:] in have:
                return False
        elif cond not in have:
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    # ------------------------------------------------------------------ plumbing
    def send_json(self, code, body, extra_headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return json.loads(self.raw_body or b"{}")

    def handle_any(self, method):
        # Read every request's body, used or not (kubectl sends DeleteOptions with a
        # DELETE): left in the stream it would be parsed as the next request.
        n = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(n) if n else b""
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with STORE.cond:
            STORE.requests.append(f"{method} {self.path}")
            out = STORE.outage_until > time.time()
        if parts.path.startswith("/_stand-in/"):
            return self.control(method, parts.path, q)
        if out:
            return self.send_json(503, status(503, "ServiceUnavailable", "the stand-in API server is in an outage"))
        try:
            self.route(method, parts.path.rstrip("/") or "/", q)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    # ------------------------------------------------------------------ controls
    def control(self, method, path, q):
        if path == "/_stand-in/requests":
            with STORE.cond:
                data = ("\n".join(STORE.requests) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        with STORE.cond:
            if path == "/_stand-in/expire":
                # `delete=<plural>/<namespace>/<name>`: an object removed while the history
                # is compacted, so no watch ever sees its DELETED event; only a re-list
                # shows it is gone.
                if q.get("delete"):
                    what, ns, name = q["delete"].split("/")
                    plural, _, group = what.partition(".")
                    if not group:
                        group = next(r[0] for r in RESOURCES if r[2] == plural)
                    STORE.objects.pop((group, plural, ns, name), None)
                # Every version so far is forgotten: a watch or page from one is 410.
                STORE.rv += 1
                STORE.compacted = STORE.rv
                STORE.generation += 1
            elif path == "/_stand-in/hide":
                STORE.hidden.add(q.get("group", ""))
            elif path == "/_stand-in/outage":
                STORE.outage_until = time.time() + int(q.get("ms", "1000")) / 1000
                STORE.generation += 1
            else:
                return self.send_json(404, status(404, "NotFound", path))
            STORE.cond.notify_all()
        self.send_json(200, {"ok": True})

    # ------------------------------------------------------------------ discovery
    def route(self, method, path, q):
        segs = path.strip("/").split("/") if path != "/" else []
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-stand-in",
                                        "platform": "linux/amd64", "goVersion": "go1.24"})
        if path == "/openapi/v3":
            gvs = sorted({(r[0], r[1]) for r in served()})
            return self.send_json(200, {"paths": {
                ("apis/" if g else "api/") + api_version(g, v): {"serverRelativeURL": f"/openapi/v3/{'apis/' if g else 'api/'}{api_version(g, v)}?hash=1"}
                for g, v in gvs}})
        if path.startswith("/openapi/v3/"):
            return self.openapi_gv(path[len("/openapi/v3/"):])
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            # In the order of RESOURCES: built-in groups first, as a real API server lists
            # them, so kubectl takes `ingress` for networking.k8s.io's, not Knative's.
            groups = {}
            for r in served():
                if r[0]:
                    groups.setdefault(r[0], set()).add(r[1])
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
                 "preferredVersion": {"groupVersion": f"{g}/{sorted(vs)[0]}", "version": sorted(vs)[0]}}
                for g, vs in groups.items()]})
        if segs[:1] == ["api"] and len(segs) >= 2:
            group, version, rest = "", segs[1], segs[2:]
        elif segs[:1] == ["apis"] and len(segs) >= 3:
            group, version, rest = segs[1], segs[2], segs[3:]
        elif segs[:1] == ["apis"] and len(segs) == 2:
            vs = sorted({r[1] for r in served() if r[0] == segs[1]})
            if not vs:
                return self.send_json(404, status(404, "NotFound", f"group {segs[1]} not found"))
            return self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": segs[1],
                                        "versions": [{"groupVersion": f"{segs[1]}/{v}", "version": v} for v in vs],
                                        "preferredVersion": {"groupVersion": f"{segs[1]}/{vs[0]}", "version": vs[0]}})
        else:
            return self.send_json(404, status(404, "NotFound", f"the server could not find {path}"))
        if not rest:
            rs = [r for r in served() if r[0] == group and r[1] == version]
            if not rs:
                return self.send_json(404, status(404, "NotFound", f"{api_version(group, version)} not found"))
            resources = []
            for r in rs:
                resources.append({"name": r[2], "singularName": r[3].lower(), "namespaced": r[4], "kind": r[3],
                                  "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                                  "shortNames": r[5]})
                if r[6]:
                    resources.append({"name": f"{r[2]}/status", "singularName": "", "namespaced": r[4],
                                      "kind": r[3], "verbs": ["get", "patch", "update"]})
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                        "groupVersion": api_version(group, version), "resources": resources})
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = find_resource(group, version, rest[0])
        if res is None:
            return self.send_json(404, status(404, "NotFound", f"the server could not find the requested resource ({path})"))
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if res[4] is False:
            ns = ""
        if name is None:
            if method == "GET" and q.get("watch") in ("1", "true"):
                return self.watch(res, ns, q)
            if method == "GET":
                return self.list(res, ns, q)
            if method == "POST":
                return self.create(res, ns)
            return self.send_json(405, status(405, "MethodNotAllowed", method))
        if sub not in (None, "status"):
            return self.send_json(404, status(404, "NotFound", f"subresource {sub}"))
        return self.one(method, res, ns, name, sub)

    def openapi_gv(self, gv_path):
        """Just enough OpenAPI v3 for kubectl to see that PATCH takes `fieldValidation`,
        so it leaves validation to the server (which this stand-in does not do)."""
        paths = {}
        for r in served():
            prefix = ("apis/" if r[0] else "api/") + api_version(r[0], r[1])
            if prefix != gv_path:
                continue
            ns = "/namespaces/{namespace}" if r[4] else ""
            paths[f"/{prefix}{ns}/{r[2]}/{{name}}"] = {
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "patch": {"x-kubernetes-group-version-kind": {"group": r[0], "version": r[1], "kind": r[3]},
                          "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                          "responses": {"200": {"description": "OK"}}},
            }
        if not paths:
            return self.send_json(404, status(404, "NotFound", gv_path))
        self.send_json(200, {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
                             "paths": paths, "components": {"schemas": {}}})

    # ------------------------------------------------------------------ verbs
    def not_found(self, res, name):
        return self.send_json(404, status(404, "NotFound", f'{res[2]} "{name}" not found',
                                          {"name": name, "group": res[0], "kind": res[2]}))

    def list(self, res, ns, q):
        with STORE.cond:
            rv = STORE.rv
            start = 0
            if q.get("continue"):
                tok = json.loads(base64.b64decode(q["continue"]))
                if tok["rv"] < STORE.compacted:
                    return self.send_json(410, status(410, "Expired", "The provided continue parameter is too old"))
                start = tok["start"]
                rv = tok["rv"]
            items = [copy.deepcopy(o) for (g, p, n, _), o in sorted(STORE.objects.items())
                     if (g, p) == gr(res) and (not ns or n == ns)
                     and selector_matches(o, q.get("fieldSelector"), q.get("labelSelector"))]
        limit = int(q.get("limit") or 0)
        meta = {"resourceVersion": str(rv)}
        page = items[start:]
        if limit and len(page) > limit:
            page = page[:limit]
            meta["continue"] = base64.b64encode(json.dumps({"rv": rv, "start": start + limit}).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        for o in page:
            o.pop("apiVersion", None)
            o.pop("kind", None)
        self.send_json(200, {"kind": f"{res[3]}List", "apiVersion": api_version(res[0], res[1]),
                             "metadata": meta, "items": page})

    def watch(self, res, ns, q):
        fields, labels = q.get("fieldSelector"), q.get("labelSelector")
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
        timeout = int(q.get("timeoutSeconds") or 1800)
        deadline = time.time() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj):
            data = json.dumps(obj).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        with STORE.cond:
            gen = STORE.generation
            since = int(q.get("resourceVersion") or 0)
            if since == 0:
                # "Any": start with the current state as ADDED events.
                initial = [("ADDED", as_version(res, copy.deepcopy(o)))
                           for (g, p, n, _), o in sorted(STORE.objects.items())
                           if (g, p) == gr(res) and (not ns or n == ns) and selector_matches(o, fields, labels)]
                since = STORE.rv
            elif since < STORE.compacted:
                initial = None
            else:
                initial = []
        try:
            if initial is None:
                chunk({"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {since} ({STORE.compacted})")})
                self.wfile.write(b"0\r\n\r\n")
                return
            for typ, o in initial:
                chunk({"type": typ, "object": o})
            last_bookmark = time.time()
            while time.time() < deadline:
                with STORE.cond:
                    STORE.cond.wait(timeout=0.2)
                    if STORE.generation != gen:
                        expired = STORE.compacted > since
                        ended = True
                    else:
                        ended = False
                    pending = [(rv, t, as_version(res, copy.deepcopy(o))) for (rv, g, n, t, o) in STORE.events
                               if rv > since and g == gr(res) and (not ns or n == ns)]
                    current_rv = STORE.rv
                if ended:
                    if expired:
                        chunk({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        # An outage: the connection just drops, as when the server restarts.
                        self.close_connection = True
                    return
                for rv, t, o in pending:
                    since = rv
                    if selector_matches(o, fields, labels):
                        chunk({"type": t, "object": o})
                if bookmarks and time.time() - last_bookmark > BOOKMARK_EVERY:
                    since = max(since, current_rv)
                    chunk({"type": "BOOKMARK", "object": {"kind": res[3], "apiVersion": api_version(res[0], res[1]),
                                                          "metadata": {"resourceVersion": str(since)}}})
                    last_bookmark = time.time()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def stamp(self, res, ns, obj):
        meta = obj.setdefault("metadata", {})
        if res[4]:
            meta["namespace"] = ns
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        obj["apiVersion"] = api_version(res[0], res[1])
        obj["kind"] = res[3]

    def create(self, res, ns):
        obj = self.body()
        name = obj.get("metadata", {}).get("name")
        if not name:
            gen = obj.get("metadata", {}).get("generateName")
            if not gen:
                return self.send_json(422, status(422, "Invalid", "metadata.name: Required value"))
            name = gen + uuid.uuid4().hex[:5]
            obj["metadata"]["name"] = name
        if res[4] and obj.get("metadata", {}).get("namespace") not in (None, "", ns):
            return self.send_json(400, status(400, "BadRequest", "the namespace of the object does not match the namespace on the request"))
        with STORE.cond:
            if (*gr(res), ns, name) in STORE.objects:
                return self.send_json(409, status(409, "AlreadyExists", f'{res[2]} "{name}" already exists',
                                                  {"name": name, "kind": res[2]}))
        obj["metadata"].pop("resourceVersion", None)
        self.stamp(res, ns, obj)
        obj["metadata"]["generation"] = 1
        stored = STORE.write(gr(res), ns, name, obj, "ADDED")
        self.send_json(201, stored)

    def one(self, method, res, ns, name, sub):
        with STORE.cond:
            cur = copy.deepcopy(STORE.objects.get((*gr(res), ns, name)))
        if cur is None:
            return self.not_found(res, name)
        as_version(res, cur)
        if method == "GET":
            return self.send_json(200, cur)
        if method == "DELETE":
            STORE.write(gr(res), ns, name, cur, "DELETED")
            return self.send_json(200, cur)
        if method == "PUT":
            new = self.body()
            rv = new.get("metadata", {}).get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                return self.send_json(409, status(409, "Conflict",
                                                  f'Operation cannot be fulfilled on {res[2]} "{name}": the object has been modified; please apply your changes to the latest version and try again'))
        elif method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0]
            patch = self.body()
            try:
                if ctype == "application/json-patch+json":
                    new = json_patch(cur, patch)
                elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                    new = merge_patch(cur, patch)
                else:
                    return self.send_json(415, status(415, "UnsupportedMediaType", f"patch type {ctype}"))
            except (ValueError, KeyError, IndexError) as e:
                return self.send_json(422, status(422, "Invalid", f"the patch could not be applied: {e}"))
        else:
            return self.send_json(405, status(405, "MethodNotAllowed", method))
        # The status subresource changes status only; the main resource never changes it.
        if sub == "status":
            merged = copy.deepcopy(cur)
            merged["status"] = new.get("status")
            new = merged
        elif "status" in cur:
            new["status"] = cur["status"]
        new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "namespace", "name"):
            if k in cur["metadata"]:
                new["metadata"][k] = cur["metadata"][k]
        new["metadata"]["generation"] = cur["metadata"].get("generation", 1) + (0 if sub else 1)
        self.stamp(res, ns, new)
        stored = STORE.write(gr(res), ns, name, new, "MODIFIED")
        self.send_json(200, stored)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
