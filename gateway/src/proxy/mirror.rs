//! Request mirroring on the data plane (`route.policy.mirror`, from the `mirror-*`
//! annotations), as Envoy's router shadows a request: a copy (method, path, headers,
//! body) goes to the mirror cluster with `-shadow` appended to its host
//! (`a.com:8080` -> `a.com-shadow:8080`), and its response is read and dropped. It
//! never delays or fails the request it copies:
//!
//! - the decision (the route's percentage) is taken once, when the request first goes
//!   upstream (`upstream_request_filter`), on the request as it goes there (plugins'
//!   and filters' edits included); a request whose every connect attempt fails is not
//!   mirrored;
//! - the body is copied as it streams through `request_body_filter`, up to
//!   `downstream.connectionBufferLimits` (Envoy bounds its shadow buffer by the
//!   connection's buffer limit); a longer body abandons the mirror
//!   (`envoy_cluster_upstream_rq_retry_or_shadow_abandoned` on the route's cluster);
//! - the copy is sent from a task of its own once the body is complete, over a new
//!   HTTP/1.1 connection to one endpoint of the mirror cluster (round robin), bounded by
//!   the route timeout (or [`DEFAULT_TIMEOUT`] when the route has none);
//! - at most [`MAX_IN_FLIGHT`] mirrors are in flight in the process; one more is dropped
//!   and counted (`envoy_cluster_upstream_rq_pending_overflow` on the mirror's cluster).
//!
//! Outcomes count on the mirror cluster's own stats, as Envoy counts shadow traffic:
//! `upstream_rq_total` (sent on a connection), `upstream_rq{response_code}` (the
//! mirror's status, or 503 / 504 for a connect failure / timeout, as the gateway charges
//! a cluster for its own replies), `upstream_rq_time`, `upstream_cx_total`,
//! `upstream_cx_connect_fail`, `upstream_rq_timeout`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use pingora_http::RequestHeader;

use crate::model::{Cluster, Route};
use crate::stats;

/// Mirrors in flight at once, in the whole process; more are dropped.
pub const MAX_IN_FLIGHT: usize = 256;
/// A mirror's time limit when its route has no timeout (a mirror never waits forever).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Mirrors in flight now (for tests and the debug view).
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// A mirror waiting for the rest of its request's body.
#[derive(Debug)]
pub struct Pending {
    cluster: Arc<Cluster>,
    head: http::request::Parts,
    body: BytesMut,
    limit: usize,
    timeout: Duration,
    /// The upstream attempt whose body is being copied: a retry replays the body from
    /// the start, so the copy starts again.
    attempt: u32,
}

/// What the request's body did to a pending mirror.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyStep {
    /// More body to come.
    Wait,
    /// The body is complete: send the copy.
    Complete,
    /// The body passed the limit: the mirror is abandoned.
    Abandon,
}

/// Decide whether the request `req` (as it goes upstream on `attempt`) is mirrored by
/// `route`; the mirror, waiting for its body. `roll` is uniform over `u32`.
pub fn start(
    route: &Route,
    req: &RequestHeader,
    roll: u32,
    body_limit: usize,
    route_timeout: Duration,
    attempt: u32,
) -> Option<Box<Pending>> {
    let policy = route.policy.mirror.as_ref()?;
    let cluster = policy.cluster.as_ref()?;
    if !policy.sampled(roll) {
        return None;
    }
    let timeout = route.timeout.unwrap_or(route_timeout);
    Some(Box::new(Pending {
        cluster: cluster.clone(),
        head: shadow_head(req),
        body: BytesMut::new(),
        limit: body_limit,
        timeout: if timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            timeout
        },
        attempt,
    }))
}

impl Pending {
    /// A chunk of the request body seen on `attempt`.
    pub fn body(&mut self, chunk: Option<&Bytes>, end: bool, attempt: u32) -> BodyStep {
        if attempt != self.attempt {
            self.attempt = attempt;
            self.body.clear();
        }
        if let Some(c) = chunk {
            if self.body.len() + c.len() > self.limit {
                return BodyStep::Abandon;
            }
            self.body.extend_from_slice(c);
        }
        if end {
            BodyStep::Complete
        } else {
            BodyStep::Wait
        }
    }

