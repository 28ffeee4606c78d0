// The gateway console: plain script, no framework and no build step. Every request
// goes to this page's own origin (the admin or console listener).
"use strict";

const POLL_MS = 1000;
const state = {
  tab: "traffic",
  entity: null, // "route:<name>" or "cluster:<name>"
  chartTable: false,
  hold: false,
  sortBy: "requests",
  series: null,
  exemplars: [],
  metrics: null,
  config: null,
  session: null,
  settings: null,
};

// ---- small helpers -------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

async function api(path, opts = {}) {
  const init = { credentials: "same-origin", headers: {} };
  if (opts.method) init.method = opts.method;
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers["Content-Type"] = "application/json";
  }
  if (opts.ifMatch) init.headers["If-Match"] = opts.ifMatch;
  const r = await fetch(path, init);
  let body = null;
  try {
    body = await r.json();
  } catch (_) {
    body = null;
  }
  return { status: r.status, body };
}

function fmt(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}
function pct(v) {
  return v === null || v === undefined ? "–" : (v * 100).toFixed(2) + " %";
}
function clock(ms) {
  return new Date(ms).toLocaleTimeString();
}
function replace(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

// ---- tabs (arrow keys move between them, as the ARIA tabs pattern does) ----------

function selectTab(name, focus) {
  state.tab = name;
  for (const b of document.querySelectorAll('[role="tab"]')) {
    const on = b.getAttribute("aria-controls") === name;
    b.setAttribute("aria-selected", on ? "true" : "false");
    b.tabIndex = on ? 0 : -1;
    if (on && focus) b.focus();
    document.getElementById(b.getAttribute("aria-controls")).hidden = !on;
  }
  if (name === "traces") loadTraces();
  if (name === "config") loadConfig();
  if (name === "manage") loadManage();
}

function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((b, i) => {
    b.addEventListener("click", () => selectTab(b.getAttribute("aria-controls"), false));
    b.addEventListener("keydown", (ev) => {
      let j = null;
      if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
      if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
      if (ev.key === "Home") j = 0;
      if (ev.key === "End") j = tabs.length - 1;
      if (j !== null) {
        ev.preventDefault();
        selectTab(tabs[j].getAttribute("aria-controls"), true);
      }
    });
  });
}

// ---- traffic ---------------------------------------------------------------------

