#!/usr/bin/env python3
"""Writes the gateway's Grafana dashboards (grafana/dashboards/*.json) from the panel
lists below, so every panel shares one datasource, one set of variables and one layout.

  python3 grafana/build_dashboards.py           # write the JSON files
  python3 grafana/build_dashboards.py --check   # exit 1 if a file is not what it writes

Variables: `datasource` (a Prometheus), `gateway` (values of the `higress` label, as the
Higress console's scrape job sets it) and `namespace` (the gateway's namespace, from the
same label). Queries use no Grafana macro but $__range and $__rate_interval.
Standard library only.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dashboards")
# The Kubernetes observability overlay's copy (kustomize reads files below its folder only).
OUT_MANIFESTS = os.path.join(HERE, "..", "manifests", "observability", "grafana")
DS = {"type": "prometheus", "uid": "${datasource}"}
GW = 'higress="$gateway"'
SCHEMA_VERSION = 39  # Grafana 10.4 and 11


def q(expr, legend="", exemplar=False, instant=False, fmt=None):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "range": not instant,
         "instant": instant}
    if exemplar:
        t["exemplar"] = True
    if fmt:
        t["format"] = fmt
    return t


def timeseries(title, targets, unit="short", desc="", w=12, h=8, stack=False):
    return {
        "type": "timeseries", "title": title, "description": desc, "datasource": DS,
        "targets": targets, "_w": w, "_h": h,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                           "showPoints": "never", "spanNulls": False,
                           "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["mean", "max", "lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def stat(title, targets, unit="short", desc="", w=4, h=4, thresholds=None):
    steps = thresholds or [{"color": "green", "value": None}]
    return {
        "type": "stat", "title": title, "description": desc, "datasource": DS,
        "targets": targets, "_w": w, "_h": h,
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "textMode": "auto"},
    }


def table(title, expr, value_name, unit="short", desc="", w=6, h=8):
    """A top-N table of one instant query, by cluster (Higress's "Service Top")."""
    return {
        "type": "table", "title": title, "description": desc, "datasource": DS,
        "targets": [q(expr, instant=True, fmt="table")], "_w": w, "_h": h,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"showHeader": True, "sortBy": [{"displayName": value_name, "desc": True}]},
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {"Time": True},
            "renameByName": {"Value": value_name, "cluster_name": "cluster"}}}],
    }


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def quantiles(metric, by=""):
    group = f"{by}, le" if by else "le"
    label = "{{" + by + "}} " if by else ""
    return [q(f"histogram_quantile({p}, sum by ({group}) (rate({metric}_bucket{{{GW}}}[$__rate_interval])))",
              f"{label}p{int(p * 100)}", exemplar=True) for p in (0.5, 0.9, 0.99)]


