"""A loopback stand-in for one Eureka server (no peers, no self-preservation) and its REST
API under /eureka, as Netflix's "Eureka REST operations" page and the server's resources
define it:

- POST   /eureka/apps/<APP>                     register ({"instance": ...} JSON or
                                                <instance> XML; 204)
- DELETE /eureka/apps/<APP>/<id>                cancel (200; unknown: 404)
- PUT    /eureka/apps/<APP>/<id>                heartbeat (`status`, `lastDirtyTimestamp`,
                                                `overriddenstatus`; unknown: 404, and 404
                                                too when the caller's lastDirtyTimestamp is
                                                newer, so it registers again)
- PUT    /eureka/apps/<APP>/<id>/status?value=  status override (200; unknown: 404)
- DELETE /eureka/apps/<APP>/<id>/status         override removed (status = `value`, else
                                                UNKNOWN)
- GET    /eureka/apps, /eureka/apps/delta, /eureka/apps/<APP>, /eureka/apps/<APP>/<id>,
         /eureka/instances/<id>, /eureka/vips/<vip>, /eureka/svips/<svip>

Application names are upper-cased, in paths and bodies, as the server does. Reads answer
JSON when `Accept` asks for it, else XML; an application without instances is not
listed, and asking for it gives 404. `apps__hashcode` is Eureka's reconcile hash
(`<STATUS>_<count>_` in status order) and the delta lists what changed in the last
`--delta-retention` seconds (Eureka: 180) with its `actionType`.

Leases: an instance not renewed within its `leaseInfo.durationInSecs` (or
`--lease-seconds` when given) is evicted by a sweep every `--eviction-interval` seconds
(Eureka: 60).

Unknown paths: 404; a known path with another method: 405; an unsupported body type: 415;
a registration missing `hostName`, `ipAddr`, `app` or `dataCenterInfo`: 400.

Control listener: POST /down and /up (the API listener closes every connection and stops
listening, then listens again on the same port), POST /status {"app", "id", "status"}
sets an instance's status without an override (as the instance would), POST /evict runs
the eviction sweep now, GET /state dumps the registry. Records {"kind": "request",
"method", "path", "query", "accept"} per API request.
"""

import copy
import json
import re
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

import peerlib

STATUSES = ("UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN")
DEFAULT_DC = {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}
EMPTY_MAP = {"@class": "java.util.Collections$EmptyMap"}


def now_ms():
    return int(time.time() * 1000)


class HttpError(Exception):
    def __init__(self, code, text=""):
        super().__init__(text)
        self.code, self.text = code, text


def xml_to_instance(node):
    """An <instance> element as the JSON codec's dict."""
    out = {}
    for child in node:
        tag = child.tag
        if tag in ("port", "securePort"):
            out[tag] = {"$": int((child.text or "0").strip()), "@enabled": child.attrib.get("enabled", "false")}
        elif tag == "dataCenterInfo":
            d = {"@class": child.attrib.get("class", DEFAULT_DC["@class"])}
            for c in child:
                if c.tag == "metadata":
                    d["metadata"] = {m.tag: m.text or "" for m in c}
                else:
                    d[c.tag] = c.text or ""
            out[tag] = d
        elif tag == "leaseInfo":
            out[tag] = {c.tag: int(c.text or 0) for c in child}
        elif tag == "metadata":
            out[tag] = {c.tag: c.text or "" for c in child}
        else:
            out[tag] = child.text or ""
    return out


def instance_to_xml(parent, inst):
    e = ET.SubElement(parent, "instance")
    for k, v in inst.items():
        if k in ("port", "securePort"):
            c = ET.SubElement(e, k, enabled=str(v.get("@enabled", "false")))
            c.text = str(v.get("$", 0))
        elif k == "dataCenterInfo":
            c = ET.SubElement(e, k, {"class": v.get("@class", DEFAULT_DC["@class"])})
            ET.SubElement(c, "name").text = v.get("name", "MyOwn")
            if v.get("metadata"):
                m = ET.SubElement(c, "metadata")
                for mk, mv in v["metadata"].items():
                    ET.SubElement(m, mk).text = str(mv)
        elif k == "leaseInfo":
            c = ET.SubElement(e, k)
            for lk, lv in v.items():
                ET.SubElement(c, lk).text = str(lv)
        elif k == "metadata":
            real = {mk: mv for mk, mv in v.items() if mk != "@class"}
            c = ET.SubElement(e, k) if real else ET.SubElement(e, k, {"class": EMPTY_MAP["@class"]})
            for mk, mv in real.items():
                ET.SubElement(c, mk).text = str(mv)
        elif k == "overriddenStatus":
            ET.SubElement(e, "overriddenstatus").text = str(v)
        else:
            ET.SubElement(e, k).text = str(v)
    return e


