//! The gzip item and the response compressor, end to end: a real backend whose response
//! headers each test picks, the gateway, and clients (a raw HTTP/1.1 one and curl) that
//! decompress and compare bodies byte for byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use test_support::client::{Conn, Response};
use test_support::{wait_for, ConfigDir, Gateway};

/// A JSON-ish body of `n` bytes (compressible, not trivially).
fn body(n: usize) -> Vec<u8> {
    let unit = br#"{"id":12345,"name":"gateway","tags":["a","b"]},"#;
    (0..n)
        .map(|i| unit[i % unit.len()].wrapping_add((i / 4096) as u8 % 3))
        .collect()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("not a gzip stream ({e}), {} bytes", data.len()));
    out
}

/// A backend answering per path:
/// - `/r?<spec>`: 200 with a body of `len` bytes (default 5000) and the headers in
///   `spec`, `&`-separated `name=value` pairs, `len` and `status` excepted; `~` stands
///   for a space and `'` for `"`. No `content-length` header when `chunked=1`.
/// - `/stream`: a chunked JSON body in two parts; the second waits for the test's go.
struct ScriptedBackend {
    addr: SocketAddr,
}

impl ScriptedBackend {
    fn start() -> (ScriptedBackend, mpsc::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let g = Arc::new(Mutex::new(Some(rx)));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || serve(conn, &g));
            }
        });
        (ScriptedBackend { addr }, tx)
    }
}

fn serve(conn: TcpStream, go: &Mutex<Option<mpsc::Receiver<()>>>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if path == "/stream" {
            let first = body(3000);
            let second = body(5000);
            let mut head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".as_bytes().to_vec();
            head.extend(format!("{:x}\r\n", first.len()).as_bytes());
            head.extend(&first);
            head.extend(b"\r\n");
            w.write_all(&head).unwrap();
            w.flush().unwrap();
            if let Some(rx) = go.lock().unwrap().take() {
                let _ = rx.recv_timeout(Duration::from_secs(20));
            }
            let mut rest = format!("{:x}\r\n", second.len()).into_bytes();
            rest.extend(&second);
            rest.extend(b"\r\n0\r\n\r\n");
            let _ = w.write_all(&rest);
            continue;
        }
        let mut len = 5000;
        let mut status = 200;
        let mut chunked = false;
        let mut headers = String::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = v.replace('~', " ").replace('\'', "\"");
            match k {
                "len" => len = v.parse().unwrap(),
                "status" => status = v.parse().unwrap(),
                "chunked" => chunked = v == "1",
                _ => headers.push_str(&format!("{k}: {v}\r\n")),
            }
        }
        let no_body = method == "HEAD" || status == 204 || status == 304;
        let b = if status == 204 || status == 304 {
            Vec::new()
        } else {
            body(len)
        };
        let mut out = format!("HTTP/1.1 {status} X\r\n{headers}");
        if chunked {
            out.push_str("transfer-encoding: chunked\r\n\r\n");
            let mut bytes = out.into_bytes();
            if !no_body {
                for c in b.chunks(1000) {
                    bytes.extend(format!("{:x}\r\n", c.len()).as_bytes());
                    bytes.extend(c);
                    bytes.extend(b"\r\n");
                }
            }
            bytes.extend(b"0\r\n\r\n");
            w.write_all(&bytes).unwrap();
        } else {
            if status != 204 && status != 304 {
                out.push_str(&format!("content-length: {}\r\n", b.len()));
            }
            out.push_str("\r\n");
            let mut bytes = out.into_bytes();
            if !no_body {
                bytes.extend(&b);
            }
            w.write_all(&bytes).unwrap();
        }
    }
}

fn setup(higress: &str) -> (ScriptedBackend, mpsc::Sender<()>, ConfigDir, Gateway) {
    let (be, go) = ScriptedBackend::start();
    let cfg = ConfigDir::routing_all_to_addr(be.addr);
    cfg.higress_config(higress);
    let gw = Gateway::start(cfg.path());
    (be, go, cfg, gw)
}

fn req(gw: &Gateway, method: &str, path: &str, accept: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept-encoding", a)).into_iter().collect();
    Conn::open(gw.http)
        .unwrap()
        .request(method, "any.test", path, &headers)
        .unwrap()
}

fn assert_compressed(r: &Response, expected: &[u8]) {
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        r.headers
    );
    assert!(r.header("content-length").is_none(), "{:?}", r.headers);
    assert_eq!(gunzip(&r.body), expected);
    assert!(r.body.len() < expected.len() / 2);
}

fn assert_plain(r: &Response, expected: &[u8], why: &str) {
    assert!(
        r.header("content-encoding").is_none_or(|e| e != "gzip"),
        "{why}: {:?}",
        r.headers
    );
    assert_eq!(r.body, expected, "{why}");
}

