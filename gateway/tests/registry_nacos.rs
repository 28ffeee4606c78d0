//! Nacos service discovery end to end: a real gateway with an McpBridge `nacos` (v1 HTTP,
//! polled) or `nacos2` (gRPC, pushed) registry pointing at the Nacos stand-in
//! (`peers/nacos_standin.py`); instances registered by the official Python SDK
//! (`peers/nacos_register.py`) at real loopback backends. The Ingress names the service
//! by Higress's host, `echo.DEFAULT-GROUP.public.nacos`.
//!
//! Each test checks: the instances become endpoints and take traffic; a weight change
//! (1:3) moves the split; an instance turned unhealthy, and one deregistered, stop
//! taking traffic within the refresh interval (v1) or at once (v2) with no request
//! failing; the registry going away keeps the last endpoints serving and counts the
//! failure (`/debug/configz` `registries`, `gateway_registry_updates_total`); once it is
//! back, changes apply again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::backend::Backend;
use test_support::client::Conn;
use test_support::nacos::NacosStandin;
use test_support::tracing_peers::{post, Peer};
use test_support::{ConfigDir, Gateway, WAIT};

const HOST: &str = "echo.DEFAULT-GROUP.public.nacos";
const ROUTE_HOST: &str = "echo.test";

/// The registrar: the official SDK registering instances, driven over its control port.
struct Registrar {
    peer: Peer,
    _work: tempfile::TempDir,
}

impl Registrar {
    fn start(mode: &str, nacos: &NacosStandin) -> Registrar {
        let work = tempfile::tempdir().unwrap();
        let args: Vec<String> = [
            mode,
            "--server",
            &nacos.server_addr(),
            "--work",
            work.path().to_str().unwrap(),
            "--beat",
            "0.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Registrar {
            peer: Peer::start("nacos_register.py", &args),
            _work: work,
        }
    }

    fn call(&self, action: &str, body: Value) {
        let r = post(
            self.peer.addr("control"),
            action,
            "application/json",
            body.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("registrar {action}: {e}"));
        assert_eq!(
            r.status,
            200,
            "registrar {action} {body}: {}\n{}",
            r.text(),
            self.peer.log()
        );
    }

    /// `call`, repeated until the SDK succeeds (it may still be reconnecting).
    fn call_until_ok(&self, action: &str, body: Value) {
        test_support::wait_for("the SDK call to succeed", || {
            post(
                self.peer.addr("control"),
                action,
                "application/json",
                body.to_string().as_bytes(),
            )
            .ok()
            .filter(|r| r.status == 200)
        });
    }

    fn register(&self, be: &Backend, weight: f64, metadata: Value) {
        self.call(
            "/register",
            json!({"service": "echo", "ip": "127.0.0.1", "port": be.addr.port(),
                   "weight": weight, "metadata": metadata}),
        );
    }
}

fn config(kind: &str, nacos: &NacosStandin) -> ConfigDir {
    let cfg = ConfigDir::new();
    let http = nacos.http();
    cfg.write(
        "mcpbridges/default.yaml",
        &format!(
            "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\nspec:\n  registries:\n  - type: {kind}\n    name: n\n    domain: 127.0.0.1\n    port: {}\n    nacosNamespaceId: public\n    nacosGroups: [DEFAULT_GROUP]\n",
            http.port()
        ),
    );
    cfg.host_route("echo", ROUTE_HOST, HOST);
    cfg
}

/// This registry's entry in `/debug/configz` `registries`.
fn registry(gw: &Gateway, id: &str) -> Value {
    gw.configz()["registries"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["registry"] == id).cloned())
        .unwrap_or(Value::Null)
}

