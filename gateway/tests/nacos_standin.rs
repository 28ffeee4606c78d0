//! The Nacos stand-in (`peers/nacos_standin.py`) is only worth its tests if it answers
//! as Nacos does: here it is driven by clients nobody here wrote, the official Python
//! SDK (PyPI `nacos-sdk-python`, its v1 HTTP client and its v2 gRPC client) and the Rust
//! `nacos-sdk` crate the gateway uses for `nacos2`/`nacos3`, plus raw requests for what
//! the SDKs never send (unknown paths, missing parameters, no token).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::nacos::{run_sdk, NacosStandin};

/// Bound for one SDK run: Python start-up and imports take a few seconds on a busy
/// machine; the runs themselves take about two.
const SDK_RUN: Duration = Duration::from_secs(60);

fn poll<T>(what: &str, bound: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < bound, "timed out after {bound:?}: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The hosts of `svc` in DEFAULT_GROUP over the v1 API.
fn v1_hosts(n: &NacosStandin, query: &str) -> Vec<Value> {
    let r = n
        .http_request(
            "GET",
            &format!("/nacos/v1/ns/instance/list?{query}"),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["hosts"].as_array().cloned().unwrap_or_default()
}

#[test]
fn v1_sdk_registers_lists_and_watches_configs() {
    let n = NacosStandin::start(&[]);
    let run = run_sdk("v1", &n.server_addr(), &[], SDK_RUN);
    assert!(run.success, "the v1 SDK run failed:\n{}", run.show());

    let list = run.step("list");
    assert_eq!(list["name"], "DEFAULT_GROUP@@svc-a");
    let h = &list["hosts"][0];
    for field in [
        "instanceId",
        "ip",
        "port",
        "weight",
        "healthy",
        "enabled",
        "ephemeral",
        "clusterName",
        "serviceName",
        "metadata",
    ] {
        assert!(h.get(field).is_some(), "host lacks {field}: {h}");
    }
    assert_eq!(run.step("beat")["answer"]["code"], 10200);
    assert_eq!(run.step("deregister")["left"], json!(["10.0.0.1"]));
    let page = &run.step("configs")["page"];
    assert_eq!(page["totalCount"], 2);
    assert_eq!(page["pagesAvailable"], 1);
    // The long poll answers as soon as the config changes, not at its 30 s timeout.
    let watcher = run.step("watcher");
    assert_eq!(watcher["content"], "a: 2\n");
    assert!(watcher["seconds"].as_f64().unwrap() < 5.0, "{watcher}");

    // What the SDK did is in the store and the record.
    let state = n.state();
    let svc_b = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "svc-b")
        .expect("svc-b");
    assert_eq!(svc_b["group"], "G2");
    let records = n.peer.records();
    let registers = records
        .iter()
        .filter(|r| r["kind"] == "register" && r["via"] == "http")
        .count();
    assert_eq!(registers, 3, "{records:?}");
    assert!(records.iter().any(|r| r["kind"] == "config_publish"
        && r["dataId"] == "app.yaml"
        && r["type"] == "yaml"));
}

#[test]
fn v1_sdk_logs_in_and_calls_without_a_token_are_refused() {
    let n = NacosStandin::start(&["--auth", "gw:s3cret"]);
    let run = run_sdk(
        "v1",
        &n.server_addr(),
        &["--user", "gw", "--password", "s3cret"],
        SDK_RUN,
    );
    assert!(
        run.success,
        "the v1 SDK run with auth failed:\n{}",
        run.show()
    );
    assert_eq!(run.step("login")["ttl"], 18000);
    assert!(run.step("no_token_rejected")["error"]
        .as_str()
        .unwrap()
        .contains("Insufficient privilege"));

    // Raw: no token, a wrong token, a wrong password; then a good login's token works.
    let r = n
        .http_request("GET", "/nacos/v1/cs/configs?dataId=a&group=G", &[], None)
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "user not found!");
    let r = n
        .http_request(
            "GET",
            "/nacos/v1/ns/service/list?pageNo=1&pageSize=10&accessToken=forged",
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 403);
    let r = n
        .http_request(
            "POST",
            "/nacos/v1/auth/login",
            &[],
            Some("username=gw&password=wrong"),
        )
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    let r = n
        .http_request(
            "POST",
            "/nacos/v1/auth/login",
            &[],
            Some("username=gw&password=s3cret"),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let login = r.json();
    assert_eq!(login["tokenTtl"], 18000);
    assert_eq!(login["globalAdmin"], true);
    let token = login["accessToken"].as_str().unwrap().to_string();
    let r = n
        .http_request(
            "GET",
            "/nacos/v1/ns/service/list?pageNo=1&pageSize=10",
            &[("accessToken", &token)],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"count": 1, "doms": ["svc-a"]}));
}

