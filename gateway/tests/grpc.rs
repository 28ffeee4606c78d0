//! gRPC end to end: a grpcio client and server (`peers/grpc_peer.py`) through the gateway,
//! h2c to the backend, h2c and TLS (ALPN h2) downstream. Unary and streaming calls in
//! every direction, trailers and `grpc-status` passed through, `grpc-timeout` honoured
//! (and capped by the route timeout), upstream resets turned into the trailers-only
//! UNAVAILABLE Envoy sends, and the Istio metrics labelled `request_protocol="grpc"`
//! with the gRPC status.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::tls::TestCa;
use test_support::tracing_peers::{peers_dir, python, Peer};
use test_support::*;

const HOST: &str = "grpc.test";

struct Setup {
    peer: Peer,
    gw: Gateway,
    ca: TestCa,
    _cfg: ConfigDir,
}

fn ingress(cfg: &ConfigDir, name: &str, host: &str, path: &str, to: &str, ann: &[(&str, &str)]) {
    let mut a = vec![("higress.io/destination", to)];
    a.extend_from_slice(ann);
    let mut y = ingress_yaml(name, &a, &[(Some(host), "Prefix", path)]);
    y.push_str(&format!(
        "  tls:\n  - secretName: grpc-cert\n    hosts: [\"{host}\"]\n"
    ));
    cfg.write(&format!("ingresses/{name}.yaml"), &y);
}

/// The peer's gRPC server and raw HTTP/2 listeners behind one gateway. `grpc.test` goes
/// to the grpcio server through an Ingress annotated `backend-protocol: GRPC` (its
/// registry says nothing); the broken backends are registries with `protocol: grpc`.
/// `capped.test` is a route with a 1 s timeout to the backend that never answers.
fn setup() -> Setup {
    let peer = Peer::start("grpc_peer.py", &["server".into()]);
    let cfg = ConfigDir::new();
    let mut reg = String::from("spec:\n  registries:\n");
    reg.push_str(&format!(
        "  - {{type: static, name: be, domain: \"{}\", port: 80}}\n",
        peer.addr("grpc")
    ));
    for mode in ["reset", "close", "midreset", "hang", "midhang"] {
        reg.push_str(&format!(
            "  - {{type: static, name: {mode}, domain: \"{}\", port: 80, protocol: grpc}}\n",
            peer.addr(mode)
        ));
    }
    cfg.write("mcpbridges/default.yaml", &reg);
    let grpc = [("higress.io/backend-protocol", "GRPC")];
    ingress(&cfg, "grpc", HOST, "/", "be.static", &grpc);
    ingress(&cfg, "reset", HOST, "/reset.Before/", "reset.static", &[]);
    ingress(&cfg, "close", HOST, "/reset.Close/", "close.static", &[]);
    ingress(&cfg, "mid", HOST, "/reset.Mid/", "midreset.static", &[]);
    ingress(&cfg, "hang", HOST, "/reset.Hang/", "hang.static", &[]);
    ingress(
        &cfg,
        "midhang",
        HOST,
        "/reset.MidHang/",
        "midhang.static",
        &[],
    );
    let deny = [("higress.io/blacklist-source-range", "127.0.0.1/32")];
    ingress(&cfg, "denied", HOST, "/denied.Svc/", "be.static", &deny);
    ingress(
        &cfg,
        "capped",
        "capped.test",
        "/",
        "hang.static",
        &[("higress.io/timeout", "1")],
    );
    let ca = TestCa::new("grpc test CA");
    let issued = ca.issue(&[HOST, "capped.test"]);
    cfg.tls_secret("grpc-cert", &issued);
    std::fs::write(ca.pem_path(), ca.pem()).unwrap();
    let gw = Gateway::start(cfg.path());
    wait_for("the HTTPS listener", || {
        std::net::TcpStream::connect(gw.https).ok()
    });
    Setup {
        peer,
        gw,
        ca,
        _cfg: cfg,
    }
}

