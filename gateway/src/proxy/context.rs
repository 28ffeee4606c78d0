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
    /// The `x-request-id` the gateway generated; `None` when the client sent one.
    pub request_id: Option<http::HeaderValue>,
    pub route: Option<Arc<Route>>,
    /// Index of the chosen destination in `route.destinations`.
    pub destination: Option<usize>,
    pub cluster: Option<Arc<Cluster>>,
    pub attempts: u32,
    pub tried: Tried,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_start: Option<Instant>,
    pub upstream_service_time_ms: Option<u64>,
    pub upstream_headers_received: bool,
    /// Route timeout (annotation or `downstream.routeTimeout`), if any.
    pub deadline: Option<Instant>,
    pub flags: ResponseFlags,
    /// Status of a reply the gateway itself produced.
    pub local_status: Option<u16>,
    /// Holds the HTTP/1 connection busy for its idle timeout while the request lasts.
    pub connection: Option<super::idle::ActiveRequest>,
    in_flight: Arc<AtomicUsize>,
}

impl RequestCtx {
    /// Name of the chosen cluster, known or not.
    pub fn cluster_name(&self) -> Option<&str> {
        let route = self.route.as_ref()?;
        Some(route.destinations.get(self.destination?)?.name.as_str())
    }
}

/// Endpoints already tried, in attempt order; fixed size, so no allocation.
#[derive(Default)]
pub struct Tried([Option<SocketAddr>; MAX_ATTEMPTS as usize]);

impl Tried {
    pub fn push(&mut self, addr: SocketAddr) {
        if let Some(slot) = self.0.iter_mut().find(|s| s.is_none()) {
            *slot = Some(addr);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> + Clone + '_ {
        self.0.iter().flatten().copied()
    }
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
            request_id: None,
            route: None,
            destination: None,
            cluster: None,
            attempts: 0,
            tried: Tried::default(),
            upstream_host: None,
            upstream_start: None,
            upstream_service_time_ms: None,
            upstream_headers_received: false,
            deadline: None,
            flags: ResponseFlags::default(),
            local_status: None,
            connection: None,
        }
    }
}