/// The endpoints of `HOST` as configz shows them: (port, weight), sorted.
fn endpoints(gw: &Gateway, id: &str) -> Vec<(u16, u64)> {
    let r = registry(gw, id);
    let mut out: Vec<(u16, u64)> = r["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["host"] == HOST)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let a: SocketAddr = e["address"].as_str().unwrap().parse().unwrap();
            (a.port(), e["weight"].as_u64().unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Poll until `HOST`'s endpoints are `want`; how long that took.
fn wait_endpoints(gw: &Gateway, id: &str, want: &[(u16, u64)]) -> Duration {
    let start = Instant::now();
    loop {
        let got = endpoints(gw, id);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < WAIT,
            "endpoints of {HOST}: want {want:?}, have {got:?}\nconfigz registries: {}\n{}",
            gw.configz()["registries"],
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request through the gateway on a kept-alive connection; its status.
fn send(conn: &mut Option<Conn>, gw: &Gateway) -> Result<u16, String> {
    if conn.is_none() {
        *conn = Some(Conn::open(gw.http).map_err(|e| format!("connect: {e}"))?);
    }
    let c = conn.as_mut().unwrap();
    match c.request("GET", ROUTE_HOST, "/", &[]) {
        Ok(r) => {
            if r.header("connection") == Some("close") {
                *conn = None;
            }
            Ok(r.status)
        }
        Err(e) => {
            *conn = None;
            Err(e.to_string())
        }
    }
}

/// `n` requests; every one must answer 200.
fn burst(gw: &Gateway, n: usize) {
    let mut conn = None;
    for i in 0..n {
        let s = send(&mut conn, gw);
        assert_eq!(s, Ok(200), "request {i} of {n}\n{}", gw.log());
    }
}

/// Requests sent without pause from a thread until stopped; every non-200 is kept.
struct Traffic {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Traffic {
    fn start(gw: &Gateway) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, f, addr) = (stop.clone(), failures.clone(), gw.http);
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            let mut conn: Option<Conn> = None;
            while !s.load(Ordering::Relaxed) {
                if conn.is_none() {
                    match Conn::open(addr) {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            f.lock().unwrap().push(format!("connect: {e}"));
                            continue;
                        }
                    }
                }
                let r = conn
                    .as_mut()
                    .unwrap()
                    .request("GET", ROUTE_HOST, "/", &[]);
                n += 1;
                match r {
                    Ok(r) => {
                        if r.status != 200 {
                            f.lock().unwrap().push(format!("status {}", r.status));
                        }
                        if r.header("connection") == Some("close") {
                            conn = None;
                        }
                    }
                    Err(e) => {
                        f.lock().unwrap().push(e.to_string());
                        conn = None;
                    }
                }
            }
            n
        });
        Traffic {
            stop,
            failures,
            thread: Some(thread),
        }
    }

    /// Stop; (requests sent, failures).
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let n = self.thread.take().unwrap().join().unwrap();
        (n, self.failures.lock().unwrap().clone())
    }
}

/// Wait until `be` takes no more requests while others do: its count holds over 200
/// requests that all succeed.
fn assert_drained(gw: &Gateway, be: &Backend, what: &str) {
    let before = be.requests();
    burst(gw, 200);
    assert_eq!(be.requests(), before, "{what}: still taking requests");
}

/// The share of `n` requests that `heavy` takes against `light`.
fn split(gw: &Gateway, light: &Backend, heavy: &Backend, n: usize) -> f64 {
    let (l0, h0) = (light.requests(), heavy.requests());
    burst(gw, n);
    let (l, h) = (light.requests() - l0, heavy.requests() - h0);
    assert_eq!(l + h, n, "every request reached one of the two");
    h as f64 / n as f64
}

fn failure_count(gw: &Gateway, id: &str) -> f64 {
    gw.metric(&format!(
        "gateway_registry_updates_total{{registry=\"{id}\",result=\"failure\"}}"
    ))
    .unwrap_or(0.0)
}

