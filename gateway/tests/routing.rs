//! The routing table, local replies and the header policy, through the real binary.

use test_support::*;

fn setup() -> (ConfigDir, Backend, Backend) {
    let cfg = ConfigDir::new();
    let a = Backend::start("a");
    let b = Backend::start("b");
    cfg.static_registries(&[("a", a.addr.to_string(), 80), ("b", b.addr.to_string(), 80)]);
    (cfg, a, b)
}

fn backend_of(r: &Response) -> String {
    r.json()["backend"].as_str().unwrap_or("").to_string()
}

#[test]
fn routing_table_rules() {
    let (cfg, _a, _b) = setup();
    cfg.ingress(
        "r1-paths",
        &[("higress.io/destination", "a.static")],
        &[
            (Some("foo.bar.com"), "Prefix", "/"),
            (Some("foo.bar.com"), "Prefix", "/api/"),
            (Some("*.wild.com"), "Prefix", "/"),
            (None, "Prefix", "/anyhost"),
        ],
    );
    cfg.ingress(
        "r2-exact",
        &[("higress.io/destination", "b.static")],
        &[
            (Some("foo.bar.com"), "Exact", "/api"),
            (Some("x.wild.com"), "Prefix", "/"),
        ],
    );
    cfg.ingress(
        "r3-case",
        &[
            ("higress.io/destination", "b.static"),
            ("higress.io/ignore-path-case", "true"),
        ],
        &[(Some("case.com"), "Prefix", "/Docs")],
    );
    cfg.ingress(
        "r4-regex",
        &[
            ("higress.io/destination", "b.static"),
            ("nginx.ingress.kubernetes.io/use-regex", "true"),
        ],
        &[(Some("re.com"), "ImplementationSpecific", "/items/[0-9]+$")],
    );
    let gw = Gateway::start(cfg.path());
    let route = |host: &str, path: &str| {
        let r = get(gw.http, host, path).unwrap();
        if r.status == 200 {
            backend_of(&r)
        } else {
            r.status.to_string()
        }
    };
    // Exact beats prefix; longer prefix first; element-wise prefix.
    assert_eq!(route("foo.bar.com", "/api"), "b");
    assert_eq!(route("foo.bar.com", "/api/x"), "a");
    assert_eq!(route("foo.bar.com", "/apix"), "a", "falls to / prefix");
    assert_eq!(
        route("FOO.bar.com:8080", "/"),
        "a",
        "host is case-insensitive, port stripped"
    );
    // Exact host beats wildcard; wildcard matches deeper names, not the bare domain.
    assert_eq!(route("x.wild.com", "/"), "b");
    assert_eq!(route("y.wild.com", "/"), "a");
    assert_eq!(route("z.y.wild.com", "/"), "a");
    assert_eq!(
        route("wild.com", "/anyhost"),
        "a",
        "bare domain falls to host-less rules"
    );
    assert_eq!(route("wild.com", "/"), "404");
    // ignore-path-case and regex.
    assert_eq!(route("case.com", "/docs/intro"), "b");
    assert_eq!(route("re.com", "/items/42"), "b");
    assert_eq!(route("re.com", "/items/4x"), "404");
    // Query strings do not take part in matching.
    assert_eq!(route("foo.bar.com", "/api?x=1"), "b");

    let nr = gw.wait_access("the 404 entry", |e| e["response_code"] == 404);
    assert_eq!(nr["response_flags"], "NR");
    assert!(nr["route_name"].is_null());
}

