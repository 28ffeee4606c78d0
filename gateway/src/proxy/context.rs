//! Per-request state carried through the proxy phases.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::flags::ResponseFlags;
use crate::model::{Cluster, Route, WeightedCluster};
use crate::snapshot::Snapshot;

/// Attempts per request: the first plus Envoy's default two retries.
pub const MAX_ATTEMPTS: u32 = 3;

/// `RequestCtx::lb_active` when no endpoint is counted.
pub const NO_ENDPOINT: u32 = u32::MAX;
/// [`RequestCtx::destination`] when the request goes to the route's default backend
/// (`route.policy.fallback`) rather than one of its destinations.
pub const FALLBACK_DESTINATION: u16 = u16::MAX;

/// Where the upstream exchange of the current attempt stands.
#[derive(Clone, Copy, Debug)]
pub enum UpstreamTiming {
    NotStarted,
    Started(Instant),
    /// Answered (response headers) this many milliseconds after the start; u32: ~49
    /// days.
    Answered(u32),
}

pub struct RequestCtx {
    /// Loaded once when the request starts; the request finishes on it whatever reloads.
    pub snapshot: Arc<Snapshot>,
    pub start: Instant,
    /// The `x-request-id` made for a local reply (a routed request carries its own in
    /// the request headers); `None` when the client sent one.
    pub request_id: Option<Box<http::HeaderValue>>,
    pub route: Option<Arc<Route>>,
    /// Index of the chosen destination in `route.destinations`, or
    /// [`FALLBACK_DESTINATION`] (u16: the context stays small).
    pub destination: Option<u16>,
    pub cluster: Option<Arc<Cluster>>,
    /// Endpoints tried, one per attempt ([`RequestCtx::attempts`] counts them).
    pub tried: Tried,
    /// The current attempt's upstream exchange: when it started, then how long the
    /// upstream took to answer (one field, so the context stays small).
    pub upstream_timing: UpstreamTiming,
    pub upstream_headers_received: bool,
    /// The upstream response ended (its time is recorded).
    pub upstream_complete: bool,
    /// The request was sent to the default backend after a `custom-http-errors` code
    /// (its upstream requests carry the redirect's path and headers).
    pub redirected: bool,
    /// An HTTP/1 upgrade whose request body is held open downstream (`upgrade.rs`).
    pub upgrade_held: bool,
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
    /// The route whose own filters all ran on the request (they run on the response).
    pub filtered: Option<Arc<Route>>,
    /// A mirror copying the request's body (`mirror.rs`), until it is complete.
    pub mirror: Option<Box<super::mirror::Pending>>,
    /// Whether the route's mirror has decided on this request (once, not per attempt).
    pub mirror_decided: bool,
    /// The request's hash for the cluster's hashing policy, kept for retries; 0: none
    /// (no hash key in the request; a key hashing to 0 itself, one in 2^64, balances as
    /// one without).
    pub lb_hash: u64,
    /// The endpoint counted active for least request ([`NO_ENDPOINT`]: none), released
    /// when the request ends.
    pub lb_active: u32,
    /// The gateway made the affinity cookie (its value is made again from the
    /// connection's addresses for the `Set-Cookie` of the upstream response).
    pub cookie_made: bool,
    /// Whether the request is gRPC, and its trailers' status (`grpc.rs`).
    pub grpc: super::grpc::GrpcState,
    in_flight: Arc<AtomicUsize>,
}

impl RequestCtx {
    /// Upstream attempts so far (the first and its retries).
    /// `x-envoy-upstream-service-time` / the access log's `upstream_service_time`.
    pub fn upstream_service_time_ms(&self) -> Option<u32> {
        match self.upstream_timing {
            UpstreamTiming::Answered(ms) => Some(ms),
            _ => None,
        }
    }

    /// The trace id a latency sample links to: only a trace whose spans are reported
    /// (an unrecorded one, dropped for a full queue or a refusing collector, would
    /// lead nowhere).
    pub fn exemplar_trace(&self) -> Option<&str> {
        self.trace
            .as_ref()
            .filter(|t| t.records())
            .map(|t| t.trace_id())
    }

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
        Some(&self.weighted_cluster()?.name)
    }

    /// The chosen destination: one of the route's, or its default backend.
    pub fn weighted_cluster(&self) -> Option<&WeightedCluster> {
        weighted(self.route.as_ref()?, self.destination?)
    }

    /// The chosen destination's cluster when one is defined (it may have no endpoints).
    pub fn destination_cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster
            .as_ref()
            .or_else(|| self.weighted_cluster()?.cluster.as_ref())
    }
}

/// Destination `index` of `route` ([`FALLBACK_DESTINATION`]: its default backend).
pub fn weighted(route: &Route, index: u16) -> Option<&WeightedCluster> {
    match index {
        FALLBACK_DESTINATION => Some(&route.policy.fallback.as_ref()?.destination),
        i => route.destinations.get(i as usize),
    }
}

/// Endpoint indices of the last attempts, in attempt order, and how many attempts were
/// made; fixed size, so no allocation (a retry policy may allow more attempts than are
/// kept: the oldest are forgotten).
#[derive(Default)]
pub struct Tried {
    indices: [u32; MAX_ATTEMPTS as usize],
    kept: u8,
    count: u8,
}

impl Tried {
    pub fn push(&mut self, index: u32) {
        let cap = self.indices.len();
        if (self.kept as usize) < cap {
            self.indices[self.kept as usize] = index;
            self.kept += 1;
        } else {
            self.indices.rotate_left(1);
            self.indices[cap - 1] = index;
        }
        self.count = self.count.saturating_add(1);
    }

    /// The endpoints of the last attempts (at most [`MAX_ATTEMPTS`]), the last one last.
    pub fn as_slice(&self) -> &[u32] {
        &self.indices[..self.kept as usize]
    }

    /// Attempts made.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        if let (true, Some(c)) = (self.lb_active != NO_ENDPOINT, &self.cluster) {
            c.lb.end(self.lb_active);
        }
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
            upstream_timing: UpstreamTiming::NotStarted,
            upstream_headers_received: false,
            upstream_complete: false,
            redirected: false,
            upgrade_held: false,
            deadline: None,
            flags: ResponseFlags::default(),
            local_status: None,
            connection: None,
            trace: None,
            not_sampled: None,
            gzip: None,
            transport_failure: None,
            wasm: None,
            filtered: None,
            mirror: None,
            mirror_decided: false,
            lb_hash: 0,
            lb_active: NO_ENDPOINT,
            cookie_made: false,
            grpc: super::grpc::GrpcState::NOT_GRPC,
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
        for i in [4, 1, 7] {
            t.push(i);
        }
        assert_eq!(t.as_slice(), &[4, 1, 7]);
        t.push(9);
        assert_eq!(t.as_slice(), &[1, 7, 9], "the last attempts are kept");
        assert_eq!(t.len(), 4);
    }
}
