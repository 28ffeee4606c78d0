//! What a hostile client sends: request smuggling attempts (conflicting or duplicate
//! lengths, obs-fold, bare CR/LF, bad chunk sizes, unknown transfer codings) are refused
//! and never reach the upstream (a raw-socket upstream records every byte it gets);
//! paths are normalised as Higress configures Envoy before routing; header counts,
//! `Expect: 100-continue` and HTTP/2 rapid resets are bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::*;

/// A raw upstream: keeps every byte received, answers each request head it sees with a
/// 200 whose body is the request line.
struct Recorder {
    addr: SocketAddr,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let all = bytes.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let all = all.clone();
                std::thread::spawn(move || {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 8192];
                    loop {
                        let n = match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        all.lock().unwrap().extend_from_slice(&buf[..n]);
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = find(&pending, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&pending[..end]).to_string();
                            let line = head.lines().next().unwrap_or("").to_string();
                            // Bodies are not parsed: tests here send none upstream that matter.
                            pending.drain(..end + 4);
                            // A body's framing error must be seen before any answer.
                            if line.starts_with("POST") {
                                std::thread::sleep(Duration::from_millis(300));
                            }
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{line}",
                                line.len()
                            );
                            if conn.write_all(resp.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Recorder { addr, bytes }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).to_string()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Send raw bytes, read until the peer closes or 3 s pass; the status of the first
/// response (0: none).
fn raw(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(3) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) if !out.is_empty() => break,
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn gateway_to(rec: &Recorder) -> (ConfigDir, Gateway) {
    let cfg = ConfigDir::routing_all_to_addr(rec.addr);
    let gw = Gateway::start(cfg.path());
    (cfg, gw)
}

#[test]
fn smuggling_attempts_are_refused_and_never_forwarded() {
    let rec = Recorder::start();
    let (_cfg, gw) = gateway_to(&rec);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "Content-Length and Transfer-Encoding",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            400,
        ),
        (
            "two different Content-Lengths",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
            400,
        ),
        (
            "obs-fold",
            format!("GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  Content-Length: 5\r\n\r\n{smuggled}"),
            400,
        ),
        (
            "a bare CR in a header",
            format!("GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rContent-Length: 5\r\n\r\n{smuggled}"),
            400,
        ),
        (
            "bare LF line ends",
            format!("GET /a HTTP/1.1\nHost: x\nX-A: a\n\n{smuggled}"),
            400,
        ),
        (
            "an invalid chunk size",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n{smuggled}"),
            400,
        ),
        (
            "a Transfer-Encoding other than chunked",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{smuggled}"),
            501,
        ),
        (
            "chunked not last",
            format!("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n{smuggled}"),
            501,
        ),
    ];
    let mut wrong = vec![];
    for (what, bytes, want) in &cases {
        let (status, text) = raw(gw.http, bytes.as_bytes());
        if status != *want {
            wrong.push(format!("{what}: {status} instead of {want}: {text:?}"));
        }
    }
    let seen = rec.text();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(!seen.contains("/smuggled"), "smuggled upstream: {seen}");
    // The gateway still serves.
    assert_eq!(get(gw.http, "x", "/fine").unwrap().status, 200);
}

#[test]
fn paths_are_normalised_before_routing_and_forwarded_normalised() {
    let rec = Recorder::start();
    let (_cfg, gw) = gateway_to(&rec);
    for (sent, forwarded) in [
        ("/a/../b", "/b"),
        ("/a/./b/", "/a/b/"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E/b", "/a/b"),
        // merge_slashes is off in Higress, escaped slashes are kept.
        ("/a//b", "/a//b"),
        ("/a%2Fb/../c", "/c"),
        ("/q/../r?x=/../y", "/r?x=/../y"),
    ] {
        let r = get(gw.http, "x", sent).unwrap();
        assert_eq!(r.status, 200, "{sent}");
        assert_eq!(r.text(), format!("GET {forwarded} HTTP/1.1"), "{sent}");
    }
}

#[test]
fn more_than_100_request_headers_get_431() {
    let rec = Recorder::start();
    let (_cfg, gw) = gateway_to(&rec);
    let mut req = String::from("GET /many HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let (status, _) = raw(gw.http, req.as_bytes());
    assert_eq!(status, 431);
    assert!(!rec.text().contains("/many"));
    let mut ok = String::from("GET /some HTTP/1.1\r\nHost: x\r\n");
    for i in 0..90 {
        ok.push_str(&format!("X-H{i}: v\r\n"));
    }
    ok.push_str("\r\n");
    assert_eq!(raw(gw.http, ok.as_bytes()).0, 200);
}

#[test]
fn expect_100_continue_gets_100_then_the_answer() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start(cfg.path());
    let mut s = TcpStream::connect(gw.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first:?}");
    s.write_all(b"hello").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("\"body\":\"hello\""), "{text}");
}

/// HTTP/2 frames by hand: a HEADERS (GET / on stream `id`, END_STREAM) and its
/// RST_STREAM (CANCEL), CVE-2023-44487's pattern.
fn headers_and_reset(id: u32) -> Vec<u8> {
    let block = [0x82u8, 0x86, 0x84, 0x41, 0x01, b'x'];
    let mut f = Vec::new();
    f.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(&[0x1, 0x5]);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&block);
    f.extend_from_slice(&[0, 0, 4, 0x3, 0]);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&8u32.to_be_bytes());
    f
}

#[test]
fn http2_rapid_reset_closes_the_connection_with_bounded_work() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start(cfg.path());
    let mut s = TcpStream::connect(gw.http).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let _ = s.write_all(&out);
    let mut sent = 0;
    let mut closed = false;
    let mut got = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 65536];
    for batch in 0..100u32 {
        let mut frames = Vec::new();
        for i in 0..100u32 {
            frames.extend(headers_and_reset(1 + 2 * (batch * 100 + i)));
        }
        if s.write_all(&frames).is_err() {
            closed = true;
            break;
        }
        sent += 100;
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    // Drain what is left: a GOAWAY, then the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !closed && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) if Instant::now() >= deadline => break,
            Ok(0) => closed = true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => closed = true,
        }
    }
    assert!(closed, "the connection survived {sent} reset streams");
    assert!(has_goaway(&got), "no GOAWAY before the close");
    // Bounded work: far fewer requests reached the backend than were started.
    assert!(
        be.requests() < 200,
        "{} of {sent} reached the backend",
        be.requests()
    );
    assert_eq!(get(gw.http, "x", "/").unwrap().status, 200);
}

/// Whether the server's frames include a GOAWAY (type 7).
fn has_goaway(mut b: &[u8]) -> bool {
    while b.len() >= 9 {
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
        if b[3] == 0x7 {
            return true;
        }
        if b.len() < 9 + len {
            return false;
        }
        b = &b[9 + len..];
    }
    false
}