/// Run the grpcio client's `calls` against `target` (TLS trusting `ca` when given):
/// its result per call name.
fn client(target: SocketAddr, ca: Option<&Path>, calls: &str) -> HashMap<String, Value> {
    let mut cmd = Command::new(python());
    cmd.arg(peers_dir().join("grpc_peer.py"))
        .args(["client", "--max-seconds", "60", "--n", "300"])
        .args(["--target", &target.to_string(), "--calls", calls])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for k in [
        "http_proxy",
        "https_proxy",
        "grpc_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
    ] {
        cmd.env_remove(k);
    }
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    let out = cmd.output().expect("run the gRPC client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client {calls} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: HashMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["call"].as_str().unwrap_or_default().to_string(), v))
        .collect();
    for c in calls.split(',') {
        assert!(results.contains_key(c), "no result for {c} in:\n{stdout}");
    }
    results
}

fn messages(r: &Value) -> Vec<&str> {
    r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect()
}

/// Unary and the three streaming kinds, a trailers-only error with trailing metadata,
/// and an error after messages: all as the backend sent them.
fn assert_calls_pass_through(r: &HashMap<String, Value>) {
    let unary = &r["unary"];
    assert_eq!(unary["code"], "OK", "{unary}");
    assert_eq!(messages(unary), ["hello"]);
    assert_eq!(unary["initial"]["x-initial"], "yes", "{unary}");
    assert_eq!(unary["trailing"]["x-trailer"], "echo:hello", "{unary}");
    assert_eq!(
        unary["trailing"]["x-trace-bin"], "0001fe",
        "binary trailers pass unchanged: {unary}"
    );
    let ss = &r["server_stream"];
    assert_eq!(ss["code"], "OK", "{ss}");
    assert_eq!(messages(ss), ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(ss["trailing"]["x-count"], "5", "{ss}");
    let cs = &r["client_stream"];
    assert_eq!(cs["code"], "OK", "{cs}");
    assert_eq!(messages(cs), ["40"], "1+2+3+4+30");
    let bidi = &r["bidi"];
    assert_eq!(bidi["code"], "OK", "{bidi}");
    assert_eq!(messages(bidi), ["echo:one", "echo:two", "echo:three"]);
    let fail = &r["fail"];
    assert_eq!(fail["code"], "RESOURCE_EXHAUSTED", "{fail}");
    assert_eq!(
        fail["details"], "quota exceeded: 100% used",
        "grpc-message (percent-encoded on the wire) unchanged: {fail}"
    );
    assert_eq!(fail["trailing"]["x-error-detail"], "quota", "{fail}");
    assert_eq!(fail["trailing"]["x-why-bin"], "0102", "{fail}");
    // 3 MiB each way, past HTTP/2's flow-control windows on both legs.
    let big = &r["big"];
    assert_eq!(big["code"], "OK", "{big}");
    assert_eq!(big["size"], 3 << 20, "{big}");
    assert_eq!(
        big["received"], big["sent"],
        "the same bytes came back: {big}"
    );
    let late = &r["fail_after"];
    assert_eq!(late["code"], "ABORTED", "{late}");
    assert_eq!(messages(late), ["first", "second"]);
    assert_eq!(late["details"], "aborted after two messages");
    assert_eq!(late["trailing"]["x-error-detail"], "late", "{late}");
}

const CALLS: &str = "unary,server_stream,client_stream,bidi,fail,fail_after,sleep_ok,big";

/// An `istio_requests_total` sample of `be.static` whose labels contain `labels`.
fn istio_count(gw: &Gateway, service: &str, labels: &str) -> f64 {
    let m = gw.metrics();
    m.lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| l.contains(&format!("destination_service=\"{service}\"")))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn h2c_calls_trailers_and_istio_labels() {
    let s = setup();
    let r = client(s.gw.http, None, &format!("{CALLS},bench"));
    assert_calls_pass_through(&r);
    // The client's deadline went upstream as grpc-timeout (the backend saw ~20 s left).
    let left = s.peer.wait("the Sleep call", PEER_WAIT, |recs| {
        recs.iter()
            .find(|c| c["method"] == "Sleep")
            .and_then(|c| c["time_remaining"].as_f64())
    });
    assert!(
        (15.0..=21.0).contains(&left),
        "deadline left upstream: {left}"
    );

    let e =
        s.gw.wait_access("the bidi entry", |e| e["path"] == "/test.Echo/Chat");
    assert_eq!(e["protocol"], "HTTP/2");
    assert_eq!(e["response_code"], 200);
    assert_eq!(e["response_flags"], "-");
    assert_eq!(e["upstream_cluster"], "outbound|80||be.static");

    // Istio's labels: per request, gRPC with the status from the trailers (or the
    // trailers-only headers): 6 OK calls, then the bench's 300.
    let ok = "request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"0\",response_flags=\"-\"";
    let n = wait_for("the Istio samples", || {
        let n = istio_count(&s.gw, "be.static", ok);
        (n >= 306.0).then_some(n)
    });
    assert_eq!(n, 306.0);
    for (status, what) in [("8", "RESOURCE_EXHAUSTED"), ("10", "ABORTED")] {
        let labels = format!("request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"{status}\",response_flags=\"-\"");
        assert_eq!(istio_count(&s.gw, "be.static", &labels), 1.0, "{what}");
    }
    assert_eq!(
        istio_count(&s.gw, "be.static", "request_protocol=\"http\""),
        0.0,
        "no gRPC call counted as http"
    );

    // Figures: unary round trips, through the gateway and straight to the backend.
    let via = &r["bench"];
    let direct = &client(s.peer.addr("grpc"), None, "bench")["bench"];
    eprintln!(
        "unary echo, 300 sequential calls: via gateway p50 {} ms p99 {} ms; direct p50 {} ms p99 {} ms",
        via["p50"], via["p99"], direct["p50"], direct["p99"]
    );
    assert!(via["p50"].as_f64().unwrap() < 50.0, "{via}");
}

#[test]
fn tls_downstream_carries_the_same_calls() {
    let s = setup();
    let r = client(s.gw.https, Some(&s.ca.pem_path()), CALLS);
    assert_calls_pass_through(&r);
    let e =
        s.gw.wait_access("a TLS entry", |e| e["path"] == "/test.Echo/Count");
    assert_eq!(e["protocol"], "HTTP/2", "ALPN h2: {e}");
    assert_eq!(e["requested_server_name"], HOST);
    assert_eq!(e["response_code"], 200);
}

#[test]
fn resets_and_local_replies_are_trailers_only_grpc() {
    let s = setup();
    // (No `no_route` over TLS: its other authority has no certificate.)
    let plain = "reset,close,midreset,no_route,denied";
    for (target, ca, calls) in [
        (s.gw.http, None, plain),
        (
            s.gw.https,
            Some(s.ca.pem_path()),
            "reset,close,midreset,denied",
        ),
    ] {
        let r = client(target, ca.as_deref(), calls);
        // Before the response: Envoy's local reply, as a trailers-only UNAVAILABLE with
        // the reset reason as grpc-message (after the default two retries).
        let reset = &r["reset"];
        assert_eq!(reset["code"], "UNAVAILABLE", "{reset}");
        assert_eq!(
            reset["details"],
            "upstream connect error or disconnect/reset before headers. reset reason: remote reset"
        );
        assert!(
            reset["initial"].as_object().unwrap().is_empty(),
            "trailers only: {reset}"
        );
        let close = &r["close"];
        assert_eq!(close["code"], "UNAVAILABLE", "{close}");
        assert_eq!(
            close["details"],
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
        );
        // After the response started: the stream is reset (NO_ERROR, as Envoy's codec
        // does), which gRPC reads as INTERNAL; the message before it arrived.
        let mid = &r["midreset"];
        assert_eq!(mid["code"], "INTERNAL", "{mid}");
        assert_eq!(messages(mid), ["partial"]);
        // A route filter's reply (the IP deny list's 403): PERMISSION_DENIED.
        let denied = &r["denied"];
        assert_eq!(denied["code"], "PERMISSION_DENIED", "{target}: {denied}");
        assert_eq!(denied["details"], "RBAC: access denied");
        assert!(
            denied["initial"].as_object().unwrap().is_empty(),
            "trailers only: {denied}"
        );
        // No route: 404 as a trailers-only UNIMPLEMENTED.
        if let Some(nr) = r.get("no_route") {
            assert_eq!(nr["code"], "UNIMPLEMENTED", "{nr}");
            assert!(
                nr["initial"].as_object().unwrap().is_empty(),
                "trailers only: {nr}"
            );
        }
    }
    let flags = |path: &str| -> Vec<String> {
        s.gw.access_entries()
            .into_iter()
            .filter(|e| e["path"] == path)
            .map(|e| {
                format!(
                    "{} {}",
                    e["response_code"],
                    e["response_flags"].as_str().unwrap()
                )
            })
            .collect()
    };
    wait_for("the access log", || {
        (flags("/reset.Mid/Call").len() == 2).then_some(())
    });
    assert_eq!(flags("/reset.Before/Call"), ["200 UR,URX", "200 UR,URX"]);
    assert_eq!(flags("/reset.Close/Call"), ["200 UC,URX", "200 UC,URX"]);
    assert_eq!(flags("/reset.Mid/Call"), ["200 UR", "200 UR"]);
    assert_eq!(
        s.peer
            .records_of("raw")
            .iter()
            .filter(|r| r["mode"] == "reset")
            .count(),
        6,
        "two calls, each tried three times"
    );
    let grpc = |service: &str, status: &str, flags: &str| {
        istio_count(
            &s.gw,
            service,
            &format!("request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"{status}\",response_flags=\"{flags}\""),
        )
    };
    assert_eq!(grpc("reset.static", "14", "UR,URX"), 2.0);
    assert_eq!(grpc("close.static", "14", "UC,URX"), 2.0);
    // Headers without a grpc-status, then a reset: Envoy infers UNKNOWN from the 200.
    assert_eq!(grpc("midreset.static", "2", "UR"), 2.0);
    assert_eq!(grpc("unknown", "12", "NR"), 1.0);
    // Envoy's count of streams the upstream reset: every try of the reset calls; a
    // closed connection is not one.
    let rx_reset = |cluster: &str| {
        let m = s.gw.metrics();
        m.lines()
            .find(|l| {
                l.starts_with("envoy_cluster_upstream_rq_rx_reset{")
                    && l.contains(&format!("||{cluster}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(rx_reset("reset.static"), Some(6.0));
    assert_eq!(rx_reset("close.static"), Some(0.0));
}

/// A gRPC call with `grpc-timeout` by curl (so no client deadline races the gateway's):
/// (response headers, including a trailers-only response's, as text; seconds taken).
fn curl_grpc(gw: &Gateway, host: &str, path: &str, grpc_timeout: &str) -> (String, f64) {
    let start = Instant::now();
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-D",
            "-",
            "-o",
            "/dev/null",
        ])
        .args(["--max-time", "20", "-H", &format!("Host: {host}")])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["-H", &format!("grpc-timeout: {grpc_timeout}")])
        // One gRPC message: uncompressed, 1 byte long.
        .args(["--data-binary", "@-"])
        .arg(format!("http://{}{path}", gw.http))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"\x00\x00\x00\x00\x01x")?;
            c.wait_with_output()
        })
        .expect("curl");
    (
        String::from_utf8_lossy(&out.stdout).to_lowercase(),
        start.elapsed().as_secs_f64(),
    )
}

#[test]
fn grpc_timeout_is_honoured_and_capped_by_the_route_timeout() {
    let s = setup();
    // No route timeout: the header's 300 ms ends a call the backend never answers, as a
    // trailers-only DEADLINE_EXCEEDED.
    let (head, took) = curl_grpc(&s.gw, HOST, "/reset.Hang/Call", "300m");
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("grpc-status: 4\r\n"), "{head}");
    assert!(
        head.contains("grpc-message: upstream request timeout\r\n"),
        "{head}"
    );
    assert!(
        head.contains("content-type: application/grpc\r\n"),
        "{head}"
    );
    assert!(took >= 0.3, "took {took} s");
    // A route timeout of 1 s caps a longer grpc-timeout; a shorter one goes first.
    let (head, _) = curl_grpc(&s.gw, "capped.test", "/test.Echo/Sleep", "30S");
    assert!(head.contains("grpc-status: 4\r\n"), "{head}");
    let (head, _) = curl_grpc(&s.gw, "capped.test", "/test.Echo/Sleep", "200m");
    assert!(head.contains("grpc-status: 4\r\n"), "{head}");
    // The gateway's own durations (ms), in call order; the access line is written after
    // the metrics are counted.
    let took: Vec<u64> = wait_for("three UT entries", || {
        let ut: Vec<u64> =
            s.gw.access_entries()
                .into_iter()
                .filter(|e| e["response_flags"] == "UT" && e["response_code"] == 200)
                .map(|e| e["duration"].as_u64().unwrap())
                .collect();
        (ut.len() == 3).then_some(ut)
    });
    eprintln!("gRPC timeouts (300m, 30S capped by 1 s, 200m) fired after {took:?} ms");
    assert!((300..5000).contains(&took[0]), "300m uncapped: {took:?}");
    assert!(
        (1000..10_000).contains(&took[1]),
        "30S capped at 1 s: {took:?}"
    );
    assert!(
        (200..900).contains(&took[2]),
        "200m under the 1 s route timeout: {took:?}"
    );
    assert_eq!(
        istio_count(
            &s.gw,
            "hang.static",
            "request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"4\",response_flags=\"UT\""
        ),
        3.0
    );
    // A stream whose response started and then stalls is reset at the deadline (curl
    // takes the NO_ERROR reset after a message as a clean end; grpcio reads INTERNAL).
    let (head, _) = curl_grpc(&s.gw, HOST, "/reset.MidHang/Call", "500m");
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(!head.contains("grpc-status"), "headers only: {head}");
    let e =
        s.gw.wait_access("the stalled stream", |e| e["path"] == "/reset.MidHang/Call");
    assert_eq!(e["response_flags"], "UT", "{e}");
    let ms = e["duration"].as_u64().unwrap();
    assert!((500..5000).contains(&ms), "500m: {ms} ms");
    // No grpc-status anywhere: UNKNOWN, inferred from the 200 as Envoy does.
    assert_eq!(
        istio_count(
            &s.gw,
            "midhang.static",
            "request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"2\",response_flags=\"UT\""
        ),
        1.0
    );
    // A plain HTTP request on the capped route keeps its 504.
    let r =
        test_support::client::request_with_body(s.gw.http, "POST", "capped.test", "/x", &[], b"")
            .unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.text(), "upstream request timeout");
}

/// Bound for the peer to record a call.
const PEER_WAIT: Duration = test_support::tracing_peers::PEER_WAIT;
