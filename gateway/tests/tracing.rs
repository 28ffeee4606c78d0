//! Tracing end to end with real peers: the SkyWalking Python agent behind the gateway
//! and a SkyWalking collector; the OpenTelemetry SDK (W3C and B3 propagators) behind it
//! and OTLP / Zipkin receivers. `higress-config` turns tracing on, switches it, and a
//! collector that fails never fails a request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::tracing_peers::*;
use test_support::*;

const GATEWAY_SERVICE: &str = "higress-gateway.higress-system";

fn tracing_config(cfg: &ConfigDir, provider_yaml: &str) {
    cfg.higress_config(&format!(
        "tracing:\n  enable: true\n  sampling: 100\n  timeout: 500\n{provider_yaml}"
    ));
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["tags"].as_array()?.iter().find(|t| t["key"] == key)?["value"].as_str()
}

/// The SkyWalking scene: the gateway's segment (entry + exit) and the app's segment share
/// the trace, the app's ref points at the gateway's exit span; an incoming `sw8` becomes
/// the gateway segment's ref.
#[test]
fn skywalking_segments_link_gateway_and_app() {
    let collector = SwCollector::start();
    let app = SwApp::start(&collector);
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("app", app.addr.to_string(), 80),
        ("oap", collector.addr.to_string(), 11800),
    ]);
    cfg.host_route("sw", "sw.test", "app.static");
    tracing_config(
        &cfg,
        "  skywalking:\n    service: oap.static\n    port: \"11800\"\n    access_token: secret-token\n",
    );
    let gw = Gateway::start(cfg.path());

    let r = get(gw.http, "sw.test", "/orders/7?verbose=1").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    let ours = collector.wait_segment("the gateway's segment", |s| {
        s["service"] == GATEWAY_SERVICE && s["spans"][0]["operationName"] == "/orders/7"
    });
    let record = collector.wait_segment_record("its record", |s| {
        s["traceSegmentId"] == ours["traceSegmentId"]
    });
    assert_eq!(record["authentication"], "secret-token");
    let spans = ours["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "entry + one exit: {ours:#}");
    let (entry, exit) = (&spans[0], &spans[1]);
    assert_eq!(entry["spanType"], "Entry");
    assert_eq!(entry["spanId"], 0);
    assert_eq!(entry["parentSpanId"], -1);
    assert_eq!(exit["spanType"], "Exit");
    assert_eq!(exit["spanId"], 1);
    assert_eq!(exit["parentSpanId"], 0);
    for s in spans {
        assert_eq!(s["componentId"], 9000);
        assert_eq!(s["spanLayer"], "Http");
        assert_eq!(s["isError"], false);
    }
    assert_eq!(exit["peer"], app.addr.to_string());
    assert_eq!(tag(entry, "http.method"), Some("GET"));
    assert_eq!(tag(entry, "url"), Some("http://sw.test/orders/7?verbose=1"));
    assert_eq!(tag(entry, "status_code"), Some("200"));
    assert_eq!(
        tag(exit, "upstream_cluster"),
        Some("outbound|80||app.static")
    );
    assert!(entry["refs"].as_array().unwrap().is_empty(), "a new trace");

    // The app's segment: same trace, ref to our segment's exit span.
    let trace_id = ours["traceId"].as_str().unwrap().to_string();
    let app_seg = collector.wait_segment("the app's segment", |s| {
        s["service"] == "backend-app" && s["traceId"] == trace_id.as_str()
    });
    let r0 = &app_seg["spans"][0]["refs"][0];
    assert_eq!(r0["parentTraceSegmentId"], ours["traceSegmentId"]);
    assert_eq!(r0["parentSpanId"], 1);
    assert_eq!(r0["parentService"], GATEWAY_SERVICE);
    assert_eq!(r0["parentEndpoint"], "/orders/7");
    assert_eq!(seen["sw"]["trace_id"], trace_id.as_str());

    // A caller with sw8: our segment continues its trace and refers to it.
    let parent = Sw8 {
        sampled: true,
        trace_id: "caller-trace-1.2.3".into(),
        segment_id: "caller-segment-9".into(),
        span_id: 3,
        service: "frontend".into(),
        instance: "frontend-1".into(),
        endpoint: "/checkout".into(),
        target: "sw.test".into(),
    };
    let r = request(
        gw.http,
        "GET",
        "sw.test",
        "/pay",
        &[("sw8", &parent.encode())],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let ours = collector.wait_segment("the gateway's segment under sw8", |s| {
        s["service"] == GATEWAY_SERVICE && s["traceId"] == "caller-trace-1.2.3"
    });
    let rf = &ours["spans"][0]["refs"][0];
    assert_eq!(rf["refType"], "CrossProcess");
    assert_eq!(rf["parentTraceSegmentId"], "caller-segment-9");
    assert_eq!(rf["parentSpanId"], 3);
    assert_eq!(rf["parentService"], "frontend");
    assert_eq!(rf["parentEndpoint"], "/checkout");
    collector.wait_segment("the app's segment under sw8", |s| {
        s["service"] == "backend-app" && s["traceId"] == "caller-trace-1.2.3"
    });
    wait_for("segments counted", || {
        gw.metric("envoy_tracing_skywalking_segments_sent")
            .filter(|&v| v >= 2.0)
    });
}

/// Zipkin: B3 in, `x-b3-*` out with the gateway's client span as parent; the receiver
/// gets the server and client spans linked to the caller's span.
#[test]
fn zipkin_spans_and_b3_propagation() {
    let zipkin = ZipkinReceiver::start();
    let app = OtelApp::start();
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("app", app.addr.to_string(), 80),
        ("zipkin", zipkin.addr.to_string(), 9411),
    ]);
    cfg.host_route("z", "z.test", "app.static");
    tracing_config(
        &cfg,
        "  zipkin:\n    service: zipkin.static\n    port: \"9411\"\n",
    );
    let gw = Gateway::start(cfg.path());
    let trace = "463ac35c9f6413ad48485a3953bb6124";
    let caller_span = "a2fb4a1d1a96d312";
    let r = request(
        gw.http,
        "GET",
        "z.test",
        "/items?id=3",
        &[("b3", &format!("{trace}-{caller_span}-1"))],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(
        seen["trace_id"], trace,
        "the app continues the caller's trace: {seen:#}"
    );
    assert!(
        seen["headers"].get("b3").is_none(),
        "the single header is replaced"
    );
    let client_span = seen["parent_span_id"].as_str().unwrap().to_string();

    let server = zipkin.wait_span("the server span", |s| {
        s["traceId"] == trace && s["kind"] == "SERVER"
    });
    assert_eq!(server["parentId"], caller_span);
    assert_eq!(server["name"], "GET /items");
    assert_eq!(server["localEndpoint"]["serviceName"], GATEWAY_SERVICE);
    assert_eq!(server["tags"]["http.status_code"], "200");
    let client = zipkin.wait_span("the client span", |s| {
        s["traceId"] == trace && s["kind"] == "CLIENT"
    });
    assert_eq!(
        client["id"],
        client_span.as_str(),
        "the app's parent is our client span"
    );
    assert_eq!(client["parentId"], server["id"]);
    assert_eq!(client["name"], "router outbound|80||app.static egress");

    // No incoming context: a new trace, still linked end to end.
    let seen = get(gw.http, "z.test", "/new").unwrap().json();
    let t = seen["trace_id"].as_str().unwrap().to_string();
    assert_eq!(t.len(), 32);
    zipkin.wait_span("the new trace's server span", |s| {
        s["traceId"] == t.as_str() && s["kind"] == "SERVER" && s.get("parentId").is_none()
    });
}

/// OpenTelemetry: `traceparent` in and out (the client span as parent, `tracestate`
/// passed on), spans over OTLP gRPC, then OTLP/HTTP after a live switch.
#[test]
fn otlp_spans_and_w3c_propagation() {
    let otlp = OtlpReceiver::start();
    let app = OtelApp::start();
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("app", app.addr.to_string(), 80),
        ("otel", otlp.grpc.to_string(), 4317),
        ("otelhttp", otlp.http.to_string(), 4318),
    ]);
    cfg.host_route("o", "o.test", "app.static");
    tracing_config(
        &cfg,
        "  opentelemetry:\n    service: otel.static\n    port: \"4317\"\n",
    );
    let gw = Gateway::start(cfg.path());
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = request(
        gw.http,
        "GET",
        "o.test",
        "/a",
        &[
            ("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01")),
            ("tracestate", "vendor=x"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["trace_id"], trace);
    assert_eq!(seen["headers"]["tracestate"], "vendor=x");
    let client_span = seen["parent_span_id"].as_str().unwrap().to_string();
    let server = otlp.wait_span("the server span", |s| {
        s["traceId"] == trace && s["kind"] == 2
    });
    assert_eq!(server["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(server["transport"], "grpc");
    assert_eq!(
        otlp_attr(&server["resource"], "service.name"),
        Some(Value::from(GATEWAY_SERVICE))
    );
    assert_eq!(
        otlp_attr(&server["attributes"], "http.request.method"),
        Some(Value::from("GET"))
    );
    let client = otlp.wait_span("the client span", |s| {
        s["traceId"] == trace && s["kind"] == 3
    });
    assert_eq!(client["spanId"], client_span.as_str());
    assert_eq!(client["parentSpanId"], server["spanId"]);

    // Live: OTLP/HTTP instead of gRPC.
    let v = gw.version();
    tracing_config(
        &cfg,
        "  opentelemetry:\n    service: otelhttp.static\n    port: \"4318\"\n    protocol: http\n",
    );
    gw.wait_version_after(v);
    let seen = get(gw.http, "o.test", "/b").unwrap().json();
    let t = seen["trace_id"].as_str().unwrap().to_string();
    let s = otlp.wait_span("a span over OTLP/HTTP", |s| s["traceId"] == t.as_str());
    assert_eq!(s["transport"], "http");
}

/// Broken trace headers never fail a request: each starts a new, valid trace.
#[test]
fn malformed_trace_headers_start_new_traces() {
    let app = OtelApp::start();
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("app", app.addr.to_string(), 80)]);
    cfg.host_route("o", "o.test", "app.static");
    // OpenTelemetry to a collector that is not there: spans are dropped, requests fine.
    cfg.write(
        "mcpbridges/default.yaml",
        &format!(
            "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\nspec:\n  registries:\n  - type: static\n    name: app\n    domain: \"{}\"\n    port: 80\n",
            app.addr
        ),
    );
    tracing_config(
        &cfg,
        "  opentelemetry:\n    service: 127.0.0.1\n    port: \"1\"\n",
    );
    let gw = Gateway::start(cfg.path());
    let broken: &[(&str, &str)] = &[
        ("traceparent", "00-not-hex-at-all-01"),
        (
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ),
        (
            "traceparent",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("b3", "zzz-yyy-1"),
        ("x-b3-traceid", "123"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ),
    ];
    for (name, value) in broken {
        let r = request(gw.http, "GET", "o.test", "/", &[(name, value)]).unwrap();
        assert_eq!(r.status, 200, "{name}: {value}");
        let seen = r.json();
        let t = seen["trace_id"].as_str().unwrap_or_default();
        assert_eq!(
            t.len(),
            32,
            "{name}: {value}: a new trace reached the app: {seen:#}"
        );
        assert_ne!(t, "00000000000000000000000000000000");
        assert!(
            !value.contains(t),
            "{name}: {value} was not taken as the trace"
        );
    }
}

fn dropped(gw: &Gateway, provider: &str) -> f64 {
    gw.metrics()
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "gateway_tracing_spans_dropped_total{{provider=\"{provider}\""
            ))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `gateway_tracing_export_errors_total{provider, reason}`.
