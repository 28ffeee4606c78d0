//! SkyWalking: one segment per request, reported over the native gRPC
//! `/skywalking.v3.TraceSegmentReportService/collect`, shaped as Envoy's SkyWalking
//! tracer shapes it (entry span 0, exit spans 1.. under it, layer Http, component
//! 9000 = EnvoyProxy, the `sw8` parent as the entry span's cross-process ref).
//!
//! Each batch goes on its own client stream over the kept channel, so the
//! collector's `Commands` answer confirms the whole batch arrived. (Envoy keeps one
//! stream open forever and never learns whether a segment was taken.)
//!
//! Segments are written straight in protobuf wire format (`wire`) and go on the
//! stream as they are; only the `Commands` answer is decoded, with the skywalking
//! crate's generated type.

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use skywalking::proto::v3::Commands;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;

use super::net::{self, Encoded, Error};
use super::sent::Sent;
use super::ExporterConfig;
use crate::trace::RequestTrace;

mod wire;

const SERVICE: &str = "skywalking.v3.TraceSegmentReportService";
const COLLECT_PATH: &str = "/skywalking.v3.TraceSegmentReportService/collect";

pub(crate) struct Client {
    authority: Arc<str>,
    token: Option<AsciiMetadataValue>,
    encoder: wire::Encoder,
    client: Option<tonic::client::Grpc<Channel>>,
}

