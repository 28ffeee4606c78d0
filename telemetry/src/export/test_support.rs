//! Shared by the exporters' tests: sample requests, configs, bounded polling.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ExportStats, Exporter, ExporterConfig, Provider};
use crate::trace::{AttrValue, RequestTrace, Span, SpanId, SpanKind, TraceId};

pub(crate) fn config(provider: Provider, endpoint: String) -> ExporterConfig {
    ExporterConfig {
        provider,
        endpoint,
        timeout: Duration::from_secs(2),
        service_name: "higress-gateway.higress-system".into(),
        instance: "gw-0".into(),
        access_token: None,
        otlp_http: false,
        queue_capacity: super::DEFAULT_QUEUE_CAPACITY,
    }
}

/// 2023-11-14T22:13:20Z: a whole second, so ms and µs are easy to check.
/// An exporter on the test's runtime, with the stats it updates.
pub(crate) fn started(cfg: ExporterConfig) -> (Exporter, ExportStats) {
    let stats = ExportStats::default();
    let exp = Exporter::start(cfg, stats.clone(), &tokio::runtime::Handle::current());
    (exp, stats)
}

pub(crate) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A request: a server span (an error, 25.25 ms long) and `clients` client spans
/// under it, with peers `127.0.0.1:8000`, `:8001`, ...
pub(crate) fn sample_trace(i: u64, clients: usize) -> RequestTrace {
    let server_id = SpanId::random();
    let mut spans = vec![Span {
        span_id: server_id,
        parent_span_id: None,
        kind: SpanKind::Server,
        name: "GET /echo".into(),
        start: t0(),
        end: t0() + Duration::from_micros(25_250),
        attributes: vec![
            (Cow::Borrowed("http.method"), AttrValue::Str("GET".into())),
            (Cow::Borrowed("status_code"), AttrValue::Int(503)),
            (Cow::Borrowed("sampled"), AttrValue::Bool(true)),
            (Cow::Borrowed("request.index"), AttrValue::Int(i as i64)),
        ],
        status: 0,
        error: true,
        peer: Some("10.0.0.1:5555".parse().unwrap()),
    }];
    for j in 0..clients {
        spans.push(Span {
            span_id: SpanId::random(),
            parent_span_id: Some(server_id),
            kind: SpanKind::Client,
            name: "router outbound|80||echo.default.svc.cluster.local egress".into(),
            start: t0() + Duration::from_millis(1 + j as u64),
            end: t0() + Duration::from_millis(20),
            attributes: vec![(
                Cow::Borrowed("upstream_address"),
                AttrValue::Str(format!("127.0.0.1:{}", 8000 + j).into()),
            )],
            status: 0,
            error: false,
            peer: Some(format!("127.0.0.1:{}", 8000 + j).parse().unwrap()),
        });
    }
    RequestTrace {
        trace_id: TraceId::random(),
        segment_id: format!("seg-{i}-{}", SpanId::random()),
        spans,
        sw_parent: None,
        tracestate: None,
        http: None,
        phases: Vec::new(),
    }
}

/// Poll `cond` until it holds; panic (naming `what`) after a generous bound.
pub(crate) async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A loopback port that is bound but not listening: connects are refused until
/// `listen` turns it into the collector's listener (no other process can take it
/// in between).
pub(crate) fn reserved_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = s.local_addr().unwrap();
    (s, addr)
}

/// One request the HTTP collector received.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: bytes::Bytes,
}

impl Captured {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A real HTTP/1.1 server (hyper) on loopback that records every request and
/// answers `status`, after `delay` if given.
pub(crate) struct HttpCollector {
    pub(crate) addr: SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Captured>>>,
    pub(crate) connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpCollector {
    pub(crate) async fn start(status: u16, delay: Option<Duration>) -> HttpCollector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, status, delay)
    }

    pub(crate) fn serve(
        listener: tokio::net::TcpListener,
        status: u16,
        delay: Option<Duration>,
    ) -> HttpCollector {
        use http_body_util::BodyExt;
        use std::sync::atomic::Ordering;
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (seen2, conns2) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns2.fetch_add(1, Ordering::SeqCst);
                let seen = seen2.clone();
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            let body = req.into_body().collect().await?.to_bytes();
                            seen.lock().unwrap().push(Captured {
                                method,
                                path,
                                headers,
                                body,
                            });
                            if let Some(d) = delay {
                                tokio::time::sleep(d).await;
                            }
                            let mut resp = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            ));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, hyper::Error>(resp)
                        }
                    },
                );
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        HttpCollector {
            addr,
            seen,
            connections,
        }
    }

    pub(crate) fn requests(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }
}

/// Attributes at the edges of every value kind (extreme integers, empty keys and
/// values, text to escape, IPv4 / IPv6 / mapped addresses, a long value), for the
/// encoders' round-trip tests.
pub(crate) fn edge_attributes() -> Vec<(Cow<'static, str>, AttrValue)> {
    vec![
        ("neg".into(), AttrValue::Int(-1)),
        ("min".into(), AttrValue::Int(i64::MIN)),
        ("max".into(), AttrValue::Int(i64::MAX)),
        ("zero".into(), AttrValue::Int(0)),
        ("no".into(), AttrValue::Bool(false)),
        ("empty".into(), AttrValue::Str("".into())),
        ("".into(), AttrValue::Str("keyless".into())),
        (
            "s".into(),
            AttrValue::Shared("a\"\\b \u{65e5}\u{672c}".into()),
        ),
        ("a4".into(), AttrValue::Addr("10.0.0.1:80".parse().unwrap())),
        ("a6".into(), AttrValue::Addr("[::1]:9000".parse().unwrap())),
        ("i4".into(), AttrValue::Ip("192.168.100.7".parse().unwrap())),
        ("i6".into(), AttrValue::Ip("fe80::1".parse().unwrap())),
        (
            "v4in6".into(),
            AttrValue::Ip("::ffff:10.1.2.3".parse().unwrap()),
        ),
        ("k\u{e9}y".into(), AttrValue::Str("x".repeat(200).into())),
    ]
}