    /// Send the copy from a task of its own; dropped (and counted) over the cap.
    pub fn send(self: Box<Self>) {
        let stats = &self.cluster.stats;
        let taken = IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        if taken >= MAX_IN_FLIGHT {
            IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
            if stats::recording() {
                stats.rq_pending_overflow.inc();
            }
            return;
        }
        let Some((_, addr)) = self.cluster.pick(&[]) else {
            IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        tokio::spawn(async move {
            let _slot = Slot;
            let started = Instant::now();
            let timeout = self.timeout;
            let cluster = self.cluster.clone();
            let outcome = tokio::time::timeout(timeout, self.exchange(addr)).await;
            if !stats::recording() {
                return;
            }
            let s = &cluster.stats;
            match outcome {
                Ok(Ok(status)) => {
                    s.response(status);
                    s.response_complete(started.elapsed(), None);
                }
                Ok(Err(Failure::Connect)) => {
                    s.cx_connect_fail.inc();
                    s.response(503);
                }
                Ok(Err(Failure::Stream)) => s.response(503),
                Err(_) => {
                    s.rq_timeout.inc();
                    s.response(504);
                }
            }
        });
    }

    /// One exchange with the mirror: its status, the response body read and dropped.
    async fn exchange(self: Box<Self>, addr: SocketAddr) -> Result<u16, Failure> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = tcp.set_nodelay(true);
        let s = &self.cluster.stats;
        if stats::recording() {
            s.cx_total.inc();
        }
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|_| Failure::Stream)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let Pending { mut head, body, .. } = *self;
        let body = body.freeze();
        if !body.is_empty() || head.method.as_str() != "GET" {
            head.headers
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let req = http::Request::from_parts(head, Full::new(body));
        if stats::recording() {
            s.rq_total.inc();
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(|_| Failure::Stream)?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|_| Failure::Stream)?;
        }
        Ok(status)
    }
}

/// The request ended with its mirror still waiting for body (an HTTP/2 upstream is
/// not given an empty body): send it if the downstream body was read to its end.
pub fn on_request_end(pending: Box<Pending>, body_done: bool) {
    if body_done {
        pending.send();
    }
}

/// The proxy's hooks (called from `proxy/mod.rs` only for routes with a mirror).
impl super::Gateway {
    /// The request goes upstream for the first time: decide, and send at once when there
    /// is no body to wait for.
    pub(super) fn mirror_start(
        &self,
        session: &mut pingora_proxy::Session,
        upstream_request: &RequestHeader,
        ctx: &mut super::RequestCtx,
    ) {
        ctx.mirror_decided = true;
        let Some(route) = &ctx.route else { return };
        let global = &ctx.snapshot.filters.global;
        let Some(pending) = start(
            route,
            upstream_request,
            super::roll(),
            global.downstream_buffer_limit,
            global.route_timeout,
            ctx.attempts(),
        ) else {
            return;
        };
        // No body coming through `request_body_filter` (and no plugin holding one).
        if session.is_body_done() && session.body_bytes_read() == 0 && ctx.wasm.is_none() {
            pending.send();
        } else {
            ctx.mirror = Some(pending);
        }
    }

    /// A chunk of the request body on its way upstream.
    pub(super) fn mirror_body(
        &self,
        chunk: Option<&Bytes>,
        end: bool,
        ctx: &mut super::RequestCtx,
    ) {
        let attempt = ctx.attempts();
        let Some(m) = ctx.mirror.as_mut() else { return };
        match m.body(chunk, end, attempt) {
            BodyStep::Wait => {}
            BodyStep::Complete => {
                if let Some(m) = ctx.mirror.take() {
                    m.send();
                }
            }
            BodyStep::Abandon => {
                ctx.mirror = None;
                if let (true, Some(c)) = (stats::recording(), &ctx.cluster) {
                    c.stats.rq_retry_or_shadow_abandoned.inc();
                }
            }
        }
    }
}

