//! The exporter task: take what is queued in batches, keep a connection to the
//! collector, send each batch once within the timeout, count the outcome.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::{sleep_until, Instant};

use super::net::Error;
use super::sent::Sent;
use super::{otlp, skywalking, zipkin, ExportStats, ExporterConfig, Provider};
use crate::trace::ids::random_u64;
use crate::trace::RequestTrace;

/// Requests per export call at most.
pub(crate) const BATCH_MAX: usize = 128;
/// How long the first request of a batch waits for others to join it.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// What an exporter dropped without `drain` still gets to send its queue.
const DROPPED_GRACE: Duration = Duration::from_secs(5);

pub(crate) enum Transport {
    SkyWalking(skywalking::Client),
    Zipkin(zipkin::Client),
    Otlp(otlp::Client),
}

impl Transport {
    pub(crate) fn new(cfg: &ExporterConfig) -> Self {
        match cfg.provider {
            Provider::SkyWalking => Transport::SkyWalking(skywalking::Client::new(cfg)),
            Provider::Zipkin => Transport::Zipkin(zipkin::Client::new(cfg)),
            Provider::OpenTelemetry => Transport::Otlp(otlp::Client::new(cfg)),
        }
    }

    fn connected(&self) -> bool {
        match self {
            Transport::SkyWalking(c) => c.connected(),
            Transport::Zipkin(c) => c.connected(),
            Transport::Otlp(c) => c.connected(),
        }
    }

    async fn connect(&mut self) -> Result<(), Error> {
        match self {
            Transport::SkyWalking(c) => c.connect().await,
            Transport::Zipkin(c) => c.connect().await,
            Transport::Otlp(c) => c.connect().await,
        }
    }

    fn disconnect(&mut self) {
        match self {
            Transport::SkyWalking(c) => c.disconnect(),
            Transport::Zipkin(c) => c.disconnect(),
            Transport::Otlp(c) => c.disconnect(),
        }
    }

    async fn export(&mut self, batch: &[Arc<RequestTrace>]) -> Result<Sent, Error> {
        match self {
            Transport::SkyWalking(c) => c.export(batch).await,
            Transport::Zipkin(c) => c.export(batch).await,
            Transport::Otlp(c) => c.export(batch).await,
        }
    }
}

/// When the task must give up: the drain's deadline, or a grace after the exporter
/// was dropped without one.
struct Stop {
    rx: watch::Receiver<Option<Instant>>,
    at: Option<Instant>,
}

impl Stop {
    /// Completes once a deadline is set and has passed. Cancel-safe: what it learnt
    /// is kept in `at`.
    async fn reached(&mut self) {
        loop {
            if let Some(at) = self.at {
                sleep_until(at).await;
                return;
            }
            match self.rx.changed().await {
                Ok(()) => self.at = *self.rx.borrow_and_update(),
                Err(_) => self.at = Some(Instant::now() + DROPPED_GRACE),
            }
        }
    }
}

enum Bounded<T> {
    Done(T),
    TimedOut,
    Stopped,
}

/// `fut`, bounded by `limit` and by the stop deadline.
async fn bounded<F: Future>(stop: &mut Stop, limit: Duration, fut: F) -> Bounded<F::Output> {
    tokio::select! {
        biased;
        out = fut => Bounded::Done(out),
        () = tokio::time::sleep(limit) => Bounded::TimedOut,
        () = stop.reached() => Bounded::Stopped,
    }
}

/// Exponential, jittered (so gateways restarted together do not reconnect in step).
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { next: BACKOFF_MIN }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        // 50% to 100% of the step.
        d.mul_f64(0.5 + (random_u64() % 1000) as f64 / 2000.0)
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// What the exporter and its task share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Requests queued or in flight; the capacity check (the channel alone can't
    /// count the batch the task holds while the collector is down).
    pub(crate) queued: AtomicUsize,
    /// Wakes the task when a batch's worth is queued (see [`Worker::fill`]).
    pub(crate) batch_ready: Notify,
    /// Cleared by a failed connect, set by a successful one (`Exporter::has_room`).
    pub(crate) reachable: AtomicBool,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            queued: AtomicUsize::new(0),
            batch_ready: Notify::new(),
            reachable: AtomicBool::new(true),
        }
    }
}