class Registry:
    def __init__(self, lease_seconds, retention):
        self.lock = threading.Lock()
        self.apps = {}  # APP -> {id: instance dict}
        self.renewed = {}  # (APP, id) -> monotonic time of the last renewal
        self.lease_seconds = lease_seconds
        self.retention = retention
        self.changes = []  # (monotonic time, APP, instance copy with actionType)
        self.version = 1

    def _changed(self, app, inst, action):
        inst["actionType"] = action
        inst["lastUpdatedTimestamp"] = str(now_ms())
        self.version += 1
        self.changes.append((time.monotonic(), app, copy.deepcopy(inst)))

    def register(self, body):
        inst = body.get("instance") if isinstance(body, dict) and "instance" in body else body
        if not isinstance(inst, dict):
            raise HttpError(400, "Missing instance")
        for field, what in (("hostName", "hostname"), ("ipAddr", "ip address"), ("app", "appName"), ("dataCenterInfo", "dataCenterInfo")):
            if not inst.get(field):
                raise HttpError(400, f"Missing {what}")
        inst = copy.deepcopy(inst)
        app = str(inst["app"]).upper()
        inst["app"] = app
        iid = inst.get("instanceId") or inst["hostName"]
        inst["instanceId"] = iid
        if inst.get("status") not in STATUSES:
            inst["status"] = "UP"
        inst.setdefault("overriddenStatus", inst.pop("overriddenstatus", "UNKNOWN") or "UNKNOWN")
        inst.setdefault("port", {"$": 7001, "@enabled": "true"})
        inst.setdefault("securePort", {"$": 7002, "@enabled": "false"})
        inst.setdefault("countryId", 1)
        if not inst.get("metadata"):
            inst["metadata"] = dict(EMPTY_MAP)
        lease = dict(inst.get("leaseInfo") or {})
        lease.setdefault("renewalIntervalInSecs", 30)
        lease.setdefault("durationInSecs", 90)
        t = now_ms()
        lease["registrationTimestamp"] = t
        lease["lastRenewalTimestamp"] = t
        lease.setdefault("evictionTimestamp", 0)
        lease["serviceUpTimestamp"] = t
        inst["leaseInfo"] = lease
        inst.setdefault("isCoordinatingDiscoveryServer", "false")
        inst.setdefault("lastDirtyTimestamp", str(t))
        with self.lock:
            old = self.apps.get(app, {}).get(iid)
            # An override set on the server outlives a new registration, as in Eureka.
            if old and old.get("overriddenStatus") not in (None, "UNKNOWN"):
                inst["overriddenStatus"] = old["overriddenStatus"]
                inst["status"] = old["overriddenStatus"]
            self.apps.setdefault(app, {})[iid] = inst
            self.renewed[(app, iid)] = time.monotonic()
            self._changed(app, inst, "MODIFIED" if old else "ADDED")

    def _get(self, app, iid):
        inst = self.apps.get(app.upper(), {}).get(iid)
        if inst is None:
            raise HttpError(404)
        return inst

    def cancel(self, app, iid):
        with self.lock:
            inst = self._get(app, iid)
            self._remove(app.upper(), iid, inst)

    def _remove(self, app, iid, inst):
        del self.apps[app][iid]
        if not self.apps[app]:
            del self.apps[app]
        self.renewed.pop((app, iid), None)
        self._changed(app, inst, "DELETED")

    def renew(self, app, iid, dirty):
        with self.lock:
            inst = self._get(app, iid)
            if dirty is not None and dirty > int(inst.get("lastDirtyTimestamp") or 0):
                # The instance knows something newer than we do: it must register again.
                raise HttpError(404)
            self.renewed[(app.upper(), iid)] = time.monotonic()
            inst["leaseInfo"]["lastRenewalTimestamp"] = now_ms()

    def set_override(self, app, iid, status):
        if status not in STATUSES:
            raise HttpError(400)
        with self.lock:
            inst = self._get(app, iid)
            inst["overriddenStatus"] = status
            if inst["status"] != status:
                inst["status"] = status
                self._changed(app.upper(), inst, "MODIFIED")

    def delete_override(self, app, iid, status):
        with self.lock:
            inst = self._get(app, iid)
            inst["overriddenStatus"] = "UNKNOWN"
            inst["status"] = status if status in STATUSES else "UNKNOWN"
            self._changed(app.upper(), inst, "MODIFIED")

    def set_status(self, app, iid, status):
        with self.lock:
            inst = self._get(app, iid)
            if inst["status"] != status:
                inst["status"] = status
                inst["lastDirtyTimestamp"] = str(now_ms())
                self._changed(app.upper(), inst, "MODIFIED")

    def evict(self):
        now = time.monotonic()
        with self.lock:
            for (app, iid), at in list(self.renewed.items()):
                inst = self.apps[app][iid]
                duration = self.lease_seconds if self.lease_seconds is not None else inst["leaseInfo"]["durationInSecs"]
                if now - at > duration:
                    self._remove(app, iid, inst)
            self.changes = [c for c in self.changes if now - c[0] <= self.retention]

    # --- reads ---------------------------------------------------------------

    def hashcode(self, apps):
        counts = {}
        for insts in apps.values():
            for i in insts:
                counts[i["status"]] = counts.get(i["status"], 0) + 1
        return "".join(f"{s}_{counts[s]}_" for s in sorted(counts))

    def listing(self, pick=lambda app, inst: True):
        with self.lock:
            apps = {}
            for app in sorted(self.apps):
                insts = [copy.deepcopy(i) for i in self.apps[app].values() if pick(app, i)]
                if insts:
                    apps[app] = insts
            return apps, self.hashcode({a: list(v.values()) for a, v in self.apps.items()}), self.version

    def delta(self):
        now = time.monotonic()
        with self.lock:
            apps = {}
            for at, app, inst in self.changes:
                if now - at <= self.retention:
                    apps.setdefault(app, {})[inst["instanceId"]] = copy.deepcopy(inst)
            return ({a: list(v.values()) for a, v in apps.items()},
                    self.hashcode({a: list(v.values()) for a, v in self.apps.items()}), self.version)


