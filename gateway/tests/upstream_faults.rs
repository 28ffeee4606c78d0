//! Upstream faults through the real binary, against scripted misbehaving upstreams on
//! loopback: each fault's status, access-log response flag and cluster stats are
//! Envoy's (docs/reliability.md lists them), and a response already under way is cut,
//! never made to look complete.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::*;

/// What the scripted upstream does with a request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A 200 with a short body.
    Ok,
    /// A 503.
    Unavailable,
    /// Close the connection (FIN) without answering.
    Close,
    /// Reset the connection (RST) without answering.
    Reset,
    /// Wait before the head (past the route timeout).
    SlowHead,
    /// The head (`Content-Length: 100`) and 10 bytes, then a reset.
    HeadThenReset,
    /// A chunked head and one chunk, then a reset.
    ChunkedThenReset,
    /// The head (`Content-Length: 100`) and 10 bytes, then a stall past the timeout.
    SlowBody,
    /// The head (`Content-Length: 100`) and 10 bytes, then a clean close.
    ShortBody,
    /// Bytes that are not an HTTP response.
    Garbage,
    /// A status line whose code is not a number.
    BadStatus,
}

/// A raw upstream answering each request by `script(path)`, counting what it saw.
struct Faulty {
    addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

impl Faulty {
    fn start(script: fn(&str) -> Fault) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, script, &s));
            }
        });
        Faulty { addr, seen }
    }

    /// Requests that reached this upstream (any path).
    fn total(&self) -> usize {
        self.seen.lock().unwrap().values().sum()
    }
}

fn serve(conn: TcpStream, script: fn(&str) -> Fault, seen: &Mutex<HashMap<String, usize>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        // The gateway sends bodiless GETs: the head ends the request.
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
        }
        *seen.lock().unwrap().entry(path.clone()).or_default() += 1;
        let mut w = &conn;
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
        match script(&path) {
            Fault::Ok => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                continue;
            }
            Fault::Unavailable => {
                let _ = w.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown",
                );
                continue;
            }
            Fault::Close => {}
            Fault::Reset => reset(conn),
            Fault::SlowHead => {
                std::thread::sleep(Duration::from_secs(4));
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate");
            }
            Fault::HeadThenReset => {
                let _ = w.write_all(partial);
                std::thread::sleep(Duration::from_millis(300));
                reset(conn);
            }
            Fault::ChunkedThenReset => {
                let _ = w.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
                );
                std::thread::sleep(Duration::from_millis(300));
                reset(conn);
            }
            Fault::SlowBody => {
                let _ = w.write_all(partial);
                std::thread::sleep(Duration::from_secs(4));
            }
            Fault::ShortBody => {
                let _ = w.write_all(partial);
                std::thread::sleep(Duration::from_millis(300));
            }
            Fault::Garbage => {
                let _ = w.write_all(b"HELLO THERE\r\n\r\n");
                std::thread::sleep(Duration::from_millis(300));
            }
            Fault::BadStatus => {
                let _ = w.write_all(b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok");
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        return;
    }
}

/// Close with SO_LINGER 0: the peer gets a RST, not a FIN.
fn reset(conn: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(conn);
}

/// Everything a client receives for one request, and how the connection ended.
struct Raw {
    bytes: Vec<u8>,
    /// The gateway closed the connection (EOF or reset) rather than keeping it open.
    closed: bool,
    elapsed: Duration,
}