/// The registry goes away: the endpoints in force keep serving, the failure is counted
/// and shown; it comes back: `fresh` registered meanwhile becomes an endpoint.
fn outage_then_back(
    gw: &Gateway,
    id: &str,
    nacos: &NacosStandin,
    kept: &[(u16, u64)],
    after: impl FnOnce() -> Vec<(u16, u64)>,
) {
    let failures_before = failure_count(gw, id);
    let (s, _) = nacos.control("/down", json!({}));
    assert_eq!(s, 200);
    let t0 = Instant::now();
    test_support::wait_for("the registry's failure counted", || {
        let r = registry(gw, id);
        (r["status"] == "failing, last services kept"
            && r["failures"].as_u64().unwrap_or(0) >= 1
            && failure_count(gw, id) > failures_before)
            .then_some(())
    });
    eprintln!("{id}: failure seen {:?} after the registry went down", t0.elapsed());
    let r = registry(gw, id);
    assert!(
        r["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{r}"
    );
    assert_eq!(endpoints(gw, id), kept, "the last endpoints are kept");
    assert_eq!(gw.metric(&format!("gateway_registry_up{{registry=\"{id}\"}}")), Some(0.0));
    burst(gw, 100);

    let (s, _) = nacos.control("/up", json!({}));
    assert_eq!(s, 200);
    let want = after();
    let took = wait_endpoints(gw, id, &want);
    eprintln!("{id}: back, endpoints {want:?} after {took:?}");
    test_support::wait_for("the registry reported ok again", || {
        (registry(gw, id)["status"] == "ok").then_some(())
    });
    assert_eq!(gw.metric(&format!("gateway_registry_up{{registry=\"{id}\"}}")), Some(1.0));
    burst(gw, 100);
}

#[test]
fn nacos_v1_instances_become_weighted_endpoints_and_follow_health_and_outages() {
    let id = "nacos/n";
    let (a, b, c, d) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
        Backend::start("d"),
    );
    // Instances time out after 15 s without a beat (Nacos's default) unless their
    // metadata says otherwise, as b's does: 2 s.
    let nacos = NacosStandin::start(&["--ip-delete-timeout", "600"]);
    let reg = Registrar::start("v1", &nacos);
    reg.register(&a, 1.0, json!({}));
    reg.register(&b, 1.0, json!({"preserved.heart.beat.timeout": "2000"}));

    let cfg = config("nacos", &nacos);
    let gw = Gateway::start_with(cfg.path(), &["--registry-min-refresh", "1s"]);
    let (pa, pb, pc, pd) = (a.addr.port(), b.addr.port(), c.addr.port(), d.addr.port());
    let took = wait_endpoints(&gw, id, &eps(&[(pa, 1), (pb, 1)]));
    eprintln!("nacos: first endpoints after {took:?}");
    let r = registry(&gw, id);
    assert_eq!(r["status"], "ok", "{r}");
    let svc = &r["services"][0];
    assert_eq!(svc["host"], HOST);
    assert_eq!(svc["protocol"], "http");
    burst(&gw, 50);
    assert!(a.requests() > 0 && b.requests() > 0, "both instances take traffic");

    // Weights 1:3: b takes three quarters.
    reg.call(
        "/weight",
        json!({"service": "echo", "ip": "127.0.0.1", "port": pb, "weight": 3.0}),
    );
    let took = wait_endpoints(&gw, id, &eps(&[(pa, 1), (pb, 3)]));
    eprintln!("nacos: weight change applied after {took:?}");
    let share = split(&gw, &a, &b, 1200);
    eprintln!("nacos: weight 1:3 -> b took {:.3} of 1200", share);
    assert!((share - 0.75).abs() < 0.05, "b's share {share}");

    // b's application stops beating: Nacos marks it unhealthy after 2 s, and the
    // gateway stops sending it traffic within a refresh, with no request failing.
    let traffic = Traffic::start(&gw);
    reg.call(
        "/stop-beat",
        json!({"service": "echo", "ip": "127.0.0.1", "port": pb}),
    );
    let took = wait_endpoints(&gw, id, &[(pa, 1)]);
    eprintln!("nacos: unhealthy instance removed {took:?} after its beats stopped (2 s timeout)");
    let (n, failed) = traffic.finish();
    assert!(failed.is_empty(), "{} of {n} requests failed: {failed:?}", failed.len());
    assert_drained(&gw, &b, "the unhealthy instance");

    // c is registered, then deregistered under traffic.
    reg.register(&c, 1.0, json!({}));
    wait_endpoints(&gw, id, &eps(&[(pa, 1), (pc, 1)]));
    burst(&gw, 50);
    assert!(c.requests() > 0);
    let traffic = Traffic::start(&gw);
    reg.call(
        "/deregister",
        json!({"service": "echo", "ip": "127.0.0.1", "port": pc}),
    );
    let took = wait_endpoints(&gw, id, &[(pa, 1)]);
    eprintln!("nacos: deregistered instance removed after {took:?}");
    let (n, failed) = traffic.finish();
    assert!(failed.is_empty(), "{} of {n} requests failed: {failed:?}", failed.len());
    assert_drained(&gw, &c, "the deregistered instance");

    // The registry goes away and comes back; d, registered once it is back, is found.
    outage_then_back(&gw, id, &nacos, &[(pa, 1)], || {
        reg.register(&d, 1.0, json!({}));
        eps(&[(pa, 1), (pd, 1)])
    });
    assert!(d.requests() > 0, "the instance registered after the outage takes traffic");
}