def render_apps(apps, hashcode, version, as_json):
    if as_json:
        return json.dumps({"applications": {
            "versions__delta": str(version), "apps__hashcode": hashcode,
            "application": [{"name": a, "instance": insts} for a, insts in apps.items()],
        }}).encode(), "application/json"
    root = ET.Element("applications")
    ET.SubElement(root, "versions__delta").text = str(version)
    ET.SubElement(root, "apps__hashcode").text = hashcode
    for a, insts in apps.items():
        e = ET.SubElement(root, "application")
        ET.SubElement(e, "name").text = a
        for i in insts:
            instance_to_xml(e, i)
    return xml_bytes(root), "application/xml"


def render_app(app, insts, as_json):
    if as_json:
        return json.dumps({"application": {"name": app, "instance": insts}}).encode(), "application/json"
    e = ET.Element("application")
    ET.SubElement(e, "name").text = app
    for i in insts:
        instance_to_xml(e, i)
    return xml_bytes(e), "application/xml"


def render_instance(inst, as_json):
    if as_json:
        return json.dumps({"instance": inst}).encode(), "application/json"
    holder = ET.Element("x")
    return xml_bytes(instance_to_xml(holder, inst)), "application/xml"


def xml_bytes(e):
    return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + ET.tostring(e, encoding="utf-8")


