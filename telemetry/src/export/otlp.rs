//! OpenTelemetry: OTLP traces over gRPC (`TraceService/Export`) or, with
//! `otlp_http`, OTLP/HTTP protobuf (`POST /v1/traces`).
//!
//! Built from opentelemetry-proto's generated types rather than the SDK's `SpanData`
//! and opentelemetry-otlp: our spans are already finished with their ids, times and
//! kinds, and going through the SDK would add its batch processor (a second queue
//! whose drops our `dropped_*` stats could not count), its runtime and an HTTP client
//! stack, only to produce the same messages.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use tonic::transport::Channel;

use super::net::{self, Error, HttpClient};
use super::sent::Sent;
use super::{trace_id_u128, unix_nanos, ExporterConfig};
use crate::trace::{RequestTrace, SpanKind, Tag};

/// W3C trace flags `sampled`; only sampled requests are exported.
const FLAG_SAMPLED: u32 = 0x01;
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` / `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`:
/// whether the parent is known to be remote (the server span's caller) or local.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

enum Mode {
    Grpc(Option<TraceServiceClient<Channel>>),
    Http(HttpClient),
}

pub(crate) struct Client {
    authority: Arc<str>,
    resource: Resource,
    mode: Mode,
}

impl Client {
    pub(crate) fn new(cfg: &ExporterConfig) -> Self {
        let authority = net::authority(&cfg.endpoint);
        let mode = if cfg.otlp_http {
            Mode::Http(HttpClient::new(authority.clone()))
        } else {
            Mode::Grpc(None)
        };
        Client {
            authority,
            resource: resource(&cfg.service_name, &cfg.instance),
            mode,
        }
    }

    pub(crate) fn connected(&self) -> bool {
        match &self.mode {
            Mode::Grpc(c) => c.is_some(),
            Mode::Http(c) => c.connected(),
        }
    }

    pub(crate) async fn connect(&mut self) -> Result<(), Error> {
        match &mut self.mode {
            Mode::Grpc(c) => {
                *c = Some(TraceServiceClient::new(
                    net::grpc_channel(&self.authority).await?,
                ));
                Ok(())
            }
            Mode::Http(c) => c.connect().await,
        }
    }

    pub(crate) fn disconnect(&mut self) {
        match &mut self.mode {
            Mode::Grpc(c) => *c = None,
            Mode::Http(c) => c.disconnect(),
        }
    }

    pub(crate) async fn export(&mut self, batch: &[Arc<RequestTrace>]) -> Result<Sent, Error> {
        let req = request(&self.resource, batch);
        let spans = batch.iter().map(|t| t.spans.len() as u64).sum::<u64>();
        let resp = match &mut self.mode {
            Mode::Grpc(c) => {
                let c = c.as_mut().ok_or("not connected")?;
                c.export(tonic::Request::new(req)).await?.into_inner()
            }
            Mode::Http(c) => {
                let body = Bytes::from(req.encode_to_vec());
                let answer = c.post("/v1/traces", "application/x-protobuf", body).await?;
                // A collector may answer 200 with an empty body; that is full success.
                ExportTraceServiceResponse::decode(answer).unwrap_or_default()
            }
        };
        let rejected = resp.partial_success.map_or(0, |p| {
            if p.rejected_spans > 0 || !p.error_message.is_empty() {
                tracing::warn!(
                    rejected = p.rejected_spans,
                    message = %p.error_message,
                    "OTLP collector rejected part of a report"
                );
            }
            p.rejected_spans.clamp(0, spans as i64) as u64
        });
        Ok(Sent {
            units: spans - rejected,
            rejected_spans: rejected,
        })
    }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

fn resource(service: &str, instance: &str) -> Resource {
    Resource {
        attributes: vec![
            kv(
                "service.name",
                any_value::Value::StringValue(service.into()),
            ),
            kv(
                "service.instance.id",
                any_value::Value::StringValue(instance.into()),
            ),
            kv("host.name", any_value::Value::StringValue(instance.into())),
        ],
        ..Default::default()
    }
}

/// One `ResourceSpans` (the gateway) with one scope holding every span of the batch.
pub(crate) fn request(
    resource: &Resource,
    batch: &[Arc<RequestTrace>],
) -> ExportTraceServiceRequest {
    let spans = batch.iter().flat_map(|t| spans(t)).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "higress-gateway".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn spans(t: &RequestTrace) -> impl Iterator<Item = Span> + '_ {
    let trace_id = trace_id_u128(&t.trace_id).to_be_bytes().to_vec();
    let trace_state = t.tracestate.clone().unwrap_or_default();
    t.spans.iter().map(move |s| {
        let (kind, remote_parent) = match s.kind {
            SpanKind::Server => (span::SpanKind::Server, s.parent_span_id.is_some()),
            SpanKind::Client => (span::SpanKind::Client, false),
        };
        let mut flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
        if remote_parent {
            flags |= FLAG_IS_REMOTE;
        }
        Span {
            trace_id: trace_id.clone(),
            span_id: s.span_id.0.to_be_bytes().to_vec(),
            trace_state: trace_state.clone(),
            parent_span_id: s
                .parent_span_id
                .map(|p| p.0.to_be_bytes().to_vec())
                .unwrap_or_default(),
            flags,
            name: t.span_name(s).into_owned(),
            kind: kind as i32,
            start_time_unix_nano: unix_nanos(s.start),
            end_time_unix_nano: unix_nanos(s.end),
            attributes: {
                let mut a = Vec::with_capacity(12);
                t.for_each_tag(s, |k, v| {
                    a.push(kv(
                        k,
                        match v {
                            Tag::Int(i) => any_value::Value::IntValue(i),
                            Tag::Bool(b) => any_value::Value::BoolValue(b),
                            text => any_value::Value::StringValue(text.text().into_owned()),
                        },
                    ))
                });
                a
            },
            status: s.error.then(|| Status {
                code: status::StatusCode::Error as i32,
                message: String::new(),
            }),
            ..Default::default()
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
    use tonic::{Request, Response, Status as GrpcStatus};

    use super::super::test_support::*;
    use super::super::Provider;
    use super::*;
    use crate::trace::{SpanId, TraceId};

    #[derive(Clone, Default)]
    struct Collector {
        seen: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
        /// Spans to report as rejected in each answer.
        reject: i64,
    }

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            req: Request<ExportTraceServiceRequest>,
        ) -> Result<Response<ExportTraceServiceResponse>, GrpcStatus> {
            self.seen.lock().unwrap().push(req.into_inner());
            Ok(Response::new(ExportTraceServiceResponse {
                partial_success: (self.reject > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: self.reject,
                    error_message: "too old".into(),
                }),
            }))
        }
    }

    fn all_spans(reqs: &[ExportTraceServiceRequest]) -> Vec<Span> {
        reqs.iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }

    fn attr<'a>(attrs: &'a [KeyValue], k: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|a| a.key == k)?
            .value
            .as_ref()?
            .value
            .as_ref()
    }

    /// A request that arrived with a W3C parent and `tracestate`, plus a new one.
    fn traces() -> (RequestTrace, RequestTrace) {
        let mut child = sample_trace(1, 2);
        child.trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        child.spans[0].parent_span_id = Some(SpanId(0x00f0_67aa_0ba9_02b7));
        child.tracestate = Some("congo=t61rcWkgMzE".into());
        (child, sample_trace(2, 1))
    }

    fn check(reqs: &[ExportTraceServiceRequest], child: &RequestTrace, root: &RequestTrace) {
        let rs = &reqs[0].resource_spans[0];
        let res = rs.resource.as_ref().unwrap();
        assert_eq!(
            attr(&res.attributes, "service.name"),
            Some(&any_value::Value::StringValue(
                "higress-gateway.higress-system".into()
            ))
        );
        assert_eq!(
            attr(&res.attributes, "host.name"),
            Some(&any_value::Value::StringValue("gw-0".into()))
        );
        assert_eq!(
            attr(&res.attributes, "service.instance.id"),
            Some(&any_value::Value::StringValue("gw-0".into()))
        );
        let spans = all_spans(reqs);
        assert_eq!(spans.len(), 5);
        let by_id = |id: SpanId| {
            spans
                .iter()
                .find(|s| s.span_id == id.0.to_be_bytes())
                .unwrap()
        };

        let server = by_id(child.spans[0].span_id);
        assert_eq!(hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&server.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(server.kind, span::SpanKind::Server as i32);
        assert_eq!(server.flags, 0x301, "sampled, remote parent");
        assert_eq!(server.trace_state, "congo=t61rcWkgMzE");
        assert_eq!(server.name, "GET /echo");
        assert_eq!(server.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(server.end_time_unix_nano, 1_700_000_000_025_250_000);
        assert_eq!(
            server.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_eq!(
            attr(&server.attributes, "status_code"),
            Some(&any_value::Value::IntValue(503))
        );
        assert_eq!(
            attr(&server.attributes, "sampled"),
            Some(&any_value::Value::BoolValue(true))
        );
        assert_eq!(
            attr(&server.attributes, "http.method"),
            Some(&any_value::Value::StringValue("GET".into()))
        );
        for c in &child.spans[1..] {
            let client = by_id(c.span_id);
            assert_eq!(client.trace_id, server.trace_id);
            assert_eq!(client.parent_span_id, server.span_id);
            assert_eq!(client.kind, span::SpanKind::Client as i32);
            assert_eq!(client.flags, 0x101, "sampled, local parent");
            assert!(client.status.is_none());
        }
        let root_server = by_id(root.spans[0].span_id);
        assert!(
            root_server.parent_span_id.is_empty(),
            "a new trace's root has no parent"
        );
        assert_eq!(
            root_server.trace_id,
            root.trace_id.as_u128().unwrap().to_be_bytes()
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn serve_grpc(c: Collector) -> String {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let addr = std.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(std).unwrap();
        let incoming =
            tonic::transport::server::TcpIncoming::from_listener(listener, true, None).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(c))
                .serve_with_incoming(incoming),
        );
        addr.to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_export_carries_resource_kinds_parents_status_and_typed_attributes() {
        let c = Collector::default();
        let endpoint = serve_grpc(c.clone());
        let (exp, stats) = started(config(Provider::OpenTelemetry, endpoint));
        let (child, root) = traces();
        assert!(exp.submit(Arc::new(child.clone())));
        assert!(exp.submit(Arc::new(root.clone())));
        wait_for("spans sent", || stats.spans_sent.get() == 5).await;
        let reqs = c.seen.lock().unwrap().clone();
        assert_eq!(reqs.len(), 1, "one batch, one Export");
        check(&reqs, &child, &root);
        assert_eq!(stats.reports_sent.get(), 1);
        exp.drain(Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_the_collector_rejects_are_counted_as_dropped() {
        let c = Collector {
            reject: 1,
            ..Default::default()
        };
        let endpoint = serve_grpc(c.clone());
        let (exp, stats) = started(config(Provider::OpenTelemetry, endpoint));
        assert!(exp.submit(Arc::new(sample_trace(1, 2))));
        exp.drain(Duration::from_secs(5)).await;
        assert_eq!(stats.spans_sent.get(), 2);
        assert_eq!(stats.dropped_export_failed.get(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_export_posts_protobuf_to_v1_traces() {
        let server = HttpCollector::start(200, None).await;
        let cfg = ExporterConfig {
            otlp_http: true,
            ..config(Provider::OpenTelemetry, server.addr.to_string())
        };
        let (exp, stats) = started(cfg);
        let (child, root) = traces();
        assert!(exp.submit(Arc::new(child.clone())));
        assert!(exp.submit(Arc::new(root.clone())));
        exp.drain(Duration::from_secs(5)).await;
        let posts = server.requests();
        assert_eq!(posts.len(), 1);
        let p = &posts[0];
        assert_eq!((p.method.as_str(), p.path.as_str()), ("POST", "/v1/traces"));
        assert_eq!(p.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(p.header("host"), Some(server.addr.to_string().as_str()));
        let req = ExportTraceServiceRequest::decode(p.body.clone()).unwrap();
        check(&[req], &child, &root);
        assert_eq!(stats.spans_sent.get(), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_error_status_drops_the_batch() {
        let server = HttpCollector::start(503, None).await;
        let cfg = ExporterConfig {
            otlp_http: true,
            ..config(Provider::OpenTelemetry, server.addr.to_string())
        };
        let (exp, stats) = started(cfg);
        assert!(exp.submit(Arc::new(sample_trace(1, 1))));
        wait_for("failure counted", || stats.dropped_export_failed.get() == 2).await;
        // An answer that is not a success: a dropped report (Envoy's non-202), reason
        // `status`.
        assert_eq!(stats.reports_dropped.get(), 1);
        assert_eq!(stats.errors.status.get(), 1);
        assert_eq!(stats.reports_failed.get(), 0);
        assert_eq!(stats.spans_sent.get(), 0);
        exp.drain(Duration::from_secs(1)).await;
        assert_eq!(server.requests().len(), 1, "not retried");
    }

    #[test]
    fn a_skywalking_text_trace_id_maps_to_a_stable_128_bit_id() {
        let mut t = sample_trace(1, 1);
        t.trace_id = TraceId::Text("a4ec.79.1621838110455".into());
        let a: Vec<_> = spans(&t).collect();
        let b: Vec<_> = spans(&t).collect();
        assert_eq!(a[0].trace_id.len(), 16);
        assert_eq!(a[0].trace_id, b[0].trace_id);
        assert_eq!(a[0].trace_id, a[1].trace_id);
        assert_ne!(a[0].trace_id, [0u8; 16]);
    }
}
