//! A `consul` registry end to end: a real gateway watches the Consul stand-in
//! (`peers/consul_standin.py`, ACLs on) where the official client (py-consul, through
//! `peers/consul_driver.py`) registers instances of real loopback backends. Passing
//! instances become the endpoints of `web.dc1.consul`; a failing check, a deregistration
//! and a registry outage are followed without a failed request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::tracing_peers::{post, Peer};
use test_support::{get, Backend, ConfigDir, Gateway};

const TOKEN: &str = "gw-token";
/// Bound for the gateway to follow a registry change (refresh 1 s, blocking queries).
const FOLLOW: Duration = Duration::from_secs(20);

fn call(driver: &Peer, op: &str, args: Value, kwargs: Value, check: Option<Value>) -> Value {
    let mut body = json!({"op": op, "args": args, "kwargs": kwargs});
    if let Some(c) = check {
        body["check"] = c;
    }
    let r = post(
        driver.addr("control"),
        "/call",
        "application/json",
        body.to_string().as_bytes(),
    )
    .unwrap();
    let out = r.json();
    assert_eq!(out["ok"], true, "{op}: {out}");
    out["result"].clone()
}

fn register(driver: &Peer, id: &str, be: &Backend, weight: u32) {
    call(
        driver,
        "agent.service.register",
        json!(["web"]),
        json!({"service_id": id, "address": "127.0.0.1", "port": be.addr.port(),
               "tags": ["Gateway", "v1"], "meta": {"protocol": "http", "instance": id},
               "weights": {"Passing": weight, "Warning": 1}}),
        Some(json!({"kind": "ttl", "args": ["600s"]})),
    );
}

fn ttl(driver: &Peer, id: &str, pass: bool) {
    let op = if pass {
        "agent.check.ttl_pass"
    } else {
        "agent.check.ttl_fail"
    };
    assert_eq!(
        call(
            driver,
            op,
            json!([format!("service:{id}")]),
            json!({}),
            None
        ),
        true
    );
}

fn control(peer: &Peer, path: &str) {
    let r = post(peer.addr("control"), path, "application/json", b"{}").unwrap();
    assert_eq!(r.status, 200, "{path}");
}

/// The endpoints the gateway holds for `host` from registry `id`, sorted.
fn endpoints(gw: &Gateway, id: &str, host: &str) -> Option<Vec<String>> {
    let z = gw.configz();
    let reg = z["registries"]
        .as_array()?
        .iter()
        .find(|r| r["registry"] == id)?
        .clone();
    let svc = reg["services"]
        .as_array()?
        .iter()
        .find(|s| s["host"] == host)?
        .clone();
    let mut eps: Vec<String> = svc["endpoints"]
        .as_array()?
        .iter()
        .map(|e| e["address"].as_str().unwrap().to_string())
        .collect();
    eps.sort();
    Some(eps)
}

