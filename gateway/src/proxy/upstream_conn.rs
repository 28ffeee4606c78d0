//! Upstream connections counted into their cluster's stats while they live: Pingora
//! calls the peer's tracer when it opens a connection and again when the connection
//! is dropped (closed, or evicted from the pool).
//!
//! A pooled connection can outlive its cluster (removed by a reload): it holds only
//! the `cx_active` gauge, which it still counts in, and not the rest of the cluster's
//! stats, which leave `/stats/prometheus` after their retention period.

use std::sync::{Arc, Weak};

use pingora_core::upstreams::peer::{Tracer, Tracing};
use telemetry::stats::Gauge;

use crate::stats::ClusterStats;

/// `upstream_cx_total` and `upstream_cx_active` of one cluster.
#[derive(Debug, Clone)]
pub struct ConnectionTracer {
    stats: Weak<ClusterStats>,
    active: Gauge,
}

impl ConnectionTracer {
    pub fn tracer(stats: &Arc<ClusterStats>) -> Tracer {
        Tracer(Box::new(ConnectionTracer {
            stats: Arc::downgrade(stats),
            active: stats.cx_active.clone(),
        }))
    }
}

impl Tracing for ConnectionTracer {
    fn on_connected(&self) {
        if let Some(s) = self.stats.upgrade() {
            s.cx_total.inc();
        }
        self.active.add(1);
    }

    fn on_disconnected(&self) {
        self.active.add(-1);
    }

    fn boxed_clone(&self) -> Box<dyn Tracing> {
        Box::new(self.clone())
    }
}
