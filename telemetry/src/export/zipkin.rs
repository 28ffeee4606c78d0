//! Zipkin: v2 JSON spans, `POST /api/v2/spans`, on one kept-alive HTTP/1.1
//! connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use super::net::{self, Error, HttpClient};
use super::sent::Sent;
use super::{trace_id_u128, unix_nanos, ExporterConfig};
use crate::trace::ids::hex_digits;
use crate::trace::{push_ipv4, RequestTrace, Span, SpanKind, Tag};

pub(crate) struct Client {
    http: HttpClient,
    /// The service name as a JSON string (quoted and escaped once).
    service_json: String,
    /// The last body's size: the next one starts with that much room.
    last_len: usize,
}

impl Client {
    pub(crate) fn new(cfg: &ExporterConfig) -> Self {
        Client {
            http: HttpClient::new(net::authority(&cfg.endpoint)),
            service_json: {
                let mut s = String::new();
                json_str(&mut s, &cfg.service_name);
                s
            },
            last_len: 4096,
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.http.connected()
    }

    pub(crate) async fn connect(&mut self) -> Result<(), Error> {
        self.http.connect().await
    }

    pub(crate) fn disconnect(&mut self) {
        self.http.disconnect();
    }

    pub(crate) async fn export(&mut self, batch: &[Arc<RequestTrace>]) -> Result<Sent, Error> {
        let mut body = String::with_capacity(self.last_len);
        let n = write_spans(&mut body, batch, &self.service_json);
        self.last_len = body.len();
        self.http
            .post("/api/v2/spans", "application/json", Bytes::from(body))
            .await?;
        Ok(Sent {
            units: n,
            rejected_spans: 0,
        })
    }
}

/// The batch as a Zipkin v2 JSON array; returns the number of spans. `service_json`
/// is the service name as a JSON string. Written straight
/// into the body with no intermediate tree: every sampled request passes through
/// here, and a `serde_json::Value` per span cost more than proxying the request.
pub(crate) fn write_spans(
    out: &mut String,
    batch: &[Arc<RequestTrace>],
    service_json: &str,
) -> u64 {
    let mut n = 0;
    // The tags a request's spans share, written once per request and copied.
    let mut shared = String::new();
    out.push('[');
    for t in batch {
        let trace_id = trace_id_u128(&t.trace_id);
        let mut hex = [0; 32];
        let trace_hex = hex_digits(&mut hex, trace_id);
        shared.clear();
        let mut first = true;
        t.for_each_shared_tag(|k, v| write_tag(&mut shared, &mut first, k, v));
        for s in &t.spans {
            if n > 0 {
                out.push(',');
            }
            write_span(out, t, trace_hex, s, service_json, &shared);
            n += 1;
        }
    }
    out.push(']');
    n
}

/// `"key":"value"` (Zipkin tags are strings), after a comma unless `first`.
fn write_tag(out: &mut String, first: &mut bool, k: &str, v: Tag<'_>) {
    if !*first {
        out.push(',');
    }
    *first = false;
    // Tag names are the exporters' own constants or a plugin's `trace_span_tag.*`.
    if first_escape(k.as_bytes()).is_none() {
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
    } else {
        json_str(out, k);
        out.push(':');
    }
    let mut num = itoa::Buffer::new();
    match v {
        Tag::Lit(v) => {
            debug_assert!(first_escape(v.as_bytes()).is_none(), "{v:?}");
            out.push('"');
            out.push_str(v);
            out.push('"');
        }
        Tag::Text(v) => json_str(out, v),
        Tag::Int(v) => {
            out.push('"');
            out.push_str(num.format(v));
            out.push('"');
        }
        Tag::Bool(v) => out.push_str(if v { "\"true\"" } else { "\"false\"" }),
        // Digits, dots, colons and brackets: nothing to escape.
        Tag::Addr(SocketAddr::V4(a)) => {
            out.push('"');
            push_ipv4(out, *a.ip());
            out.push(':');
            out.push_str(num.format(a.port()));
            out.push('"');
        }
        Tag::Ip(IpAddr::V4(ip)) => {
            out.push('"');
            push_ipv4(out, ip);
            out.push('"');
        }
        v @ (Tag::Addr(_) | Tag::Ip(_)) => json_str(out, &v.text()),
    }
}

fn write_span(
    out: &mut String,
    t: &RequestTrace,
    trace_hex: &str,
    s: &Span,
    service_json: &str,
    shared_tags: &str,
) {
    let mut num = itoa::Buffer::new();
    let start_us = unix_nanos(s.start) / 1000;
    // Zipkin wants a positive duration when one is given.
    let duration_us = (unix_nanos(s.end) / 1000).saturating_sub(start_us).max(1);
    out.push_str("{\"traceId\":\"");
    out.push_str(trace_hex);
    out.push_str("\",\"id\":\"");
    out.push_str(hex_digits(&mut [0; 16], s.span_id.0.into()));
    if let Some(p) = s.parent_span_id {
        out.push_str("\",\"parentId\":\"");
        out.push_str(hex_digits(&mut [0; 16], p.0.into()));
    }
    out.push_str(match s.kind {
        SpanKind::Server => "\",\"kind\":\"SERVER\",\"name\":",
        SpanKind::Client => "\",\"kind\":\"CLIENT\",\"name\":",
    });
    json_str_parts(out, &t.span_name_parts(s));
    out.push_str(",\"timestamp\":");
    out.push_str(num.format(start_us));
    out.push_str(",\"duration\":");
    out.push_str(num.format(duration_us));
    out.push_str(",\"localEndpoint\":{\"serviceName\":");
    out.push_str(service_json);
    out.push('}');
    match s.peer {
        Some(SocketAddr::V4(a)) => {
            out.push_str(",\"remoteEndpoint\":{\"ipv4\":\"");
            push_ipv4(out, *a.ip());
            out.push_str("\",\"port\":");
            out.push_str(num.format(a.port()));
            out.push('}');
        }
        Some(SocketAddr::V6(a)) => {
            out.push_str(",\"remoteEndpoint\":{\"ipv6\":\"");
            out.push_str(&a.ip().to_string());
            out.push_str("\",\"port\":");
            out.push_str(num.format(a.port()));
            out.push('}');
        }
        None => {}
    }
    // Tags are strings in Zipkin.
    out.push_str(",\"tags\":{");
    let mut has_error = false;
    let mut first = true;
    t.for_each_own_tag(s, |k, v| {
        has_error |= k == "error";
        write_tag(out, &mut first, k, v);
    });
    if !shared_tags.is_empty() {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(shared_tags);
    }
    if s.error && !has_error {
        if !first {
            out.push(',');
        }
        out.push_str("\"error\":\"true\"");
    }
    out.push_str("}}");
}

/// Whether any of the 8 bytes in `w` must be escaped in a JSON string (a control
/// byte, `"` or `\\`): word-at-a-time, since span names and tags are mostly long
/// plain ASCII.
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Some byte below 0x20 (valid test for thresholds up to 0x80).
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero_byte(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(w ^ (ONES * u64::from(b'\\')));
    control | quote | backslash != 0
}

fn byte_needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The index of the first byte of `bytes` that must be escaped.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let mut w = [0; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        if word_needs_escape(u64::from_le_bytes(w)) {
            break;
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| byte_needs_escape(b))
        .map(|p| i + p)
}

/// A JSON string literal (RFC 8259 escapes).
fn json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    json_escaped(out, s);
    out.push('"');
}