#[test]
fn http_answers_only_what_nacos_has() {
    let n = NacosStandin::start(&[]);
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        // Paths real Nacos 2.x lacks, or that are not v1's.
        ("GET", "/nacos/v1/ns/instances", None, 404),
        ("GET", "/nacos/v2/ns/instance/list?serviceName=a", None, 404),
        ("GET", "/v1/ns/instance/list?serviceName=a", None, 404),
        ("GET", "/nacos/v1/cs/config?dataId=a&group=G", None, 404),
        // Known paths, other methods.
        (
            "POST",
            "/nacos/v1/ns/instance/list?serviceName=a",
            None,
            405,
        ),
        ("GET", "/nacos/v1/ns/instance/beat?serviceName=a", None, 405),
        (
            "GET",
            "/nacos/v1/auth/login?username=nacos&password=nacos",
            None,
            405,
        ),
        // Missing or malformed parameters.
        ("GET", "/nacos/v1/ns/service/list?pageNo=1", None, 400),
        ("GET", "/nacos/v1/ns/instance/list", None, 400),
        (
            "GET",
            "/nacos/v1/ns/instance/list?serviceName=@@x",
            None,
            400,
        ),
        (
            "POST",
            "/nacos/v1/ns/instance?serviceName=a&ip=1.1.1.1",
            None,
            400,
        ),
        ("GET", "/nacos/v1/cs/configs?dataId=a", None, 400),
        (
            "GET",
            "/nacos/v1/cs/configs?dataId=a%2Fb&group=G",
            None,
            400,
        ),
        (
            "GET",
            "/nacos/v1/cs/configs?dataId=&group=&search=blur&pageNo=1",
            None,
            400,
        ),
        (
            "POST",
            "/nacos/v1/cs/configs",
            Some("dataId=a&group=G"),
            400,
        ),
        ("POST", "/nacos/v1/cs/configs/listener", Some("x=1"), 400),
        // And what exists answers.
        ("GET", "/nacos/v1/cs/configs?dataId=a&group=G", None, 404),
        (
            "POST",
            "/nacos/v1/cs/configs",
            Some("dataId=a&group=G&content=x"),
            200,
        ),
        ("GET", "/nacos/v1/cs/configs?dataId=a&group=G", None, 200),
    ];
    for (method, path, form, want) in cases {
        let r = n.http_request(method, path, &[], *form).unwrap();
        assert_eq!(r.status, *want, "{method} {path}: {}", r.text());
    }
    let r = n
        .http_request("GET", "/nacos/v1/cs/configs?dataId=a&group=G", &[], None)
        .unwrap();
    assert_eq!(r.text(), "x");
    assert_eq!(
        r.header("content-md5"),
        Some("9dd4e461268c8034f5c8564e155c67a6")
    );
}