def layout(panels):
    """Ids in order, target refIds (A, B, ...) and grid positions: rows full width,
    panels left to right."""
    x = y = 0
    line_h = 0
    out = []
    for i, p in enumerate(panels, start=1):
        p = dict(p)
        p["id"] = i
        for j, t in enumerate(p.get("targets", [])):
            t["refId"] = chr(ord("A") + j)
        if p["type"] == "row":
            if x:
                y += line_h
            x, line_h = 0, 0
            p["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            y += 1
        else:
            w, h = p.pop("_w"), p.pop("_h")
            if x + w > 24:
                x, y, line_h = 0, y + line_h, 0
            p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            x += w
            line_h = max(line_h, h)
        out.append(p)
    return out


def variables():
    return {"list": [
        {"name": "datasource", "label": "Datasource", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
         "regex": "", "skipUrlSync": False},
        {"name": "gateway", "label": "Gateway", "type": "query", "datasource": DS,
         "definition": "label_values(envoy_server_live, higress)",
         "query": {"query": "label_values(envoy_server_live, higress)", "refId": "gateway"},
         "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
         "regex": "", "skipUrlSync": False, "sort": 1},
        {"name": "namespace", "label": "Namespace", "type": "query", "datasource": DS,
         "definition": 'label_values(envoy_server_live{higress="$gateway"}, higress)',
         "query": {"query": 'label_values(envoy_server_live{higress="$gateway"}, higress)',
                   "refId": "namespace"},
         "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
         "regex": "/^(.*)-higress-gateway$/", "skipUrlSync": False, "sort": 1},
    ]}


def dashboard(uid, title, desc, panels, tags):
    return {
        "uid": uid, "title": title, "description": desc, "tags": ["gateway", "higress"] + tags,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
        "timezone": "browser", "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
        "timepicker": {}, "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "annotations": {"list": []},
        "links": [{"title": "Gateway dashboards", "type": "dashboards", "tags": ["gateway"],
                   "asDropdown": True, "includeVars": True, "keepTime": True}],
        "templating": variables(), "panels": layout(panels),
    }


def rate(metric, sel="", by=None, window="$__rate_interval"):
    s = f"{{{GW}{',' + sel if sel else ''}}}"
    inner = f"rate({metric}{s}[{window}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def increase(metric, sel="", by=None):
    s = f"{{{GW}{',' + sel if sel else ''}}}"
    inner = f"increase({metric}{s}[$__range])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def wasm_quantile(p):
    return q(f"histogram_quantile({p}, sum by (plugin, le) "
             f"(rate(gateway_wasm_callback_duration_milliseconds_bucket{{{GW}}}[$__rate_interval])))",
             f"{{{{plugin}}}} p{int(p * 100)}")


def overview():
    ds_rq = "envoy_http_downstream_rq"
    ok = 'response_code_class=~"[1-4]xx"'
    all_classes = 'response_code_class=~"[1-5]xx"'
    panels = [
        row("Traffic"),
        stat("Requests", [q(increase("envoy_http_downstream_rq_total"))], "short",
             "Downstream requests in the time range, all listeners."),
        stat("Success rate", [q(f"{increase(ds_rq, ok)} / {increase(ds_rq, all_classes)}")],
             "percentunit", "Share of downstream responses that are not 5xx, in the time range.",
             thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 0.95},
                         {"color": "green", "value": 0.99}]),
        stat("Request rate", [q(rate("envoy_http_downstream_rq_total"))], "reqps"),
        stat("Active connections", [q("sum(envoy_http_downstream_cx_active{%s})" % GW)], "short"),
        stat("Config snapshot", [q("max(gateway_config_snapshot_version{%s})" % GW)], "none",
             "Version of the config snapshot being served; it grows with each applied change."),
        stat("Rejected changes", [q(increase("gateway_config_reloads_total", 'result="rejected"'))],
             "short", "Config objects rejected in the time range (see /debug/configz).",
             thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        timeseries("Request rate by listener",
                   [q(rate("envoy_http_downstream_rq_total", by="http_conn_manager_prefix"),
                      "{{http_conn_manager_prefix}}")], "reqps"),
        timeseries("Responses by code class",
                   [q(rate(ds_rq, all_classes, by="response_code_class"), "{{response_code_class}}")],
                   "reqps", stack=True),
        timeseries("Downstream latency", quantiles("envoy_http_downstream_rq_time"), "ms",
                   "First byte in to last byte out. Dots are exemplars: sampled requests, "
                   "each linking to its trace."),
        timeseries("Upstream latency", quantiles("envoy_cluster_upstream_rq_time"), "ms",
                   "Request start to the upstream response complete, all clusters; exemplars "
                   "link to traces."),
        timeseries("Response flags", [q(
            "sum by (response_flags) (rate(istio_requests_total{%s,source_workload_namespace=\"$namespace\",response_flags!=\"-\"}[$__rate_interval]))" % GW,
            "{{response_flags}}")], "reqps",
            "Why requests did not get an upstream answer: Envoy's flags (NR no route, UH no "
            "healthy upstream, UF connect failure, URX retries exhausted, UT timeout, ...)."),
        timeseries("Requests by destination service", [q(
            "sum by (destination_service) (rate(istio_requests_total{%s,source_workload_namespace=\"$namespace\"}[$__rate_interval]))" % GW,
            "{{destination_service}}")], "reqps"),
        row("Bytes and connections"),
        timeseries("Downstream bytes", [
            q(rate("envoy_http_downstream_cx_rx_bytes_total"), "received"),
            q(rate("envoy_http_downstream_cx_tx_bytes_total"), "sent")], "Bps"),
        timeseries("Upstream bytes", [
            q(rate("envoy_cluster_upstream_cx_rx_bytes_total"), "received"),
            q(rate("envoy_cluster_upstream_cx_tx_bytes_total"), "sent")], "Bps"),
        timeseries("Connections open", [
            q("sum by (http_conn_manager_prefix) (envoy_http_downstream_cx_active{%s})" % GW,
              "downstream {{http_conn_manager_prefix}}"),
            q("sum(envoy_http_downstream_cx_ssl_active{%s})" % GW, "downstream TLS"),
            q("sum(envoy_cluster_upstream_cx_active{%s})" % GW, "upstream")], "short"),
        timeseries("New connections", [
            q(rate("envoy_http_downstream_cx_total"), "downstream"),
            q(rate("envoy_http_downstream_cx_ssl_total"), "downstream TLS"),
            q(rate("envoy_cluster_upstream_cx_total"), "upstream")], "cps"),
        timeseries("Compression", [
            q(rate("envoy_http_compressor_text_optimized_gzip_compressed"), "compressed"),
            q(rate("envoy_http_compressor_text_optimized_gzip_not_compressed"), "not compressed")],
            "reqps", "Responses the gzip compressor handled (higress-config gzip).", w=8),
        row("Config and process"),
        timeseries("Config changes", [
            q(rate("gateway_config_reloads_total", by="result"), "{{result}}")], "ops",
            "Snapshots applied and object changes rejected.", w=8),
        timeseries("Memory", [
            q("max(envoy_server_memory_physical_size{%s})" % GW, "resident"),
            q("max(envoy_server_memory_allocated{%s})" % GW, "allocated")], "bytes", w=8),
        stat("Days until a certificate expires",
             [q("min(envoy_server_days_until_first_cert_expiring{%s})" % GW)], "d",
             "The first served certificate to expire (0 when HTTPS serves none).", w=4, h=8,
             thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 7},
                         {"color": "green", "value": 30}]),
        stat("Uptime", [q("min(envoy_server_uptime{%s})" % GW)], "s", w=4, h=8),
        row("Wasm plugins"),
        timeseries("Plugin callbacks", [q(rate("gateway_wasm_calls_total", by="plugin"),
                                          "{{plugin}}")], "ops",
                   "Proxy-Wasm callbacks run, per WasmPlugin (<namespace>.<name>).", w=8),
        timeseries("Plugin failures", [q(rate("gateway_wasm_failures_total", by="plugin, reason"),
                                         "{{plugin}} {{reason}}")], "ops",
                   "Traps, deadline hits, memory-limit hits and guest exits. FAIL_CLOSE "
                   "plugins answer those requests 503; FAIL_OPEN ones are skipped.", w=8),
        timeseries("Deadline hits", [q(rate("gateway_wasm_failures_total", 'reason="deadline"',
                                            by="plugin"), "{{plugin}}")], "ops",
                   "Callbacks stopped at --wasm-callback-deadline.", w=8),
        timeseries("VM rebuilds", [q(rate("gateway_wasm_vm_rebuilds_total", by="plugin"),
                                     "{{plugin}}")], "ops",
                   "VMs built again: after a failure, or because the plugin asked "
                   "(wasm_need_rebuild, as Higress's Go SDK does at a request count or "
                   "memory threshold).", w=8),
        timeseries("Plugin latency p99", [wasm_quantile(0.99)], "ms",
                   "Time of one callback, per plugin.", w=8),
        timeseries("Plugin latency p50", [wasm_quantile(0.5)], "ms", w=8),
        timeseries("Plugin VM memory", [
            q("sum by (plugin) (gateway_wasm_vm_memory_bytes{%s})" % GW, "{{plugin}}")],
            "bytes", "Linear memory of each plugin's VMs, all worker threads. A Go "
            "plugin's only grows until its VM is rebuilt.", w=8),
    ]
    return dashboard("gateway-overview", "Gateway overview",
                     "Requests, latency, connections and config of the gateway, from its "
                     "Envoy-compatible stats.", panels, ["overview"])