fn stat(gw: &Gateway, name: &str) -> f64 {
    let prefix = format!("outbound_127.0.0.1_{}", gw.http.port());
    gw.metric(&format!(
        "envoy_http_compressor_text_optimized_gzip_{name}{{http_conn_manager_prefix=\"{prefix}\"}}"
    ))
    .unwrap_or(0.0)
}

#[test]
fn json_is_compressed_by_default_with_envoys_header_rewrites() {
    let (_be, _go, _cfg, gw) = setup("");
    let r = req(
        &gw,
        "GET",
        "/r?content-type=application/json&len=20000",
        Some("gzip, br"),
    );
    assert_compressed(&r, &body(20000));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    // An existing Vary is appended to; chunked upstream bodies (no length) qualify.
    let r = req(
        &gw,
        "GET",
        "/r?content-type=text/html&vary=Origin&chunked=1",
        Some("*"),
    );
    assert_compressed(&r, &body(5000));
    assert_eq!(r.header("vary"), Some("Origin, Accept-Encoding"));
    // Envoy's stats, labelled like the other listener stats.
    wait_for("compressor stats", || {
        (stat(&gw, "compressed") == 2.0).then_some(())
    });
    assert_eq!(stat(&gw, "header_compressor_used"), 1.0);
    assert_eq!(stat(&gw, "header_wildcard"), 1.0);
    assert_eq!(stat(&gw, "total_uncompressed_bytes"), 25000.0);
    let zipped = stat(&gw, "total_compressed_bytes");
    assert!(zipped > 0.0 && zipped < 12500.0, "{zipped}");
}

#[test]
fn every_do_not_compress_rule_holds() {
    let (_be, _go, _cfg, gw) = setup("");
    let json = "content-type=application/json";
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "below minContentLength",
            format!("/r?{json}&len=1023"),
            Some("gzip"),
        ),
        (
            "content type not listed",
            "/r?content-type=image/png".into(),
            Some("gzip"),
        ),
        (
            "cache-control no-transform",
            format!("/r?{json}&cache-control=public,~no-transform"),
            Some("gzip"),
        ),
        (
            "already encoded",
            format!("/r?{json}&content-encoding=br"),
            Some("gzip"),
        ),
        (
            "strong etag (disableOnEtagHeader)",
            format!("/r?{json}&etag='v1'"),
            Some("gzip"),
        ),
        ("no accept-encoding", format!("/r?{json}"), None),
        ("identity", format!("/r?{json}"), Some("identity")),
        ("gzip q=0", format!("/r?{json}"), Some("gzip;q=0, *")),
        ("only other codings", format!("/r?{json}"), Some("br, zstd")),
    ];
    for (why, path, accept) in &cases {
        let r = req(&gw, "GET", path, *accept);
        let len = if path.contains("len=1023") {
            1023
        } else {
            5000
        };
        assert_plain(&r, &body(len), why);
        assert_eq!(
            r.header("content-length"),
            Some(len.to_string().as_str()),
            "{why}"
        );
    }
    // Vary is added whenever the response could have been compressed, whatever the
    // client accepted; not when the response itself rules compression out.
    assert_eq!(
        req(&gw, "GET", &format!("/r?{json}"), None).header("vary"),
        Some("Accept-Encoding")
    );
    assert!(req(&gw, "GET", "/r?content-type=image/png", Some("gzip"))
        .header("vary")
        .is_none());
    // HEAD, 204 and 304 have no body to compress.
    let head = req(&gw, "HEAD", &format!("/r?{json}"), Some("gzip"));
    assert!(
        head.header("content-encoding").is_none(),
        "{:?}",
        head.headers
    );
    for status in [204, 304] {
        let r = req(
            &gw,
            "GET",
            &format!("/r?{json}&status={status}"),
            Some("gzip"),
        );
        assert_eq!(r.status, status);
        assert!(
            r.header("content-encoding").is_none(),
            "{status}: {:?}",
            r.headers
        );
    }
    wait_for("not_compressed counted", || {
        (stat(&gw, "not_compressed") >= cases.len() as f64).then_some(())
    });
    assert_eq!(stat(&gw, "compressed"), 0.0);
    assert_eq!(stat(&gw, "content_length_too_small"), 1.0);
    assert_eq!(stat(&gw, "not_compressed_etag"), 1.0);
}

