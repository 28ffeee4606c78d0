//! The Consul and Eureka stand-ins (`peers/consul_standin.py`, `peers/eureka_standin.py`)
//! answer the official clients as the real servers do: py-consul and py-eureka-client,
//! driven through `peers/consul_driver.py` and `peers/eureka_driver.py`, register, check,
//! watch and discover against them. The registry watcher tests rest on this.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::tracing_peers::{post, Peer, PEER_WAIT};
use test_support::{get, request};

/// One py-consul call through the driver: `Ok(result)` or `Err("<exception>: <text>")`.
fn call(
    driver: &Peer,
    op: &str,
    args: Value,
    kwargs: Value,
    check: Option<Value>,
) -> Result<Value, String> {
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
    .unwrap_or_else(|e| panic!("{op}: {e}\n{}", driver.log()));
    let out = r.json();
    match out["ok"].as_bool() {
        Some(true) => Ok(out["result"].clone()),
        _ => Err(out["error"].as_str().unwrap_or("?").to_string()),
    }
}

fn control(peer: &Peer, path: &str, body: Value) -> Value {
    let r = post(
        peer.addr("control"),
        path,
        "application/json",
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = request(addr, method, "registry", path, headers).unwrap();
    (r.status, r.text())
}

#[test]
fn consul_standin_answers_py_consul() {
    let consul = Peer::start("consul_standin.py", &["--token".into(), "s3cret".into()]);
    let port = consul.port("http").to_string();
    let c = Peer::start(
        "consul_driver.py",
        &[
            "--port".into(),
            port.clone(),
            "--token".into(),
            "s3cret".into(),
        ],
    );
    let none = json!([]);

    assert_eq!(
        call(&c, "status.leader", none.clone(), json!({}), None).unwrap(),
        "127.0.0.1:8300"
    );
    call(
        &c,
        "agent.service.register",
        json!(["web"]),
        json!({"service_id": "web-1", "address": "127.0.0.1", "port": 8080, "tags": ["Edge"],
               "meta": {"protocol": "http"}, "weights": {"Passing": 3, "Warning": 1}}),
        Some(json!({"kind": "ttl", "args": ["30s"]})),
    )
    .unwrap();
    let services = call(&c, "catalog.services", none.clone(), json!({}), None).unwrap();
    assert_eq!(services[1], json!({"consul": [], "web": ["Edge"]}));

    // A new TTL check is critical: `passing` leaves the instance out.
    let h = call(&c, "health.service", json!(["web"]), json!({}), None).unwrap();
    let index: u64 = h[0].as_str().unwrap().parse().unwrap();
    let entry = &h[1][0];
    assert_eq!(entry["Service"]["ID"], "web-1");
    assert_eq!(
        entry["Service"]["Weights"],
        json!({"Passing": 3, "Warning": 1})
    );
    let checks: Vec<(String, String)> = entry["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["CheckID"].as_str().unwrap().into(),
                k["Status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        [
            ("serfHealth".into(), "passing".into()),
            ("service:web-1".into(), "critical".into())
        ]
    );
    let passing = call(
        &c,
        "health.service",
        json!(["web"]),
        json!({"passing": true}),
        None,
    )
    .unwrap();
    assert_eq!(passing[1], json!([]));

    // A blocking query at the current index returns once the check passes, with a
    // higher index; at a stale index it returns at once.
    let waiter = {
        let port = port.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let r = request(
                addr,
                "GET",
                "consul",
                &format!("/v1/health/service/web?index={index}&wait=20s&passing=1"),
                &[("X-Consul-Token", "s3cret")],
            )
            .unwrap();
            (t.elapsed(), r)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    call(
        &c,
        "agent.check.ttl_pass",
        json!(["service:web-1"]),
        json!({}),
        None,
    )
    .unwrap();
    let (took, r) = waiter.join().unwrap();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let after: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
    assert!(after > index);
    assert_eq!(r.json()[0]["Service"]["ID"], "web-1");
    let t = Instant::now();
    let stale = call(
        &c,
        "health.service",
        json!(["web"]),
        json!({"index": index, "wait": "20s"}),
        None,
    )
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(stale[0], after.to_string());
    // Without a change the query waits for `wait`.
    let t = Instant::now();
    call(
        &c,
        "health.service",
        json!(["web"]),
        json!({"index": after, "wait": "1s"}),
        None,
    )
    .unwrap();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // `tag`, `dc`, maintenance, deregistration, errors.
    let tagged = call(
        &c,
        "health.service",
        json!(["web"]),
        json!({"tag": "Edge"}),
        None,
    )
    .unwrap();
    assert_eq!(tagged[1].as_array().unwrap().len(), 1);
    let untagged = call(
        &c,
        "health.service",
        json!(["web"]),
        json!({"tag": "other"}),
        None,
    )
    .unwrap();
    assert_eq!(untagged[1], json!([]));
    let other_dc = call(
        &c,
        "health.service",
        json!(["web"]),
        json!({"dc": "dc9"}),
        None,
    )
    .unwrap_err();
    assert!(other_dc.contains("No path to datacenter"), "{other_dc}");
    call(
        &c,
        "agent.service.maintenance",
        json!(["web-1", true]),
        json!({"reason": "test"}),
        None,
    )
    .unwrap();
    let m = call(
        &c,
        "health.service",
        json!(["web"]),
        json!({"passing": true}),
        None,
    )
    .unwrap();
    assert_eq!(m[1], json!([]), "maintenance is critical");
    call(
        &c,
        "agent.service.maintenance",
        json!(["web-1", false]),
        json!({}),
        None,
    )
    .unwrap();
    // py-consul turns a 404 into `false`.
    assert_eq!(
        call(&c, "agent.check.ttl_pass", json!(["nope"]), json!({}), None).unwrap(),
        false
    );
    assert_eq!(
        call(
            &c,
            "agent.service.deregister",
            json!(["web-1"]),
            json!({}),
            None
        )
        .unwrap(),
        true
    );
    assert_eq!(
        call(
            &c,
            "agent.service.deregister",
            json!(["web-1"]),
            json!({}),
            None
        )
        .unwrap(),
        false
    );
    let services = call(&c, "catalog.services", none.clone(), json!({}), None).unwrap();
    assert_eq!(services[1], json!({"consul": []}));

    // ACLs: a wrong token is refused, the anonymous one sees nothing.
    let wrong = Peer::start(
        "consul_driver.py",
        &[
            "--port".into(),
            port.clone(),
            "--token".into(),
            "nope".into(),
        ],
    );
    let e = call(&wrong, "catalog.services", none.clone(), json!({}), None).unwrap_err();
    assert!(e.starts_with("ACLPermissionDenied"), "{e}");
    let anon = Peer::start("consul_driver.py", &["--port".into(), port.clone()]);
    assert_eq!(
        call(&anon, "catalog.services", none.clone(), json!({}), None).unwrap()[1],
        json!({})
    );
    let e = call(
        &anon,
        "agent.service.register",
        json!(["x"]),
        json!({}),
        None,
    )
    .unwrap_err();
    assert!(e.starts_with("ACLPermissionDenied"), "{e}");

    // Only Consul's paths and parameters.
    let addr = consul.addr("http");
    let tok = [("X-Consul-Token", "s3cret")];
    assert_eq!(raw(addr, "GET", "/v1/nope", &tok).0, 404);
    assert_eq!(
        raw(addr, "GET", "/v1/health/service/web?index=abc", &tok),
        (400, "Invalid index".into())
    );
    assert_eq!(
        raw(
            addr,
            "GET",
            "/v1/health/service/web?index=1&wait=soon",
            &tok
        ),
        (400, "Invalid wait time".into())
    );
    assert_eq!(
        raw(addr, "GET", "/v1/health/service/web?near=_agent", &tok).0,
        400
    );
    assert_eq!(raw(addr, "DELETE", "/v1/catalog/services", &tok).0, 405);

    // Down and back on the same port: a blocked query sees its connection end.
    let blocked = std::thread::spawn(move || {
        request(
            addr,
            "GET",
            "consul",
            "/v1/catalog/services?index=999999&wait=30s",
            &[("X-Consul-Token", "s3cret")],
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    control(&consul, "/down", json!({}));
    let r = blocked.join().unwrap();
    assert!(r.is_err(), "the blocked query's connection is reset: {r:?}");
    assert!(std::net::TcpStream::connect(addr).is_err());
    let e = call(&c, "catalog.services", none.clone(), json!({}), None).unwrap_err();
    assert!(e.contains("Connection") || e.contains("connect"), "{e}");
    control(&consul, "/up", json!({}));
    assert!(call(&c, "catalog.services", none, json!({}), None).is_ok());
    let seen = consul.records_of("request");
    assert!(seen
        .iter()
        .any(|r| r["path"] == "/v1/health/service/web" && r["token"] == "s3cret"));
}

/// The instances the Eureka stand-in lists for `app`, as (id, status, port).
fn eureka_instances(addr: SocketAddr, app: &str) -> Vec<(String, String, u64)> {
    let r = request(
        addr,
        "GET",
        "eureka",
        "/eureka/apps",
        &[("Accept", "application/json")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    let mut out = vec![];
    for a in v["applications"]["application"].as_array().unwrap() {
        if a["name"] != app {
            continue;
        }
        for i in a["instance"].as_array().unwrap() {
            out.push((
                i["instanceId"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["port"]["$"].as_u64().unwrap(),
            ));
        }
    }
    out
}

fn wait_until<T>(what: &str, bound: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < bound,
            "timed out after {bound:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn eureka_standin_answers_py_eureka_client() {
    let eureka = Peer::start(
        "eureka_standin.py",
        &[
            "--lease-seconds".into(),
            "3".into(),
            "--eviction-interval".into(),
            "0.5".into(),
        ],
    );
    let addr = eureka.addr("http");
    let server = format!("http://127.0.0.1:{}/eureka", addr.port());
    let instance = |id: &str, port: u16| {
        Peer::start(
            "eureka_driver.py",
            &[
                "--server".into(),
                server.clone(),
                "--app".into(),
                "echo".into(),
                "--id".into(),
                id.into(),
                "--port".into(),
                port.to_string(),
                "--metadata".into(),
                r#"{"zone": "a"}"#.into(),
            ],
        )
    };
    let one = instance("echo-1", 18081);
    let two = instance("echo-2", 18082);

    // Registered under the upper-cased name; the client itself discovers both (XML
    // listing, then deltas).
    let mut listed = eureka_instances(addr, "ECHO");
    listed.sort();
    assert_eq!(
        listed,
        [
            ("echo-1".into(), "UP".into(), 18081),
            ("echo-2".into(), "UP".into(), 18082)
        ]
    );
    wait_until("the client to discover both", PEER_WAIT, || {
        let r = get(one.addr("control"), "x", "/apps").unwrap().json();
        (r["ECHO"].as_array().map(|a| a.len()) == Some(2)).then_some(())
    });
    let app = request(
        addr,
        "GET",
        "eureka",
        "/eureka/apps/echo",
        &[("Accept", "application/json")],
    )
    .unwrap();
    let inst = &app.json()["application"]["instance"][0];
    assert_eq!(inst["metadata"]["zone"], "a");
    assert_eq!(inst["port"]["@enabled"], "true");
    let xml = request(addr, "GET", "eureka", "/eureka/apps/ECHO", &[]).unwrap();
    assert!(
        xml.header("content-type").unwrap().contains("xml"),
        "XML unless JSON is asked for"
    );
    assert!(xml.text().contains("<port enabled=\"true\">"));

    // A status override through the client reaches the listing and the client's view.
    control(&two, "/status", json!({"status": "OUT_OF_SERVICE"}));
    wait_until("OUT_OF_SERVICE listed", PEER_WAIT, || {
        eureka_instances(addr, "ECHO")
            .iter()
            .any(|(id, st, _)| id == "echo-2" && st == "OUT_OF_SERVICE")
            .then_some(())
    });
    wait_until("the client to see OUT_OF_SERVICE", PEER_WAIT, || {
        let r = get(one.addr("control"), "x", "/apps").unwrap().json();
        r["ECHO"]
            .as_array()?
            .iter()
            .any(|i| i[0] == "echo-2" && i[1] == "OUT_OF_SERVICE")
            .then_some(())
    });
    control(&two, "/status", json!({"status": "UP"}));

    // An instance that stops heartbeating is evicted after its lease; one that stops
    // cleanly is cancelled at once.
    let _ = post(two.addr("control"), "/vanish", "application/json", b"{}");
    let t = Instant::now();
    wait_until("echo-2's lease to expire", Duration::from_secs(15), || {
        (eureka_instances(addr, "ECHO").len() == 1).then_some(())
    });
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "not before its lease: {:?}",
        t.elapsed()
    );
    let _ = post(one.addr("control"), "/stop", "application/json", b"{}");
    wait_until("echo-1 cancelled", PEER_WAIT, || {
        (raw(addr, "GET", "/eureka/apps/ECHO", &[]).0 == 404).then_some(())
    });
    let seen = eureka.records_of("request");
    assert!(seen
        .iter()
        .any(|r| r["method"] == "DELETE" && r["path"] == "/eureka/apps/ECHO/echo-1"));
    assert!(seen
        .iter()
        .any(|r| r["method"] == "PUT" && r["path"] == "/eureka/apps/ECHO/echo-1"));
    assert!(seen.iter().any(|r| r["path"] == "/eureka/apps/delta"));

    // Only Eureka's paths and methods.
    assert_eq!(raw(addr, "GET", "/eureka/nope", &[]).0, 404);
    assert_eq!(raw(addr, "DELETE", "/eureka/apps", &[]).0, 405);
    assert_eq!(raw(addr, "PUT", "/eureka/apps/ECHO/ghost", &[]).0, 404);
    assert_eq!(raw(addr, "DELETE", "/eureka/apps/ECHO/ghost", &[]).0, 404);

    // Down and back on the same port.
    control(&eureka, "/down", json!({}));
    assert!(std::net::TcpStream::connect(addr).is_err());
    control(&eureka, "/up", json!({}));
    assert_eq!(raw(addr, "GET", "/eureka/apps", &[]).0, 200);
}
