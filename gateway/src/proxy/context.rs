//! Per-request state carried through the proxy phases.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::flags::ResponseFlags;
use crate::model::{Cluster, Route};
use crate::snapshot::Snapshot;

/// Attempts per request: the first plus Envoy's default two retries.
pub const MAX_ATTEMPTS: u32 = 3;

pub struct RequestCtx {
    /// Loaded once when the request starts; the request finishes on it whatever reloads.
    pub snapshot: Arc<Snapshot>,
    pub start: Instant,
    /// The `x-request-id` made for a local reply (a routed request carries its own in
    /// the request headers); `None` when the client sent one.
    pub request_id: Option<Box<http::HeaderValue>>,
    pub route: Option<Arc<Route>>,
    /// Index of the chosen destination in `route.destinations` (u32: the context
    /// stays small).
    pub destination: Option<u32>,
    pub cluster: Option<Arc<Cluster>>,
    /// Endpoints tried, one per attempt ([`RequestCtx::attempts`] counts them).
    pub tried: Tried,
    pub upstream_start: Option<Instant>,
    /// u32: ~49 days of milliseconds, and the context stays small.
    pub upstream_service_time_ms: Option<u32>,
    pub upstream_headers_received: bool,
    /// The upstream response ended (its time is recorded).
    pub upstream_complete: bool,
    /// Route timeout (annotation or `downstream.routeTimeout`), if any.
    pub deadline: Option<Instant>,
    pub flags: ResponseFlags,
    /// Status of a reply the gateway itself produced.
    pub local_status: Option<u16>,
    /// Holds the HTTP/1 connection busy for its idle timeout while the request lasts.
    pub connection: Option<super::idle::ActiveRequest>,
    /// The spans of a sampled request.
    pub trace: Option<Box<super::spans::RequestSpans>>,
    /// An unsampled new trace's decision, passed upstream.
    pub not_sampled: Option<Box<super::spans::NotSampled>>,
    /// The response's compressor, when its body is being compressed.
    pub gzip: Option<Box<super::compressor::ResponseGzip>>,
    /// Why the last upstream TLS handshake failed (Envoy's transport failure reason);
    /// a thin box, as failures are rare and the context stays small.
    pub transport_failure: Option<Box<String>>,
    /// The request's Wasm plugin contexts, when the snapshot has plugins.
    pub wasm: Option<Box<crate::wasm::filter::WasmRequest>>,
    in_flight: Arc<AtomicUsize>,
}

impl RequestCtx {
    /// Upstream attempts so far (the first and its retries).
    pub fn attempts(&self) -> u32 {
        self.tried.len() as u32
    }

    /// The endpoint of the last upstream attempt.
    pub fn upstream_host(&self) -> Option<SocketAddr> {
        let index = *self.tried.as_slice().last()?;
        self.cluster
            .as_ref()?
            .endpoints
            .get(index as usize)
            .copied()
    }

    /// Name of the chosen cluster, known or not.
    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster_name_shared().map(|n| &**n)
    }

    /// The same name, shared (a refcount, not a copy).
    pub fn cluster_name_shared(&self) -> Option<&Arc<str>> {
        let route = self.route.as_ref()?;
        Some(&route.destinations.get(self.destination? as usize)?.name)
    }

    /// The chosen destination's cluster when one is defined (it may have no endpoints).
    pub fn destination_cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref().or_else(|| {
            let route = self.route.as_ref()?;
            route
                .destinations
                .get(self.destination? as usize)?
                .cluster
                .as_ref()
        })
    }
}

/// Endpoint indices already tried, in attempt order; fixed size, so no allocation.
#[derive(Default)]
pub struct Tried {
    indices: [u32; MAX_ATTEMPTS as usize],
    len: u8,
}

impl Tried {
    pub fn push(&mut self, index: u32) {
        if let Some(slot) = self.indices.get_mut(self.len as usize) {
            *slot = index;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[u32] {
        &self.indices[..self.len as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
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
            request_id: None,
            route: None,
            destination: None,
            cluster: None,
            tried: Tried::default(),
            upstream_start: None,
            upstream_service_time_ms: None,
            upstream_headers_received: false,
            upstream_complete: false,
            deadline: None,
            flags: ResponseFlags::default(),
            local_status: None,
            connection: None,
            trace: None,
            not_sampled: None,
            gzip: None,
            transport_failure: None,
            wasm: None,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The context lives in every request's future and is copied with it: keep it small.
    #[test]
    fn context_stays_small() {
        let size = std::mem::size_of::<RequestCtx>();
        assert!(size <= 200, "RequestCtx is {size} bytes");
    }

    #[test]
    fn tried_keeps_attempt_order_and_bound() {
        let mut t = Tried::default();
        for i in [4, 1, 7, 9] {
            t.push(i);
        }
        assert_eq!(t.as_slice(), &[4, 1, 7]);
    }
}
