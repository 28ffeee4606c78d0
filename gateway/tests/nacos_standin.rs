//! The Nacos stand-in (`peers/nacos_standin.py`) is only worth its tests if it answers
//! as Nacos does: here it is driven by clients nobody here wrote, the official Python
//! SDK (PyPI `nacos-sdk-python`, its v1 HTTP client and its v2 gRPC client) and the Rust
//! `nacos-sdk` crate the gateway uses for `nacos2`/`nacos3`, plus raw requests for what
//! the SDKs never send (unknown paths, missing parameters, no token).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nacos_sdk::api::naming::{
    NamingChangeEvent, NamingEventListener, NamingServiceBuilder, ServiceInstance,
};
use nacos_sdk::api::props::ClientProps;
use serde_json::{json, Value};
use test_support::nacos::{run_sdk, NacosStandin};
use test_support::WAIT;

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
    isolate_home();
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
    let configs = run.step("configs");
    let page = &configs["page"];
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
    isolate_home();
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
            &[("accessToken", token.as_str())],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"count": 1, "doms": ["svc-a"]}));
}

#[test]
fn http_answers_only_what_nacos_has() {
    isolate_home();
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
    isolate_home();
    let n = NacosStandin::start(&[
        "--heartbeat-timeout",
        "1",
        "--ip-delete-timeout",
        "2",
        "--empty-service-ttl",
        "60",
    ]);
    let reg = |service: &str, ip: &str, ephemeral: bool| {
        n.http_request(
            "POST",
            &format!(
                "/nacos/v1/ns/instance?serviceName={service}&ip={ip}&port=80&ephemeral={ephemeral}"
            ),
            &[],
            None,
        )
        .unwrap()
    };
    assert_eq!(reg("exp", "10.9.0.1", true).text(), "ok");
    assert_eq!(reg("exp-p", "10.9.0.2", false).text(), "ok");
    // A service is ephemeral or persistent by its first instance (Nacos 2).
    let r = reg("exp", "10.9.0.9", false);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("is ephemeral service"), "{}", r.text());
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
    assert!(
        v1_hosts(&n, "serviceName=exp&healthyOnly=true").is_empty(),
        "healthyOnly drops it"
    );
    poll(
        "the ephemeral instance is removed",
        Duration::from_secs(10),
        || v1_hosts(&n, "serviceName=exp").is_empty().then_some(()),
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t0.elapsed()
    );
    let persistent = v1_hosts(&n, "serviceName=exp-p");
    assert_eq!(persistent.len(), 1);
    assert_eq!(persistent[0]["healthy"], true);
    assert_eq!(persistent[0]["ephemeral"], false);
    // The emptied service stays listed (Nacos cleans empty services up later).
    let r = n
        .http_request(
            "GET",
            "/nacos/v1/ns/service/list?pageNo=1&pageSize=10",
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.json()["count"], 2);

    // A beat with its body registers the instance again.
    let beat =
        json!({"ip": "10.9.0.3", "port": 81, "serviceName": "DEFAULT_GROUP@@exp", "weight": 1});
    let path = format!(
        "/nacos/v1/ns/instance/beat?serviceName=exp&beat={}",
        urlencode(&beat.to_string())
    );
    let r = n.http_request("PUT", &path, &[], None).unwrap();
    assert_eq!(r.json()["code"], 10200);
    assert_eq!(v1_hosts(&n, "serviceName=exp").len(), 1);

    // Controls: weight, health and enabled set directly.
    let (status, _) = n.control(
        "/instance",
        json!({"service": "exp-p", "ip": "10.9.0.2", "port": 80, "weight": 5.0, "healthy": false}),
    );
    assert_eq!(status, 200);
    let h = v1_hosts(&n, "serviceName=exp-p")
        .into_iter()
        .find(|h| h["ip"] == "10.9.0.2")
        .unwrap();
    assert_eq!(
        (h["weight"].as_f64(), h["healthy"].as_bool()),
        (Some(5.0), Some(false))
    );
    n.control(
        "/instance",
        json!({"service": "exp-p", "ip": "10.9.0.2", "port": 80, "enabled": false}),
    );
    assert!(v1_hosts(&n, "serviceName=exp-p").is_empty());
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
    // The store outlives the outage.
    let r = n
        .http_request(
            "GET",
            "/nacos/v1/ns/service/list?pageNo=1&pageSize=10",
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.json()["count"], 2);
}

