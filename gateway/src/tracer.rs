//! The tracer a snapshot carries: the sampler, the provider (which decides the
//! propagation format and span names) and the exporter to its collector.
//!
//! The config loop builds one when the tracing settings or the collector's address
//! change and reuses it otherwise. A replaced tracer is retired, not dropped: requests
//! still running on older snapshots keep submitting to it, and only when the last of
//! them is done is its exporter drained, so no queued span is lost or sent twice.

use std::sync::Arc;
use std::time::Duration;

use telemetry::export::{
    ExportStats, Exporter, ExporterConfig, Provider, RecentTraces, DEFAULT_QUEUE_CAPACITY,
};
use telemetry::stats::Counter;
use telemetry::trace::sampler::Sampler;
use telemetry::trace::RequestTrace;

use crate::model::filter_settings::TracingSettings;
use crate::stats::TracerStats;

/// Longest a retired exporter gets to send what it has queued.
const DRAIN: Duration = Duration::from_secs(5);
/// Longest a retired tracer waits for the requests still using it.
const RETIRE_WAIT: Duration = Duration::from_secs(60);

/// What a tracer was built from: a different key means a new tracer.
#[derive(Clone, Debug, PartialEq)]
pub struct TracerKey {
    /// `None`: the demo's tracer, to `/debug/traces` only.
    pub settings: Option<Arc<TracingSettings>>,
    /// The collector as the exporter dials it (`ip:port` or `host:port`).
    pub endpoint: String,
}

pub struct Tracer {
    pub key: TracerKey,
    /// Decides propagation and naming; `None` for the demo's tracer (W3C propagation).
    pub provider: Option<Provider>,
    pub sampler: Sampler,
    /// `higress-gateway.<namespace>`: the service the gateway reports as.
    pub service: Arc<str>,
    /// The host name: the gateway's service instance.
    pub instance: Arc<str>,
    exporter: Option<Exporter>,
    recent: Arc<RecentTraces>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").field("key", &self.key).finish()
    }
}

impl Tracer {
    /// Start a tracer and its exporter (on the current tokio runtime).
    pub fn start(
        key: TracerKey,
        namespace: &str,
        stats: &TracerStats,
        recent: Arc<RecentTraces>,
    ) -> Arc<Tracer> {
        let provider = key.settings.as_ref().map(|s| s.collector.kind);
        let service: Arc<str> = format!("higress-gateway.{namespace}").into();
        let instance: Arc<str> = host_name().into();
        let exporter = key.settings.as_ref().map(|s| {
            let cfg = ExporterConfig {
                provider: s.collector.kind,
                endpoint: key.endpoint.clone(),
                timeout: s.timeout,
                service_name: service.to_string(),
                instance: instance.to_string(),
                access_token: s.collector.access_token.clone(),
                otlp_http: s.collector.otlp_http,
                queue_capacity: DEFAULT_QUEUE_CAPACITY,
            };
            Exporter::start(
                cfg,
                export_stats(stats, s.collector.kind),
                &tokio::runtime::Handle::current(),
            )
        });
        let sampling = key.settings.as_ref().map_or(100.0, |s| s.sampling);
        tracing::info!(provider = ?provider, endpoint = %key.endpoint, sampling, "tracer started");
        Arc::new(Tracer {
            provider,
            sampler: Sampler::new(sampling),
            service,
            instance,
            exporter,
            recent,
            key,
        })
    }

    /// Hand a finished request's spans to the exporter and `/debug/traces`; never
    /// waits.
    pub fn submit(&self, t: RequestTrace) {
        let t = Arc::new(t);
        self.recent.push(t.clone());
        if let Some(e) = &self.exporter {
            e.submit(t);
        }
    }

    /// Whether a request starting now should record its spans: not while the
    /// exporter's queue is full or its collector refuses connections (they would
    /// only be dropped). The demo's tracer, with no
    /// exporter, always records (for `/debug/traces`).
    pub fn has_room(&self) -> bool {
        self.exporter.as_ref().is_none_or(Exporter::has_room)
    }

    /// Count the spans of a request that was sampled but not recorded (see
    /// [`Tracer::has_room`]) as dropped for a full queue.
    pub fn dropped(&self, spans: u64) {
        if let Some(e) = &self.exporter {
            e.dropped(spans);
        }
    }

    /// Drain a replaced tracer's exporter once no request uses the tracer any more.
    pub fn retire(tracer: Arc<Tracer>) {
        tokio::spawn(async move {
            let mut tracer = tracer;
            let deadline = tokio::time::Instant::now() + RETIRE_WAIT;
            let owned = loop {
                match Arc::try_unwrap(tracer) {
                    Ok(t) => break Some(t),
                    Err(still_shared) if tokio::time::Instant::now() < deadline => {
                        tracer = still_shared;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => break None,
                }
            };
            match owned.and_then(|t| t.exporter) {
                Some(e) => e.drain(DRAIN).await,
                None => tracing::debug!("retired tracer had no exporter to drain"),
            }
        });
    }
}

/// The exporter's counters for provider `p`: Envoy's tracer stats where Envoy has a
/// name, ours for the rest (kept per provider at `p.index()`).
fn export_stats(s: &TracerStats, p: Provider) -> ExportStats {
    let i = p.index();
    let [sent, reports_sent, reports_dropped, reports_failed] = match p {
        Provider::SkyWalking => [
            s.skywalking_segments_sent.clone(),
            Counter::default(),
            Counter::default(),
            Counter::default(),
        ],
        Provider::Zipkin => [
            s.zipkin_spans_sent.clone(),
            s.zipkin_reports_sent.clone(),
            s.zipkin_reports_dropped.clone(),
            s.zipkin_reports_failed.clone(),
        ],
        Provider::OpenTelemetry => [
            s.opentelemetry_spans_sent.clone(),
            Counter::default(),
            Counter::default(),
            Counter::default(),
        ],
    };
    ExportStats {
        spans_sent: sent,
        reports_sent,
        reports_dropped,
        reports_failed,
        errors: s.export_errors[i].clone(),
        dropped_queue_full: s.spans_dropped[i][0].clone(),
        dropped_export_failed: s.spans_dropped[i][1].clone(),
        queue_size: s.queue_size[i].clone(),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "gateway".into())
}
