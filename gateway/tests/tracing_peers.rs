//! The tracing tests' peers on their own, without the gateway: what the real SkyWalking
//! agent, OpenTelemetry SDK and the receivers do with hand-built trace headers, so a
//! gateway test that fails through them points at the gateway.
//!
//! Needs the Python venv scripts/test.sh builds (target/peers-venv); without it these
//! tests fail with how to build it.

use std::time::{Duration, Instant};

use test_support::tracing_peers::*;
use test_support::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn parent_sw8(app: &SwApp) -> Sw8 {
    Sw8 {
        sampled: true,
        trace_id: "peer-test.trace.1".into(),
        segment_id: "peer-test.segment.1".into(),
        span_id: 3,
        service: "higress-gateway.higress-system".into(),
        instance: "gw-host".into(),
        endpoint: "/entry".into(),
        target: app.addr.to_string(),
    }
}

#[test]
fn sw8_codec() {
    assert_eq!(b64(""), "");
    assert_eq!(b64("f"), "Zg==");
    assert_eq!(b64("fo"), "Zm8=");
    assert_eq!(b64("foo"), "Zm9v");
    assert_eq!(b64("/onemore-a/get"), "L29uZW1vcmUtYS9nZXQ=");
    assert_eq!(unb64("Zm8").unwrap(), b"fo");
    assert_eq!(unb64("Zm8=").unwrap(), b"fo");
    assert!(unb64("Zm-8").is_none());
    let h = Sw8 {
        sampled: true,
        trace_id: "t".into(),
        segment_id: "s".into(),
        span_id: 2,
        service: "svc".into(),
        instance: "i".into(),
        endpoint: "/e".into(),
        target: "127.0.0.1:80".into(),
    };
    assert_eq!(h.encode(), "1-dA==-cw==-2-c3Zj-aQ==-L2U=-MTI3LjAuMC4xOjgw");
    assert_eq!(Sw8::decode(&h.encode()), Some(h));
    assert_eq!(Sw8::decode("1-dA==-cw==-2-c3Zj-aQ==-L2U="), None);
    assert_eq!(Sw8::decode("2-dA==-cw==-2-c3Zj-aQ==-L2U=-MTI3"), None);
}