#[test]
fn config_long_poll_holds_until_a_change_and_answers_the_key() {
    isolate_home();
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

// ---- gRPC (Nacos 2) ------------------------------------------------------------------

#[test]
fn v2_sdk_registers_subscribes_and_listens_over_grpc() {
    isolate_home();
    let n = NacosStandin::start(&[]);
    let control = n.peer.addr("control").to_string();
    let run = run_sdk("v2", &n.server_addr(), &["--control", &control], SDK_RUN);
    assert!(run.success, "the v2 SDK run failed:\n{}", run.show());
    assert_eq!(
        run.step("raw_grpc")["unregistered"],
        "Connection is unregistered."
    );
    // The subscriber was pushed the second instance and then its removal.
    let pushes = run.step("push_add")["pushes"].clone();
    assert!(
        pushes
            .as_array()
            .unwrap()
            .contains(&json!([["10.1.0.1", 8080], ["10.1.0.2", 8080]])),
        "{pushes}"
    );
    assert_eq!(run.step("push_remove")["last"], json!([["10.1.0.1", 8080]]));
    assert_eq!(run.step("services")["services"], json!(["svc-g"]));
    // The config change came as the server's push, not the SDK's 5 s listen loop.
    let listener = run.step("listener");
    assert_eq!(listener["changes"], json!(["x: 2"]));
    assert!(listener["seconds"].as_f64().unwrap() < 2.0, "{listener}");

    // Its connections ended with the process: their instances went with them; the
    // service stays listed, empty, as Nacos keeps empty services for a while.
    poll(
        "the SDK's instances leave with its connections",
        WAIT,
        || {
            let r = n
                .http_request(
                    "GET",
                    "/nacos/v1/ns/instance/list?serviceName=svc-g",
                    &[],
                    None,
                )
                .unwrap();
            r.json()["hosts"]
                .as_array()
                .unwrap()
                .is_empty()
                .then_some(())
        },
    );
    let r = n
        .http_request(
            "GET",
            "/nacos/v1/ns/service/list?pageNo=1&pageSize=10",
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.json(), json!({"count": 1, "doms": ["svc-g"]}));
    let records = n.peer.records();
    assert!(records
        .iter()
        .any(|r| r["kind"] == "register" && r["via"] == "grpc" && r["ip"] == "10.1.0.1"));
    assert!(records
        .iter()
        .any(|r| r["kind"] == "deregister" && r["via"] == "disconnect"));
}

#[test]
fn v2_sdk_needs_a_token_when_auth_is_on() {
    isolate_home();
    let n = NacosStandin::start(&["--auth", "gw:s3cret"]);
    let control = n.peer.addr("control").to_string();
    let run = run_sdk(
        "v2",
        &n.server_addr(),
        &[
            "--control",
            &control,
            "--user",
            "gw",
            "--password",
            "s3cret",
        ],
        SDK_RUN,
    );
    assert!(
        run.success,
        "the v2 SDK run with auth failed:\n{}",
        run.show()
    );
    assert_eq!(
        run.step("no_token_rejected")["error"],
        "Error [403]: user not found!"
    );
}

/// Collects the Rust SDK's subscription pushes.
struct Pushes(std::sync::Mutex<Vec<Vec<(String, i32, f64)>>>);

impl NamingEventListener for Pushes {
    fn event(&self, event: Arc<NamingChangeEvent>) {
        let mut hosts: Vec<(String, i32, f64)> = event
            .instances
            .iter()
            .flatten()
            .map(|i| (i.ip.clone(), i.port, i.weight))
            .collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        self.0.lock().unwrap().push(hosts);
    }
}

impl Pushes {
    fn has(&self, ips: &[&str]) -> bool {
        self.0
            .lock()
            .unwrap()
            .last()
            .is_some_and(|h| h.iter().map(|x| x.0.as_str()).collect::<Vec<_>>() == ips)
    }
}

/// The Rust `nacos-sdk` crate (0.6.0, default features: config, naming, auth-by-http),
/// which the gateway uses for `nacos2`/`nacos3`: register, list, service list and
/// subscribe over gRPC, with the stand-in's HTTP side and its controls in between.
#[test]
fn rust_nacos_sdk_registers_lists_and_subscribes_over_grpc() {
    isolate_home();
    let n = NacosStandin::start(&["--auth", "gw:s3cret"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let group = Some("DEFAULT_GROUP".to_string());
    let token = {
        let r = n
            .http_request(
                "POST",
                "/nacos/v1/auth/login",
                &[],
                Some("username=gw&password=s3cret"),
            )
            .unwrap();
        r.json()["accessToken"].as_str().unwrap().to_string()
    };
    let v1 = |query: &str| v1_hosts(&n, &format!("{query}&accessToken={token}"));

    let props = ClientProps::new()
        .server_addr(n.server_addr())
        .namespace("")
        .app_name("gateway-test")
        .naming_load_cache_at_start(false)
        .auth_username("gw")
        .auth_password("s3cret");
    let naming = rt
        .block_on(
            NamingServiceBuilder::new(props)
                .enable_auth_plugin_http()
                .build(),
        )
        .expect("the Rust SDK connects");
    let instance = ServiceInstance {
        ip: "10.2.0.1".into(),
        port: 8080,
        weight: 2.0,
        metadata: [("protocol".to_string(), "http".to_string())].into(),
        ..Default::default()
    };
    rt.block_on(naming.register_instance("rs-svc".into(), group.clone(), instance))
        .expect("register over gRPC");

    // Listed over gRPC and over HTTP alike.
    let listed = rt
        .block_on(naming.get_all_instances("rs-svc".into(), group.clone(), vec![], false))
        .unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|i| (i.ip.as_str(), i.port, i.weight))
            .collect::<Vec<_>>(),
        [("10.2.0.1", 8080, 2.0)]
    );
    let hosts = v1("serviceName=rs-svc");
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["metadata"]["protocol"], "http");
    let (names, count) = rt
        .block_on(naming.get_service_list(1, 10, group.clone()))
        .unwrap();
    assert_eq!((names, count), (vec!["rs-svc".to_string()], 1));

    // A subscription is pushed what HTTP and the controls change.
    let pushes = Arc::new(Pushes(Default::default()));
    rt.block_on(naming.subscribe("rs-svc".into(), group.clone(), vec![], pushes.clone()))
        .unwrap();
    let r = n
        .http_request(
            "POST",
            &format!("/nacos/v1/ns/instance?serviceName=rs-svc&ip=10.2.0.2&port=8080&accessToken={token}"),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.text(), "ok");
    poll("a push with the HTTP-registered instance", WAIT, || {
        pushes.has(&["10.2.0.1", "10.2.0.2"]).then_some(())
    });
    n.control(
        "/instance",
        json!({"service": "rs-svc", "ip": "10.2.0.2", "port": 8080, "weight": 9.0}),
    );
    poll("a push with the new weight", WAIT, || {
        pushes.0.lock().unwrap().last().and_then(|h| {
            h.iter()
                .any(|x| x.0 == "10.2.0.2" && x.2 == 9.0)
                .then_some(())
        })
    });

    // Dropped connections: the instance goes, then the SDK reconnects and registers it
    // again (its redo), as with a real server.
    let before = n.peer.records_of("connect").len();
    n.control("/drop-grpc", json!({}));
    poll("the SDK reconnects", WAIT, || {
        (n.peer.records_of("connect").len() > before).then_some(())
    });
    poll("the SDK registers its instance again", WAIT, || {
        v1("serviceName=rs-svc")
            .iter()
            .any(|h| h["ip"] == "10.2.0.1")
            .then_some(())
    });

    rt.block_on(naming.deregister_instance(
        "rs-svc".into(),
        group.clone(),
        ServiceInstance {
            ip: "10.2.0.1".into(),
            port: 8080,
            ..Default::default()
        },
    ))
    .unwrap();
    poll("a push without the deregistered instance", WAIT, || {
        pushes.has(&["10.2.0.2"]).then_some(())
    });
    assert!(v1("serviceName=rs-svc")
        .iter()
        .all(|h| h["ip"] != "10.2.0.1"));
}

/// The Rust SDK keeps a disk cache under `$HOME/nacos`: keep it out of the real home.
/// Set once, before any test of this binary spawns a process or reads the environment.
fn isolate_home() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = std::env::temp_dir().join("nacos-standin-home");
        std::fs::create_dir_all(&dir).unwrap();
        std::env::set_var("HOME", dir);
    });
}
