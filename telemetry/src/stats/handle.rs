use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// A monotonically increasing count. Cloning shares the same value.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Handles to this value, the family's own included.
    pub(super) fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

/// A value that goes up and down. Cloning shares the same value.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<GaugeCell>);

#[derive(Debug, Default)]
struct GaugeCell {
    value: AtomicI64,
    /// Written at least once (Envoy's "used" flag, for `?usedonly`).
    used: AtomicBool,
}

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.value.store(v, Ordering::Relaxed);
        self.mark_used();
    }

    pub fn add(&self, n: i64) {
        self.0.value.fetch_add(n, Ordering::Relaxed);
        self.mark_used();
    }

    pub fn get(&self) -> i64 {
        self.0.value.load(Ordering::Relaxed)
    }

    pub fn used(&self) -> bool {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Handles to this value, the family's own included.
    pub(super) fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    fn mark_used(&self) {
        // A load first: once set, the flag's cache line is only ever read.
        if !self.0.used.load(Ordering::Relaxed) {
            self.0.used.store(true, Ordering::Relaxed);
        }
    }
}