fn wait_endpoints(gw: &Gateway, id: &str, host: &str, want: &[&Backend]) -> Duration {
    let mut want: Vec<String> = want.iter().map(|b| b.addr.to_string()).collect();
    want.sort();
    let t = Instant::now();
    loop {
        let got = endpoints(gw, id, host);
        if got.as_ref() == Some(&want) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < FOLLOW,
            "{host}: endpoints {got:?}, want {want:?}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Send `n` requests for `web.test`; every one must succeed. Counts by backend name.
fn spread(gw: &Gateway, n: usize) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for _ in 0..n {
        let r = get(gw.http, "web.test", "/").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        *by.entry(r.json()["backend"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    by
}

/// The sample of `family` whose labels contain all of `labels`.
fn sample(gw: &Gateway, family: &str, labels: &[&str]) -> f64 {
    gw.metrics()
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn consul_services_follow_checks_deregistration_and_outage() {
    let consul = Peer::start("consul_standin.py", &["--token".into(), TOKEN.into()]);
    let client = Peer::start(
        "consul_driver.py",
        &[
            "--port".into(),
            consul.port("http").to_string(),
            "--token".into(),
            TOKEN.into(),
        ],
    );
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    // Consul's weights differ, but Higress does not read them: the split stays even.
    register(&client, "web-a", &a, 5);
    register(&client, "web-b", &b, 1);
    register(&client, "web-c", &c, 1);
    ttl(&client, "web-a", true);
    ttl(&client, "web-b", true);
    // web-c's check never passes; a service without the tag is not discovered.
    call(
        &client,
        "agent.service.register",
        json!(["untagged"]),
        json!({"service_id": "u-1", "address": "127.0.0.1", "port": c.addr.port()}),
        None,
    );

    let cfg = ConfigDir::new();
    cfg.write(
        "secrets/consul-creds.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: consul-creds\ntype: Opaque\nstringData:\n  consulToken: {TOKEN}\n"
        ),
    );
    cfg.write(
        "mcpbridges/default.yaml",
        &format!(
            "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\nspec:\n  registries:\n  - type: consul\n    name: reg\n    domain: 127.0.0.1\n    port: {}\n    consulDatacenter: dc1\n    consulServiceTag: GATEWAY\n    authSecretName: consul-creds\n",
            consul.port("http")
        ),
    );
    cfg.host_route("web", "web.test", "web.dc1.consul");
    let gw = Gateway::start_with(
        cfg.path(),
        &["--registry-min-refresh", "1s", "--eureka-poll", "1s"],
    );
    let id = "consul/reg";

    wait_endpoints(&gw, id, "web.dc1.consul", &[&a, &b]);
    let z = gw.configz();
    let reg = z["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["registry"] == id)
        .unwrap();
    let hosts: Vec<&str> = reg["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["host"].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        ["web.dc1.consul"],
        "the tag filter leaves out consul and untagged"
    );
    assert!(reg["services"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["weight"] == 1));
    // The gateway read with the token, in dc1, by blocking queries.
    let seen = consul.records_of("request");
    let health: Vec<&Value> = seen
        .iter()
        .filter(|r| r["path"] == "/v1/health/service/web")
        .collect();
    assert!(health
        .iter()
        .all(|r| r["token"] == TOKEN && r["query"].as_str().unwrap().contains("dc=dc1")));
    assert!(health
        .iter()
        .any(|r| r["query"].as_str().unwrap().contains("index=")));

    let by = spread(&gw, 1000);
    let (na, nb) = (
        by.get("a").copied().unwrap_or(0),
        by.get("b").copied().unwrap_or(0),
    );
    assert_eq!(by.get("c"), None, "web-c is critical");
    assert!(
        (400..=600).contains(&na) && na + nb == 1000,
        "even split expected: {by:?}"
    );

    // web-b fails its check: traffic leaves it within the refresh, no request fails.
    let before_b = b.requests();
    ttl(&client, "web-b", false);
    let took = wait_endpoints(&gw, id, "web.dc1.consul", &[&a]);
    eprintln!("failing check followed in {took:?}");
    let by = spread(&gw, 200);
    assert_eq!(by.get("a"), Some(&200), "{by:?}");
    assert!(b.requests() == before_b + by.get("b").copied().unwrap_or(0));

    // Back to passing, then web-a deregistered: only web-b is left.
    ttl(&client, "web-b", true);
    wait_endpoints(&gw, id, "web.dc1.consul", &[&a, &b]);
    assert_eq!(
        call(
            &client,
            "agent.service.deregister",
            json!(["web-a"]),
            json!({}),
            None
        ),
        true
    );
    wait_endpoints(&gw, id, "web.dc1.consul", &[&b]);
    assert_eq!(spread(&gw, 100).get("b"), Some(&100));

    // No passing instance left: the last endpoints stay, as Higress keeps them.
    let queries = consul.records_of("request").len();
    ttl(&client, "web-b", false);
    let t = Instant::now();
    while consul.records_of("request")[queries..]
        .iter()
        .filter(|r| r["path"] == "/v1/health/service/web")
        .count()
        < 1
    {
        assert!(t.elapsed() < FOLLOW, "the watcher never read the change");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        endpoints(&gw, id, "web.dc1.consul"),
        Some(vec![b.addr.to_string()])
    );
    ttl(&client, "web-b", true);

    // Registry down: the failures are counted and traffic keeps its endpoints.
    let failures = sample(
        &gw,
        "gateway_registry_updates_total",
        &["registry=\"consul/reg\"", "result=\"failure\""],
    );
    control(&consul, "/down");
    let t = Instant::now();
    while sample(
        &gw,
        "gateway_registry_updates_total",
        &["registry=\"consul/reg\"", "result=\"failure\""],
    ) < failures + 2.0
    {
        assert!(t.elapsed() < FOLLOW, "no failure counted\n{}", gw.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        sample(&gw, "gateway_registry_up", &["registry=\"consul/reg\""]),
        0.0
    );
    assert_eq!(spread(&gw, 100).get("b"), Some(&100));
    let z = gw.configz();
    let reg = z["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["registry"] == id)
        .unwrap();
    assert_eq!(reg["status"], "failing, last services kept");

    // Back: the watcher reads again and follows new registrations.
    control(&consul, "/up");
    register(&client, "web-a", &a, 1);
    ttl(&client, "web-a", true);
    wait_endpoints(&gw, id, "web.dc1.consul", &[&a, &b]);
    let t = Instant::now();
    while sample(&gw, "gateway_registry_up", &["registry=\"consul/reg\""]) != 1.0 {
        assert!(t.elapsed() < FOLLOW, "registry not up again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let by = spread(&gw, 200);
    assert!(by.contains_key("a") && by.contains_key("b"), "{by:?}");
}