impl Client {
    pub(crate) fn new(cfg: &ExporterConfig) -> Self {
        let token = cfg
            .access_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .and_then(|t| {
                MetadataValue::try_from(t)
                    .map_err(|_| {
                        tracing::warn!("SkyWalking access token is not valid metadata; not sent")
                    })
                    .ok()
            });
        Client {
            authority: net::authority(&cfg.endpoint),
            token,
            encoder: wire::Encoder::new(&cfg.service_name, &cfg.instance),
            client: None,
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.client.is_some()
    }

    pub(crate) async fn connect(&mut self) -> Result<(), Error> {
        let ch = net::grpc_channel(&self.authority).await?;
        self.client = Some(tonic::client::Grpc::new(ch));
        Ok(())
    }

    pub(crate) fn disconnect(&mut self) {
        self.client = None;
    }

    pub(crate) async fn export(&mut self, batch: &[Arc<RequestTrace>]) -> Result<Sent, Error> {
        let client = self.client.as_mut().ok_or("not connected")?;
        let segments = self.encoder.segments(batch);
        collect(client, segments, self.token.as_ref()).await?;
        Ok(Sent {
            units: batch.len() as u64,
            rejected_spans: 0,
        })
    }
}

/// `TraceSegmentReportService/collect` with encoded segments, as the generated
/// `TraceSegmentReportServiceClient::collect` makes the call (the same readiness
/// error, method extension, path and answer decoding), so errors are the same
/// `tonic::Status`es.
async fn collect(
    c: &mut tonic::client::Grpc<Channel>,
    segments: Vec<Bytes>,
    token: Option<&AsciiMetadataValue>,
) -> Result<Commands, tonic::Status> {
    c.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let mut req = tonic::Request::new(tokio_stream::iter(segments));
    if let Some(tok) = token {
        req.metadata_mut().insert("authentication", tok.clone());
    }
    req.extensions_mut()
        .insert(tonic::GrpcMethod::new(SERVICE, "collect"));
    let path = PathAndQuery::from_static(COLLECT_PATH);
    Ok(c.client_streaming(req, path, Encoded::default())
        .await?
        .into_inner())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::time::Duration;

    use skywalking::proto::v3::{RefType, SegmentObject, SpanLayer, SpanObject, SpanType};
    use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
    use tonic::server::NamedService;
    use tonic::{Request, Response, Status, Streaming};

    use super::super::test_support::*;
    use super::super::Provider;
    use super::*;
    use crate::trace::TraceId;

    /// What the test collector saw: each stream's segments and its `authentication`.
    #[derive(Default)]
    struct Seen {
        streams: Mutex<Vec<(Option<String>, Vec<SegmentObject>)>>,
    }

    impl Seen {
        fn segments(&self) -> Vec<SegmentObject> {
            let s = self.streams.lock().unwrap();
            s.iter().flat_map(|(_, v)| v.clone()).collect()
        }
    }

    /// A `TraceSegmentReportService` on tonic's server, decoding the skywalking
    /// crate's own message types (the crate ships only a client). `delay` makes it
    /// slower than the exporter's timeout.
    #[derive(Clone)]
    struct Collector {
        seen: Arc<Seen>,
        delay: Option<Duration>,
    }

    impl NamedService for Collector {
        const NAME: &'static str = "skywalking.v3.TraceSegmentReportService";
    }

    struct Collect(Collector);

    impl tonic::server::ClientStreamingService<SegmentObject> for Collect {
        type Response = Commands;
        type Future = BoxFuture<Response<Commands>, Status>;

        fn call(&mut self, req: Request<Streaming<SegmentObject>>) -> Self::Future {
            let c = self.0.clone();
            Box::pin(async move {
                let auth = req
                    .metadata()
                    .get("authentication")
                    .map(|v| v.to_str().unwrap().to_string());
                let mut stream = req.into_inner();
                let mut got = Vec::new();
                while let Some(seg) = stream.message().await? {
                    got.push(seg);
                }
                if let Some(d) = c.delay {
                    tokio::time::sleep(d).await;
                }
                c.seen.streams.lock().unwrap().push((auth, got));
                Ok(Response::new(Commands::default()))
            })
        }
    }

    impl<B> Service<http::Request<B>> for Collector
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::BoxBody>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let this = self.clone();
            Box::pin(async move {
                if req.uri().path() != "/skywalking.v3.TraceSegmentReportService/collect" {
                    return Ok(Status::unimplemented(req.uri().path().to_string()).into_http());
                }
                let codec = tonic::codec::ProstCodec::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.client_streaming(Collect(this), req).await)
            })
        }
    }

    fn serve(listener: tokio::net::TcpListener, delay: Option<Duration>) -> Arc<Seen> {
        let seen = Arc::new(Seen::default());
        let svc = Collector {
            seen: seen.clone(),
            delay,
        };
        let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)
            .expect("incoming");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming),
        );
        seen
    }

    fn sw_cfg(endpoint: String) -> ExporterConfig {
        ExporterConfig {
            access_token: Some("secret-token".into()),
            ..config(Provider::SkyWalking, endpoint)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn segments_arrive_shaped_as_envoy_reports_them() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = serve(listener, None);
        let (exp, stats) = started(sw_cfg(addr.to_string()));

        let mut child = sample_trace(1, 2);
        child.trace_id = TraceId::Text("a4ec.79.1621838110455".into());
        child.sw_parent = Some(crate::trace::SwParent {
            segment_id: "parent-seg".into(),
            span_id: 3,
            service: "onemore-a".into(),
            instance: "inst-a".into(),
            endpoint: "/onemore-a/get".into(),
            address: "192.168.1.102:80".into(),
        });
        let root = sample_trace(2, 1);
        assert!(exp.submit(Arc::new(child.clone())));
        assert!(exp.submit(Arc::new(root.clone())));
        wait_for("two segments", || seen.segments().len() == 2).await;
        // The worker counts what it sent, then releases the batch from the queue gauge.
        wait_for("counters", || {
            stats.spans_sent.get() == 2 && stats.queue_size.get() == 0
        })
        .await;
        assert_eq!(stats.reports_sent.get(), 1, "one batch, one stream");

        let auth = seen.streams.lock().unwrap()[0].0.clone();
        assert_eq!(auth.as_deref(), Some("secret-token"));
        let segs = seen.segments();
        let seg = segs
            .iter()
            .find(|s| s.trace_segment_id == child.segment_id)
            .unwrap();
        assert_eq!(seg.trace_id, "a4ec.79.1621838110455");
        assert_eq!(seg.service, "higress-gateway.higress-system");
        assert_eq!(seg.service_instance, "gw-0");
        assert_eq!(seg.spans.len(), 3);
        let entry = &seg.spans[0];
        assert_eq!((entry.span_id, entry.parent_span_id), (0, -1));
        assert_eq!(entry.span_type, SpanType::Entry as i32);
        assert_eq!(entry.span_layer, SpanLayer::Http as i32);
        assert_eq!(entry.component_id, 9000);
        assert_eq!(entry.operation_name, child.spans[0].name);
        assert_eq!(entry.start_time, 1_700_000_000_000);
        assert_eq!(entry.end_time, 1_700_000_000_025);
        assert!(entry.is_error);
        assert_eq!(entry.peer, "10.0.0.1:5555");
        let r = &entry.refs[0];
        assert_eq!(r.ref_type, RefType::CrossProcess as i32);
        assert_eq!(r.trace_id, "a4ec.79.1621838110455");
        assert_eq!(r.parent_trace_segment_id, "parent-seg");
        assert_eq!(r.parent_span_id, 3);
        assert_eq!(r.parent_service, "onemore-a");
        assert_eq!(r.parent_service_instance, "inst-a");
        assert_eq!(r.parent_endpoint, "/onemore-a/get");
        assert_eq!(r.network_address_used_at_peer, "192.168.1.102:80");
        let tag =
            |s: &SpanObject, k: &str| s.tags.iter().find(|t| t.key == k).map(|t| t.value.clone());
        assert_eq!(tag(entry, "http.method").as_deref(), Some("GET"));
        assert_eq!(tag(entry, "status_code").as_deref(), Some("503"));
        assert_eq!(tag(entry, "sampled").as_deref(), Some("true"));
        for (i, exit) in seg.spans[1..].iter().enumerate() {
            assert_eq!(exit.span_id, i as i32 + 1);
            assert_eq!(exit.parent_span_id, 0);
            assert_eq!(exit.span_type, SpanType::Exit as i32);
            assert_eq!(exit.component_id, 9000);
            assert_eq!(exit.peer, format!("127.0.0.1:{}", 8000 + i));
            assert!(exit.refs.is_empty());
        }
        let root_seg = segs
            .iter()
            .find(|s| s.trace_segment_id == root.segment_id)
            .unwrap();
        assert_eq!(root_seg.trace_id, root.trace_id.to_string());
        assert!(
            root_seg.spans[0].refs.is_empty(),
            "a new trace has no parent ref"
        );
        exp.drain(Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn collector_down_at_start_queues_to_capacity_then_delivers() {
        let (socket, addr) = reserved_port();
        let cfg = ExporterConfig {
            queue_capacity: 3,
            ..sw_cfg(addr.to_string())
        };
        let (exp, stats) = started(cfg);
        let accepted: Vec<bool> = (0..5)
            .map(|i| exp.submit(Arc::new(sample_trace(i, 1))))
            .collect();
        assert_eq!(accepted, [true, true, true, false, false]);
        assert_eq!(
            stats.dropped_queue_full.get(),
            4,
            "two requests of two spans"
        );
        assert_eq!(stats.queue_size.get(), 6);
        // The scenario, not a wait: the collector stays down past the flush interval
        // and a few refused connects.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            stats.spans_sent.get() + stats.dropped_export_failed.get(),
            0
        );
        // Each refused connect is counted at once (the batch is held, not dropped).
        assert!(stats.errors.connect.get() >= 1);
        assert_eq!(stats.reports_dropped.get(), stats.errors.connect.get());
        assert_eq!(stats.reports_failed.get(), 0);
        let seen = serve(socket.listen(64).unwrap(), None);
        wait_for("queued segments delivered", || seen.segments().len() == 3).await;
        wait_for("counters", || {
            stats.spans_sent.get() == 3 && stats.queue_size.get() == 0
        })
        .await;
        assert_eq!(stats.dropped_export_failed.get(), 0);
        exp.drain(Duration::from_secs(5)).await;
        assert_eq!(seen.segments().len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_collector_batch_is_dropped_and_counted_caller_never_waits() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = serve(listener, Some(Duration::from_secs(30)));
        let cfg = ExporterConfig {
            timeout: Duration::from_millis(300),
            ..sw_cfg(addr.to_string())
        };
        let (exp, stats) = started(cfg);
        let t0 = std::time::Instant::now();
        for i in 0..100 {
            assert!(exp.submit(Arc::new(sample_trace(i, 1))));
        }
        // Generous: submits are channel pushes; this only catches one that waits for
        // the collector (300 ms per batch).
        assert!(t0.elapsed() < Duration::from_millis(250), "submit waited");
        // The worker counts the drop, then releases the batch from the queue gauge: wait
        // for both (a loaded machine can run this check between the two).
        wait_for("batch dropped and released", || {
            stats.dropped_export_failed.get() == 200 && stats.queue_size.get() == 0
        })
        .await;
        // A timed-out export is a dropped report, as Envoy's timeout is a local 504.
        assert!(stats.errors.timeout.get() >= 1);
        assert!(stats.reports_dropped.get() >= 1);
        assert_eq!(stats.reports_failed.get(), 0);
        assert_eq!(stats.spans_sent.get(), 0);
        exp.drain(Duration::from_secs(1)).await;
        assert!(seen.segments().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drain_delivers_everything_queued_exactly_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = serve(listener, None);
        let (exp, stats) = started(sw_cfg(addr.to_string()));
        let n = 300;
        for i in 0..n {
            assert!(exp.submit(Arc::new(sample_trace(i, 1))));
        }
        exp.drain(Duration::from_secs(10)).await;
        let segs = seen.segments();
        let mut ids: Vec<_> = segs.iter().map(|s| s.trace_segment_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(segs.len(), n as usize, "each once");
        assert_eq!(ids.len(), n as usize);
        assert_eq!(stats.spans_sent.get(), n);
        assert!(
            stats.reports_sent.get() >= 3,
            "batches of at most {}",
            super::super::worker::BATCH_MAX
        );
        assert_eq!(stats.dropped_export_failed.get(), 0);
        assert_eq!(stats.queue_size.get(), 0);
    }
}