def upstreams():
    up_rq = "envoy_cluster_upstream_rq"
    fivexx = 'response_code_class="5xx"'
    panels = [
        row("Service top"),
        table("Requests top 10",
              f"topk(10, {increase('envoy_cluster_upstream_rq_total', by='cluster_name')})",
              "requests"),
        table("5xx top 10", f"topk(10, {increase(up_rq, fivexx, by='cluster_name')})", "5xx"),
        table("Slowest top 10 (p99)",
              "topk(10, histogram_quantile(0.99, sum by (cluster_name, le) (rate(envoy_cluster_upstream_rq_time_bucket{%s}[$__range]))))" % GW,
              "p99", "ms"),
        table("Active connections top 10",
              "topk(10, sum by (cluster_name) (envoy_cluster_upstream_cx_active{%s}))" % GW,
              "connections"),
        row("Per cluster"),
        timeseries("Request rate", [q(rate("envoy_cluster_upstream_rq_total", by="cluster_name"),
                                      "{{cluster_name}}")], "reqps"),
        timeseries("5xx rate", [q(rate(up_rq, fivexx, by="cluster_name"), "{{cluster_name}}")],
                   "reqps", "Upstream 5xx answers and the gateway's own 503/504 for the cluster."),
        timeseries("Latency p99", quantiles("envoy_cluster_upstream_rq_time", "cluster_name")[2:],
                   "ms", "Exemplars link to the traces of sampled requests."),
        timeseries("Latency p50", quantiles("envoy_cluster_upstream_rq_time", "cluster_name")[:1],
                   "ms"),
        timeseries("Connect failures", [q(rate("envoy_cluster_upstream_cx_connect_fail",
                                               by="cluster_name"), "{{cluster_name}}")], "ops",
                   "Failed upstream connection attempts (refused, timed out, TLS).", w=8),
        timeseries("Timeouts", [q(rate("envoy_cluster_upstream_rq_timeout", by="cluster_name"),
                                  "{{cluster_name}}")], "ops",
                   "Requests that hit the route timeout (504, UT).", w=8),
        timeseries("Retries", [q(rate("envoy_cluster_upstream_rq_retry", by="cluster_name"),
                                 "{{cluster_name}}")], "ops", w=8),
        timeseries("Active connections",
                   [q("sum by (cluster_name) (envoy_cluster_upstream_cx_active{%s})" % GW,
                      "{{cluster_name}}")], "short", w=8),
        timeseries("TLS handshake errors", [q(rate("envoy_cluster_ssl_connection_error",
                                                   by="cluster_name"), "{{cluster_name}}")],
                   "ops", "Upstream TLS handshakes that failed, certificate verification "
                          "included.", w=8),
        timeseries("Healthy endpoints",
                   [q("sum by (cluster_name) (envoy_cluster_membership_healthy{%s})" % GW,
                      "{{cluster_name}}")], "short", w=8),
    ]
    return dashboard("gateway-upstreams", "Gateway upstreams",
                     "Per-cluster requests, errors, latency and connections "
                     "(clusters are outbound|<port>|<subset>|<host>).", panels, ["upstreams"])


