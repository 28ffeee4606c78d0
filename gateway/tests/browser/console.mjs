// Drives the console (/ui) in Debian's chromium and checks what a user sees.
// Started by gateway/tests/console_browser.rs, which runs the gateway, its load and
// the peers; every wait here is a poll with a generous bound.
//
// Environment: CONSOLE (the console's origin), STATS (the stats listener's origin),
// GATEWAY (the HTTP listener's origin), CONFIG_DIR (the gateway's config directory),
// ARTIFACTS (where screenshots go), MODE (`observe` or `manage`), TRACE_UI (the
// --trace-ui-url template), DEMO_HOST (Host header of the traffic).
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import assert from "node:assert/strict";

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const CONSOLE = env("CONSOLE");
const ARTIFACTS = env("ARTIFACTS");
const MODE = process.env.MODE || "observe";
const WAIT = 60_000;

fs.mkdirSync(ARTIFACTS, { recursive: true });

function log(...a) {
  console.log("[console test]", ...a);
}

async function poll(what, f, bound = WAIT) {
  const until = Date.now() + bound;
  let last;
  while (Date.now() < until) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? ": " + last.message : ""}`);
}

/** Sum of a Prometheus family's samples whose labels contain `match`. */
async function promSum(family, match = "") {
  const text = await (await fetch(env("STATS") + "/stats/prometheus")).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(family + "{") && !line.startsWith(family + " ")) continue;
    if (match && !line.includes(match)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

async function launch() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const origin = new URL(CONSOLE).origin;
  const offOrigin = [];
  let pageBytes = 0;
  page.on("request", (r) => {
    if (new URL(r.url()).origin !== origin) offOrigin.push(r.url());
  });
  page.on("response", async (r) => {
    const p = new URL(r.url()).pathname;
    if (p === "/ui" || p === "/ui/app.js" || p === "/ui/app.css") {
      try {
        pageBytes += (await r.body()).length;
      } catch (_) {
        /* a redirect has no body */
      }
    }
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    // A 4xx the page expects (a refused write) is logged by the browser as an error:
    // only the page's own errors count.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  return { browser, page, offOrigin, errors, pageBytes: () => pageBytes };
}

async function observe() {
  const { browser, page, offOrigin, errors, pageBytes } = await launch();
  await page.goto(CONSOLE + "/ui", { waitUntil: "load" });

  // The charts draw non-zero data.
  await poll("non-zero totals", async () => Number(await page.textContent("#total-requests")) > 0);
  await poll("a drawn request-rate line", async () => {
    const d = await page.getAttribute("#rate-chart path.line.rq", "d");
    return d && d.split("L").length > 3;
  });
  await poll("a drawn p99 line", async () => {
    const d = await page.getAttribute("#latency-chart path.line.p99", "d");
    return d && d.length > 10;
  });

  // What the page shows matches /stats/prometheus: it catches up with what the
  // counters said a moment before (the sampler and the page poll once a second), and
  // never shows more than they say after.
  const matches = async (what, selector, match) => {
    const before = await promSum("gateway_route_rq_total", match);
    assert.ok(before > 0, `${what}: gateway_route_rq_total is counted`);
    const shown = await poll(`${what} on the page to reach ${before}`, async () => {
      const n = Number(await page.textContent(selector));
      return n >= before ? n : null;
    });
    const after = await promSum("gateway_route_rq_total", match);
    log(`${what}: the counters said ${before}, the page then showed ${shown}, the counters ${after}`);
    assert.ok(shown <= after, `${what}: the page shows ${shown}, more than the ${after} counted`);
  };
  await matches("all routes", "#total-requests", "");
  const firstRoute = (await page.textContent('table[data-kind="route"] tbody tr th')).trim();
  await matches(`route ${firstRoute}`, 'table[data-kind="route"] tbody tr td', `route="${firstRoute}"`);
  await page.screenshot({ path: path.join(ARTIFACTS, "console-traffic.png"), fullPage: true });

  // The text alternative: the table view lists the chart's points.
  await page.click("#chart-as-table");
  await poll("the table view", async () => (await page.$$("#series-table tbody tr")).length > 0);
  const alt = await page.getAttribute("#rate-chart svg", "aria-label");
  assert.match(alt, /Requests per second: last value/);
  await page.click("#chart-as-table");

  // An exemplar on the latency chart opens its trace, by keyboard: focus the newest
  // marker (in one step in the page, as the chart redraws every second until focus
  // holds it) and press Enter.
  await poll("an exemplar on the latency chart", async () => page.$("#latency-chart circle.exemplar"));
  const exemplarTrace = await page.evaluate(() => {
    // The newest (drawn first): its trace is still among the last 300 kept.
    const c = document.querySelector("#latency-chart circle.exemplar");
    c.focus();
    return c.dataset.traceId;
  });
  assert.match(exemplarTrace, /^[0-9a-f]{32}$/);
  await page.keyboard.press("Enter");
  await poll("the exemplar's trace", async () =>
    (await page.textContent("#waterfall-title").catch(() => "")).includes(exemplarTrace));
  await checkWaterfall(page);

  // The trace list by keyboard: focus the first row, move down, Enter opens it.
  await page.click("#tab-traces");
  await poll("the trace list", async () => (await page.$$("#trace-table tbody tr")).length >= 2);
  const rows = await page.$$("#trace-table tbody tr");
  await rows[0].focus();
  await page.keyboard.press("ArrowDown");
  const second = await rows[1].getAttribute("data-trace-id");
  assert.equal(await page.evaluate(() => document.activeElement.dataset.traceId), second);
  await page.keyboard.press("Enter");
  await poll("the second trace's waterfall", async () =>
    (await page.textContent("#waterfall-title").catch(() => "")).includes(second));
  await checkWaterfall(page);
  if (process.env.TRACE_UI) {
    const href = await page.getAttribute("#waterfall a", "href");
    assert.equal(href, process.env.TRACE_UI.replace("{trace_id}", second));
  }
  // Filtering by status keeps only matching rows.
  await page.fill('#trace-filter input[name="status"]', "2xx");
  await page.click('#trace-filter button[type="submit"]');
  await poll("the filtered list", async () => {
    const statuses = await page.$$eval("#trace-table tbody tr td:nth-child(4)", (tds) => tds.map((t) => t.textContent));
    return statuses.length > 0 && statuses.every((s) => s.startsWith("2"));
  });
  await page.screenshot({ path: path.join(ARTIFACTS, "console-trace.png"), fullPage: true });

  // A rejected change shows with its file, object and field.
  const bad = path.join(env("CONFIG_DIR"), "ingresses", "console-broken.yaml");
  fs.writeFileSync(bad, [
    "apiVersion: networking.k8s.io/v1",
    "kind: Ingress",
    "metadata:",
    "  name: console-broken",
    "spec:",
    "  ingressClassName: higress",
    "  rules:",
    "  - host: broken.example.com",
    "    http:",
    "      paths:",
    "      - path: /",
    "        pathType: Sideways",
    "        backend:",
    "          service: {name: x, port: {number: 80}}",
    "",
  ].join("\n"));
  await page.click("#tab-config");
  const rejected = await poll("the rejected change in the config panel", async () => {
    const t = await page.textContent("#rejected-error").catch(() => "");
    return t.includes("console-broken") ? t : null;
  });
  log("rejected change shown:", rejected.replace(/\s+/g, " "));
  assert.match(rejected, /console-broken\.yaml/);
  assert.match(rejected, /pathType/);
  assert.match(await page.textContent("#config-line"), /last rejected/);
  await page.screenshot({ path: path.join(ARTIFACTS, "console-config.png"), fullPage: true });
  fs.unlinkSync(bad);

  log(`page weight ${pageBytes()} bytes`);
  assert.ok(pageBytes() > 1000 && pageBytes() < 300 * 1024, `the page weighs ${pageBytes()} bytes`);
  assert.deepEqual(offOrigin, [], "requests off the console's listener");
  assert.deepEqual(errors, [], "script errors on the page");
  await browser.close();
}

/** The open waterfall has one server span and client spans that are its children. */
async function checkWaterfall(page) {
  const spans = await page.$$eval("#waterfall li.span", (lis) =>
    lis.map((li) => ({
      id: li.dataset.spanId,
      parent: li.dataset.parentSpanId,
      depth: Number(li.dataset.depth),
      kind: li.dataset.kind,
    })));
  assert.ok(spans.length >= 2, `spans: ${JSON.stringify(spans)}`);
  const server = spans.find((s) => s.kind === "server");
  const clients = spans.filter((s) => s.kind === "client");
  assert.ok(server && clients.length >= 1, JSON.stringify(spans));
  for (const c of [...clients, ...spans.filter((s) => s.kind === "plugin")]) {
    assert.equal(c.parent, server.id, "a client span's parent is the server span");
    assert.equal(c.depth, server.depth + 1);
  }
}

const run = MODE === "manage" ? (await import("./manage.mjs")).manage : observe;
try {
  await run({ launch, poll, promSum, env, log, ARTIFACTS, CONSOLE });
  log("ok");
} catch (e) {
  console.error(e);
  process.exit(1);
}
