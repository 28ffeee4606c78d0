//! Load shedding, as Envoy's overload manager's `stop_accepting_requests` action: past
//! `--max-active-requests` requests in progress, or while the heap is over
//! `--overload-max-heap`, a new request is answered 503 `envoy overloaded` (flag `OM`)
//! before routing, so the requests already admitted keep their latency.
//!
//! The request path reads one atomic and compares one counter; the heap is sampled by
//! a background thread ([`watch_heap`]), never per request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use telemetry::stats::Gauge;

/// The body Envoy answers an overloaded request with.
pub const OVERLOADED: &str = "envoy overloaded";

/// How often the heap is compared with its limit (Envoy's overload manager refreshes
/// every second by default; a finer step sheds sooner after a burst).
const HEAP_SAMPLE: Duration = Duration::from_millis(250);

/// The limits, shared by every listener.
#[derive(Debug, Default)]
pub struct Overload {
    /// Requests in progress (all listeners) above which new ones are refused; 0: none.
    pub max_active_requests: usize,
    /// Set while the heap is over its limit.
    heap_over: AtomicBool,
}

impl Overload {
    pub fn new(max_active_requests: usize) -> Self {
        Overload {
            max_active_requests,
            heap_over: AtomicBool::new(false),
        }
    }

    /// Whether a request must be refused; `in_flight` counts it already.
    pub fn refuses(&self, in_flight: &AtomicUsize) -> bool {
        (self.max_active_requests > 0
            && in_flight.load(Ordering::Relaxed) > self.max_active_requests)
            || self.heap_over.load(Ordering::Relaxed)
    }
}

/// Compare `heap()` with `max_bytes` every [`HEAP_SAMPLE`] on a thread of its own, set
/// the overload flag and the `..._stop_accepting_requests_active` gauge accordingly.
pub fn watch_heap(
    overload: Arc<Overload>,
    max_bytes: usize,
    active: Gauge,
    heap: fn() -> usize,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("overload".into())
        .spawn(move || loop {
            let over = heap() >= max_bytes;
            if overload.heap_over.swap(over, Ordering::Relaxed) != over {
                if over {
                    tracing::warn!(
                        max_bytes,
                        "heap over --overload-max-heap: refusing new requests with 503"
                    );
                } else {
                    tracing::info!(
                        max_bytes,
                        "heap back under --overload-max-heap: accepting requests"
                    );
                }
            }
            active.set(i64::from(over));
            std::thread::sleep(HEAP_SAMPLE);
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_active_request_limit_only_when_set() {
        let in_flight = AtomicUsize::new(3);
        assert!(!Overload::new(0).refuses(&in_flight));
        assert!(!Overload::new(3).refuses(&in_flight));
        assert!(Overload::new(2).refuses(&in_flight));
    }

    #[test]
    fn the_heap_watch_sets_and_clears_the_flag() {
        use std::sync::atomic::AtomicUsize as Heap;
        static HEAP: Heap = Heap::new(10);
        let o = Arc::new(Overload::new(0));
        let registry = telemetry::stats::Registry::new();
        let gauge = registry
            .family("g", "test", telemetry::stats::Kind::Gauge)
            .gauge(&[]);
        watch_heap(o.clone(), 100, gauge.clone(), || {
            HEAP.load(Ordering::Relaxed)
        })
        .unwrap();
        let in_flight = AtomicUsize::new(1);
        let wait = |want: bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while o.refuses(&in_flight) != want {
                assert!(
                    std::time::Instant::now() < deadline,
                    "flag never became {want}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait(false);
        HEAP.store(200, Ordering::Relaxed);
        wait(true);
        HEAP.store(10, Ordering::Relaxed);
        wait(false);
    }
}