function entityRows(list, kind) {
  const key = state.sortBy;
  const sorted = [...list].sort((a, b) => (b[key] || 0) - (a[key] || 0) || (b.requests || 0) - (a.requests || 0));
  const rows = sorted.map((e) =>
    el(
      "tr",
      {},
      el("th", { scope: "row" },
        el("button", { class: "link", onclick: () => pickEntity(kind + ":" + e.name) }, e.name)),
      el("td", {}, fmt(e.requests)),
      el("td", {}, fmt(e.rps_60s)),
      el("td", {}, pct(e.success_rate)),
      el("td", {}, fmt(e.errors)),
      el("td", {}, fmt(e.p50_ms)),
      el("td", {}, fmt(e.p90_ms)),
      el("td", {}, fmt(e.p99_ms)),
      el("td", {}, flagsText(e.response_flags)),
    ),
  );
  return el(
    "table",
    { class: "data", "data-kind": kind },
    el("thead", {}, el("tr", {},
      ["name", "requests (15 min)", "req/s (1 min)", "success", "5xx", "p50 ms", "p90 ms", "p99 ms", "response flags"]
        .map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows),
  );
}

function flagsText(flags) {
  const entries = Object.entries(flags || {}).sort((a, b) => b[1] - a[1]);
  return entries.length ? entries.map(([f, n]) => `${f} ${n}`).join(", ") : "–";
}

function pickEntity(key) {
  state.entity = key;
  document.getElementById("entity").value = key;
  state.series = null;
  pollSeries();
}

function renderMetrics(m) {
  const t = m.totals || {};
  replace(
    document.getElementById("totals"),
    [
      ["requests (15 min)", fmt(t.requests), "total-requests"],
      ["req/s (1 min)", fmt(t.rps_60s), "total-rps"],
      ["success rate", pct(t.success_rate), "total-success"],
      ["p50", fmt(t.p50_ms) + " ms", "total-p50"],
      ["p90", fmt(t.p90_ms) + " ms", "total-p90"],
      ["p99", fmt(t.p99_ms) + " ms", "total-p99"],
    ].map(([label, value, id]) =>
      el("div", { class: "card" }, el("span", { class: "label" }, label), el("span", { class: "value", id }, value)),
    ),
  );
  replace(document.getElementById("routes-table"), entityRows(m.routes || [], "route"));
  replace(document.getElementById("clusters-table"), entityRows(m.clusters || [], "cluster"));
  const select = document.getElementById("entity");
  const keys = [
    ...(m.routes || []).map((r) => "route:" + r.name),
    ...(m.clusters || []).map((c) => "cluster:" + c.name),
  ];
  const have = [...select.options].map((o) => o.value);
  if (keys.join("\n") !== have.join("\n")) {
    replace(select, keys.map((k) => el("option", { value: k }, k.replace(":", ": "))));
  }
  if (!state.entity && keys.length) state.entity = keys[0];
  if (state.entity) select.value = state.entity;
}

async function pollMetrics() {
  const r = await api("/api/console/metrics");
  if (r.status === 200) {
    state.metrics = r.body;
    renderMetrics(r.body);
  } else if (r.status === 401) {
    replace(document.getElementById("totals"), el("p", { class: "error" }, "Log in (Manage tab) to see the traffic."));
  }
}

async function pollSeries() {
  if (!state.entity) return;
  const [kind, ...rest] = state.entity.split(":");
  const name = rest.join(":");
  const q = `kind=${encodeURIComponent(kind)}&name=${encodeURIComponent(name)}`;
  const r = await api(`/api/console/series?${q}`);
  if (r.status !== 200) return;
  state.series = r.body;
  const from = r.body.start_ms || Date.now() - 900000;
  const e = await api(`/api/console/exemplars?${q}&from_ms=${from}&to_ms=${Date.now() + 1000}`);
  state.exemplars = e.status === 200 ? e.body.exemplars || [] : [];
  renderCharts();
}

// One line chart; `lines` is [{label, values, cls}] over the shared `t` axis.
function lineChart(container, title, t, lines, unit, markers) {
  const W = 640, H = 160, L = 48, B = 20, T = 8, R = 8;
  const all = lines.flatMap((l) => l.values).filter((v) => v !== null);
  if (markers) all.push(...markers.map((m) => m.value_ms));
  const max = Math.max(1, ...all) * 1.1;
  const t0 = t.length ? t[0] : Date.now() - 900000;
  const t1 = Math.max(t0 + 60000, t.length ? t[t.length - 1] : Date.now());
  const x = (ms) => L + ((ms - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const last = lines.map((l) => `${l.label} ${fmt(l.values[l.values.length - 1])}${unit}`).join(", ");
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": `${title}: last value ${last || "none"}. The table view lists the points.`,
  });
  root.append(svg("line", { x1: L, y1: y(0), x2: W - R, y2: y(0), class: "axis" }));
  for (const frac of [0.5, 1]) {
    const v = (max / 1.1) * frac;
    root.append(svg("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), class: "grid" }));
    const label = svg("text", { x: L - 4, y: y(v) + 4, class: "tick", "text-anchor": "end" });
    label.textContent = fmt(v, 1);
    root.append(label);
  }
  const start = svg("text", { x: L, y: H - 4, class: "tick" });
  start.textContent = clock(t0);
  const end = svg("text", { x: W - R, y: H - 4, class: "tick", "text-anchor": "end" });
  end.textContent = clock(t1);
  root.append(start, end);
  for (const l of lines) {
    let d = "";
    let pen = false;
    l.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(t[i]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    root.append(svg("path", { d, class: "line " + l.cls, "data-series": l.label }));
  }
  if (markers) {
    for (const m of markers) {
      const c = svg("circle", {
        cx: x(m.t_ms).toFixed(1),
        cy: y(m.value_ms).toFixed(1),
        r: 5,
        class: "exemplar",
        tabindex: 0,
        role: "button",
        "data-trace-id": m.trace_id,
        "aria-label": `exemplar ${fmt(m.value_ms)} ms at ${clock(m.t_ms)}: open trace ${m.trace_id}`,
      });
      const open = (ev) => {
        ev.stopPropagation();
        openTrace(m.trace_id);
      };
      c.addEventListener("click", open);
      c.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") open(ev);
      });
      root.append(c);
    }
    // A click elsewhere on the chart lists the exemplars near that moment.
    root.addEventListener("click", (ev) => {
      const box = root.getBoundingClientRect();
      const px = ((ev.clientX - box.left) / box.width) * W;
      const ms = t0 + ((px - L) / (W - L - R)) * (t1 - t0);
      listExemplarsNear(ms);
    });
  }
  const legend = el("p", { class: "legend" },
    lines.map((l) => el("span", { class: "key " + l.cls }, l.label)));
  replace(container, el("h3", {}, title), root, legend);
}

function renderCharts() {
  const s = state.series;
  // Held still while the pointer or the keyboard is on a chart, so a marker being
  // aimed at does not move away under it.
  if (!s || state.hold) return;
  document.getElementById("chart-title").textContent = `Requests and latency: ${s.kind} ${s.name}`;
  lineChart(document.getElementById("rate-chart"), "Requests per second", s.t, [
    { label: "requests", values: s.rq, cls: "rq" },
    { label: "5xx", values: s.err, cls: "err" },
  ], "/s");
  lineChart(document.getElementById("latency-chart"), "Latency (ms)", s.t, [
    { label: "p50", values: s.p50, cls: "p50" },
    { label: "p90", values: s.p90, cls: "p90" },
    { label: "p99", values: s.p99, cls: "p99" },
  ], " ms", state.exemplars);
  if (state.chartTable) renderChartTable();
}

function renderChartTable() {
  const s = state.series;
  const box = document.getElementById("chart-table");
  if (!s) return replace(box);
  const n = s.t.length;
  const rows = [];
  for (let i = n - 1; i >= Math.max(0, n - 60); i--) {
    rows.push(el("tr", {},
      el("th", { scope: "row" }, clock(s.t[i])),
      [s.rq[i], s.err[i], s.p50[i], s.p90[i], s.p99[i]].map((v) => el("td", {}, fmt(v)))));
  }
  replace(box, el("table", { class: "data", id: "series-table" },
    el("caption", {}, `${s.kind} ${s.name}: the last ${rows.length} seconds, newest first`),
    el("thead", {}, el("tr", {},
      ["time", "requests", "5xx", "p50 ms", "p90 ms", "p99 ms"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows)));
}

async function listExemplarsNear(ms) {
  const [kind, ...rest] = (state.entity || "").split(":");
  const name = rest.join(":");
  const from = Math.round(ms - 5000), to = Math.round(ms + 5000);
  const q = `kind=${encodeURIComponent(kind)}&name=${encodeURIComponent(name)}&from_ms=${from}&to_ms=${to}`;
  const r = await api(`/api/console/exemplars?${q}`);
  const list = r.status === 200 ? r.body.exemplars || [] : [];
  const box = document.getElementById("exemplars");
  replace(box,
    el("h3", {}, `Traces behind ${clock(from)} – ${clock(to)}`),
    list.length
      ? el("ul", {}, list.map((x) => el("li", {},
          el("button", { class: "link", "data-trace-id": x.trace_id, onclick: () => openTrace(x.trace_id) },
            `${x.trace_id}`), ` ${fmt(x.value_ms)} ms at ${clock(x.t_ms)}`)))
      : el("p", {}, "No sampled trace in that window."));
}

// ---- traces ----------------------------------------------------------------------

async function loadTraces() {
  const form = document.getElementById("trace-filter");
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(form).entries()) if (v !== "") params.set(k, v);
  const r = await api("/api/console/traces?" + params.toString());
  const box = document.getElementById("trace-list");
  if (r.status !== 200) return replace(box, el("p", { class: "error" }, (r.body && r.body.error) || "unavailable"));
  const rows = r.body.traces.map((t) => {
    const tr = el("tr", {
      tabindex: 0,
      "data-trace-id": t.trace_id,
      "aria-label": `${t.method} ${t.path} ${t.status} in ${fmt(t.duration_ms)} ms; Enter opens its spans`,
      onclick: () => openTrace(t.trace_id),
      onkeydown: (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          openTrace(t.trace_id);
        } else if (ev.key === "ArrowDown" && tr.nextElementSibling) {
          ev.preventDefault();
          tr.nextElementSibling.focus();
        } else if (ev.key === "ArrowUp" && tr.previousElementSibling) {
          ev.preventDefault();
          tr.previousElementSibling.focus();
        }
      },
    },
      el("td", {}, new Date(t.start_unix_us / 1000).toLocaleTimeString()),
      el("td", {}, t.route || "–"),
      el("td", {}, `${t.method || ""} ${t.path || ""}`),
      el("td", { class: t.status >= 500 || t.status === 0 ? "bad" : "" }, t.status),
      el("td", {}, fmt(t.duration_ms)),
      el("td", {}, t.flags || "–"),
      el("td", {}, t.attempts),
    );
    return tr;
  });
  replace(box,
    el("p", {}, `${r.body.count} shown of ${r.body.held} kept (the last ${r.body.capacity} sampled requests).`),
    el("table", { class: "data", id: "trace-table" },
      el("thead", {}, el("tr", {},
        ["time", "route", "request", "status", "ms", "flags", "attempts"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
}

async function openTrace(id) {
  if (state.tab !== "traces") selectTab("traces", false);
  const r = await api("/api/console/traces/" + encodeURIComponent(id));
  const box = document.getElementById("waterfall");
  if (r.status !== 200) {
    // Exemplars outlive the ring of the last 300 sampled requests; the tracing UI, when
    // there is one, still has the trace.
    const ui = state.settings && state.settings.trace_ui_url;
    replace(box, el("p", { class: "error", role: "alert" },
      `Trace ${id} is no longer among the last sampled requests the gateway keeps. `,
      ui ? el("a", { href: ui.replace("{trace_id}", id), target: "_blank", rel: "noopener" }, "Open it in the tracing UI.") : null));
    return;
  }
  const w = r.body;
  const total = Math.max(1, w.total_us);
  const rows = w.spans.map((s) => {
    const left = (s.offset_us / total) * 100;
    const width = Math.max(0.5, (s.duration_us / total) * 100);
    const label = s.kind === "client"
      ? `attempt ${s.attempt}${s.retry ? " (retry)" : ""} → ${s.peer || "?"}`
      : s.name;
    return el("li", {
      class: "span " + s.kind + (s.error ? " error" : ""),
      "data-kind": s.kind,
      "data-span-id": s.span_id,
      "data-parent-span-id": s.parent_span_id || "",
      "data-depth": s.depth,
      style: null,
    },
      el("span", { class: "span-name", "data-depth": s.depth }, label),
      el("span", { class: "bar-box" },
        el("span", { class: "bar", "data-left": left.toFixed(2), "data-width": width.toFixed(2) })),
      el("span", { class: "span-ms" }, fmt(s.duration_us / 1000) + " ms"));
  });
  const link = w.link ? el("a", { href: w.link, target: "_blank", rel: "noopener" }, "open in the tracing UI") : null;
  const req = w.requests[0] || {};
  replace(box,
    el("h2", { id: "waterfall-title", tabindex: -1 }, `Trace ${w.trace_id}`),
    el("p", {}, `${req.method || ""} ${req.url || ""} → ${req.status} ${req.flags && req.flags !== "-" ? req.flags : ""} on ${req.route || "no route"}, ${fmt(total / 1000)} ms `, link),
    el("ol", { class: "waterfall", "aria-label": "spans, parents before children" }, rows));
  // Positions are set here, not in markup, so the page's style policy stays strict.
  for (const bar of box.querySelectorAll(".bar")) {
    bar.style.marginLeft = bar.dataset.left + "%";
    bar.style.width = bar.dataset.width + "%";
  }
  for (const n of box.querySelectorAll(".span-name")) n.style.paddingLeft = Number(n.dataset.depth) * 1.2 + "em";
  document.getElementById("waterfall-title").focus();
}

// ---- config ----------------------------------------------------------------------

function renderConfigLine(c) {
  const line = document.getElementById("config-line");
  const rej = c.last_rejected;
  line.textContent = `config v${c.version}, applied ${c.applied_at || "?"}` +
    (rej ? ` · last rejected: ${rej.object}` : " · nothing rejected");
  line.className = rej ? "warn" : "";
}

async function loadConfig() {
  const r = await api("/api/console/config");
  if (r.status !== 200) return;
  const c = (state.config = r.body);
  renderConfigLine(c);
  const routeSelect = document.getElementById("trace-route");
  const names = ["", ...new Set(c.routes.map((rt) => rt.name))];
  if ([...routeSelect.options].map((o) => o.value).join("\n") !== names.join("\n")) {
    const keep = routeSelect.value;
    replace(routeSelect, names.map((n) => el("option", { value: n }, n || "any")));
    routeSelect.value = keep;
  }
  if (state.tab !== "config") return;
  replace(document.getElementById("config-summary"),
    el("dl", {},
      el("dt", {}, "version"), el("dd", { id: "config-version" }, c.version),
      el("dt", {}, "applied"), el("dd", {}, c.applied_at || "–"),
      el("dt", {}, "routes"), el("dd", {}, c.routes.length),
      el("dt", {}, "clusters"), el("dd", {}, (c.clusters || []).length)));
  const rej = c.last_rejected;
  replace(document.getElementById("config-rejected"), rej
    ? el("div", { class: "error", role: "alert", id: "rejected-error" },
        el("p", {}, el("strong", {}, "object "), rej.object),
        el("p", {}, el("strong", {}, "file "), rej.file || "–"),
        el("p", {}, el("strong", {}, "at "), rej.at),
        el("pre", {}, rej.error))
    : el("p", {}, "None: every object in the source is in force."));
  replace(document.getElementById("config-not-enforced"),
    (c.not_enforced || []).map((n) => el("li", {}, n)));
  replace(document.getElementById("config-routes"),
    el("table", { class: "data" },
      el("thead", {}, el("tr", {}, ["route", "host", "match", "destinations", "plugin chain"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, c.routes.map((rt) => el("tr", {},
        el("th", { scope: "row" }, rt.name),
        el("td", {}, rt.host),
        el("td", {}, JSON.stringify(rt.match)),
        el("td", {}, (rt.destinations || []).map((d) => `${d.cluster} (${d.weight})`).join(", ")),
        el("td", {}, rt.plugins.length ? rt.plugins.map((p) => `${p.name} [${p.implementation}${p.phase ? ", " + p.phase : ""}]`).join(" → ") : "–"))))));
}

// ---- manage ----------------------------------------------------------------------

function errorText(body, status) {
  if (!body) return `failed (${status})`;
  return [body.error, body.object && `object ${body.object}`, body.field && `field ${body.field}`, body.file && `file ${body.file}`]
    .filter(Boolean).join(" · ");
}

async function loadManage() {
  const r = await api("/api/console/session");
  state.session = r.status === 200 ? r.body : { password_set: true, username: null };
  const box = document.getElementById("login");
  const editors = document.getElementById("editors");
  if (state.session.username) {
    replace(box, el("p", {}, `Logged in as ${state.session.username} `,
      el("button", { onclick: async () => { await api("/api/console/logout", { method: "POST" }); loadManage(); } }, "Log out")));
    renderWho();
    return renderEditors(editors);
  }
  replace(editors);
  const initial = !state.session.password_set;
  const msg = el("p", { class: "error", role: "alert", id: "login-error" });
  const form = el("form", { id: "login-form" },
    el("h2", {}, initial ? "Set the console password" : "Log in"),
    initial ? el("p", {}, "No password is set yet: choose one (only from this machine). It is stored hashed in the Secret higress-console.") : null,
    el("label", {}, "User ", el("input", { name: "username", value: "admin", autocomplete: "username" })),
    el("label", {}, "Password ", el("input", { name: "password", type: "password", autocomplete: initial ? "new-password" : "current-password" })),
    el("button", { type: "submit" }, initial ? "Set password" : "Log in"), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form).entries());
    const res = await api(initial ? "/api/console/init" : "/api/console/login", { method: "POST", body: data });
    if (res.status === 200) return loadManage();
    msg.textContent = res.status === 429 ? "Too many failed logins: wait a minute." : errorText(res.body, res.status);
  });
  replace(box, form);
}

function renderWho() {
  const who = document.getElementById("who");
  replace(who, state.session && state.session.username ? `logged in: ${state.session.username}` : "read-only");
}

// Each editor: a list of the kind's items and a form; a save is a PUT with the
// version the form was loaded with, so a change made meanwhile is refused (409).
const KINDS = [
  {
    kind: "service-sources", title: "Service sources",
    fields: [
      ["name", "text"],
      ["type", ["static", "dns", "nacos2", "nacos3", "nacos", "zookeeper", "consul", "eureka"]],
      ["domain", "text", "ip:port,ip:port (static), host names (dns), the registry's address (others)"],
      ["port", "number"], ["protocol", ["http", "https", "grpc"]],
      ["nacosNamespaceId", "text", "Nacos: namespace id (default public)"],
      ["nacosGroups", "text", "Nacos: groups, comma-separated (none: nothing is discovered)"],
      ["zkServicesPath", "text", "ZooKeeper: Spring Cloud roots, comma-separated"],
      ["consulDatacenter", "text", "Consul: datacenter"],
      ["consulServiceTag", "text", "Consul: only services with this tag"],
      ["authSecretName", "text", "Nacos / Consul: Secret with the credentials"],
    ],
    toItem: (f) => {
      const list = (s) => (s || "").split(",").map((x) => x.trim()).filter(Boolean);
      const item = { name: f.name, type: f.type, domain: f.domain, port: Number(f.port), protocol: f.protocol };
      for (const k of ["nacosNamespaceId", "consulDatacenter", "consulServiceTag", "authSecretName"]) {
        if (f[k]) item[k] = f[k];
      }
      for (const k of ["nacosGroups", "zkServicesPath"]) {
        if (list(f[k]).length) item[k] = list(f[k]);
      }
      return item;
    },
    fromItem: (it) => ({
      ...it,
      nacosGroups: (it.nacosGroups || []).join(", "),
      zkServicesPath: (it.zkServicesPath || []).join(", "),
    }),
  },
  {
    kind: "domains", title: "Domains",
    fields: [["name", "text", "host, e.g. api.example.com"], ["enableHttps", ["off", "on", "force"]], ["cert", "text", "Secret name"]],
    toItem: (f) => ({ name: f.name, enableHttps: f.enableHttps, cert: f.cert || null }),
  },
  {
    kind: "routes", title: "Routes",
    fields: [
      ["name", "text"], ["domains", "text", "comma-separated; empty: any host"],
      ["matchType", ["PRE", "EQUAL", "REGULAR"]], ["matchValue", "text", "/path"],
      ["service", "text", "<service source>.<type>, e.g. backend.static"], ["port", "number"],
      ["annotations", "textarea", "one per line: key: value"],
    ],
    toItem: (f) => ({
      name: f.name,
      domains: f.domains.split(",").map((s) => s.trim()).filter(Boolean),
      path: { matchType: f.matchType, matchValue: f.matchValue || "/" },
      services: [{ name: f.service, port: Number(f.port) || 80, weight: 100 }],
      annotations: Object.fromEntries(f.annotations.split("\n").map((l) => l.trim()).filter(Boolean)
        .map((l) => { const i = l.indexOf(":"); return [l.slice(0, i).trim(), l.slice(i + 1).trim()]; })),
    }),
    fromItem: (it) => ({
      name: it.name, domains: (it.domains || []).join(", "),
      matchType: it.path && it.path.matchType, matchValue: it.path && it.path.matchValue,
      service: it.services && it.services[0] && it.services[0].name,
      port: it.services && it.services[0] && it.services[0].port,
      annotations: Object.entries(it.annotations || {}).map(([k, v]) => `${k}: ${v}`).join("\n"),
    }),
  },
  {
    kind: "plugins", title: "Plugins (WasmPlugin YAML)",
    fields: [["name", "text"], ["yaml", "textarea", [
      "apiVersion: extensions.higress.io/v1alpha1",
      "kind: WasmPlugin",
      "metadata:",
      "  name: key-auth",
      "  namespace: higress-system",
      "spec:",
      "  url: oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-auth:1.0.0",
      "  phase: AUTHN",
      "  priority: 310",
      "  defaultConfig: {consumers: [{name: consumer1, credential: \"...\"}], keys: [apikey]}",
      "  matchRules:",
      "  - ingress: [my-route]",
      "    config: {allow: [consumer1]}",
    ].join("\n")]],
    yaml: true,
  },
];

function formFor(spec, item, version, onSaved) {
  // The version this form's next save is based on: what it was read at, then what
  // its last save wrote.
  let current = version;
  const values = item ? (spec.fromItem ? spec.fromItem(item) : item) : {};
  const msg = el("p", { class: "error", role: "alert" });
  const inputs = spec.fields.map(([name, type, hint]) => {
    const id = `${spec.kind}-${name}`;
    let input;
    if (Array.isArray(type)) {
      input = el("select", { id, name }, type.map((o) => el("option", { value: o }, o)));
      if (values[name]) input.value = values[name];
    } else if (type === "textarea") {
      input = el("textarea", { id, name, rows: name === "yaml" ? 12 : 3, placeholder: hint || "" });
      input.value = values[name] || "";
    } else {
      input = el("input", { id, name, type, placeholder: hint || "" });
      if (values[name] !== undefined && values[name] !== null) input.value = values[name];
    }
    return el("div", { class: "field" }, el("label", { for: id }, name), input);
  });
  const form = el("form", { class: "editor", "data-kind": spec.kind }, inputs,
    el("button", { type: "submit" }, item ? "Save" : "Create"), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(form).entries());
    const body = spec.yaml ? { yaml: f.yaml } : { item: spec.toItem(f) };
    msg.textContent = "";
    const res = await api(`/api/console/resources/${spec.kind}/${encodeURIComponent(f.name)}`,
      { method: "PUT", body, ifMatch: current || "*" });
    if (res.status === 200) {
      current = res.body.version;
      msg.className = "ok";
      msg.textContent = `saved (version ${res.body.version})`;
      if (onSaved) onSaved();
    } else {
      msg.className = "error";
      msg.textContent = errorText(res.body, res.status);
    }
  });
  return form;
}

async function renderEditors(box) {
  const parts = [];
  for (const spec of KINDS) parts.push(kindSection(spec));
  parts.push(await tracingEditor());
  replace(box, parts);
}

// One kind's section: its items (each opens in the form, or is deleted) and the form.
// A save refreshes the list only, so a form being filled elsewhere stays as it is.
function kindSection(spec) {
  const list = el("ul", { class: "items" });
  const section = el("section", { class: "kind", id: "manage-" + spec.kind }, el("h2", {}, spec.title), list);
  const refresh = async () => {
    const r = await api(`/api/console/resources/${spec.kind}`);
    const items = r.status === 200 ? r.body.items || [] : [];
    replace(list, items.map((it) => el("li", {},
      el("button", { class: "link", onclick: async () => {
        const one = await api(`/api/console/resources/${spec.kind}/${encodeURIComponent(it.name)}`);
        if (one.status !== 200) return;
        const item = spec.yaml ? { name: it.name, yaml: one.body.yaml } : { ...one.body.item, name: it.name };
        section.querySelector("form").replaceWith(formFor(spec, item, one.body.version, refresh));
      } }, it.name),
      " ",
      el("button", { class: "danger", "aria-label": `delete ${it.name}`, onclick: async () => {
        const res = await api(`/api/console/resources/${spec.kind}/${encodeURIComponent(it.name)}`,
          { method: "DELETE", ifMatch: it.version });
        if (res.status === 200) refresh();
      } }, "delete"))));
  };
  section.append(formFor(spec, null, null, refresh));
  refresh();
  return section;
}

async function tracingEditor() {
  const r = await api("/api/console/resources/global/tracing");
  const t = r.status === 200 ? r.body.item || {} : {};
  let version = r.status === 200 ? r.body.version : null;
  const msg = el("p", { class: "error", role: "alert" });
  const enable = el("input", { type: "checkbox", id: "tracing-enable", name: "enable" });
  enable.checked = !!t.enable;
  const field = (name, attrs, value) => {
    const input = el("input", { id: "tracing-" + name, name, ...attrs });
    if (value !== undefined && value !== null) input.value = value;
    return el("div", { class: "field" }, el("label", { for: "tracing-" + name }, name), input);
  };
  const provider = el("select", { id: "tracing-provider", name: "provider" },
    ["skywalking", "zipkin", "opentelemetry"].map((p) => el("option", { value: p }, p)));
  if (t.provider) provider.value = t.provider;
  const form = el("form", { class: "editor", id: "tracing-form" },
    el("h2", {}, "Tracing (higress-config)"),
    el("div", { class: "field" }, el("label", { for: "tracing-enable" }, "enable"), enable),
    field("sampling", { type: "number", min: 0, max: 100, step: "any" }, t.sampling),
    field("timeout", { type: "number", min: 0 }, t.timeout),
    el("div", { class: "field" }, el("label", { for: "tracing-provider" }, "provider"), provider),
    field("service", { type: "text" }, t.service),
    field("port", { type: "number" }, t.port),
    el("button", { type: "submit" }, "Save"), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(form).entries());
    msg.textContent = "";
    const item = {
      enable: enable.checked, sampling: Number(f.sampling), timeout: Number(f.timeout) || 500,
      provider: f.provider, service: f.service, port: Number(f.port),
    };
    const res = await api("/api/console/resources/global/tracing", { method: "PUT", body: { item }, ifMatch: version || "*" });
    if (res.status === 200) version = res.body.version;
    msg.className = res.status === 200 ? "ok" : "error";
    msg.textContent = res.status === 200 ? "saved" : errorText(res.body, res.status);
  });
  return form;
}

// ---- start -----------------------------------------------------------------------

async function tick() {
  try {
    if (state.tab === "traffic") {
      await pollMetrics();
      await pollSeries();
    }
  } catch (e) {
    console.warn(e);
  }
}

async function slowTick() {
  try {
    await loadConfig();
  } catch (e) {
    console.warn(e);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  setupTabs();
  document.getElementById("entity").addEventListener("change", (ev) => pickEntity(ev.target.value));
  const charts = document.getElementById("charts");
  const hold = (on) => () => {
    state.hold = on;
    if (!on) renderCharts();
  };
  charts.addEventListener("pointerenter", hold(true));
  charts.addEventListener("pointerleave", hold(false));
  charts.addEventListener("focusin", hold(true));
  charts.addEventListener("focusout", hold(false));
  document.getElementById("sort-by").addEventListener("change", (ev) => {
    state.sortBy = ev.target.value;
    if (state.metrics) renderMetrics(state.metrics);
  });
  document.getElementById("chart-as-table").addEventListener("click", (ev) => {
    state.chartTable = !state.chartTable;
    ev.target.setAttribute("aria-pressed", String(state.chartTable));
    document.getElementById("chart-table").hidden = !state.chartTable;
    document.getElementById("charts").hidden = state.chartTable;
    renderChartTable();
  });
  document.getElementById("trace-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadTraces();
  });
  const settings = await api("/api/console/settings");
  state.settings = settings.status === 200 ? settings.body : null;
  const s = await api("/api/console/session");
  state.session = s.status === 200 ? s.body : null;
  renderWho();
  await slowTick();
  await tick();
  setInterval(tick, POLL_MS);
  setInterval(slowTick, 2 * POLL_MS);
});