/// The agent turns a valid `sw8` into a CrossProcess ref to the caller's segment and span,
/// keeps the trace id, and reports with the token as `authentication` metadata.
#[test]
fn sw_app_segment_refers_to_the_sw8_parent() {
    let collector = SwCollector::start();
    let app = SwApp::start_with(&collector, "backend-app", Some("secret-token"));
    let parent = parent_sw8(&app);
    let r = request(
        app.addr,
        "GET",
        "backend",
        "/hello?x=1",
        &[("sw8", &parent.encode())],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["headers"]["sw8"], parent.encode().as_str());
    assert_eq!(body["sw"]["trace_id"], parent.trace_id.as_str());
    let seg_id = body["sw"]["segment_id"].as_str().unwrap().to_string();

    let rec = collector.wait_segment_record("the app's segment", |s| {
        s["traceSegmentId"] == seg_id.as_str()
    });
    assert_eq!(rec["service"], "skywalking.v3.TraceSegmentReportService");
    assert_eq!(rec["method"], "collect");
    assert_eq!(rec["authentication"], "secret-token");
    let seg = &rec["segment"];
    assert_eq!(seg["traceId"], parent.trace_id.as_str());
    assert_eq!(seg["service"], "backend-app");
    assert_eq!(seg["serviceInstance"], app.instance.as_str());
    let spans = seg["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 1, "{seg}");
    let entry = &spans[0];
    assert_eq!(entry["spanId"], 0);
    assert_eq!(entry["parentSpanId"], -1);
    assert_eq!(entry["spanType"], "Entry");
    assert_eq!(entry["spanLayer"], "Http");
    assert_eq!(entry["operationName"], "/hello");
    assert_eq!(
        entry["refs"],
        serde_json::json!([{
            "refType": "CrossProcess",
            "traceId": parent.trace_id,
            "parentTraceSegmentId": parent.segment_id,
            "parentSpanId": 3,
            "parentService": parent.service,
            "parentServiceInstance": parent.instance,
            "parentEndpoint": parent.endpoint,
            "networkAddressUsedAtPeer": parent.target,
        }])
    );
}

/// Without `sw8` the agent starts a trace of its own: no refs; a 5xx marks the span.
#[test]
fn sw_app_starts_a_trace_without_sw8() {
    let collector = SwCollector::start();
    let app = SwApp::start(&collector);
    let r = get(app.addr, "backend", "/status/503").unwrap();
    assert_eq!(r.status, 503);
    let body = r.json();
    let seg_id = body["sw"]["segment_id"].as_str().unwrap().to_string();
    let rec = collector.wait_segment_record("the app's segment", |s| {
        s["traceSegmentId"] == seg_id.as_str()
    });
    assert_eq!(rec["authentication"], serde_json::Value::Null);
    let seg = &rec["segment"];
    assert_eq!(seg["traceId"], body["sw"]["trace_id"]);
    let entry = &seg["spans"][0];
    assert_eq!(entry["refs"], serde_json::json!([]));
    assert_eq!(entry["isError"], true);
    let tags = entry["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "http.status_code" && t["value"] == "503"),
        "{tags:?}"
    );
}

/// What the agent (1.2.0) does with `sw8` values the gateway must never send: a wrong
/// field count or an empty field (here the target address) makes it drop tracing for the
/// request (no segment, it still answers); BASE64 without `=` padding makes its decoder
/// raise, and http.server closes the connection without an answer.
#[test]
fn sw_app_rejects_sw8_the_gateway_must_not_send() {
    let collector = SwCollector::start();
    let app = SwApp::start(&collector);
    for bad in [
        "1-dA==-cw==-2-c3Zj-aQ==-L2U=",
        "1-dA==-cw==-2-c3Zj-aQ==-L2U=-",
    ] {
        let r = request(app.addr, "GET", "backend", "/x", &[("sw8", bad)]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["sw"],
            serde_json::Value::Null,
            "{bad}: {}",
            r.text()
        );
    }
    let unpadded = "1-dA-cw-2-c3Zj-aQ-L2U-MTI3LjAuMC4xOjgw";
    let r = request(app.addr, "GET", "backend", "/x", &[("sw8", unpadded)]);
    assert!(r.is_err(), "an unpadded sw8 was answered: {r:?}");
    assert!(
        app.peer.log().contains("Incorrect padding"),
        "{}",
        app.peer.log()
    );
}

/// The collector's fault switch: an UNAVAILABLE collector loses the agent's segment (it
/// is recorded as rejected), and once cleared later segments arrive. (The agent loses
/// segments for about a second after a failed stream too: its abandoned stream's
/// generator still takes them from the queue; hence the retries.)
#[test]
fn sw_collector_fault_rejects_then_recovers() {
    let collector = SwCollector::start();
    let app = SwApp::start(&collector);
    collector.set_fault(&Fault {
        grpc_code: Some("UNAVAILABLE"),
        ..Fault::default()
    });
    get(app.addr, "backend", "/first").unwrap();
    collector.peer.wait("a rejected report", PEER_WAIT, |rs| {
        rs.iter()
            .find(|r| r["kind"] == "rejected" && r["code"] == "UNAVAILABLE")
            .map(|_| ())
    });
    collector.set_fault(&Fault::default());
    let start = Instant::now();
    loop {
        get(app.addr, "backend", "/after").unwrap();
        let arrived = || {
            collector
                .segments()
                .iter()
                .any(|s| s["spans"][0]["operationName"] == "/after")
        };
        let sent = Instant::now();
        while !arrived() && sent.elapsed() < Duration::from_millis(1500) {
            std::thread::sleep(Duration::from_millis(25));
        }
        if arrived() {
            break;
        }
        assert!(
            start.elapsed() < PEER_WAIT,
            "no segment after the fault was cleared: {:?}\n{}",
            collector.peer.records(),
            app.peer.log()
        );
    }
    assert!(
        !collector
            .segments()
            .iter()
            .any(|s| s["spans"][0]["operationName"] == "/first"),
        "the segment reported during the fault was recorded"
    );
}

/// W3C: the server span continues the incoming trace as a child of the incoming
/// parent-id; tracestate is kept.
#[test]
fn otel_app_follows_traceparent() {
    let app = OtelApp::start();
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let r = request(
        app.addr,
        "GET",
        "otel",
        "/w3c?q=1",
        &[("traceparent", &tp), ("tracestate", "vendor=v1,other=x")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["extracted"]["tracecontext"]["trace_id"], TRACE);
    assert_eq!(body["extracted"]["tracecontext"]["span_id"], PARENT);
    assert_eq!(body["extracted"]["tracecontext"]["sampled"], true);
    assert_eq!(
        body["extracted"]["tracecontext"]["trace_state"],
        "vendor=v1,other=x"
    );
    assert_eq!(body["extracted"]["b3"], serde_json::Value::Null);
    assert_eq!(body["trace_id"], TRACE);
    assert_eq!(body["parent_span_id"], PARENT);
    let span_id = body["span_id"].as_str().unwrap().to_string();
    assert_ne!(span_id, PARENT);

    let span = app.wait_span("the server span", |s| s["span_id"] == span_id.as_str());
    assert_eq!(span["trace_id"], TRACE);
    assert_eq!(span["parent_span_id"], PARENT);
    assert_eq!(span["kind"], "SERVER");
    assert_eq!(span["name"], "GET /w3c");
    assert_eq!(span["service"], "otel-app");
}

/// B3, single header and multi-header: both are read; 64-bit trace ids come back
/// left-padded to 32 hex digits.
#[test]
fn otel_app_follows_b3_single_and_multi() {
    let app = OtelApp::start();

    let single = format!("{TRACE}-{PARENT}-1");
    let body = request(app.addr, "GET", "otel", "/b3", &[("b3", &single)])
        .unwrap()
        .json();
    assert_eq!(body["extracted"]["b3"]["trace_id"], TRACE);
    assert_eq!(body["extracted"]["b3"]["span_id"], PARENT);
    assert_eq!(body["extracted"]["tracecontext"], serde_json::Value::Null);
    assert_eq!(body["trace_id"], TRACE);
    assert_eq!(body["parent_span_id"], PARENT);

    let body = request(
        app.addr,
        "GET",
        "otel",
        "/b3multi",
        &[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", PARENT),
            ("x-b3-parentspanid", "1111111111111111"),
            ("x-b3-sampled", "1"),
        ],
    )
    .unwrap()
    .json();
    assert_eq!(
        body["extracted"]["b3"]["trace_id"],
        "0000000000000000a3ce929d0e0e4736"
    );
    assert_eq!(body["parent_span_id"], PARENT);
    let span_id = body["span_id"].as_str().unwrap().to_string();
    let span = app.wait_span("the b3 server span", |s| s["span_id"] == span_id.as_str());
    assert_eq!(span["parent_span_id"], PARENT);

    // Unsampled B3: the context is still extracted; the SDK's parent-based sampler
    // drops the span.
    let body = request(
        app.addr,
        "GET",
        "otel",
        "/b3",
        &[("b3", &format!("{TRACE}-{PARENT}-0"))],
    )
    .unwrap()
    .json();
    assert_eq!(body["extracted"]["b3"]["sampled"], false);
    assert_eq!(body["trace_id"], TRACE);
}

fn otlp_export(export: fn(&OtlpReceiver) -> Export, transport: &str) {
    let rx = OtlpReceiver::start();
    let app = OtelApp::start_with("otel-exporting", export(&rx));
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let body = request(app.addr, "GET", "otel", "/export", &[("traceparent", &tp)])
        .unwrap()
        .json();
    let span_id = body["span_id"].as_str().unwrap().to_string();
    let span = rx.wait_span("the exported span", |s| s["spanId"] == span_id.as_str());
    assert_eq!(span["transport"], transport);
    assert_eq!(span["traceId"], TRACE);
    assert_eq!(span["parentSpanId"], PARENT);
    assert_eq!(span["kind"], 2, "SPAN_KIND_SERVER: {span}");
    assert_eq!(span["name"], "GET /export");
    assert_eq!(
        otlp_attr(&span["resource"], "service.name"),
        Some("otel-exporting".into())
    );
    assert_eq!(
        otlp_attr(&span["attributes"], "http.request.method"),
        Some("GET".into())
    );
    assert_eq!(
        otlp_attr(&span["attributes"], "http.response.status_code"),
        Some("200".into())
    );
}

#[test]
fn otlp_receiver_gets_the_sdk_export_over_grpc() {
    otlp_export(|rx| Export::Grpc(rx.grpc), "grpc");
}

#[test]
fn otlp_receiver_gets_the_sdk_export_over_http() {
    otlp_export(|rx| Export::Http(rx.http), "http");
}

/// A 400 (not retryable in OTLP/HTTP) from the receiver: the export is recorded as
/// rejected and nothing is accepted.
#[test]
fn otlp_receiver_http_fault() {
    let rx = OtlpReceiver::start();
    rx.set_fault(&Fault {
        status: 400,
        ..Fault::default()
    });
    let app = OtelApp::start_with("otel-exporting", Export::Http(rx.http));
    get(app.addr, "otel", "/refused").unwrap();
    rx.peer.wait("a rejected export", PEER_WAIT, |rs| {
        rs.iter()
            .find(|r| r["kind"] == "rejected" && r["status"] == 400)
            .map(|_| ())
    });
    assert!(rx.spans().is_empty(), "{:?}", rx.spans());
}

#[test]
fn zipkin_receiver_records_spans_and_injects_faults() {
    let zipkin = ZipkinReceiver::start();
    let span = serde_json::json!({
        "traceId": TRACE, "id": PARENT, "name": "get /z", "kind": "SERVER",
        "timestamp": 1_700_000_000_000_000u64, "duration": 1500,
        "localEndpoint": {"serviceName": "higress-gateway.higress-system"},
        "tags": {"http.method": "GET"},
    });
    let body = serde_json::to_vec(&[&span]).unwrap();
    let r = post(zipkin.addr, "/api/v2/spans", "application/json", &body).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let got = zipkin.wait_span("the posted span", |s| s["id"] == PARENT);
    assert_eq!(got, span);
    assert_eq!(
        zipkin.posts()[0]["headers"]["content-type"],
        "application/json"
    );

    zipkin.set_fault(&Fault {
        status: 500,
        ..Fault::default()
    });
    let r = post(zipkin.addr, "/api/v2/spans", "application/json", &body).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(zipkin.rejected().len(), 1);
    assert_eq!(zipkin.spans().len(), 1);

    zipkin.set_fault(&Fault {
        delay: Duration::from_millis(300),
        ..Fault::default()
    });
    let t = Instant::now();
    let r = post(zipkin.addr, "/api/v2/spans", "application/json", &body).unwrap();
    assert_eq!(r.status, 202);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(zipkin.spans().len(), 2);

    let r = post(zipkin.addr, "/api/v2/spans", "application/json", b"{").unwrap();
    assert_eq!(r.status, 400);
}

/// A peer whose test process is gone (stdin closed) exits by itself.
#[test]
fn peers_exit_when_stdin_closes() {
    let mut zipkin = ZipkinReceiver::start();
    zipkin.peer.close_stdin();
    assert!(
        zipkin.peer.wait_exit(WAIT).is_some(),
        "peer {} still running after stdin closed",
        zipkin.peer.pid()
    );
}