pub(crate) struct Worker {
    cfg: ExporterConfig,
    transport: Transport,
    rx: mpsc::Receiver<Arc<RequestTrace>>,
    stop: Stop,
    shared: Arc<Shared>,
    stats: ExportStats,
    /// The collector last answered; failures are logged loudly only on the change.
    healthy: bool,
}

fn span_count(batch: &[Arc<RequestTrace>]) -> u64 {
    batch.iter().map(|t| t.spans.len() as u64).sum()
}

impl Worker {
    pub(crate) fn new(
        cfg: ExporterConfig,
        transport: Transport,
        rx: mpsc::Receiver<Arc<RequestTrace>>,
        stop: watch::Receiver<Option<Instant>>,
        shared: Arc<Shared>,
        stats: ExportStats,
    ) -> Self {
        Worker {
            cfg,
            transport,
            rx,
            stop: Stop { rx: stop, at: None },
            shared,
            stats,
            healthy: true,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut batch: Vec<Arc<RequestTrace>> = Vec::with_capacity(BATCH_MAX);
        let mut started = Instant::now();
        let mut backoff = Backoff::new();
        let mut retry_at: Option<Instant> = None;
        let timeout = self.cfg.timeout;
        loop {
            if batch.is_empty() {
                let first = tokio::select! {
                    biased;
                    t = self.rx.recv() => t,
                    () = self.stop.reached() => None,
                };
                match first {
                    Some(t) => {
                        batch.push(t);
                        started = Instant::now();
                    }
                    // Drained (every sender gone, queue empty) or out of time.
                    None => break,
                }
            }
            if !self.fill(&mut batch, started).await {
                break;
            }

            if !self.transport.connected() {
                // While down the batch is held and the rest stays queued, so the
                // queue keeps up to its capacity and drops beyond it.
                if let Some(at) = retry_at.take() {
                    let woke = tokio::select! {
                        biased;
                        () = sleep_until(at) => true,
                        () = self.stop.reached() => false,
                    };
                    if !woke {
                        break;
                    }
                }
                match bounded(&mut self.stop, timeout, self.transport.connect()).await {
                    Bounded::Done(Ok(())) => self.shared.reachable.store(true, Ordering::Relaxed),
                    Bounded::Done(Err(e)) => {
                        self.shared.reachable.store(false, Ordering::Relaxed);
                        // Counted at once, though the batch is held for the next try:
                        // a collector that refuses shows without the log.
                        self.stats.errors.connect.inc();
                        self.stats.reports_dropped.inc();
                        self.unhealthy(&format!("connect: {e}"));
                        self.transport.disconnect();
                        retry_at = Some(Instant::now() + backoff.next());
                        continue;
                    }
                    Bounded::TimedOut => {
                        self.shared.reachable.store(false, Ordering::Relaxed);
                        self.stats.errors.timeout.inc();
                        self.stats.reports_dropped.inc();
                        self.unhealthy("connect timed out");
                        self.transport.disconnect();
                        retry_at = Some(Instant::now() + backoff.next());
                        continue;
                    }
                    Bounded::Stopped => break,
                }
            }

            let spans = span_count(&batch);
            let outcome = bounded(&mut self.stop, timeout, self.transport.export(&batch)).await;
            let stopped = matches!(outcome, Bounded::Stopped);
            let failure = match outcome {
                Bounded::Done(Ok(sent)) => {
                    self.stats.reports_sent.inc();
                    self.stats.spans_sent.add(sent.units);
                    if sent.rejected_spans > 0 {
                        self.stats.dropped_export_failed.add(sent.rejected_spans);
                    }
                    backoff.reset();
                    if !self.healthy {
                        self.healthy = true;
                        tracing::info!(provider = self.cfg.provider.as_str(), endpoint = %self.cfg.endpoint, "trace collector reachable again");
                    }
                    None
                }
                Bounded::Done(Err(e)) => {
                    let answered = answered_with_error(&*e);
                    let (reason, report) = if answered {
                        (&self.stats.errors.status, &self.stats.reports_dropped)
                    } else {
                        (&self.stats.errors.reset, &self.stats.reports_failed)
                    };
                    reason.inc();
                    report.inc();
                    Some(format!("export: {e}"))
                }
                Bounded::TimedOut => {
                    self.stats.errors.timeout.inc();
                    self.stats.reports_dropped.inc();
                    Some(format!("export timed out after {timeout:?}"))
                }
                Bounded::Stopped => {
                    self.stats.errors.timeout.inc();
                    self.stats.reports_dropped.inc();
                    Some("export cut short by the drain deadline".into())
                }
            };
            if let Some(why) = failure {
                // Not retried: the collector may have taken part of it, and a retry
                // could send it twice.
                self.stats.dropped_export_failed.add(spans);
                self.unhealthy(&why);
                self.transport.disconnect();
                retry_at = Some(Instant::now() + backoff.next());
            }
            self.release(&mut batch);
            if stopped {
                break;
            }
        }

        // Whatever is left could not be sent in time.
        self.rx.close();
        while let Ok(t) = self.rx.try_recv() {
            batch.push(t);
        }
        let left = span_count(&batch);
        if left > 0 {
            tracing::warn!(
                provider = self.cfg.provider.as_str(),
                spans = left,
                "trace exporter stopped with spans unsent; dropped"
            );
            self.stats.dropped_export_failed.add(left);
        }
        self.release(&mut batch);
        self.transport.disconnect();
    }

    /// Top the batch up until it is full or the flush interval since its first
    /// request has passed. `false`: the stop deadline came.
    ///
    /// While waiting the task is not woken per request (that would be a thread
    /// wake-up, often a context switch, for every sampled request): only by the
    /// flush time, by `submit` once a batch's worth is queued, or by `drain`.
    async fn fill(&mut self, batch: &mut Vec<Arc<RequestTrace>>, started: Instant) -> bool {
        let flush_at = started + FLUSH_INTERVAL;
        loop {
            while batch.len() < BATCH_MAX {
                match self.rx.try_recv() {
                    Ok(t) => batch.push(t),
                    Err(mpsc::error::TryRecvError::Disconnected) => return true,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            if batch.len() >= BATCH_MAX {
                return true;
            }
            let flush = tokio::select! {
                biased;
                () = self.shared.batch_ready.notified() => false,
                () = sleep_until(flush_at) => true,
                () = self.stop.reached() => return false,
            };
            if flush {
                while batch.len() < BATCH_MAX {
                    match self.rx.try_recv() {
                        Ok(t) => batch.push(t),
                        Err(_) => break,
                    }
                }
                return true;
            }
        }
    }

    /// The batch is done with (sent or dropped): it no longer counts as queued.
    fn release(&self, batch: &mut Vec<Arc<RequestTrace>>) {
        if batch.is_empty() {
            return;
        }
        self.shared.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        self.stats.queue_size.add(-(span_count(batch) as i64));
        batch.clear();
    }

    fn unhealthy(&mut self, why: &str) {
        let provider = self.cfg.provider.as_str();
        let endpoint = &self.cfg.endpoint;
        if self.healthy {
            self.healthy = false;
            tracing::warn!(provider, %endpoint, error = why, "trace collector unavailable");
        } else {
            tracing::debug!(provider, %endpoint, error = why, "trace collector still unavailable");
        }
    }
}

/// Whether an export error is the collector's answer (an HTTP status, or a gRPC status
/// other than those tonic makes up for a broken connection) rather than a broken
/// connection.
fn answered_with_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<super::net::StatusError>().is_some() {
        return true;
    }
    match e.downcast_ref::<tonic::Status>() {
        Some(s) => !matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
        ),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::new();
        let first = b.next();
        assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN);
        for _ in 0..20 {
            assert!(b.next() <= BACKOFF_MAX);
        }
        assert!(b.next() >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next() <= BACKOFF_MIN);
    }
}
