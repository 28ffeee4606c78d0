//! Span exporters: SkyWalking (native gRPC), Zipkin (v2 JSON over HTTP) and OTLP (gRPC
//! or HTTP/protobuf), each behind one bounded queue and run on its own tokio task, plus
//! the ring of recent traces behind `/debug/traces`.
//!
//! A request never waits on a collector: [`Exporter::submit`] is a counter check and a
//! channel push. When the queue is full the trace is dropped and counted. The task
//! batches what is queued, bounds every export call by the configured timeout, drops
//! (and counts) a batch whose export failed instead of retrying it, and reconnects with
//! exponential backoff. While the collector is down, traces keep queueing up to the
//! capacity.
//!
//! Units: `spans_sent` counts spans (SkyWalking: segments, one per request, as Envoy's
//! `segments_sent`); `dropped_*` and `queue_size` count spans for every provider;
//! `queue_capacity` counts requests ([`RequestTrace`]s).

mod net;
mod otlp;
mod proto_wire;
mod recent;
mod sent;
mod skywalking;
mod worker;
mod zipkin;

#[cfg(test)]
mod test_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::stats::{Counter, Gauge};
use crate::trace::RequestTrace;

pub use crate::trace::Provider;
pub use recent::{spans_json, RecentTraces};

/// The default number of requests an exporter queues at most.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

#[derive(Clone, Debug)]
pub struct ExporterConfig {
    pub provider: Provider,
    /// The collector: `host:port` (the name is resolved at each (re)connect) or
    /// `ip:port` (`[v6]:port`). A leading `http://` is tolerated.
    pub endpoint: String,
    /// Bound on each connect and each export call (higress-config `tracing.timeout`).
    pub timeout: Duration,
    /// The service the gateway reports as: `higress-gateway.<namespace>`.
    pub service_name: String,
    /// The service instance: the host name.
    pub instance: String,
    /// SkyWalking: sent as gRPC metadata `authentication`.
    pub access_token: Option<String>,
    /// OpenTelemetry: OTLP/HTTP protobuf `POST /v1/traces` instead of gRPC.
    pub otlp_http: bool,
    /// Requests ([`RequestTrace`]s) queued at most, the batch being sent included.
    pub queue_capacity: usize,
}

/// Stat handles the exporter updates; the gateway resolves (and names) them.
#[derive(Clone, Debug, Default)]
pub struct ExportStats {
    /// Zipkin / OTLP: spans; SkyWalking: segments.
    pub spans_sent: Counter,
    /// Export calls that succeeded.
    pub reports_sent: Counter,
    /// Reports not delivered with the collector unreachable or refusing them: a failed
    /// or timed-out connect, an export that timed out, an answer that is not a
    /// success. Envoy's Zipkin `reports_dropped` (its router turns a connect failure or
    /// a timeout into a local 503/504, which the reporter counts there).
    pub reports_dropped: Counter,
    /// Export calls whose stream broke before an answer (Envoy's Zipkin
    /// `reports_failed`: the AsyncClient's `onFailure`). Like a dropped report, the
    /// batch is dropped, not retried.
    pub reports_failed: Counter,
    /// Every failure by reason (`gateway_tracing_export_errors_total{reason}`).
    pub errors: ExportErrors,
    /// Spans refused at `submit` because the queue was full (or draining).
    pub dropped_queue_full: Counter,
    /// Spans whose export failed or timed out, rejected by the collector, or still
    /// queued when a drain ran out of time.
    pub dropped_export_failed: Counter,
    /// Spans waiting: queued or in the batch being sent.
    pub queue_size: Gauge,
}

/// Export failures by reason; each failure counts once.
#[derive(Clone, Debug, Default)]
pub struct ExportErrors {
    /// The collector refused the connection (or its name did not resolve).
    pub connect: Counter,
    /// A connect or an export call ran past `timeout`.
    pub timeout: Counter,
    /// The collector answered with an error (HTTP status other than 2xx, gRPC status).
    pub status: Counter,
    /// The connection broke during an export.
    pub reset: Counter,
}