impl Raw {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn status(&self) -> u16 {
        self.text()
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn body(&self) -> String {
        let t = self.text();
        t.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}

/// One GET on a new connection, read until the gateway closes it or 10 s pass.
fn raw_get(addr: SocketAddr, host: &str, path: &str) -> Raw {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                // A complete, framed answer: the connection may stay open.
                if complete(&bytes) {
                    break false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
            Err(_) => break true,
        }
    };
    Raw {
        bytes,
        closed,
        elapsed: start.elapsed(),
    }
}

/// Whether `bytes` hold a whole response framed by Content-Length.
fn complete(bytes: &[u8]) -> bool {
    let t = String::from_utf8_lossy(bytes);
    let Some((head, body)) = t.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .is_some_and(|n| body.len() >= n)
}

/// A static registry `<name>.static` per `(name, address)` (each fault has its own
/// cluster stats), each routed from host `<name>.com`, with `annotations`.
fn gateway(regs: &[(&str, SocketAddr)], annotations: &[(&str, &str)]) -> (ConfigDir, Gateway) {
    let cfg = ConfigDir::new();
    let list: Vec<(&str, String, u16)> =
        regs.iter().map(|(n, a)| (*n, a.to_string(), 80)).collect();
    cfg.static_registries(&list);
    for (n, _) in regs {
        let dest = format!("{n}.static");
        let mut a = vec![("higress.io/destination", dest.as_str())];
        a.extend_from_slice(annotations);
        cfg.ingress(n, &a, &[(Some(&format!("{n}.com")), "Prefix", "/")]);
    }
    let gw = Gateway::start(cfg.path());
    (cfg, gw)
}

fn cluster_stat(gw: &Gateway, stat: &str, name: &str) -> Option<f64> {
    gw.metric(&format!(
        "envoy_cluster_{stat}{{cluster_name=\"outbound|80||{name}.static\"}}"
    ))
}

fn wait_stat(gw: &Gateway, stat: &str, name: &str, want: f64) {
    wait_for(&format!("{stat} of {name} = {want}"), || {
        (cluster_stat(gw, stat, name) == Some(want)).then_some(())
    });
}

fn code_stat(gw: &Gateway, code: u16, name: &str) -> Option<f64> {
    gw.metric(&format!(
        "envoy_cluster_upstream_rq{{response_code=\"{code}\",cluster_name=\"outbound|80||{name}.static\"}}"
    ))
}

fn entry(gw: &Gateway, host: &str) -> serde_json::Value {
    gw.wait_access(host, |e| e["authority"] == host)
}

/// Retries off, route timeout 1 s: one attempt per request.
const ONE_ATTEMPT: [(&str, &str); 2] = [
    ("nginx.ingress.kubernetes.io/proxy-next-upstream", "off"),
    ("higress.io/timeout", "1"),
];

fn by_path(path: &str) -> Fault {
    match path.trim_start_matches('/') {
        "close" => Fault::Close,
        "reset" => Fault::Reset,
        "slowhead" => Fault::SlowHead,
        "headreset" => Fault::HeadThenReset,
        "chunkreset" => Fault::ChunkedThenReset,
        "slowbody" => Fault::SlowBody,
        "short" => Fault::ShortBody,
        "garbage" => Fault::Garbage,
        "badstatus" => Fault::BadStatus,
        "fail" => Fault::Unavailable,
        _ => Fault::Ok,
    }
}

const TERMINATION: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";

#[test]
fn faults_before_the_response_head_get_envoys_status_flag_and_stats() {
    let up = Faulty::start(by_path);
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut regs: Vec<(&str, SocketAddr)> = ["close", "reset", "slowhead", "garbage", "badstatus"]
        .into_iter()
        .map(|n| (n, up.addr))
        .collect();
    // A registry on a port nothing listens on.
    regs.push(("refused", dead));
    let (_cfg, gw) = gateway(&regs, &ONE_ATTEMPT);

    // Refused: 503 `UF`.
    let r = raw_get(gw.http, "refused.com", "/");
    assert_eq!(r.status(), 503, "{}", r.text());
    assert!(
        r.body().starts_with("upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
        "{}",
        r.text()
    );
    assert_eq!(entry(&gw, "refused.com")["response_flags"], "UF");
    assert!(cluster_stat(&gw, "upstream_cx_connect_fail", "refused").unwrap() >= 1.0);

    // Closed (FIN) or reset (RST) before the head: 503 `UC`, the connection destroyed
    // by the upstream with a request on it.
    for name in ["close", "reset"] {
        let r = raw_get(gw.http, &format!("{name}.com"), &format!("/{name}"));
        assert_eq!(
            (r.status(), r.body().as_str()),
            (503, TERMINATION),
            "{name}"
        );
        let e = entry(&gw, &format!("{name}.com"));
        assert_eq!(
            (e["response_code"].as_u64(), e["response_flags"].as_str()),
            (Some(503), Some("UC")),
            "{name}"
        );
        wait_stat(&gw, "upstream_cx_destroy_remote_with_active_rq", name, 1.0);
        assert_eq!(code_stat(&gw, 503, name), Some(1.0), "{name}");
    }

    // No head within the route timeout: 504 `UT`, the upstream connection closed by the
    // gateway with the request on it.
    let r = raw_get(gw.http, "slowhead.com", "/slowhead");
    assert_eq!(
        (r.status(), r.body().as_str()),
        (504, "upstream request timeout")
    );
    assert!(r.elapsed < Duration::from_secs(3), "{:?}", r.elapsed);
    assert_eq!(entry(&gw, "slowhead.com")["response_flags"], "UT");
    wait_stat(&gw, "upstream_rq_timeout", "slowhead", 1.0);
    wait_stat(
        &gw,
        "upstream_cx_destroy_local_with_active_rq",
        "slowhead",
        1.0,
    );
    assert_eq!(code_stat(&gw, 504, "slowhead"), Some(1.0));

    // Not HTTP, or a status that is not a number: 502 `UPE`, a protocol error.
    for name in ["garbage", "badstatus"] {
        let r = raw_get(gw.http, &format!("{name}.com"), &format!("/{name}"));
        assert_eq!(r.status(), 502, "{name}: {}", r.text());
        assert_eq!(
            r.body(),
            "upstream connect error or disconnect/reset before headers. reset reason: protocol error",
            "{name}"
        );
        let e = entry(&gw, &format!("{name}.com"));
        assert_eq!(
            (e["response_code"].as_u64(), e["response_flags"].as_str()),
            (Some(502), Some("UPE")),
            "{name}"
        );
        wait_stat(&gw, "upstream_cx_protocol_error", name, 1.0);
        assert_eq!(code_stat(&gw, 502, name), Some(1.0), "{name}");
    }
}

#[test]
fn faults_after_the_response_head_cut_the_downstream_response() {
    let up = Faulty::start(by_path);
    let regs: Vec<(&str, SocketAddr)> = ["headreset", "chunkreset", "short", "slowbody"]
        .into_iter()
        .map(|n| (n, up.addr))
        .collect();
    let (_cfg, gw) = gateway(&regs, &ONE_ATTEMPT);

    // Reset after a head framed by Content-Length: the client has the head and the 10
    // bytes sent, then the connection ends; logged as the upstream's 200 with `UC`.
    for (name, flag) in [("headreset", "UC"), ("short", "UC")] {
        let r = raw_get(gw.http, &format!("{name}.com"), &format!("/{name}"));
        assert_eq!(r.status(), 200, "{name}: {}", r.text());
        assert!(r.closed, "{name}: the connection ends");
        assert_eq!(r.body(), "0123456789", "{name}");
        assert!(
            r.text().contains("content-length: 100") || r.text().contains("Content-Length: 100"),
            "{}",
            r.text()
        );
        let e = entry(&gw, &format!("{name}.com"));
        assert_eq!(
            (e["response_code"].as_u64(), e["response_flags"].as_str()),
            (Some(200), Some(flag)),
            "{name}"
        );
        wait_stat(&gw, "upstream_cx_destroy_remote_with_active_rq", name, 1.0);
        // The upstream's 200 counted, and nothing else.
        assert_eq!(code_stat(&gw, 200, name), Some(1.0), "{name}");
        assert_eq!(code_stat(&gw, 503, name), None, "{name}");
    }

    // Reset inside a chunked body: the client never gets the last chunk, so it cannot
    // take the cut response for a whole one.
    let r = raw_get(gw.http, "chunkreset.com", "/chunkreset");
    assert_eq!(r.status(), 200, "{}", r.text());
    assert!(r.closed);
    assert!(r.text().contains("0123456789"), "{}", r.text());
    assert!(
        !r.text().ends_with("0\r\n\r\n"),
        "no last chunk: {:?}",
        r.text()
    );
    let e = entry(&gw, "chunkreset.com");
    assert_eq!(
        (e["response_code"].as_u64(), e["response_flags"].as_str()),
        (Some(200), Some("UC"))
    );

    // A body that stalls past the route timeout: cut at the timeout, `UT`.
    let r = raw_get(gw.http, "slowbody.com", "/slowbody");
    assert_eq!((r.status(), r.body().as_str()), (200, "0123456789"));
    assert!(r.closed);
    assert!(
        r.elapsed < Duration::from_secs(3),
        "cut at the 1 s timeout: {:?}",
        r.elapsed
    );
    let e = entry(&gw, "slowbody.com");
    assert_eq!(
        (e["response_code"].as_u64(), e["response_flags"].as_str()),
        (Some(200), Some("UT"))
    );
    wait_stat(&gw, "upstream_rq_timeout", "slowbody", 1.0);
    wait_stat(
        &gw,
        "upstream_cx_destroy_local_with_active_rq",
        "slowbody",
        1.0,
    );
}

/// A DestinationRule `name` for `host` with `outlierDetection: {<outlier>}`.
fn outlier_rule(cfg: &ConfigDir, name: &str, host: &str, outlier: &str) {
    cfg.write(
        &format!("destinationrules/{name}.yaml"),
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: higress-system}}\nspec:\n  host: {host}\n  trafficPolicy:\n    outlierDetection: {{{outlier}}}\n"
        ),
    );
}

