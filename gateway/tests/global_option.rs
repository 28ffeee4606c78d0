//! `global-option` fields of `higress-config`, each edited live and observed on the wire.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use test_support::*;

fn setup() -> (ConfigDir, Backend, Gateway) {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    cfg.higress_config("");
    let gw = Gateway::start(cfg.path());
    (cfg, be, gw)
}

/// Write `higress` as the global config and wait until it is live.
fn apply(cfg: &ConfigDir, gw: &Gateway, higress: &str) {
    let v = gw.version();
    cfg.higress_config(higress);
    gw.wait_version_after(v);
}

#[test]
fn downstream_idle_timeout_closes_idle_connections() {
    let (cfg, _be, gw) = setup();
    apply(&cfg, &gw, "downstream:\n  idleTimeout: 1\n");
    let mut c = Conn::open(gw.http).unwrap();
    assert_eq!(c.request("GET", "a", "/", &[]).unwrap().status, 200);
    // A request is not idleness: one slower than the timeout completes, and the
    // connection still serves the next request after it.
    assert_eq!(
        c.request("GET", "a", "/delay/1600", &[]).unwrap().status,
        200
    );
    assert_eq!(c.request("GET", "a", "/", &[]).unwrap().status, 200);
    assert!(c.closed_within(WAIT), "idle connection was not closed");
    // A connection that never sends a request is closed too.
    let mut c = Conn::open(gw.http).unwrap();
    assert!(c.closed_within(WAIT), "silent connection was not closed");
}

#[test]
fn max_request_headers_kb_gives_431_just_over_the_limit() {
    let (cfg, _be, gw) = setup();
    apply(&cfg, &gw, "downstream:\n  maxRequestHeadersKb: 2\n");
    // Envoy counts name + value of every header: host (4 + 1) + x-pad (5 + n).
    let at_limit = 2048 - (4 + 1) - 5;
    let pad = "p".repeat(at_limit);
    let r = request(gw.http, "GET", "a", "/", &[("x-pad", &pad)]).unwrap();
    assert_eq!(r.status, 200, "at the limit");
    let pad = "p".repeat(at_limit + 1);
    let r = request(gw.http, "GET", "a", "/", &[("x-pad", &pad)]).unwrap();
    assert_eq!(r.status, 431, "one byte over");
    apply(&cfg, &gw, "downstream:\n  maxRequestHeadersKb: 3\n");
    let r = request(gw.http, "GET", "a", "/", &[("x-pad", &pad)]).unwrap();
    assert_eq!(r.status, 200, "after raising the limit");
}

/// Frames the server sends first on an h2c prior-knowledge connection.
fn h2_first_frames(addr: std::net::SocketAddr) -> Vec<(u8, u32, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap(); // empty SETTINGS
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            frames.push((buf[3], stream, buf[9..9 + len].to_vec()));
            buf.drain(..9 + len);
        }
    }
    frames
}

fn h2_settings(frames: &[(u8, u32, Vec<u8>)]) -> Vec<(u16, u32)> {
    let (_, _, payload) = frames
        .iter()
        .find(|f| f.0 == 4 && f.2.len() % 6 == 0 && !f.2.is_empty())
        .expect("a SETTINGS frame with values");
    payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

#[test]
fn http2_settings_reach_the_settings_frame() {
    let (cfg, _be, gw) = setup();
    apply(
        &cfg,
        &gw,
        "downstream:\n  http2:\n    maxConcurrentStreams: 37\n    initialStreamWindowSize: 70000\n    initialConnectionWindowSize: 2000000\n",
    );
    let frames = h2_first_frames(gw.http);
    let settings = h2_settings(&frames);
    assert!(settings.contains(&(0x3, 37)), "{settings:?}");
    assert!(settings.contains(&(0x4, 70000)), "{settings:?}");
    let conn_window: u32 = frames
        .iter()
        .filter(|f| f.0 == 8 && f.1 == 0)
        .map(|f| u32::from_be_bytes([f.2[0], f.2[1], f.2[2], f.2[3]]) & 0x7fff_ffff)
        .sum();
    assert_eq!(
        conn_window + 65535,
        2000000,
        "connection window via WINDOW_UPDATE"
    );

    apply(
        &cfg,
        &gw,
        "downstream:\n  http2:\n    maxConcurrentStreams: 5\n",
    );
    let settings = h2_settings(&h2_first_frames(gw.http));
    assert!(settings.contains(&(0x3, 5)), "{settings:?}");
}

#[test]
fn route_timeout_gives_504() {
    let (cfg, _be, gw) = setup();
    assert_eq!(
        get(gw.http, "a", "/delay/1500").unwrap().status,
        200,
        "no route timeout by default"
    );
    apply(&cfg, &gw, "downstream:\n  routeTimeout: 1\n");
    let r = get(gw.http, "a", "/delay/3000").unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (504, "upstream request timeout")
    );
}