/// HTTP/1.0 has no chunked framing: its responses keep their length and bytes.
#[test]
fn http_1_0_clients_get_the_body_as_it_is() {
    let (_be, _go, _cfg, gw) = setup("");
    let mut c = Conn::open(gw.http).unwrap();
    c.send_raw(
        b"GET /r?content-type=application/json HTTP/1.0\r\nHost: any.test\r\nAccept-Encoding: gzip\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response(false).unwrap();
    assert_plain(&r, &body(5000), "HTTP/1.0");
    assert_eq!(r.header("content-length"), Some("5000"));
}

#[test]
fn etags_with_disable_on_etag_header_off() {
    let (_be, _go, _cfg, gw) = setup("gzip:\n  disableOnEtagHeader: false\n");
    let strong = req(
        &gw,
        "GET",
        "/r?content-type=application/json&etag='v1'",
        Some("gzip"),
    );
    assert_compressed(&strong, &body(5000));
    assert!(
        strong.header("etag").is_none(),
        "a strong ETag no longer names these bytes"
    );
    let weak = req(
        &gw,
        "GET",
        "/r?content-type=application/json&etag=W/'v1'",
        Some("gzip"),
    );
    assert_compressed(&weak, &body(5000));
    assert_eq!(weak.header("etag"), Some("W/\"v1\""));
}

/// Each piece is flushed: what the upstream has sent so far reaches the client, and
/// decodes, before the upstream's response is complete.
#[test]
fn streaming_chunks_arrive_before_the_upstream_ends() {
    let (_be, go, _cfg, gw) = setup("");
    let mut s = TcpStream::connect(gw.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: any.test\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let read_chunk =
        |r: &mut BufReader<TcpStream>, d: &mut flate2::write::GzDecoder<Vec<u8>>| -> usize {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data).unwrap();
            d.write_all(&data[..n]).unwrap();
            d.flush().unwrap();
            n
        };
    // The first part, decoded in full, while the upstream still holds the rest.
    let first = body(3000);
    while decoder.get_ref().len() < first.len() {
        assert!(
            read_chunk(&mut r, &mut decoder) > 0,
            "the stream ended early"
        );
    }
    assert_eq!(decoder.get_ref()[..], first[..]);
    go.send(()).unwrap();
    while read_chunk(&mut r, &mut decoder) > 0 {}
    let mut all = first;
    all.extend(body(5000));
    assert_eq!(decoder.finish().unwrap(), all);
}

#[test]
fn settings_apply_live_and_reach_zlib() {
    let (_be, _go, cfg, gw) = setup("gzip:\n  compressionLevel: BEST_SPEED\n");
    let path = "/r?content-type=application/json&len=200000";
    let fast = req(&gw, "GET", path, Some("gzip"));
    assert_compressed(&fast, &body(200_000));
    let v = gw.version();
    cfg.higress_config(
        "gzip:\n  compressionLevel: BEST_COMPRESSION\n  memoryLevel: 9\n  windowBits: 15\n",
    );
    gw.wait_version_after(v);
    let best = req(&gw, "GET", path, Some("gzip"));
    assert_compressed(&best, &body(200_000));
    assert!(
        best.body.len() < fast.body.len(),
        "best {} vs fast {}",
        best.body.len(),
        fast.body.len()
    );
    // Huffman only: no string matching at all, so clearly bigger than both.
    let v = gw.version();
    cfg.higress_config("gzip:\n  compressionStrategy: HUFFMAN_ONLY\n");
    gw.wait_version_after(v);
    let huff = req(&gw, "GET", path, Some("gzip"));
    assert_eq!(gunzip(&huff.body), body(200_000));
    assert!(
        huff.body.len() > fast.body.len() * 2,
        "{} vs {}",
        huff.body.len(),
        fast.body.len()
    );
    // A bad value is rejected whole; the last good settings keep serving.
    let v = gw.version();
    cfg.higress_config("gzip:\n  memoryLevel: 12\n");
    wait_for("rejection logged", || {
        gw.log().contains("gzip.memoryLevel").then_some(())
    });
    assert_eq!(gw.version(), v);
    let still = req(&gw, "GET", path, Some("gzip"));
    // Still Huffman only (sizes vary a little with how the body was read: each read
    // ends in a flush).
    assert_eq!(gunzip(&still.body), body(200_000));
    assert!(still.body.len() > fast.body.len() * 2);
    // Off: responses pass as they are.
    cfg.higress_config("gzip:\n  enable: false\n");
    gw.wait_version_after(v);
    let off = req(&gw, "GET", path, Some("gzip"));
    assert_plain(&off, &body(200_000), "gzip disabled");
    assert!(off.header("vary").is_none());
}

/// A real client: curl asks for gzip and decodes it.
#[test]
fn curl_decodes_what_the_gateway_compresses() {
    let (_be, _go, _cfg, gw) = setup("");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--compressed",
            "-D",
            "-",
            "-H",
            "Host: any.test",
            &format!(
                "http://{}/r?content-type=application/json&len=30000",
                gw.http
            ),
        ])
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = out.stdout;
    let split = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&text[..split]).to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert_eq!(&text[split..], &body(30000)[..]);
}