/// A static registry `<name>.static` over several endpoints, routed from `<name>.com`.
fn pools(cfg: &ConfigDir, pools: &[(&str, &[SocketAddr])]) {
    let regs: Vec<(&str, String, u16)> = pools
        .iter()
        .map(|(n, eps)| {
            let list: Vec<String> = eps.iter().map(|a| a.to_string()).collect();
            (*n, list.join(","), 80)
        })
        .collect();
    cfg.static_registries(&regs);
    for (n, _) in pools {
        cfg.host_route(n, &format!("{n}.com"), &format!("{n}.static"));
    }
}

fn outlier_stat(gw: &Gateway, stat: &str, name: &str) -> Option<f64> {
    cluster_stat(gw, &format!("outlier_detection_{stat}"), name)
}

#[test]
fn outlier_detection_ejects_a_failing_endpoint_and_brings_it_back() {
    let good = Faulty::start(|_| Fault::Ok);
    let bad = Faulty::start(|_| Fault::Unavailable);
    let cfg = ConfigDir::new();
    let both = [good.addr, bad.addr];
    pools(&cfg, &[("pool", &both), ("plain", &both)]);
    outlier_rule(
        &cfg,
        "pool",
        "pool.static",
        "consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 2s",
    );
    let gw = Gateway::start(cfg.path());
    // The stats exist from the start, at zero, for the cluster with a detector only.
    assert_eq!(outlier_stat(&gw, "ejections_active", "pool"), Some(0.0));
    assert_eq!(outlier_stat(&gw, "ejections_active", "plain"), None);

    // Round robin: every other request meets the failing endpoint; its third 503 in a
    // row ejects it.
    let mut codes = Vec::new();
    while bad.total() < 3 {
        codes.push(get(gw.http, "pool.com", "/p").unwrap().status);
        assert!(codes.len() <= 8, "{codes:?}");
    }
    assert_eq!(outlier_stat(&gw, "ejections_active", "pool"), Some(1.0));
    for (stat, want) in [
        ("ejections_enforced_total", 1.0),
        ("ejections_enforced_consecutive_5xx", 1.0),
        ("ejections_detected_consecutive_5xx", 1.0),
        ("ejections_overflow", 0.0),
    ] {
        assert_eq!(outlier_stat(&gw, stat, "pool"), Some(want), "{stat}");
    }
    assert_eq!(cluster_stat(&gw, "membership_healthy", "pool"), Some(1.0));
    let ejected_at = Instant::now();
    // Ejected: every request goes to the good endpoint.
    for _ in 0..10 {
        assert_eq!(get(gw.http, "pool.com", "/p").unwrap().status, 200);
    }
    assert_eq!(bad.total(), 3, "no request reached the ejected endpoint");
    // `/clusters` says which host is out, in Envoy's words.
    let clusters = get(gw.admin, "x", "/clusters").unwrap().text();
    let flag = |addr: std::net::SocketAddr, f: &str| {
        let want = format!("::{addr}::health_flags::{f}");
        clusters
            .lines()
            .any(|l| l.starts_with("outbound|") && l.ends_with(&want))
    };
    assert!(flag(bad.addr, "/failed_outlier_check"), "{clusters}");
    assert!(flag(good.addr, "healthy"), "{clusters}");

    // Back after the 2 s base ejection time (at the next 1 s sweep).
    wait_for("the endpoint back", || {
        (outlier_stat(&gw, "ejections_active", "pool") == Some(0.0)).then_some(())
    });
    let back = ejected_at.elapsed();
    assert!(back >= Duration::from_millis(1900), "{back:?}");
    assert!(back < Duration::from_secs(5), "{back:?}");
    assert_eq!(cluster_stat(&gw, "membership_healthy", "pool"), Some(2.0));
    for _ in 0..4 {
        get(gw.http, "pool.com", "/p").unwrap();
    }
    assert!(bad.total() > 3, "requests reach it again");

    // Without a DestinationRule nothing is ejected (off by default, as in Istio).
    let before = bad.total();
    for _ in 0..12 {
        get(gw.http, "plain.com", "/p").unwrap();
    }
    assert_eq!(bad.total() - before, 6);
}