def make_handler(reg, recorder):
    class Api(peerlib.JsonHandler):
        def _json_wanted(self):
            return "json" in (self.headers.get("Accept") or "").lower()

        def _send(self, code, body=b"", ctype="application/json"):
            self.reply(code, body, ctype)

        def _dispatch(self):
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
            self.q = {k: v[0] for k, v in q.items()}
            path = urllib.parse.unquote(u.path).rstrip("/") or "/"
            recorder.record({"kind": "request", "method": self.command, "path": path,
                             "query": u.query, "accept": self.headers.get("Accept") or ""})
            routes = [
                (r"/eureka/apps", {"GET": self.get_apps}),
                (r"/eureka/apps/delta", {"GET": self.get_delta}),
                (r"/eureka/apps/(?P<app>[^/]+)", {"GET": self.get_app, "POST": self.post_app}),
                (r"/eureka/apps/(?P<app>[^/]+)/(?P<id>[^/]+)",
                 {"GET": self.get_instance, "PUT": self.put_instance, "DELETE": self.delete_instance}),
                (r"/eureka/apps/(?P<app>[^/]+)/(?P<id>[^/]+)/status",
                 {"PUT": self.put_status, "DELETE": self.delete_status}),
                (r"/eureka/instances/(?P<id>[^/]+)", {"GET": self.get_instance_by_id}),
                (r"/eureka/vips/(?P<vip>[^/]+)", {"GET": self.get_vip}),
                (r"/eureka/svips/(?P<vip>[^/]+)", {"GET": self.get_svip}),
            ]
            for pattern, methods in routes:
                m = re.fullmatch(pattern, path)
                if not m:
                    continue
                fn = methods.get(self.command)
                if fn is None:
                    raise HttpError(405)
                self.args = m.groupdict()
                return fn()
            raise HttpError(404)

        def _handle(self):
            try:
                self._dispatch()
            except HttpError as e:
                self._send(e.code, e.text.encode(), "text/plain")
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True

        do_GET = do_PUT = do_POST = do_DELETE = _handle

        def get_apps(self):
            apps, h, v = reg.listing()
            self._send(200, *render_apps(apps, h, v, self._json_wanted()))

        def get_delta(self):
            apps, h, v = reg.delta()
            self._send(200, *render_apps(apps, h, v, self._json_wanted()))

        def get_app(self):
            app = self.args["app"].upper()
            apps, _, _ = reg.listing(lambda a, i: a == app)
            if app not in apps:
                raise HttpError(404)
            self._send(200, *render_app(app, apps[app], self._json_wanted()))

        def _vip(self, key):
            vip = self.args["vip"]
            apps, h, v = reg.listing(lambda a, i: vip in str(i.get(key) or "").split(","))
            self._send(200, *render_apps(apps, h, v, self._json_wanted()))

        def get_vip(self):
            self._vip("vipAddress")

        def get_svip(self):
            self._vip("secureVipAddress")

        def get_instance(self):
            app, iid = self.args["app"].upper(), self.args["id"]
            apps, _, _ = reg.listing(lambda a, i: a == app and i["instanceId"] == iid)
            if app not in apps:
                raise HttpError(404)
            self._send(200, *render_instance(apps[app][0], self._json_wanted()))

        def get_instance_by_id(self):
            iid = self.args["id"]
            apps, _, _ = reg.listing(lambda a, i: i["instanceId"] == iid)
            if not apps:
                raise HttpError(404)
            self._send(200, *render_instance(next(iter(apps.values()))[0], self._json_wanted()))

        def post_app(self):
            ctype = (self.headers.get("Content-Type") or "").lower()
            raw = self.body()
            if "json" in ctype:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise HttpError(400, "bad JSON")
            elif "xml" in ctype:
                try:
                    node = ET.fromstring(raw)
                except ET.ParseError:
                    raise HttpError(400, "bad XML")
                if node.tag != "instance":
                    raise HttpError(400, "Missing instance")
                body = xml_to_instance(node)
            else:
                raise HttpError(415)
            if isinstance(body, dict) and isinstance(body.get("instance"), dict):
                body["instance"].setdefault("app", self.args["app"])
            reg.register(body)
            self._send(204)

        def put_instance(self):
            dirty = self.q.get("lastDirtyTimestamp")
            reg.renew(self.args["app"], self.args["id"], int(dirty) if dirty and dirty.isdigit() else None)
            self._send(200)

        def delete_instance(self):
            reg.cancel(self.args["app"], self.args["id"])
            self._send(200)

        def put_status(self):
            value = self.q.get("value") or ""
            reg.set_override(self.args["app"], self.args["id"], value)
            self._send(200)

        def delete_status(self):
            reg.delete_override(self.args["app"], self.args["id"], self.q.get("value") or "UNKNOWN")
            self._send(200)

    return Api


def make_control(reg, api):
    class Control(peerlib.JsonHandler):
        def do_GET(self):
            if self.path != "/state":
                return self.reply(404, {"error": "not found"})
            apps, h, v = reg.listing()
            self.reply(200, {"up": api.is_up, "apps": apps, "hashcode": h})

        def do_POST(self):
            body = json.loads(self.body() or b"{}")
            try:
                if self.path == "/down":
                    api.down()
                elif self.path == "/up":
                    api.up()
                elif self.path == "/status":
                    reg.set_status(body["app"], body["id"], body["status"])
                elif self.path == "/evict":
                    reg.evict()
                else:
                    return self.reply(404, {"error": "not found"})
            except HttpError as e:
                return self.reply(e.code, {"error": e.text})
            self.reply(200, {"up": api.is_up})

    return Control


def main():
    p = peerlib.base_args(__doc__.splitlines()[0])
    p.add_argument("--lease-seconds", type=float, default=None,
                   help="lease duration for every instance (default: its leaseInfo.durationInSecs)")
    p.add_argument("--eviction-interval", type=float, default=60.0, help="seconds between eviction sweeps")
    p.add_argument("--delta-retention", type=float, default=180.0, help="seconds a change stays in the delta")
    a = p.parse_args()
    peerlib.start_lifetime(a.max_seconds)
    recorder = peerlib.Recorder(a.record)
    reg = Registry(a.lease_seconds, a.delta_retention)
    api = peerlib.Switchable(make_handler(reg, recorder))
    control = peerlib.serve_http(make_control(reg, api))

    def sweep():
        while True:
            time.sleep(a.eviction_interval)
            reg.evict()

    threading.Thread(target=sweep, name="eviction", daemon=True).start()
    peerlib.ready(http=api.port, control=control.server_address[1])
    peerlib.block_forever()


if __name__ == "__main__":
    main()
