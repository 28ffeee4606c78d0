//! Protocols and connection handling: h2c downstream, HTTP/2 upstreams for `http2`
//! registries, Ingress classes, the downstream buffer limit, `higress-config` deletion.

use std::time::{Duration, Instant};

use test_support::*;

fn curl_h2c(addr: std::net::SocketAddr, host: &str, path: &str) -> (u16, String) {
    let (code, version, body) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        &format!("Host: {host}"),
        &format!("http://{addr}{path}"),
    ]);
    assert_eq!(version, "2", "curl spoke HTTP/2");
    (code, body)
}

#[test]
fn h2c_downstream_and_http2_upstream() {
    let be = Backend::start("be");
    // An inner gateway speaks h2c to the outer one and HTTP/1.1 to the backend.
    let inner_cfg = ConfigDir::new();
    inner_cfg.static_registries(&[("be", be.addr.to_string(), 80)]);
    inner_cfg.ingress(
        "inner",
        &[("higress.io/destination", "be.static")],
        &[(None, "Prefix", "/")],
    );
    let inner = Gateway::start(inner_cfg.path());

    let cfg = ConfigDir::new();
    cfg.write(
        "mcpbridges/default.yaml",
        &format!(
            "spec:\n  registries:\n  - {{type: static, name: inner, domain: \"{}\", port: 80, protocol: http2}}\n  - {{type: static, name: be, domain: \"{}\", port: 80}}\n",
            inner.http, be.addr
        ),
    );
    cfg.host_route("via-h2", "h2.test", "inner.static");
    cfg.host_route("direct", "h1.test", "be.static");
    let outer = Gateway::start(cfg.path());

    let (code, body) = curl_h2c(outer.http, "h1.test", "/hello");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"path\":\"/hello\""), "{body}");
    let e = outer.wait_access("h2c entry", |e| e["path"] == "/hello");
    assert_eq!(e["protocol"], "HTTP/2");
    assert_eq!(e["authority"], "h1.test");

    let r = get(outer.http, "h2.test", "/through").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/through");
    let e = inner.wait_access("the upstream leg", |e| e["path"] == "/through");
    assert_eq!(
        e["protocol"], "HTTP/2",
        "the outer gateway's upstream leg was HTTP/2"
    );
}

#[test]
fn only_our_ingress_class_is_served() {
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("be", be.addr.to_string(), 80)]);
    let ours = ingress_yaml(
        "ours",
        &[("higress.io/destination", "be.static")],
        &[(Some("ours.test"), "Prefix", "/")],
    );
    cfg.write("ingresses/ours.yaml", &ours);
    cfg.write(
        "ingresses/theirs.yaml",
        &ingress_yaml(
            "theirs",
            &[("higress.io/destination", "be.static")],
            &[(Some("theirs.test"), "Prefix", "/")],
        )
        .replace("ingressClassName: higress", "ingressClassName: nginx"),
    );
    cfg.write(
        "ingresses/by-annotation.yaml",
        &ingress_yaml(
            "by-annotation",
            &[
                ("higress.io/destination", "be.static"),
                ("kubernetes.io/ingress.class", "higress"),
            ],
            &[(Some("annotated.test"), "Prefix", "/")],
        )
        .replace("  ingressClassName: higress\n", ""),
    );
    cfg.write(
        "ingresses/unclassed.yaml",
        &ingress_yaml(
            "unclassed",
            &[("higress.io/destination", "be.static")],
            &[(Some("unclassed.test"), "Prefix", "/")],
        )
        .replace("  ingressClassName: higress\n", ""),
    );
    let gw = Gateway::start(cfg.path());
    assert_eq!(get(gw.http, "ours.test", "/").unwrap().status, 200);
    assert_eq!(get(gw.http, "annotated.test", "/").unwrap().status, 200);
    assert_eq!(
        get(gw.http, "unclassed.test", "/").unwrap().status,
        200,
        "file mode takes unclassed Ingresses"
    );
    assert_eq!(get(gw.http, "theirs.test", "/").unwrap().status, 404);
}

/// Body bytes the backend got out for one `/big` request to a client that never reads.
fn buffered_for_slow_reader(gw: &Gateway, be: &Backend) -> usize {
    let before = be.big_bytes();
    let mut c = Conn::open(gw.http).unwrap();
    c.send_raw(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Settled: no progress for 300 ms.
    let mut last = (be.big_bytes(), Instant::now());
    wait_for("the slow-reader transfer to stall", || {
        std::thread::sleep(Duration::from_millis(20));
        let now = be.big_bytes();
        if now != last.0 {
            last = (now, Instant::now());
            None
        } else {
            (last.1.elapsed() > Duration::from_millis(300) && now > before).then_some(())
        }
    });
    drop(c);
    be.big_bytes() - before
}

#[test]
fn downstream_buffer_limit_bounds_what_a_slow_reader_holds() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    cfg.higress_config("downstream:\n  connectionBufferLimits: 4194304\n");
    let gw = Gateway::start(cfg.path());
    let large = buffered_for_slow_reader(&gw, &be);
    let v = gw.version();
    cfg.higress_config("downstream:\n  connectionBufferLimits: 32768\n");
    gw.wait_version_after(v);
    let small = buffered_for_slow_reader(&gw, &be);
    // The client side's kernel send buffer holds megabytes with the large limit
    // (Linux doubles SO_SNDBUF) and tens of KiB with the small one. Measured small
    // second, so TCP autotuning warming up cannot fake the difference.
    assert!(
        large > small + (4 << 20),
        "4 MiB limit: {large} bytes in flight; 32 KiB limit: {small}"
    );
}

#[test]
fn deleting_higress_config_keeps_the_last_config() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    cfg.higress_config("addXRealIpHeader: true\n");
    let gw = Gateway::start(cfg.path());
    assert_eq!(
        get(gw.http, "x", "/").unwrap().json()["headers"]["x-real-ip"],
        "127.0.0.1"
    );
    cfg.remove("configmaps/higress-config.yaml");
    // Touch another object so we know the deletion was seen before we look.
    let v = gw.version();
    cfg.host_route("r2", "r2.test", "be.static");
    gw.wait_version_after(v);
    assert_eq!(
        get(gw.http, "x", "/").unwrap().json()["headers"]["x-real-ip"],
        "127.0.0.1"
    );
}