#[test]
fn ejections_stop_at_the_maximum_percentage_and_none_left_is_503_uh() {
    let bad: Vec<Faulty> = (0..4)
        .map(|_| Faulty::start(|_| Fault::Unavailable))
        .collect();
    let cfg = ConfigDir::new();
    pools(
        &cfg,
        &[
            ("capped", &[bad[0].addr, bad[1].addr]),
            ("all", &[bad[2].addr, bad[3].addr]),
        ],
    );
    // Default 10 %: one endpoint of two may go (at least one always may), not both.
    outlier_rule(&cfg, "capped", "capped.static", "consecutive5xxErrors: 2");
    outlier_rule(
        &cfg,
        "all",
        "all.static",
        "consecutive5xxErrors: 2, maxEjectionPercent: 100",
    );
    let gw = Gateway::start(cfg.path());
    for _ in 0..8 {
        assert_eq!(get(gw.http, "capped.com", "/").unwrap().status, 503);
    }
    assert_eq!(outlier_stat(&gw, "ejections_active", "capped"), Some(1.0));
    assert!(outlier_stat(&gw, "ejections_overflow", "capped").unwrap() >= 1.0);
    // Every later detection on the other endpoint overflows (its gateway failures
    // too, detected though not enforced, as in Envoy).
    assert_eq!(
        outlier_stat(&gw, "ejections_enforced_total", "capped"),
        Some(1.0)
    );
    assert!(outlier_stat(&gw, "ejections_detected_consecutive_5xx", "capped").unwrap() >= 2.0);

    // 100 %: both go, and then no endpoint is left: 503 `UH`, nothing sent upstream.
    for _ in 0..4 {
        get(gw.http, "all.com", "/").unwrap();
    }
    assert_eq!(outlier_stat(&gw, "ejections_active", "all"), Some(2.0));
    let sent = bad[2].total() + bad[3].total();
    let r = get(gw.http, "all.com", "/none").unwrap();
    assert_eq!((r.status, r.text().as_str()), (503, "no healthy upstream"));
    assert_eq!(bad[2].total() + bad[3].total(), sent);
    let e = gw.wait_access("the UH entry", |e| e["path"] == "/none");
    assert_eq!(e["response_flags"], "UH");
    assert_eq!(cluster_stat(&gw, "membership_healthy", "all"), Some(0.0));
}