/// Why an exchange failed.
enum Failure {
    Connect,
    Stream,
}

/// Gives back an in-flight slot when the mirror's task ends.
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hop-by-hop headers (and the body's framing, set again for the copy).
const NOT_COPIED: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "content-length",
    "host",
];

/// The copy's method, origin-form target and headers, its host with `-shadow`.
fn shadow_head(req: &RequestHeader) -> http::request::Parts {
    let mut headers = HeaderMap::with_capacity(req.headers.len() + 1);
    for (k, v) in req.headers.iter() {
        if !NOT_COPIED.contains(&k.as_str()) {
            headers.append(k.clone(), v.clone());
        }
    }
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    if let Ok(v) = HeaderValue::from_str(&shadow_host(host)) {
        headers.insert(http::header::HOST, v);
    }
    let target = req
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<http::Uri>()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = req.method.clone();
    parts.uri = target;
    parts.headers = headers;
    parts
}

/// Envoy's shadow host: `-shadow` after the host, before a port.
pub fn shadow_host(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((h, port))
            if !h.is_empty()
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            format!("{h}-shadow:{port}")
        }
        _ => format!("{host}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mirror::MirrorPolicy;
    use crate::model::{PathMatch, Protocol};
    use crate::stats::ClusterStatsCache;

    #[test]
    fn shadow_host_keeps_the_port() {
        assert_eq!(shadow_host("a.com"), "a.com-shadow");
        assert_eq!(shadow_host("a.com:8080"), "a.com-shadow:8080");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow_host(""), "-shadow");
    }

    fn route(percent: u32) -> Route {
        let c = Arc::new(Cluster::new(
            "m.static",
            80,
            Protocol::Http,
            vec!["127.0.0.1:9".parse().unwrap()],
            &mut ClusterStatsCache::detached(),
        ));
        let mut r = Route::new(
            "r".into(),
            PathMatch::Prefix(String::new()),
            false,
            vec![],
            None,
            false,
        );
        r.policy.mirror = Some(Arc::new(MirrorPolicy::new(
            c.name.clone().into(),
            Some(c),
            percent,
        )));
        r
    }

    #[test]
    fn the_copy_is_the_request_with_a_shadow_host() {
        let mut req = RequestHeader::build("POST", b"/p?q=1", None).unwrap();
        req.insert_header("host", "a.com:8080").unwrap();
        req.insert_header("x-one", "1").unwrap();
        req.insert_header("connection", "keep-alive").unwrap();
        req.insert_header("content-length", "5").unwrap();
        let p = start(&route(100), &req, 0, 10, Duration::ZERO, 1).unwrap();
        assert_eq!(p.head.method, http::Method::POST);
        assert_eq!(p.head.uri, "/p?q=1");
        assert_eq!(p.head.headers["host"], "a.com-shadow:8080");
        assert_eq!(p.head.headers["x-one"], "1");
        assert!(p.head.headers.get("connection").is_none());
        assert!(p.head.headers.get("content-length").is_none());
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert!(start(&route(0), &req, 0, 10, Duration::ZERO, 1).is_none());
    }

    #[test]
    fn body_is_copied_within_the_limit_and_restarts_on_retry() {
        let req = RequestHeader::build("POST", b"/", None).unwrap();
        let mut p = start(&route(100), &req, 0, 8, Duration::from_secs(3), 1).unwrap();
        assert_eq!(p.timeout, Duration::from_secs(3));
        let chunk = |b: &'static [u8]| Bytes::from_static(b);
        assert_eq!(p.body(Some(&chunk(b"abcd")), false, 1), BodyStep::Wait);
        assert_eq!(p.body(Some(&chunk(b"efgh")), false, 1), BodyStep::Wait);
        // A retry replays the body from its start.
        assert_eq!(p.body(Some(&chunk(b"abcd")), false, 2), BodyStep::Wait);
        assert_eq!(p.body(None, true, 2), BodyStep::Complete);
        assert_eq!(&p.body[..], b"abcd");
        assert_eq!(p.body(Some(&chunk(b"12345")), false, 2), BodyStep::Abandon);
    }
}