/// One collector's exporter: a bounded queue and the task that empties it.
pub struct Exporter {
    provider: Provider,
    tx: mpsc::Sender<Arc<RequestTrace>>,
    /// The queue count, the batch wake-up and whether the collector is reachable.
    shared: Arc<worker::Shared>,
    capacity: usize,
    stats: ExportStats,
    /// `Some(deadline)` asks the task to finish; dropping it (the exporter dropped
    /// without `drain`) does too, after a short grace.
    stop: watch::Sender<Option<tokio::time::Instant>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("provider", &self.provider)
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Exporter {
    /// Start the exporter's task on `rt`. Nothing is dialled until there is something
    /// to send.
    pub fn start(cfg: ExporterConfig, stats: ExportStats, rt: &tokio::runtime::Handle) -> Exporter {
        let capacity = cfg.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let (stop_tx, stop_rx) = watch::channel(None);
        let shared = Arc::new(worker::Shared::new());
        let transport = worker::Transport::new(&cfg);
        let w = worker::Worker::new(
            cfg.clone(),
            transport,
            rx,
            stop_rx,
            shared.clone(),
            stats.clone(),
        );
        let task = rt.spawn(w.run());
        Exporter {
            provider: cfg.provider,
            tx,
            shared,
            capacity,
            stats,
            stop: stop_tx,
            task,
        }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Whether a trace submitted now is worth recording: `false` while the queue is
    /// full (the collector slower than the traffic) or the collector refuses
    /// connections (its last connect failed; the batch the task holds keeps it
    /// retrying). A request that starts then need not record spans only to have them
    /// dropped; it counts them with [`Exporter::dropped`]. Envoy's Zipkin reporter
    /// likewise drops what it cannot report rather than keeping it for later.
    pub fn has_room(&self) -> bool {
        self.shared.reachable.load(Ordering::Relaxed)
            && self.shared.queued.load(Ordering::Relaxed) < self.capacity
    }

    /// Count `spans` dropped because the queue was full, without submitting them.
    pub fn dropped(&self, spans: u64) {
        self.stats.dropped_queue_full.add(spans);
    }

    /// Queue a finished request's spans. Never blocks and needs no runtime, so any
    /// thread may call it. `false`: dropped (queue full) and counted.
    pub fn submit(&self, t: Arc<RequestTrace>) -> bool {
        let spans = t.spans.len() as u64;
        let before = self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if before >= self.capacity {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            self.stats.dropped_queue_full.add(spans);
            return false;
        }
        // Counted before the push so the task's decrement can never come first.
        self.stats.queue_size.add(spans as i64);
        if self.tx.try_send(t).is_err() {
            // Only when the task is gone (its runtime shut down).
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            self.stats.queue_size.add(-(spans as i64));
            self.stats.dropped_queue_full.add(spans);
            return false;
        }
        if (before + 1).is_multiple_of(worker::BATCH_MAX) {
            self.shared.batch_ready.notify_one();
        }
        true
    }

    /// Stop accepting, export everything already queued within `within`, then stop.
    /// What could not be sent by then is dropped and counted; nothing is sent twice.
    pub async fn drain(self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let Exporter {
            tx,
            stop,
            mut task,
            shared,
            ..
        } = self;
        // Dropping the only sender is what stops accepting: the task sees the end of
        // the queue once it has taken everything in it.
        drop(tx);
        shared.batch_ready.notify_one();
        let _ = stop.send(Some(deadline));
        // The task itself gives up at the deadline; the grace covers its last counting.
        let grace = Duration::from_millis(500);
        if tokio::time::timeout_at(deadline + grace, &mut task)
            .await
            .is_err()
        {
            tracing::warn!("trace exporter did not stop after draining; aborting it");
            task.abort();
        }
        drop(stop);
    }
}

/// Nanoseconds since the Unix epoch (0 for an earlier time).
pub(crate) fn unix_nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The 128-bit form Zipkin and OTLP need. A SkyWalking text id (only seen when a
/// request came with `sw8` but the provider is another) maps to a stable hash, so its
/// spans still share one trace.
pub(crate) fn trace_id_u128(id: &crate::trace::TraceId) -> u128 {
    match id {
        crate::trace::TraceId::Hex(v) => *v,
        crate::trace::TraceId::Text(t) => {
            if t.len() == 32 {
                if let Ok(v) = u128::from_str_radix(t, 16) {
                    if v != 0 {
                        return v;
                    }
                }
            }
            // FNV-1a over two offset bases: stable across builds and platforms.
            let fnv = |basis: u64| {
                t.bytes().fold(basis, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
                })
            };
            let v = (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64)
                | u128::from(fnv(0x8422_2325_cbf2_9ce4));
            v.max(1)
        }
    }
}