#[test]
fn local_replies_and_flags() {
    let (cfg, a, _b) = setup();
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cfg.static_registries(&[
        ("a", a.addr.to_string(), 80),
        ("dead", dead.to_string(), 80),
    ]);
    cfg.host_route("to-dead", "dead.com", "dead.static");
    cfg.host_route("to-nowhere", "nowhere.com", "nowhere.static");
    cfg.ingress(
        "slow",
        &[
            ("higress.io/destination", "a.static"),
            ("higress.io/timeout", "1"),
        ],
        &[(Some("slow.com"), "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());

    let r = get(gw.http, "nowhere.com", "/").unwrap();
    assert_eq!((r.status, r.text().as_str()), (503, "no healthy upstream"));
    let r = get(gw.http, "dead.com", "/").unwrap();
    assert_eq!(r.status, 503);
    assert!(
        r.text()
            .starts_with("upstream connect error or disconnect/reset before headers"),
        "{}",
        r.text()
    );
    let r = get(gw.http, "slow.com", "/delay/3000").unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (504, "upstream request timeout")
    );
    let r = get(gw.http, "slow.com", "/delay/10").unwrap();
    assert_eq!(r.status, 200, "within the route timeout");

    let uh = gw.wait_access("UH entry", |e| e["authority"] == "nowhere.com");
    assert_eq!(
        (uh["response_code"].as_u64(), uh["response_flags"].as_str()),
        (Some(503), Some("UH"))
    );
    assert_eq!(uh["upstream_cluster"], "outbound|||nowhere.static");
    let uf = gw.wait_access("UF entry", |e| e["authority"] == "dead.com");
    assert_eq!(uf["response_flags"], "UF,URX");
    assert_eq!(uf["route_name"], "to-dead");
    assert_eq!(uf["upstream_cluster"], "outbound|80||dead.static");
    let ut = gw.wait_access("UT entry", |e| e["response_code"] == 504);
    assert_eq!(ut["response_flags"], "UT");
}

#[test]
fn retries_go_to_another_endpoint() {
    let cfg = ConfigDir::new();
    let good = Backend::start("good");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cfg.static_registries(&[("pair", format!("{dead},{}", good.addr), 80)]);
    cfg.ingress(
        "pair",
        &[("higress.io/destination", "pair.static")],
        &[(None, "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    let mut attempts_seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let r = get(gw.http, "any", "/").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        attempts_seen.insert(
            r.json()["headers"]["x-envoy-attempt-count"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Requests that met the dead endpoint first arrive as second attempts.
    assert!(attempts_seen.contains("2"), "{attempts_seen:?}");
    let retried = gw.wait_access("a retried request", |e| {
        e["response_flags"] == "UF" && e["response_code"] == 200
    });
    assert_eq!(retried["upstream_host"], good.addr.to_string());
}

#[test]
fn weighted_destinations_split_traffic() {
    let (cfg, _a, _b) = setup();
    cfg.ingress(
        "split",
        &[("higress.io/destination", "30% a.static\n70% b.static")],
        &[(None, "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    let mut conn = Conn::open(gw.http).unwrap();
    let mut a = 0;
    for _ in 0..1000 {
        let r = conn.request("GET", "w.com", "/", &[]).unwrap();
        if backend_of(&r) == "a" {
            a += 1;
        }
    }
    // 300 expected; 5 standard deviations (sqrt(1000*.3*.7) ~ 14.5) either side.
    assert!((228..=372).contains(&a), "a got {a} of 1000");
}

#[test]
fn headers_added_on_the_way() {
    let (cfg, _a, _b) = setup();
    cfg.ingress(
        "h",
        &[("higress.io/destination", "a.static")],
        &[(None, "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    let r = request(
        gw.http,
        "GET",
        "h.com",
        "/x",
        &[("x-forwarded-for", "10.0.0.1")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-envoy-attempt-count"], "1");
    assert_eq!(h["host"], "h.com");
    let id = h["x-request-id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "UUID v4: {id}");
    assert!(h.get("x-real-ip").is_none());
    assert!(r
        .header("x-envoy-upstream-service-time")
        .unwrap()
        .parse::<u64>()
        .is_ok());
    // A client's request id is kept.
    let r = request(gw.http, "GET", "h.com", "/", &[("x-request-id", "my-id")]).unwrap();
    assert_eq!(r.json()["headers"]["x-request-id"], "my-id");
    let e = gw.wait_access("entry with my-id", |e| e["request_id"] == "my-id");
    for key in [
        "authority",
        "method",
        "path",
        "protocol",
        "request_id",
        "response_code",
        "response_flags",
        "route_name",
        "start_time",
        "duration",
        "trace_id",
        "upstream_cluster",
        "upstream_host",
        "upstream_service_time",
        "bytes_received",
        "bytes_sent",
        "downstream_remote_address",
        "user_agent",
        "x_forwarded_for",
    ] {
        assert!(e.get(key).is_some(), "access log lacks {key}: {e}");
    }
    assert_eq!(e["upstream_cluster"], "outbound|80||a.static");
    assert_eq!(e["route_name"], "h");
}

#[test]
fn backend_service_in_a_directory_uses_services_and_endpoints() {
    let (cfg, a, b) = setup();
    cfg.write(
        "services/web.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - {name: http, port: 80}\n",
    );
    let endpoints = |port: u16| {
        format!(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: web}}\nsubsets:\n- addresses: [{{ip: 127.0.0.1}}]\n  ports: [{{name: http, port: {port}}}]\n"
        )
    };
    cfg.write("endpoints/web.yaml", &endpoints(a.addr.port()));
    cfg.write(
        "ingresses/web.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules:\n  - host: web.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {service: {name: web, port: {name: http}}}\n",
    );
    let gw = Gateway::start(cfg.path());
    let r = get(gw.http, "web.example.com", "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(backend_of(&r), "a");
    // The endpoints move; the Service's cluster follows.
    cfg.write("endpoints/web.yaml", &endpoints(b.addr.port()));
    wait_for("traffic on the new endpoints", || {
        let r = get(gw.http, "web.example.com", "/").ok()?;
        (backend_of(&r) == "b").then_some(())
    });
    let z = gw.configz();
    assert!(
        z["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "outbound|80||web.higress-system.svc.cluster.local"),
        "{z}"
    );
}