#[test]
fn half_of_a_cluster_refused_retries_go_to_the_others_until_ejected() {
    let good: Vec<Faulty> = (0..2).map(|_| Faulty::start(|_| Fault::Ok)).collect();
    let dead: Vec<SocketAddr> = (0..2)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        })
        .collect();
    let eps = [dead[0], good[0].addr, dead[1], good[1].addr];
    let cfg = ConfigDir::new();
    pools(&cfg, &[("half", &eps), ("guarded", &eps)]);
    outlier_rule(
        &cfg,
        "guarded",
        "guarded.static",
        "consecutive5xxErrors: 1, maxEjectionPercent: 50, baseEjectionTime: 60s",
    );
    let gw = Gateway::start(cfg.path());

    // The gateway's default retries take every request past the refused endpoints.
    for _ in 0..20 {
        let r = get(gw.http, "half.com", "/").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let fails = cluster_stat(&gw, "upstream_cx_connect_fail", "half").unwrap();
    assert!(fails >= 10.0, "{fails}");
    assert_eq!(cluster_stat(&gw, "upstream_rq_retry", "half"), Some(fails));
    let e = gw.wait_access("a retried request", |e| {
        e["authority"] == "half.com" && e["response_flags"] == "UF"
    });
    assert_eq!(e["response_code"], 200);

    // With outlier detection a refused connection counts as a 503: each refused
    // endpoint goes at its first failure, and then no request meets them.
    for _ in 0..20 {
        assert_eq!(get(gw.http, "guarded.com", "/").unwrap().status, 200);
    }
    assert_eq!(outlier_stat(&gw, "ejections_active", "guarded"), Some(2.0));
    assert_eq!(
        cluster_stat(&gw, "upstream_cx_connect_fail", "guarded"),
        Some(2.0)
    );
}

