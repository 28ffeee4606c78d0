//! A `eureka` registry end to end: a real gateway polls the Eureka stand-in
//! (`peers/eureka_standin.py`) where instances of real loopback backends register with
//! the official client (py-eureka-client, through `peers/eureka_driver.py`). UP instances
//! become the endpoints of `ECHO.eureka` (the name as Eureka returns it); an instance
//! taken OUT_OF_SERVICE, one whose lease expires and a registry outage are followed
//! without a failed request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use test_support::tracing_peers::{post, Peer};
use test_support::{get, Backend, ConfigDir, Gateway};

/// Bound for the gateway to follow a registry change (polls every 1 s; a lease of 3 s).
const FOLLOW: Duration = Duration::from_secs(20);
const ID: &str = "eureka/reg";
const HOST: &str = "ECHO.eureka";

fn instance(server: &str, app: &str, id: &str, ip: &str, port: u16) -> Peer {
    Peer::start(
        "eureka_driver.py",
        &[
            "--server".into(),
            server.into(),
            "--app".into(),
            app.into(),
            "--id".into(),
            id.into(),
            "--ip".into(),
            ip.into(),
            "--port".into(),
            port.to_string(),
            "--metadata".into(),
            json!({"instance": id}).to_string(),
        ],
    )
}

fn control(peer: &Peer, path: &str, body: serde_json::Value) {
    let r = post(
        peer.addr("control"),
        path,
        "application/json",
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{path}");
}

fn endpoints(gw: &Gateway, host: &str) -> Option<Vec<String>> {
    let z = gw.configz();
    let reg = z["registries"]
        .as_array()?
        .iter()
        .find(|r| r["registry"] == ID)?
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

fn wait_endpoints(gw: &Gateway, want: &[&Backend]) -> Duration {
    let mut want: Vec<String> = want.iter().map(|b| b.addr.to_string()).collect();
    want.sort();
    let t = Instant::now();
    loop {
        let got = endpoints(gw, HOST);
        if got.as_ref() == Some(&want) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < FOLLOW,
            "endpoints {got:?}, want {want:?}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spread(gw: &Gateway, n: usize) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for _ in 0..n {
        let r = get(gw.http, "echo.test", "/").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        *by.entry(r.json()["backend"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    by
}

fn sample(gw: &Gateway, family: &str, labels: &[&str]) -> f64 {
    gw.metrics()
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn eureka_applications_follow_status_leases_and_outage() {
    let eureka = Peer::start(
        "eureka_standin.py",
        &[
            "--lease-seconds".into(),
            "3".into(),
            "--eviction-interval".into(),
            "0.5".into(),
        ],
    );
    let server = format!("http://127.0.0.1:{}/eureka", eureka.port("http"));
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let ia = instance(&server, "echo", "echo-a", "127.0.0.1", a.addr.port());
    let ib = instance(&server, "echo", "echo-b", "127.0.0.1", b.addr.port());
    // An application whose ipAddr is a host name is skipped, as Higress skips it.
    let _named = instance(&server, "named", "named-1", "localhost", c.addr.port());

    let cfg = ConfigDir::new();
    cfg.write(
        "mcpbridges/default.yaml",
        &format!(
            "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\nspec:\n  registries:\n  - type: eureka\n    name: reg\n    domain: 127.0.0.1\n    port: {}\n",
            eureka.port("http")
        ),
    );
    cfg.host_route("echo", "echo.test", HOST);
    let gw = Gateway::start_with(
        cfg.path(),
        &["--registry-min-refresh", "1s", "--eureka-poll", "1s"],
    );

    wait_endpoints(&gw, &[&a, &b]);
    let z = gw.configz();
    let reg = z["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["registry"] == ID)
        .unwrap();
    let hosts: Vec<&str> = reg["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, [HOST]);
    // Besides the full listing, each application is polled on its own, in JSON.
    eureka.wait("the gateway's poll of ECHO", FOLLOW, |rs| {
        rs.iter()
            .any(|r| r["path"] == "/eureka/apps/ECHO" && r["accept"] == "application/json")
            .then_some(())
    });
    assert!(eureka
        .records_of("request")
        .iter()
        .any(|r| r["path"] == "/eureka/apps" && r["accept"] == "application/json"));

    let by = spread(&gw, 1000);
    let (na, nb) = (
        by.get("a").copied().unwrap_or(0),
        by.get("b").copied().unwrap_or(0),
    );
    assert!(
        (400..=600).contains(&na) && na + nb == 1000,
        "even split expected: {by:?}"
    );

    // echo-b taken OUT_OF_SERVICE by its client: it leaves within a poll.
    control(&ib, "/status", json!({"status": "OUT_OF_SERVICE"}));
    let took = wait_endpoints(&gw, &[&a]);
    eprintln!("OUT_OF_SERVICE followed in {took:?}");
    assert_eq!(spread(&gw, 200).get("a"), Some(&200));
    control(&ib, "/status", json!({"status": "UP"}));
    wait_endpoints(&gw, &[&a, &b]);

    // echo-b's process dies: its lease expires, Eureka evicts it, the gateway follows.
    control(&ib, "/vanish", json!({}));
    let t = Instant::now();
    wait_endpoints(&gw, &[&a]);
    eprintln!("expired lease followed in {:?}", t.elapsed());
    assert_eq!(spread(&gw, 200).get("a"), Some(&200));

    // Registry down: failures are counted, traffic keeps its endpoints.
    let failure = ["registry=\"eureka/reg\"", "result=\"failure\""];
    let failures = sample(&gw, "gateway_registry_updates_total", &failure);
    control(&eureka, "/down", json!({}));
    let t = Instant::now();
    while sample(&gw, "gateway_registry_updates_total", &failure) < failures + 2.0 {
        assert!(t.elapsed() < FOLLOW, "no failure counted\n{}", gw.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        sample(&gw, "gateway_registry_up", &["registry=\"eureka/reg\""]),
        0.0
    );
    assert_eq!(spread(&gw, 100).get("a"), Some(&100));

    // Back: a new instance registered after the outage gets traffic.
    control(&eureka, "/up", json!({}));
    let _ic = instance(&server, "echo", "echo-c", "127.0.0.1", c.addr.port());
    wait_endpoints(&gw, &[&a, &c]);
    assert_eq!(
        sample(&gw, "gateway_registry_up", &["registry=\"eureka/reg\""]),
        1.0
    );
    let by = spread(&gw, 200);
    assert!(by.contains_key("a") && by.contains_key("c"), "{by:?}");
    drop(ia);
}
