//! OpenTelemetry: OTLP traces over gRPC (`TraceService/Export`) or, with
//! `otlp_http`, OTLP/HTTP protobuf (`POST /v1/traces`).
//!
//! Written straight in protobuf wire format (`wire`) rather than through the SDK's
//! `SpanData` and opentelemetry-otlp: our spans are already finished with their ids,
//! times and kinds, and going through the SDK would add its batch processor (a second
//! queue whose drops our `dropped_*` stats could not count), its runtime and an HTTP
//! client stack, only to produce the same messages. Answers are decoded with
//! opentelemetry-proto's generated types.

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::transport::Channel;

use super::net::{self, Encoded, Error, HttpClient};
use super::sent::Sent;
use super::ExporterConfig;
use crate::trace::RequestTrace;

mod wire;

const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

enum Mode {
    Grpc(Option<tonic::client::Grpc<Channel>>),
    Http(HttpClient),
}

pub(crate) struct Client {
    authority: Arc<str>,
    encoder: wire::Encoder,
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
            encoder: wire::Encoder::new(&cfg.service_name, &cfg.instance),
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
                *c = Some(tonic::client::Grpc::new(
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
        let body = self.encoder.request(batch);
        let spans = batch.iter().map(|t| t.spans.len() as u64).sum::<u64>();
        let resp = match &mut self.mode {
            Mode::Grpc(c) => export_grpc(c.as_mut().ok_or("not connected")?, body).await?,
            Mode::Http(c) => {
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

/// `TraceService/Export` with an encoded request, as the generated
/// `TraceServiceClient::export` makes the call (the same readiness error, method
/// extension, path and answer decoding), so errors are the same `tonic::Status`es.
async fn export_grpc(
    c: &mut tonic::client::Grpc<Channel>,
    body: Bytes,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    c.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let mut req = tonic::Request::new(body);
    req.extensions_mut()
        .insert(tonic::GrpcMethod::new(SERVICE, "Export"));
    let path = PathAndQuery::from_static(EXPORT_PATH);
    Ok(c.unary(req, path, Encoded::default()).await?.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest,
    };
    use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
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
        /// Answer every export with this status instead.
        fail: Option<tonic::Code>,
    }

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            req: Request<ExportTraceServiceRequest>,
        ) -> Result<Response<ExportTraceServiceResponse>, GrpcStatus> {
            self.seen.lock().unwrap().push(req.into_inner());
            if let Some(code) = self.fail {
                return Err(GrpcStatus::new(code, "refused"));
            }
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

    /// The answer's status still reaches the worker as a `tonic::Status`: a refusal is
    /// the collector's answer, `Unavailable` a broken connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_error_statuses_are_classified_as_before() {
        for (code, answered) in [
            (tonic::Code::InvalidArgument, true),
            (tonic::Code::Unavailable, false),
        ] {
            let c = Collector {
                fail: Some(code),
                ..Default::default()
            };
            let endpoint = serve_grpc(c.clone());
            let (exp, stats) = started(config(Provider::OpenTelemetry, endpoint));
            assert!(exp.submit(Arc::new(sample_trace(1, 1))));
            wait_for("failure counted", || stats.dropped_export_failed.get() == 2).await;
            assert_eq!(c.seen.lock().unwrap().len(), 1);
            assert_eq!(stats.spans_sent.get(), 0);
            assert_eq!(stats.errors.status.get(), u64::from(answered), "{code:?}");
            assert_eq!(stats.reports_dropped.get(), u64::from(answered));
            assert_eq!(stats.errors.reset.get(), u64::from(!answered));
            assert_eq!(stats.reports_failed.get(), u64::from(!answered));
            exp.drain(Duration::from_secs(1)).await;
        }
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
}