/// A DNS server on loopback UDP: A queries get 127.0.0.1 while `up`, SERVFAIL after.
struct Dns {
    addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    queries: Arc<std::sync::atomic::AtomicUsize>,
}

impl Dns {
    fn start() -> Dns {
        use std::sync::atomic::Ordering::Relaxed;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (u, q) = (up.clone(), queries.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                q.fetch_add(1, Relaxed);
                let _ = sock.send_to(&dns_answer(&buf[..n], u.load(Relaxed)), peer);
            }
        });
        Dns { addr, up, queries }
    }
}

/// The answer to one query: the question echoed, then 127.0.0.1 for an A query when
/// `up` (nothing for other types), or SERVFAIL.
fn dns_answer(q: &[u8], up: bool) -> Vec<u8> {
    // The question: labels up to the root label, then type and class.
    let mut end = 12;
    while q[end] != 0 {
        end += 1 + q[end] as usize;
    }
    let qtype = u16::from_be_bytes([q[end + 1], q[end + 2]]);
    end += 5;
    let answer = up && qtype == 1;
    let mut r = vec![
        q[0],
        q[1],
        0x80 | (q[2] & 0x01),
        0x80 | if up { 0 } else { 2 },
        0,
        1,
        0,
        answer as u8,
        0,
        0,
        0,
        0,
    ];
    r.extend_from_slice(&q[12..end]);
    if answer {
        // Name by pointer to the question, A, IN, TTL 1 s, 4 bytes.
        r.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, 1]);
    }
    r
}

#[test]
fn a_dns_registry_whose_dns_fails_keeps_its_last_good_endpoints() {
    use std::sync::atomic::Ordering::Relaxed;
    let dns = Dns::start();
    let app = Faulty::start(|_| Fault::Ok);
    let cfg = ConfigDir::new();
    cfg.write(
        "mcpbridges/default.yaml",
        &format!(
            "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\nspec:\n  registries:\n  - {{type: dns, name: app, domain: app.test, port: {}}}\n",
            app.addr.port()
        ),
    );
    cfg.host_route("app", "app.com", "app.dns");
    let resolver = dns.addr.to_string();
    let gw = Gateway::start_with(
        cfg.path(),
        &["--dns-resolver", &resolver, "--dns-refresh", "300ms"],
    );
    let port = app.addr.port();
    let stat = |s: &str| {
        gw.metric(&format!(
            "envoy_cluster_{s}{{cluster_name=\"outbound|{port}||app.dns\"}}"
        ))
    };
    assert_eq!(get(gw.http, "app.com", "/").unwrap().status, 200);
    // Refreshes with the same answer rebuild nothing.
    wait_for("a refresh with nothing new", || {
        (stat("update_no_rebuild").unwrap_or(0.0) >= 1.0).then_some(())
    });
    assert_eq!(stat("update_failure"), Some(0.0));

    // The DNS server fails: every refresh counts as a failure, the endpoints stay.
    dns.up.store(false, Relaxed);
    let seen = dns.queries.load(Relaxed);
    wait_for("two failed refreshes", || {
        (stat("update_failure").unwrap_or(0.0) >= 2.0).then_some(())
    });
    assert!(dns.queries.load(Relaxed) > seen);
    for _ in 0..3 {
        assert_eq!(get(gw.http, "app.com", "/").unwrap().status, 200);
    }
    assert_eq!(stat("membership_total"), Some(1.0));
    assert!(stat("update_attempt").unwrap() >= 3.0);
}
