// The console's config management, as a user does it in the browser: set the password,
// create a service source, a domain and a route to it, turn tracing on, send a request
// through the new route and find its trace; a wrong value is refused inline, nothing is
// written without a login, and wrong passwords are refused, then rate limited.
//
// Environment (beside console.mjs's): BACKEND (ip:port of a live HTTP backend),
// ROUTE_HOST (the new domain).
import assert from "node:assert/strict";
import http from "node:http";
import path from "node:path";

/** GET `url` with this Host header (fetch may not set Host); resolves to the status. */
function get(url, host) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Host: host } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", reject);
    req.setTimeout(5000, () => req.destroy(new Error("timed out")));
  });
}

export async function manage({ launch, poll, env, log, ARTIFACTS, CONSOLE }) {
  const { browser, page, offOrigin, errors } = await launch();
  const PASSWORD = "console-pass-1234";
  const host = env("ROUTE_HOST");
  await page.goto(CONSOLE + "/ui", { waitUntil: "load" });

  // No write without a login.
  const anonymous = await page.evaluate(async () => {
    const r = await fetch("/api/console/resources/domains/nope.example.com", {
      method: "PUT",
      headers: { "Content-Type": "application/json", "If-Match": "*" },
      body: JSON.stringify({ item: { name: "nope.example.com", enableHttps: "off", cert: null } }),
    });
    return r.status;
  });
  assert.equal(anonymous, 401, "a write without a session");

  // First visit: set the password (a short one is refused inline).
  await page.click("#tab-manage");
  await page.waitForSelector("#login-form");
  await page.fill('#login-form input[name="password"]', "short");
  await page.click('#login-form button[type="submit"]');
  await poll("the short password refused", async () => (await page.textContent("#login-error")).includes("password"));
  await page.fill('#login-form input[name="password"]', PASSWORD);
  await page.click('#login-form button[type="submit"]');
  await page.waitForSelector("#manage-service-sources form");
  log("password set, logged in");

  const save = async (kind, values) => {
    const form = `#manage-${kind} form.editor`;
    for (const [name, value] of Object.entries(values)) {
      const sel = `${form} [name="${name}"]`;
      const tag = await page.$eval(sel, (e) => e.tagName);
      if (tag === "SELECT") await page.selectOption(sel, value);
      else await page.fill(sel, String(value));
    }
    await page.click(`${form} button[type="submit"]`);
    return poll(`the ${kind} save to answer`, async () => {
      const msg = await page.$(`${form} p[role="alert"]`);
      const text = msg ? await msg.textContent() : "";
      return text ? { ok: (await msg.getAttribute("class")) === "ok", text } : null;
    });
  };

  // A wrong value is refused inline, with its field; nothing is created.
  const wrong = await save("service-sources", { name: "broken", type: "static", domain: "nonsense", port: 80 });
  log("wrong value:", wrong.text);
  assert.equal(wrong.ok, false);
  assert.match(wrong.text, /domain/);

  const source = await save("service-sources", { name: "console-be", type: "static", domain: env("BACKEND"), port: 80 });
  assert.ok(source.ok, source.text);
  await page.waitForSelector("#manage-domains form");
  const domain = await save("domains", { name: host, enableHttps: "off" });
  assert.ok(domain.ok, domain.text);
  await page.waitForSelector("#manage-routes form");
  const route = await save("routes", {
    name: "console-route",
    domains: host,
    matchType: "PRE",
    matchValue: "/",
    service: "console-be.static",
    port: 80,
  });
  assert.ok(route.ok, route.text);

  // Tracing on, every request sampled (spans to a collector that is not there: the
  // console shows the gateway's own record of them).
  await page.waitForSelector("#tracing-form");
  await page.check("#tracing-enable");
  await page.fill("#tracing-sampling", "100");
  await page.selectOption("#tracing-provider", "zipkin");
  await page.fill("#tracing-service", "zipkin.example.com");
  await page.fill("#tracing-port", "9411");
  await page.click('#tracing-form button[type="submit"]');
  await poll("tracing saved", async () => (await page.textContent('#tracing-form p[role="alert"]')) === "saved");
  log("service source, domain, route and tracing saved");

  // A request through the new route succeeds once the gateway has applied it...
  const gateway = env("GATEWAY");
  let last;
  await poll("a 200 through the new route", async () => {
    last = await get(gateway + "/console-check", host);
    return last === 200;
  }).catch((e) => {
    throw new Error(`${e.message} (last status ${last})`);
  });
  // ...and its trace shows in the console.
  await page.click("#tab-traces");
  const routeName = await poll("the new route in the trace filter", async () => {
    const c = await (await fetch(CONSOLE + "/api/console/config")).json();
    const r = c.routes.find((x) => x.host === host);
    return r ? r.name : null;
  });
  await poll("the new route's trace", async () => {
    await get(gateway + "/console-check", host);
    await page.selectOption("#trace-route", routeName);
    await page.click('#trace-filter button[type="submit"]');
    await page.waitForTimeout(300);
    return (await page.$$("#trace-table tbody tr")).length > 0;
  });
  await page.click("#trace-table tbody tr");
  await page.waitForSelector("#waterfall li.span.client");
  assert.match(await page.textContent("#waterfall"), new RegExp(routeName));
  await page.screenshot({ path: path.join(ARTIFACTS, `console-manage-${process.env.STORE || "files"}.png`), fullPage: true });

  // A stale version is refused: two saves based on the same read of the tracing
  // settings, the second after the first changed them.
  const stale = await page.evaluate(async () => {
    const one = await (await fetch("/api/console/resources/global/tracing")).json();
    const put = (sampling) => fetch("/api/console/resources/global/tracing", {
      method: "PUT",
      headers: { "Content-Type": "application/json", "If-Match": one.version },
      body: JSON.stringify({ item: { ...one.item, sampling } }),
    });
    const first = await put(50);
    const second = await put(100);
    return [first.status, second.status];
  });
  log("two saves from one read:", stale);
  assert.deepEqual(stale, [200, 409]);

  // Wrong passwords: refused, then rate limited.
  await page.click("#tab-manage");
  await page.click("text=Log out");
  await page.waitForSelector("#login-form");
  const statuses = [];
  for (let i = 0; i < 6; i++) {
    statuses.push(await page.evaluate(async () => (await fetch("/api/console/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: "admin", password: "wrong-password" }),
    })).status));
  }
  log("wrong logins:", statuses.join(" "));
  assert.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401]);
  assert.equal(statuses[5], 429);
  await page.fill('#login-form input[name="password"]', PASSWORD);
  await page.click('#login-form button[type="submit"]');
  await poll("the rate-limit message", async () => /Too many/.test(await page.textContent("#login-error")));

  assert.deepEqual(offOrigin, [], "requests off the console's listener");
  assert.deepEqual(errors, [], "script errors on the page");
  await browser.close();
}