#[test]
fn nacos2_pushes_become_weighted_endpoints_and_follow_health_and_outages() {
    let id = "nacos2/n";
    let (a, b, c) = (Backend::start("a"), Backend::start("b"), Backend::start("c"));
    let nacos = NacosStandin::start(&[]);
    let reg = Registrar::start("v2", &nacos);
    reg.register(&a, 1.0, json!({}));
    reg.register(&b, 1.0, json!({"protocol": "http"}));

    let cfg = config("nacos2", &nacos);
    // The refresh only lists services: instance changes below arrive as pushes.
    let gw = Gateway::start_with(cfg.path(), &["--registry-min-refresh", "1s"]);
    let (pa, pb, pc) = (a.addr.port(), b.addr.port(), c.addr.port());
    let took = wait_endpoints(&gw, id, &eps(&[(pa, 1), (pb, 1)]));
    eprintln!("nacos2: first endpoints after {took:?}");
    burst(&gw, 50);
    assert!(a.requests() > 0 && b.requests() > 0, "both instances take traffic");

    // The SDK's update registers again with the new weight.
    reg.call(
        "/weight",
        json!({"service": "echo", "ip": "127.0.0.1", "port": pb, "weight": 3.0,
               "metadata": {"protocol": "http"}}),
    );
    let took = wait_endpoints(&gw, id, &eps(&[(pa, 1), (pb, 3)]));
    eprintln!("nacos2: weight change pushed and applied after {took:?}");
    let share = split(&gw, &a, &b, 1200);
    eprintln!("nacos2: weight 1:3 -> b took {:.3} of 1200", share);
    assert!((share - 0.75).abs() < 0.05, "b's share {share}");

    // Nacos marks b unhealthy (a gRPC instance has no beats: the server's health check
    // would; the stand-in's control sets it), and pushes.
    let traffic = Traffic::start(&gw);
    let (s, _) = nacos.control(
        "/instance",
        json!({"service": "echo", "ip": "127.0.0.1", "port": pb, "healthy": false}),
    );
    assert_eq!(s, 200);
    let took = wait_endpoints(&gw, id, &[(pa, 1)]);
    eprintln!("nacos2: unhealthy instance removed {took:?} after the server marked it");
    let (n, failed) = traffic.finish();
    assert!(failed.is_empty(), "{} of {n} requests failed: {failed:?}", failed.len());
    assert_drained(&gw, &b, "the unhealthy instance");

    reg.register(&c, 1.0, json!({}));
    wait_endpoints(&gw, id, &eps(&[(pa, 1), (pc, 1)]));
    let traffic = Traffic::start(&gw);
    reg.call(
        "/deregister",
        json!({"service": "echo", "ip": "127.0.0.1", "port": pc}),
    );
    let took = wait_endpoints(&gw, id, &[(pa, 1)]);
    eprintln!("nacos2: deregistered instance removed after {took:?}");
    let (n, failed) = traffic.finish();
    assert!(failed.is_empty(), "{} of {n} requests failed: {failed:?}", failed.len());
    assert_drained(&gw, &c, "the deregistered instance");

    // Down: the SDKs' connections are cut (the registrar's instances go with them, as
    // in Nacos); up: both SDKs reconnect and redo, and a weight change applies again.
    outage_then_back(&gw, id, &nacos, &[(pa, 1)], || {
        reg.call_until_ok(
            "/weight",
            json!({"service": "echo", "ip": "127.0.0.1", "port": pa, "weight": 2.0}),
        );
        vec![(pa, 2)]
    });
}

/// Endpoints as configz lists them: sorted by port.
fn eps(list: &[(u16, u64)]) -> Vec<(u16, u64)> {
    let mut v = list.to_vec();
    v.sort();
    v
}
