//! Zipkin: v2 JSON spans, `POST /api/v2/spans`, on one kept-alive HTTP/1.1
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::net::{self, Error, HttpClient};
use super::skywalking::attr_string;
use super::worker::Sent;
use super::{trace_id_u128, unix_nanos, ExporterConfig};
use crate::trace::{RequestTrace, SpanKind};

pub(crate) struct Client {
    http: HttpClient,
    service: String,
}

impl Client {
    pub(crate) fn new(cfg: &ExporterConfig) -> Self {
        Client {
            http: HttpClient::new(net::authority(&cfg.endpoint)),
            service: cfg.service_name.clone(),
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
        let spans: Vec<Value> = batch.iter().flat_map(|t| spans(t, &self.service)).collect();
        let n = spans.len() as u64;
        let body = Bytes::from(serde_json::to_vec(&spans)?);
        self.http
            .post("/api/v2/spans", "application/json", body)
            .await?;
        Ok(Sent {
            units: n,
            rejected_spans: 0,
        })
    }
}

/// The request's spans in Zipkin v2 form.
pub(crate) fn spans<'a>(t: &'a RequestTrace, service: &'a str) -> impl Iterator<Item = Value> + 'a {
    let trace_id = format!("{:032x}", trace_id_u128(&t.trace_id));
    t.spans.iter().map(move |s| {
        let start_us = unix_nanos(s.start) / 1000;
        // Zipkin wants a positive duration when one is given.
        let duration_us = (unix_nanos(s.end) / 1000).saturating_sub(start_us).max(1);
        let mut tags = Map::new();
        for (k, v) in &s.attributes {
            tags.insert(k.to_string(), Value::String(attr_string(v)));
        }
        if s.error && !tags.contains_key("error") {
            tags.insert("error".into(), Value::String("true".into()));
        }
        let mut span = json!({
            "traceId": trace_id,
            "id": s.span_id.to_string(),
            "kind": match s.kind { SpanKind::Server => "SERVER", SpanKind::Client => "CLIENT" },
            "name": s.name,
            "timestamp": start_us,
            "duration": duration_us,
            "localEndpoint": { "serviceName": service },
            "tags": tags,
        });
        if let Some(p) = s.parent_span_id {
            span["parentId"] = Value::String(p.to_string());
        }
        if let Some(ep) = s.peer.as_deref().and_then(remote_endpoint) {
            span["remoteEndpoint"] = ep;
        }
        span
    })
}

/// `ip:port` as a Zipkin endpoint; anything else (a host name) is left out, since
/// Zipkin's endpoint takes only addresses besides a service name.
fn remote_endpoint(peer: &str) -> Option<Value> {
    let addr: SocketAddr = peer.parse().ok()?;
    Some(match addr {
        SocketAddr::V4(a) => json!({ "ipv4": a.ip().to_string(), "port": a.port() }),
        SocketAddr::V6(a) => json!({ "ipv6": a.ip().to_string(), "port": a.port() }),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::*;
    use super::super::{ExportStats, Exporter, Provider};
    use super::*;
    use crate::trace::{SpanId, TraceId};

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
        let stats = ExportStats::default();
        let exp = Exporter::start(
            config(Provider::Zipkin, server.addr.to_string()),
            stats.clone(),
            &tokio::runtime::Handle::current(),
        );
        let mut t = sample_trace(1, 2);
        t.trace_id = TraceId::from_hex("463ac35c9f6413ad48485a3953bb6124").unwrap();
        t.spans[0].parent_span_id = Some(SpanId(0x0020_0000_0000_0001));
        t.spans[1].peer = Some("[::1]:9000".into());
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
        let stats = ExportStats::default();
        let exp = Exporter::start(
            config(Provider::Zipkin, server.addr.to_string()),
            stats.clone(),
            &tokio::runtime::Handle::current(),
        );
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
        let stats = ExportStats::default();
        let cfg = ExporterConfig {
            queue_capacity: 2,
            ..config(Provider::Zipkin, addr.to_string())
        };
        let exp = Exporter::start(cfg, stats.clone(), &tokio::runtime::Handle::current());
        let accepted = (0..4)
            .filter(|&i| exp.submit(Arc::new(sample_trace(i, 1))))
            .count();
        assert_eq!(accepted, 2);
        assert_eq!(stats.dropped_queue_full.get(), 4);
        // The scenario, not a wait: the collector stays down for a few refused connects.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !exp.submit(Arc::new(sample_trace(9, 1))),
            "still full while down"
        );
        let server = HttpCollector::serve(socket.listen(64).unwrap(), 202, None);
        wait_for("queued spans delivered", || stats.spans_sent.get() == 4).await;
        assert_eq!(spans_posted(&server).len(), 4);
        assert_eq!(stats.queue_size.get(), 0);
        assert!(exp.submit(Arc::new(sample_trace(10, 1))), "room again");
        exp.drain(Duration::from_secs(5)).await;
        assert_eq!(spans_posted(&server).len(), 6);
        assert_eq!(stats.dropped_export_failed.get(), 0);
        assert_eq!(stats.dropped_queue_full.get(), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_collector_times_out_batches_and_drain_stays_bounded() {
        let server = HttpCollector::start(202, Some(Duration::from_secs(30))).await;
        let stats = ExportStats::default();
        let cfg = ExporterConfig {
            timeout: Duration::from_millis(300),
            ..config(Provider::Zipkin, server.addr.to_string())
        };
        let exp = Exporter::start(cfg, stats.clone(), &tokio::runtime::Handle::current());
        assert!(exp.submit(Arc::new(sample_trace(1, 1))));
        wait_for("timed-out batch counted", || {
            stats.dropped_export_failed.get() == 2
        })
        .await;
        assert_eq!(stats.reports_failed.get(), 1);
        assert_eq!(stats.queue_size.get(), 0);
        // A drain while the collector hangs still ends within its bound.
        let t0 = std::time::Instant::now();
        assert!(exp.submit(Arc::new(sample_trace(2, 1))));
        exp.drain(Duration::from_millis(500)).await;
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(stats.dropped_export_failed.get(), 4);
        assert_eq!(stats.spans_sent.get(), 0);
    }

    #[test]
    fn remote_endpoint_only_for_addresses() {
        assert!(remote_endpoint("backend.default:80").is_none());
        assert_eq!(remote_endpoint("1.2.3.4:80").unwrap()["ipv4"], "1.2.3.4");
    }
}