/// One JSON string literal of the pieces of `parts`, one after the other.
fn json_str_parts(out: &mut String, parts: &[&str]) {
    out.push('"');
    for p in parts {
        json_escaped(out, p);
    }
    out.push('"');
}

/// `s` with RFC 8259 escapes, unquoted.
fn json_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut plain = 0;
    while let Some(off) = first_escape(&bytes[plain..]) {
        let i = plain + off;
        // Escaped bytes are ASCII, so `i` is a char boundary.
        out.push_str(&s[plain..i]);
        match bytes[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b => {
                out.push_str("\\u00");
                out.push_str(hex_digits(&mut [0; 2], b.into()));
            }
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::*;
    use super::super::Provider;
    use super::*;
    use crate::trace::{AttrValue, SpanId, TraceId};
    use serde_json::{json, Value};

    fn spans_posted(server: &HttpCollector) -> Vec<Value> {
        server
            .requests()
            .iter()
            .flat_map(|r| {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                v.as_array().unwrap().clone()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_arrive_as_zipkin_v2_json() {
        let server = HttpCollector::start(202, None).await;
        let (exp, stats) = started(config(Provider::Zipkin, server.addr.to_string()));
        let mut t = sample_trace(1, 2);
        t.trace_id = TraceId::from_hex("463ac35c9f6413ad48485a3953bb6124").unwrap();
        t.spans[0].parent_span_id = Some(SpanId(0x0020_0000_0000_0001));
        t.spans[1].peer = Some("[::1]:9000".parse().unwrap());
        assert!(exp.submit(Arc::new(t.clone())));
        wait_for("spans sent", || stats.spans_sent.get() == 3).await;
        assert_eq!(stats.reports_sent.get(), 1);

        let reqs = server.requests();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("POST", "/api/v2/spans")
        );
        assert_eq!(reqs[0].header("content-type"), Some("application/json"));
        let got = spans_posted(&server);
        assert_eq!(got.len(), 3);
        let server_span = &got[0];
        assert_eq!(server_span["traceId"], "463ac35c9f6413ad48485a3953bb6124");
        assert_eq!(server_span["id"], t.spans[0].span_id.to_string());
        assert_eq!(server_span["parentId"], "0020000000000001");
        assert_eq!(server_span["kind"], "SERVER");
        assert_eq!(server_span["name"], "GET /echo");
        assert_eq!(server_span["timestamp"], 1_700_000_000_000_000u64);
        assert_eq!(server_span["duration"], 25_250);
        assert_eq!(
            server_span["localEndpoint"]["serviceName"],
            "higress-gateway.higress-system"
        );
        assert_eq!(
            server_span["remoteEndpoint"],
            json!({"ipv4": "10.0.0.1", "port": 5555})
        );
        assert_eq!(server_span["tags"]["error"], "true");
        assert_eq!(
            server_span["tags"]["status_code"], "503",
            "tags are strings"
        );
        assert_eq!(server_span["tags"]["sampled"], "true");
        assert_eq!(server_span["tags"]["http.method"], "GET");
        for (c, want) in got[1..].iter().zip(&t.spans[1..]) {
            assert_eq!(c["traceId"], server_span["traceId"]);
            assert_eq!(c["id"], want.span_id.to_string());
            assert_eq!(c["parentId"], server_span["id"]);
            assert_eq!(c["kind"], "CLIENT");
            assert!(c["tags"].get("error").is_none());
        }
        assert_eq!(
            got[1]["remoteEndpoint"],
            json!({"ipv6": "::1", "port": 9000})
        );
        assert_eq!(
            got[2]["remoteEndpoint"],
            json!({"ipv4": "127.0.0.1", "port": 8001})
        );
        exp.drain(Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_share_one_kept_alive_connection() {
        let server = HttpCollector::start(202, None).await;
        let (exp, stats) = started(config(Provider::Zipkin, server.addr.to_string()));
        for i in 0..3 {
            assert!(exp.submit(Arc::new(sample_trace(i, 0))));
            wait_for("batch sent", || stats.reports_sent.get() == i + 1).await;
        }
        assert_eq!(server.requests().len(), 3);
        assert_eq!(
            server.connections.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        exp.drain(Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn collector_down_then_up_beyond_capacity_is_dropped_and_counted() {
        let (socket, addr) = reserved_port();
        let cfg = ExporterConfig {
            queue_capacity: 2,
            ..config(Provider::Zipkin, addr.to_string())
        };
        let (exp, stats) = started(cfg);
        assert!(exp.has_room());
        let accepted = (0..4)
            .filter(|&i| exp.submit(Arc::new(sample_trace(i, 1))))
            .count();
        assert_eq!(accepted, 2);
        assert_eq!(stats.dropped_queue_full.get(), 4);
        // Full: a request starting now is told so, and counts what it did not record.
        assert!(!exp.has_room());
        exp.dropped(3);
        assert_eq!(stats.dropped_queue_full.get(), 7);
        // The scenario, not a wait: the collector stays down for a few refused connects.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !exp.submit(Arc::new(sample_trace(9, 1))),
            "still full while down"
        );
        let server = HttpCollector::serve(socket.listen(64).unwrap(), 202, None);
        // The worker counts what it sent, then releases the batch from the queue gauge.
        wait_for("queued spans delivered", || {
            stats.spans_sent.get() == 4 && stats.queue_size.get() == 0
        })
        .await;
        assert_eq!(spans_posted(&server).len(), 4);
        assert!(exp.has_room());
        assert!(exp.submit(Arc::new(sample_trace(10, 1))), "room again");
        exp.drain(Duration::from_secs(5)).await;
        assert_eq!(spans_posted(&server).len(), 6);
        assert_eq!(stats.dropped_export_failed.get(), 0);
        assert_eq!(stats.dropped_queue_full.get(), 9);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusing_collector_means_no_room_until_a_connect_succeeds() {
        let (socket, addr) = reserved_port();
        let (exp, stats) = started(config(Provider::Zipkin, addr.to_string()));
        assert!(exp.has_room(), "room before anything was tried");
        assert!(exp.submit(Arc::new(sample_trace(0, 1))));
        // The first flush dials and is refused: requests are told not to record,
        // though the queue is nearly empty.
        wait_for("the refused connect", || stats.errors.connect.get() >= 1).await;
        assert!(!exp.has_room());
        // The held batch keeps the exporter retrying; once the collector listens the
        // connect succeeds and there is room again.
        let server = HttpCollector::serve(socket.listen(64).unwrap(), 202, None);
        wait_for("the held batch delivered", || stats.spans_sent.get() == 2).await;
        assert!(exp.has_room());
        exp.drain(Duration::from_secs(5)).await;
        assert_eq!(spans_posted(&server).len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_collector_times_out_batches_and_drain_stays_bounded() {
        let server = HttpCollector::start(202, Some(Duration::from_secs(30))).await;
        let cfg = ExporterConfig {
            timeout: Duration::from_millis(300),
            ..config(Provider::Zipkin, server.addr.to_string())
        };
        let (exp, stats) = started(cfg);
        assert!(exp.submit(Arc::new(sample_trace(1, 1))));
        wait_for("timed-out batch counted and released", || {
            stats.dropped_export_failed.get() == 2 && stats.queue_size.get() == 0
        })
        .await;
        assert_eq!(stats.reports_dropped.get(), 1);
        assert_eq!(stats.errors.timeout.get(), 1);
        assert_eq!(stats.reports_failed.get(), 0);
        // A drain while the collector hangs still ends within its bound.
        let t0 = std::time::Instant::now();
        assert!(exp.submit(Arc::new(sample_trace(2, 1))));
        exp.drain(Duration::from_millis(500)).await;
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(stats.dropped_export_failed.get(), 4);
        assert_eq!(stats.spans_sent.get(), 0);
    }

    #[test]
    fn escaping_agrees_with_serde_json_for_every_byte_at_every_offset() {
        // Each ASCII byte (and a multi-byte char) at each position of a word and of
        // the tail, so the word-at-a-time scan is checked against the plain rule.
        let mut samples: Vec<String> = Vec::new();
        for c in (0u8..0x80).map(char::from).chain(['é', '€']) {
            for pad in 0..17 {
                samples.push(format!("{}{c}{}", "a".repeat(pad), "b".repeat(3)));
            }
        }
        for s in samples {
            let mut out = String::new();
            json_str(&mut out, &s);
            assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn body_is_valid_json_with_escapes() {
        let mut t = sample_trace(1, 1);
        t.spans[0].name = "GET /a\"b\\c\n\u{1}é".into();
        t.spans[0].attributes = vec![
            (
                "http.url".into(),
                AttrValue::Str("http://h/?q=\"x\"".to_string().into()),
            ),
            ("n".into(), AttrValue::Int(-3)),
            ("b".into(), AttrValue::Bool(true)),
            ("s".into(), AttrValue::Shared("a\"\\b".into())),
            ("a4".into(), AttrValue::Addr("10.0.0.1:80".parse().unwrap())),
            ("a6".into(), AttrValue::Addr("[::1]:9000".parse().unwrap())),
            ("i4".into(), AttrValue::Ip("192.168.100.7".parse().unwrap())),
            ("i6".into(), AttrValue::Ip("fe80::1".parse().unwrap())),
        ];
        t.spans[0].error = true;
        t.spans[1].peer = None;
        t.spans[1].attributes.clear();
        t.spans[1].error = true;
        let mut out = String::new();
        let mut service = String::new();
        json_str(&mut service, "svc\"x");
        assert_eq!(write_spans(&mut out, &[Arc::new(t.clone())], &service), 2);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["name"], "GET /a\"b\\c\n\u{1}é");
        assert_eq!(v[0]["localEndpoint"]["serviceName"], "svc\"x");
        assert_eq!(
            v[0]["tags"],
            json!({"http.url": "http://h/?q=\"x\"", "n": "-3", "b": "true", "s": "a\"\\b",
                   "a4": "10.0.0.1:80", "a6": "[::1]:9000", "i4": "192.168.100.7",
                   "i6": "fe80::1", "error": "true"})
        );
        assert!(
            v[1].get("remoteEndpoint").is_none(),
            "a host name is no endpoint"
        );
        assert_eq!(v[1]["tags"], json!({"error": "true"}));
        let mut empty = String::new();
        assert_eq!(write_spans(&mut empty, &[], "\"svc\""), 0);
        assert_eq!(empty, "[]");
    }
}