#[test]
fn ephemeral_instances_expire_without_beats_and_controls_apply() {
    let n = NacosStandin::start(&[
        "--heartbeat-timeout",
        "1",
        "--ip-delete-timeout",
        "2",
        "--empty-service-ttl",
        "60",
    ]);
    let reg = |ip: &str, ephemeral: bool| {
        let r = n
            .http_request(
                "POST",
                &format!(
                    "/nacos/v1/ns/instance?serviceName=exp&ip={ip}&port=80&ephemeral={ephemeral}"
                ),
                &[],
                None,
            )
            .unwrap();
        assert_eq!(r.text(), "ok");
    };
    reg("10.9.0.1", true);
    reg("10.9.0.2", false);
    let t0 = Instant::now();
    // Unhealthy after the heartbeat timeout, then removed; the persistent one stays.
    poll(
        "the ephemeral instance turns unhealthy",
        Duration::from_secs(10),
        || {
            let hosts = v1_hosts(&n, "serviceName=exp");
            hosts
                .iter()
                .any(|h| h["ip"] == "10.9.0.1" && h["healthy"] == false)
                .then_some(())
        },
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(
        v1_hosts(&n, "serviceName=exp&healthyOnly=true").len(),
        1,
        "healthyOnly drops it"
    );
    poll(
        "the ephemeral instance is removed",
        Duration::from_secs(10),
        || {
            let hosts = v1_hosts(&n, "serviceName=exp");
            (hosts.len() == 1 && hosts[0]["ip"] == "10.9.0.2").then_some(())
        },
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t0.elapsed()
    );

    // A beat with its body registers the instance again.
    let beat =
        json!({"ip": "10.9.0.3", "port": 81, "serviceName": "DEFAULT_GROUP@@exp", "weight": 1});
    let path = format!(
        "/nacos/v1/ns/instance/beat?serviceName=exp&beat={}",
        urlencode(&beat.to_string())
    );
    let r = n.http_request("PUT", &path, &[], None).unwrap();
    assert_eq!(r.json()["code"], 10200);
    assert_eq!(v1_hosts(&n, "serviceName=exp").len(), 2);

    // Controls: weight, health and enabled set directly.
    let (status, _) = n.control(
        "/instance",
        json!({"service": "exp", "ip": "10.9.0.2", "port": 80, "weight": 5.0, "healthy": false}),
    );
    assert_eq!(status, 200);
    let h = v1_hosts(&n, "serviceName=exp")
        .into_iter()
        .find(|h| h["ip"] == "10.9.0.2")
        .unwrap();
    assert_eq!(
        (h["weight"].as_f64(), h["healthy"].as_bool()),
        (Some(5.0), Some(false))
    );
    n.control(
        "/instance",
        json!({"service": "exp", "ip": "10.9.0.2", "port": 80, "enabled": false}),
    );
    assert!(v1_hosts(&n, "serviceName=exp")
        .iter()
        .all(|h| h["ip"] != "10.9.0.2"));
    let (status, _) = n.control(
        "/instance",
        json!({"service": "exp", "ip": "10.9.9.9", "port": 80, "weight": 1}),
    );
    assert_eq!(status, 404);

    // Down: nothing answers (connections refused); up: the same port answers again.
    let addr = n.http();
    n.control("/down", json!({}));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
    assert!(
        std::net::TcpStream::connect(n.grpc()).is_err(),
        "gRPC still listening"
    );
    n.control("/up", json!({}));
    assert_eq!(n.http(), addr);
    assert!(!v1_hosts(&n, "serviceName=exp").is_empty());
}

#[test]
fn config_long_poll_holds_until_a_change_and_answers_the_key() {
    let n = NacosStandin::start(&[]);
    let publish = |content: &str| {
        let r = n
            .http_request(
                "POST",
                "/nacos/v1/cs/configs",
                &[],
                Some(&format!(
                    "dataId=lp.yaml&group=G&tenant=ns1&content={content}"
                )),
            )
            .unwrap();
        assert_eq!(r.text(), "true");
    };
    publish("v1");
    let md5 = n
        .http_request(
            "GET",
            "/nacos/v1/cs/configs?dataId=lp.yaml&group=G&tenant=ns1",
            &[],
            None,
        )
        .unwrap()
        .header("content-md5")
        .unwrap()
        .to_string();
    let probe = urlencode(&format!("lp.yaml\u{2}G\u{2}{md5}\u{2}ns1\u{1}"));
    // Up to date: the poll is held; a publish from another thread ends it.
    let started = Instant::now();
    let poller = {
        let addr = n.server_addr();
        let http = n.http();
        let probe = probe.clone();
        std::thread::spawn(move || {
            test_support::client::request_with_body(
                http,
                "POST",
                &addr,
                "/nacos/v1/cs/configs/listener",
                &[
                    ("Long-Pulling-Timeout", "30000"),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                format!("Listening-Configs={probe}").as_bytes(),
            )
            .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !poller.is_finished(),
        "the long poll answered before any change"
    );
    publish("v2");
    let r = poller.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "lp.yaml%02G%02ns1%01\n");
    // An outdated md5 answers at once; no timeout header answers at once too (empty).
    let r = n
        .http_request(
            "POST",
            "/nacos/v1/cs/configs/listener",
            &[("Long-Pulling-Timeout", "30000")],
            Some(&format!("Listening-Configs={probe}")),
        )
        .unwrap();
    assert_eq!(r.text(), "lp.yaml%02G%02ns1%01\n");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