def tracing():
    providers = [("envoy_tracing_zipkin_spans_sent", "zipkin"),
                 ("envoy_tracing_skywalking_segments_sent", "skywalking (segments)"),
                 ("envoy_tracing_opentelemetry_spans_sent", "opentelemetry")]
    panels = [
        row("Export"),
        timeseries("Spans sent", [q(rate(m), legend) for m, legend in providers], "ops",
                   "Spans (SkyWalking: segments) the exporters delivered, per provider."),
        timeseries("Spans dropped", [q(rate("gateway_tracing_spans_dropped_total",
                                            by="provider, reason"), "{{provider}} {{reason}}")],
                   "ops", "Spans dropped before delivery: queue full, or the export failed."),
        timeseries("Exporter queue", [q("max by (provider) (gateway_tracing_queue_size{%s})" % GW,
                                        "{{provider}}")], "short",
                   "Spans waiting per exporter (its queue holds 4096).", w=8),
        timeseries("Zipkin reports", [
            q(rate("envoy_tracing_zipkin_reports_sent"), "sent"),
            q(rate("envoy_tracing_zipkin_reports_dropped"), "refused"),
            q(rate("envoy_tracing_zipkin_reports_failed"), "failed")], "ops", w=8),
        stat("Spans sent", [q(" + ".join(increase(m) for m, _ in providers))], "short",
             "Every provider, in the time range.", w=8, h=8),
        row("Latency with traces"),
        timeseries("Downstream latency (exemplars)", quantiles("envoy_http_downstream_rq_time"),
                   "ms", "Each dot is a sampled request; click it to open its trace."),
        timeseries("Upstream latency by cluster (exemplars)",
                   quantiles("envoy_cluster_upstream_rq_time", "cluster_name")[2:], "ms"),
    ]
    return dashboard("gateway-tracing", "Gateway tracing",
                     "The tracer: what reached the collector, what was dropped, and latency "
                     "linked to traces.", panels, ["tracing"])


def render():
    return {name: json.dumps(d, indent=2) + "\n" for name, d in
            (("gateway-overview.json", overview()), ("upstreams.json", upstreams()),
             ("tracing.json", tracing()))}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for out in (OUT, OUT_MANIFESTS):
        os.makedirs(out, exist_ok=True)
        for name, text in render().items():
            path = os.path.join(out, name)
            if check:
                try:
                    with open(path) as f:
                        if f.read() != text:
                            stale.append(os.path.relpath(path, os.path.join(HERE, "..")))
                except FileNotFoundError:
                    stale.append(os.path.relpath(path, os.path.join(HERE, "..")))
            else:
                with open(path, "w") as f:
                    f.write(text)
    if stale:
        sys.exit(f"dashboards out of date: {', '.join(stale)}; "
                 "run python3 grafana/build_dashboards.py")


if __name__ == "__main__":
    main()