fn export_errors(gw: &Gateway, provider: &str, reason: &str) -> f64 {
    gw.metric(&format!(
        "gateway_tracing_export_errors_total{{provider=\"{provider}\",reason=\"{reason}\"}}"
    ))
    .unwrap_or(0.0)
}

/// A collector that refuses, is slower than `timeout`, or is down: every request still
/// succeeds, the lost spans are counted, and so is each failed report, by reason and
/// under Envoy's Zipkin names (a refused connection, a timeout or an error status is
/// `reports_dropped`, as Envoy's router makes a local 503/504 of the first two).
#[test]
fn collector_faults_never_fail_requests() {
    let zipkin = ZipkinReceiver::start();
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("be", be.addr.to_string(), 80),
        ("zipkin", zipkin.addr.to_string(), 9411),
    ]);
    cfg.host_route("z", "z.test", "be.static");
    tracing_config(
        &cfg,
        "  zipkin:\n    service: zipkin.static\n    port: \"9411\"\n",
    );
    let gw = Gateway::start(cfg.path());
    let burst = |n: usize| {
        let mut c = Conn::open(gw.http).unwrap();
        for _ in 0..n {
            assert_eq!(c.request("GET", "z.test", "/", &[]).unwrap().status, 200);
        }
    };
    // Refusing.
    zipkin.set_fault(&Fault {
        status: 500,
        ..Fault::default()
    });
    burst(20);
    wait_for("refused reports counted", || {
        (dropped(&gw, "zipkin") >= 1.0).then_some(())
    });
    assert!(export_errors(&gw, "zipkin", "status") >= 1.0);
    assert!(gw.metric("envoy_tracing_zipkin_reports_dropped").unwrap() >= 1.0);
    assert_eq!(gw.metric("envoy_tracing_zipkin_reports_failed"), Some(0.0));
    // Slower than the 500 ms timeout.
    let before = dropped(&gw, "zipkin");
    zipkin.set_fault(&Fault {
        delay: Duration::from_secs(5),
        ..Fault::default()
    });
    let t0 = Instant::now();
    burst(20);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "requests waited on the slow collector ({:?})",
        t0.elapsed()
    );
    wait_for("timed-out reports counted", || {
        (dropped(&gw, "zipkin") > before).then_some(())
    });
    assert!(export_errors(&gw, "zipkin", "timeout") >= 1.0);
    // Down: spans wait in the bounded queue (dropped and counted once it is full)
    // while the exporter reconnects with backoff; requests do not notice.
    let before = dropped(&gw, "zipkin");
    let refused_before = export_errors(&gw, "zipkin", "connect");
    drop(zipkin);
    burst(20);
    wait_for("spans to a dead collector queued or counted", || {
        let queued = gw
            .metric("gateway_tracing_queue_size{provider=\"zipkin\"}")
            .unwrap_or(0.0);
        (queued > 0.0 || dropped(&gw, "zipkin") > before).then_some(())
    });
    // The refused connection shows as a counter, not only in the log.
    wait_for("the refused connection counted", || {
        (export_errors(&gw, "zipkin", "connect") > refused_before).then_some(())
    });
    // From then on requests are not recorded: their context still goes upstream and
    // the access log has their trace id, but no latency exemplar points at a trace
    // that will never reach a collector.
    let trace = "5b8aa5a2d2c872e8321cf37308d69df2";
    let r = request(
        gw.http,
        "GET",
        "z.test",
        "/unrecorded",
        &[
            ("x-b3-traceid", trace),
            ("x-b3-spanid", "051581bf3cb55c13"),
            ("x-b3-sampled", "1"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-b3-traceid"], trace);
    assert_eq!(r.json()["headers"]["x-b3-sampled"], "1");
    let entry = gw.wait_access("the access log line", |e| e["path"] == "/unrecorded");
    assert_eq!(entry["trace_id"], trace);
    let om = openmetrics(&gw);
    assert!(
        om.contains("trace_id=") && !om.contains(trace),
        "an exemplar for an unrecorded trace in\n{om}"
    );
}

/// Under continuous load, tracing off -> SkyWalking -> OTLP -> off by editing
/// `higress-config`: no request fails, and each phase's spans reach that phase's
/// collector only.
#[test]
fn live_switch_under_load() {
    let collector = SwCollector::start();
    let otlp = OtlpReceiver::start();
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("be", be.addr.to_string(), 80),
        ("oap", collector.addr.to_string(), 11800),
        ("otel", otlp.grpc.to_string(), 4317),
    ]);
    cfg.host_route("l", "l.test", "be.static");
    cfg.higress_config("");
    let gw = Gateway::start(cfg.path());

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failures, sent, addr) = (stop.clone(), failures.clone(), sent.clone(), gw.http);
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut c = Conn::open(addr).unwrap();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(90) {
                match c.request("GET", "l.test", "/load", &[]) {
                    Ok(r) if r.status == 200 => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        c = Conn::open(addr).unwrap();
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let phase = |name: &str, higress: &str| {
        let v = gw.version();
        cfg.higress_config(higress);
        gw.wait_version_after(v);
        for i in 0..3 {
            let r = get(gw.http, "l.test", &format!("/phase-{name}/{i}")).unwrap();
            assert_eq!(r.status, 200);
        }
    };
    phase("off1", "tracing:\n  enable: false\n");
    phase(
        "sw",
        "tracing:\n  enable: true\n  sampling: 100\n  skywalking:\n    service: oap.static\n    port: \"11800\"\n",
    );
    phase(
        "otel",
        "tracing:\n  enable: true\n  sampling: 100\n  opentelemetry:\n    service: otel.static\n    port: \"4317\"\n",
    );
    phase("off2", "tracing:\n  enable: false\n");
    collector.wait_segment("the sw phase's spans", |s| {
        s["spans"][0]["operationName"] == "/phase-sw/2"
    });
    otlp.wait_span("the otel phase's spans", |s| {
        otlp_attr(&s["attributes"], "url.path") == Some(Value::from("/phase-otel/2"))
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(sent.load(Ordering::Relaxed) > 20);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the switches"
    );

    let sw_ops: Vec<String> = collector
        .segments()
        .iter()
        .filter_map(|s| s["spans"][0]["operationName"].as_str().map(String::from))
        .filter(|o| o.starts_with("/phase-"))
        .collect();
    let otel_paths: Vec<String> = otlp
        .spans()
        .iter()
        .filter_map(|s| {
            otlp_attr(&s["attributes"], "url.path")?
                .as_str()
                .map(String::from)
        })
        .filter(|p| p.starts_with("/phase-"))
        .collect();
    assert!(
        sw_ops.iter().all(|o| o.starts_with("/phase-sw/")),
        "{sw_ops:?}"
    );
    assert_eq!(
        sw_ops.len(),
        3,
        "each sw-phase request exactly once: {sw_ops:?}"
    );
    assert!(
        otel_paths.iter().all(|p| p.starts_with("/phase-otel/")),
        "{otel_paths:?}"
    );
    assert_eq!(
        otel_paths.len(),
        6,
        "server + client span per otel-phase request: {otel_paths:?}"
    );
}

/// `/debug/traces` lists sampled requests even without a collector; the access log
/// carries the trace id; the latency bucket's exemplar is that trace.
#[test]
fn debug_traces_access_log_and_exemplars() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    tracing_config(&cfg, "  zipkin:\n    service: 127.0.0.1\n    port: \"1\"\n");
    let gw = Gateway::start(cfg.path());
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = request(
        gw.http,
        "GET",
        "any.test",
        "/x",
        &[
            ("x-b3-traceid", trace),
            ("x-b3-spanid", "b7ad6b7169203331"),
            ("x-b3-sampled", "1"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let traces = wait_for("the trace at /debug/traces", || {
        let r = get(gw.admin, "admin", "/debug/traces").ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        v["spans"]
            .as_array()?
            .iter()
            .any(|s| s["trace_id"] == trace)
            .then_some(v)
    });
    assert!(traces["spans"].as_array().unwrap().len() >= 2);
    let entry = gw.wait_access("the access log line", |e| e["path"] == "/x");
    assert_eq!(entry["trace_id"], trace);
    let om = openmetrics(&gw);
    assert!(
        om.lines()
            .any(|l| l.starts_with("envoy_http_downstream_rq_time_bucket")
                && l.contains(&format!("# {{trace_id=\"{trace}\"}}"))),
        "no exemplar for the trace in\n{om}"
    );
}

/// With `sampling: 0` the gateway still tells the app its decision for the traces it
/// starts (W3C flags `02`: not sampled, random id; B3 `x-b3-sampled: 0`), so a
/// parent-based app samples nothing either; a caller's sampled `traceparent` is
/// honoured, and its random-trace-id flag goes on unchanged.
#[test]
fn sampling_decisions_reach_the_app() {
    let otlp = OtlpReceiver::start();
    let zipkin = ZipkinReceiver::start();
    let app = OtelApp::start();
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("app", app.addr.to_string(), 80),
        ("otel", otlp.grpc.to_string(), 4317),
        ("zipkin", zipkin.addr.to_string(), 9411),
    ]);
    cfg.host_route("o", "o.test", "app.static");
    let off = |provider: &str| {
        format!("tracing:\n  enable: true\n  sampling: 0\n  timeout: 500\n{provider}")
    };
    cfg.higress_config(&off(
        "  opentelemetry:\n    service: otel.static\n    port: \"4317\"\n",
    ));
    let gw = Gateway::start(cfg.path());

    let seen = get(gw.http, "o.test", "/unsampled").unwrap().json();
    let tp = seen["headers"]["traceparent"].as_str().unwrap().to_string();
    assert!(tp.ends_with("-02"), "not sampled, random id: {tp}");
    assert_eq!(seen["extracted"]["tracecontext"]["sampled"], false);
    let unsampled_trace = seen["trace_id"].as_str().unwrap().to_string();
    assert_eq!(&tp[3..35], unsampled_trace, "the app kept our trace id");

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = request(
        gw.http,
        "GET",
        "o.test",
        "/sampled",
        &[("traceparent", &format!("00-{trace}-b7ad6b7169203331-03"))],
    )
    .unwrap();
    let seen = r.json();
    let tp = seen["headers"]["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.ends_with("-03"),
        "sampled, random flag passed on: {tp}"
    );
    app.wait_span("the app's span of the sampled request", |s| {
        s["trace_id"] == trace
    });
    otlp.wait_span("the gateway's span of the sampled request", |s| {
        s["traceId"] == trace
    });
    // Spans leave in order: the unsampled request's would have been sent first.
    assert!(otlp
        .spans()
        .iter()
        .all(|s| s["traceId"] != unsampled_trace.as_str()));
    assert!(app
        .spans()
        .iter()
        .all(|s| s["trace_id"] != unsampled_trace.as_str()));

    // Zipkin: B3 multi headers with the decision.
    let v = gw.version();
    cfg.higress_config(&off(
        "  zipkin:\n    service: zipkin.static\n    port: \"9411\"\n",
    ));
    gw.wait_version_after(v);
    let seen = get(gw.http, "o.test", "/unsampled-b3").unwrap().json();
    assert_eq!(seen["headers"]["x-b3-sampled"], "0", "{seen:#}");
    assert_eq!(seen["extracted"]["b3"]["sampled"], false);
    assert!(seen["headers"].get("traceparent").is_none());
}

/// The stats as OpenMetrics (the format that carries exemplars).
fn openmetrics(gw: &Gateway) -> String {
    request(
        gw.stats,
        "GET",
        "stats",
        "/stats/prometheus",
        &[("accept", "application/openmetrics-text;version=1.0.0")],
    )
    .unwrap()
    .text()
}
