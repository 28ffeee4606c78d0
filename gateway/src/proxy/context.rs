//! Per-request state carried through the proxy phases.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::flags::ResponseFlags;
use crate::snapshot::Snapshot;
use crate::translate::{Cluster, Route};

/// Attempts per request: the first plus Envoy's default two retries.
pub const MAX_ATTEMPTS: u32 = 3;

pub struct RequestCtx {
    /// Loaded once when the request starts; the request finishes on it whatever reloads.
    pub snapshot: Arc<Snapshot>,
    pub start: Instant,
    pub start_wall: SystemTime,
    pub route: Option<Arc<Route>>,
    pub cluster_name: Option<String>,
    pub cluster: Option<Arc<Cluster>>,
    pub attempts: u32,
    pub tried: Vec<SocketAddr>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_start: Option<Instant>,
    pub upstream_service_time_ms: Option<u64>,
    pub upstream_headers_received: bool,
    /// Route timeout (annotation or `downstream.routeTimeout`), if any.
    pub deadline: Option<Instant>,
    pub flags: ResponseFlags,
    /// Status of a reply the gateway itself produced.
    pub local_status: Option<u16>,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestCtx {
    /// A context for a new request, counted in `in_flight` until it is dropped.
    pub fn new(snapshot: Arc<Snapshot>, in_flight: Arc<AtomicUsize>) -> Self {
        in_flight.fetch_add(1, Ordering::Relaxed);
        RequestCtx {
            in_flight,
            snapshot,
            start: Instant::now(),
            start_wall: SystemTime::now(),
            route: None,
            cluster_name: None,
            cluster: None,
            attempts: 0,
            tried: Vec::new(),
            upstream_host: None,
            upstream_start: None,
            upstream_service_time_ms: None,
            upstream_headers_received: false,
            deadline: None,
            flags: ResponseFlags::default(),
            local_status: None,
        }
    }
}