#[test]
fn upstream_idle_timeout_closes_pooled_connections() {
    let (cfg, be, gw) = setup();
    apply(&cfg, &gw, "upstream:\n  idleTimeout: 1\n");
    assert_eq!(get(gw.http, "a", "/").unwrap().status, 200);
    assert!(be.accepted() >= 1);
    wait_for(
        "the gateway to close its pooled upstream connection",
        || (be.closed_by_peer() >= be.accepted()).then_some(()),
    );
}

#[test]
fn real_ip_and_envoy_headers() {
    let (cfg, _be, gw) = setup();
    let r = get(gw.http, "a", "/").unwrap();
    assert!(r.json()["headers"].get("x-real-ip").is_none());
    assert!(r.header("x-envoy-upstream-service-time").is_some());
    apply(
        &cfg,
        &gw,
        "addXRealIpHeader: true\ndisableXEnvoyHeaders: true\n",
    );
    let r = get(gw.http, "a", "/").unwrap();
    let h = &r.json()["headers"];
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert!(h.get("x-envoy-attempt-count").is_none(), "{h}");
    assert!(r.header("x-envoy-upstream-service-time").is_none());
}

#[test]
fn invalid_config_is_rejected_whole_and_old_one_stays() {
    let (cfg, _be, gw) = setup();
    apply(&cfg, &gw, "addXRealIpHeader: true\n");
    let rejected = gw
        .metric("gateway_config_reloads_total{result=\"rejected\"}")
        .unwrap();
    let v = gw.version();
    // Valid change to one field, invalid value in another: nothing of it applies.
    cfg.higress_config("addXRealIpHeader: false\ndownstream:\n  maxRequestHeadersKb: 9000\n");
    wait_for("the rejection to be counted", || {
        (gw.metric("gateway_config_reloads_total{result=\"rejected\"}")
            .unwrap()
            > rejected)
            .then_some(())
    });
    assert_eq!(gw.version(), v, "no new snapshot");
    let z = gw.configz();
    let rej = &z["rejected"][0];
    assert_eq!(rej["file"], "configmaps/higress-config.yaml");
    assert!(
        rej["error"]
            .as_str()
            .unwrap()
            .starts_with("data.higress.downstream.maxRequestHeadersKb: "),
        "{rej}"
    );
    let r = get(gw.http, "a", "/").unwrap();
    assert_eq!(
        r.json()["headers"]["x-real-ip"],
        "127.0.0.1",
        "old config still in force"
    );
    // A parse error names the path inside the embedded document.
    cfg.higress_config("downstream:\n  idleTimeout: soon\n");
    wait_for("the parse error in configz", || {
        let z = gw.configz();
        let e = z["rejected"][0]["error"].as_str().unwrap_or("").to_string();
        e.starts_with("data.higress.downstream.idleTimeout: ")
            .then_some(())
    });
    assert!(gw.configz()["not_enforced"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v.as_str().unwrap().contains("idleTimeout")));
}

/// What is accepted but does nothing says so in `/debug/configz`: `mcpServer` in
/// `higress-config`, and a ConfigMap nothing reads (Higress's `higress-https`).
#[test]
fn mcp_server_and_unread_configmaps_are_listed_as_not_enforced() {
    let (cfg, _be, gw) = setup();
    let not_enforced = || gw.configz()["not_enforced"].to_string();
    assert!(!not_enforced().contains("mcpServer"), "{}", not_enforced());
    apply(&cfg, &gw, "mcpServer:\n  enable: true\n");
    assert!(
        not_enforced().contains("higress-config: mcpServer"),
        "{}",
        not_enforced()
    );
    let v = gw.version();
    cfg.write(
        "configmaps/higress-https.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: higress-https\ndata:\n  cert: |\n    automaticHttps: true\n",
    );
    gw.wait_version_after(v);
    assert!(
        not_enforced().contains("configmap higress-system/higress-https: not read"),
        "{}",
        not_enforced()
    );
    // The global config itself is read, so it is not listed.
    assert!(!not_enforced().contains("configmap higress-system/higress-config"));
}
