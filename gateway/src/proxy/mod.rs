//! The data plane: Pingora's `ProxyHttp` phases, each calling small named steps.
//!
//! Per request: one snapshot load (in `new_ctx`), a route lookup that does not allocate,
//! and the header policy. Everything computable from config was computed when the
//! snapshot was built.

pub mod access_log;
pub mod app;
pub mod coalesce;
pub mod compressor;
pub mod context;
pub mod faults;
pub mod flags;
pub mod grpc;
pub mod head_guard;
pub mod headers;
pub mod https;
pub mod idle;
pub mod load_balance;
pub mod local_reply;
pub mod mirror;
pub mod normalize;
pub mod overload;
pub mod propagation;
pub mod redirect;
pub mod request_id;
pub mod retry;
pub mod rewrite;
pub mod route_filters;
mod route_stats;
pub mod spans;
mod stream_info;
pub mod upgrade;
pub mod upstream_conn;
pub mod zlib;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::model::http_filter::edit_parts;
use crate::model::{self, PathMatch, Protocol, Sni};
use crate::snapshot::SnapshotCell;
use crate::stats::{self, HcmStats};
use crate::wasm::filter::{Verdict, WasmRequest};
use access_log::AccessLog;
use context::{RequestCtx, UpstreamTiming, FALLBACK_DESTINATION};
use flags::ResponseFlags;
use load_balance::roll;
use local_reply::LocalReply;

/// Envoy's default upstream connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener a [`Gateway`] serves.
#[derive(Clone, Copy, Debug)]
pub struct ListenerInfo {
    /// The HTTPS listener: `x-forwarded-proto: https`, no HTTPS redirect.
    pub tls: bool,
    /// For the authority of an HTTPS redirect.
    pub ports: redirect::Ports,
    /// The cluster-local listener: routes by the snapshot's `local_routes`.
    pub local: bool,
    /// HTTPS: answer 421 to a request for another TLS domain than its SNI's.
    pub check_sni: bool,
}

pub struct Gateway {
    snapshot: SnapshotCell,
    access_log: Arc<AccessLog>,
    in_flight: Arc<AtomicUsize>,
    overload: Arc<overload::Overload>,
    hcm: HcmStats,
    listener: ListenerInfo,
}

impl Gateway {
    /// `in_flight` counts requests being served (for the SIGTERM drain and the
    /// overload limit).
    pub fn new(
        snapshot: SnapshotCell,
        access_log: Arc<AccessLog>,
        (in_flight, overload): (Arc<AtomicUsize>, Arc<overload::Overload>),
        hcm: HcmStats,
        listener: ListenerInfo,
    ) -> Self {
        Gateway {
            snapshot,
            access_log,
            in_flight,
            overload,
            hcm,
            listener,
        }
    }
}

/// Host as the client sent it: `Host` (HTTP/1) or `:authority` (HTTP/2).
fn request_host(req: &RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// The error that ends a request a plugin ended after its headers went upstream; a
/// local reply is kept for `fail_to_proxy` to send.
fn wasm_error(v: Verdict, w: &mut WasmRequest) -> Box<Error> {
    match v {
        Verdict::Respond(lr) => {
            let status = lr.status;
            w.pending_reply = Some(lr);
            Error::explain(
                ErrorType::HTTPStatus(status),
                "local reply of a Wasm plugin",
            )
        }
        Verdict::Fail => Error::explain(ErrorType::HTTPStatus(503), "Wasm plugin failure"),
        Verdict::TooLarge => Error::explain(
            ErrorType::HTTPStatus(413),
            "request body over the buffer limit",
        ),
        Verdict::Reset | Verdict::Continue => {
            w.reset = true;
            Error::explain(
                ErrorType::ConnectionClosed,
                "stream closed by a Wasm plugin",
            )
        }
    }
}

impl Gateway {
    /// Route the request; on a local reply say which.
    fn route(&self, session: &Session, ctx: &mut RequestCtx) -> Result<(), LocalReply> {
        let req = session.req_header();
        let global = &ctx.snapshot.filters.global;
        let (host, path) = (request_host(req), req.uri.path());
        let table = if self.listener.local {
            &ctx.snapshot.local_routes
        } else {
            &ctx.snapshot.routes
        };
        let Some(route) = table
            .find(host, path, req)
            .filter(|r| !r.tls_only || self.listener.tls)
        else {
            return Err(LocalReply::Status(404, "", ResponseFlags::NO_ROUTE));
        };
        if route.ssl_redirect && !self.listener.tls {
            ctx.route = Some(route.clone());
            return Err(LocalReply::HttpsRedirect);
        }
        if route.policy.redirect.is_some() {
            // Answered after the filters (`rewrite.rs`), as Envoy's router does.
            ctx.route = Some(route.clone());
            return Ok(());
        }
        let mut timeout = route.timeout.unwrap_or(global.route_timeout);
        if ctx.grpc.is_grpc() {
            timeout = grpc::timeout(req, timeout);
        }
        if !timeout.is_zero() {
            ctx.deadline = Some(ctx.start + timeout);
        }
        let dest = route.pick(roll());
        ctx.route = Some(route.clone());
        let Some((index, dest)) = dest else {
            return Err(LocalReply::Status(
                503,
                local_reply::NO_HEALTHY_UPSTREAM,
                ResponseFlags::NO_HEALTHY_UPSTREAM,
            ));
        };
        ctx.destination = u16::try_from(index).ok();
        match &dest.cluster {
            Some(c) if !c.endpoints.is_empty() => {
                ctx.cluster = Some(c.clone());
                Ok(())
            }
            // `default-backend`: the route's cluster has no endpoint.
            _ if retry::no_endpoint_fallback(route).is_some() => {
                ctx.destination = Some(FALLBACK_DESTINATION);
                ctx.cluster = retry::no_endpoint_fallback(route).cloned();
                Ok(())
            }
            _ => Err(LocalReply::Status(
                503,
                local_reply::NO_HEALTHY_UPSTREAM,
                ResponseFlags::NO_HEALTHY_UPSTREAM,
            )),
        }
    }

    /// The upstream response is complete (or the request ended without seeing it end).
    fn upstream_complete(&self, ctx: &mut RequestCtx) {
        if ctx.upstream_complete || !ctx.upstream_headers_received {
            return;
        }
        ctx.upstream_complete = true;
        if let Some(t) = ctx.trace.as_mut() {
            t.attempt_done();
        }
        if let (true, Some(c)) = (stats::recording(), &ctx.cluster) {
            let trace_id = ctx.exemplar_trace();
            c.stats.response_complete(ctx.start.elapsed(), trace_id);
        }
    }

    /// Downstream and Istio stats of a finished request.
    fn record_request(&self, session: &Session, ctx: &mut RequestCtx, status: u16) {
        // A response without a body may end without a last body chunk.
        self.upstream_complete(ctx);
        if let (Some(c), true) = (&ctx.cluster, ctx.attempts() > 0) {
            // The request body went upstream (once per attempt that got that far).
            c.stats.cx_tx_bytes.add(session.body_bytes_read() as u64);
        }
        let elapsed = ctx.start.elapsed();
        let trace_id = ctx.exemplar_trace();
        self.hcm.request_done(status, elapsed, trace_id);
        route_stats::record(ctx, status, elapsed, trace_id);
        let istio = match ctx.destination_cluster() {
            Some(c) => &c.stats.istio,
            None => &*self.hcm.no_destination,
        };
        let req_bytes = headers::request_wire_size(session.req_header()) as u64
            + session.body_bytes_read() as u64;
        let resp_bytes = session
            .response_written()
            .map_or(0, headers::response_wire_size) as u64
            + session.body_bytes_sent() as u64;
        let protocol = grpc::outcome(session, ctx, status);
        istio.record(status, protocol, ctx.flags, elapsed, req_bytes, resp_bytes);
    }

    /// End a sampled request's spans and hand them to its tracer; the trace id's text.
    fn finish_trace(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        spans: Box<spans::RequestSpans>,
        status: u16,
    ) -> String {
        let req = session.req_header();
        let host = request_host(req);
        let path = req.uri.path();
        let pq = req.uri.path_and_query().map_or(path, |p| p.as_str());
        let scheme = if self.listener.tls {
            "https://"
        } else {
            "http://"
        };
        let url: Arc<str> = [scheme, host, pq].concat().into();
        let path_start = scheme.len() + host.len();
        let route_path = ctx.route.as_ref().map(|r| match &r.path {
            PathMatch::Exact(p) => p.as_str(),
            PathMatch::Prefix(p) if p.is_empty() => "/",
            PathMatch::Prefix(p) => p.as_str(),
            PathMatch::Regex(r) => r.as_str(),
        });
        let request_id = req
            .headers
            .get(headers::X_REQUEST_ID)
            .or(ctx.request_id.as_deref())
            .cloned();
        spans.finish(spans::Finish {
            method: req.method.clone(),
            url,
            path: path_start..path_start + path.len(),
            protocol: if session.is_http2() {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
            status,
            flags: ctx.flags,
            cluster: ctx.cluster_name_shared().cloned(),
            route: route_path,
            route_name: ctx.route.as_ref().map(|r| r.name.clone()),
            request_id,
            peer: session.client_addr().and_then(|a| a.as_inet()).copied(),
        })
    }

    /// The request phase of the Wasm plugin chain; `true` when the request was answered.
    async fn request_plugins(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<bool> {
        let mut w = WasmRequest::new(&ctx.snapshot.plugins, self.stream_info(session, ctx));
        let limit = ctx.snapshot.filters.global.downstream_buffer_limit;
        let verdict = w.on_request(session, limit).await;
        let table = if self.listener.local {
            &ctx.snapshot.local_routes
        } else {
            &ctx.snapshot.routes
        };
        // Another lookup reads the host, path and method, and other headers only for
        // routes that match on them; route filters, run since the lookup, may have edited
        // any of it.
        let headers_matter = table.reads_requests() || ctx.filtered.is_some();
        let reroute = w.needs_reroute(headers_matter);
        let w = ctx.wasm.insert(w);
        match verdict? {
            Verdict::Continue => {}
            Verdict::Respond(lr) => {
                let status = w.respond(session, lr).await?;
                ctx.local_status = Some(status);
                return Ok(true);
            }
            Verdict::Fail => {
                ctx.local_status = Some(503);
                let drained = session.is_body_done();
                local_reply::send(session, 503, "", drained).await?;
                return Ok(true);
            }
            Verdict::TooLarge => {
                ctx.local_status = Some(413);
                local_reply::send(session, 413, local_reply::PAYLOAD_TOO_LARGE, false).await?;
                return Ok(true);
            }
            Verdict::Reset => {
                w.reset = true;
                ctx.flags.set(ResponseFlags::LOCAL_RESET);
                return Error::e_explain(
                    ErrorType::ConnectionClosed,
                    "stream closed by a Wasm plugin",
                );
            }
        }
        if reroute {
            // Envoy clears the route cache when a filter edits request headers.
            ctx.route = None;
            ctx.cluster = None;
            ctx.destination = None;
            if let Err(reply) = self.route(session, ctx) {
                return self.local_reply(session, ctx, reply).await;
            }
            let route_name = ctx.route.as_ref().map(|r| r.name.clone());
            let cluster_name = ctx.cluster_name_shared().cloned();
            if let Some(w) = ctx.wasm.as_mut() {
                let info = w.info_mut();
                info.route_name = route_name;
                info.cluster_name = cluster_name;
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.snapshot.load_full(), self.in_flight.clone())
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        if stats::recording() {
            self.hcm.rq_total.inc();
        }
        // HTTP/1: the connection's idle watchdog (`idle.rs`) waits for this request.
        if let Some(conn) = idle::ConnActivity::of(session) {
            // Envoy's request time starts at the request's first byte.
            if let Some(first_byte) = conn.take_first_byte() {
                ctx.start = first_byte;
            }
            ctx.connection = Some(conn.begin());
        }
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<bool> {
        ctx.grpc = grpc::GrpcState::of(session);
        if self.overload.refuses(&self.in_flight) {
            self.hcm.rq_overload_close.inc();
            let reply = LocalReply::Status(503, overload::OVERLOADED, ResponseFlags::OVERLOAD);
            return self.local_reply(session, ctx, reply).await;
        }
        if let Some(tracer) = &ctx.snapshot.tracer {
            match spans::RequestSpans::start(tracer, &session.req_header().headers, ctx.start) {
                spans::Started::Sampled(t) => ctx.trace = Some(t),
                spans::Started::NotSampled(n) => ctx.not_sampled = n,
            }
        }
        normalize::apply(session.req_header_mut());
        // The downstream codec's limits: on what the client sent, not on plugin edits.
        let limit = ctx.snapshot.filters.global.max_request_headers_bytes;
        let req = session.req_header();
        let routed = if headers::request_headers_size(req) > limit
            || req.headers.len() > normalize::MAX_REQUEST_HEADERS
        {
            Err(LocalReply::Status(431, local_reply::HEADERS_TOO_LARGE, 0))
        } else if self.listener.check_sni && https::misdirected(session, &ctx.snapshot.certs) {
            Err(LocalReply::Status(421, "", 0))
        } else {
            self.route(session, ctx)
        };
        if let Err(reply) = routed {
            return self.local_reply(session, ctx, reply).await;
        }
        let fwd = headers::Forwarded {
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            tls: self.listener.tls,
            later: if ctx.trace.is_some() || ctx.not_sampled.is_some() {
                propagation::MAX_HEADERS
            } else {
                0
            },
        };
        let global = &ctx.snapshot.filters.global;
        let method = &session.req_header().method;
        let filters_act = ctx
            .route
            .as_ref()
            .is_some_and(|r| route_filters::act(r, method));
        let plugins = !ctx.snapshot.plugins.is_empty();
        let early = ctx
            .route
            .as_deref()
            .and_then(|r| rewrite::early_control(r, filters_act, plugins));
        let control_done = early.is_some();
        headers::forwarded_request(session.req_header_mut(), &fwd, global, early);
        if filters_act {
            if let Some(status) = route_filters::run(session, ctx).await? {
                ctx.local_status = Some(status);
                return Ok(true);
            }
        } else if ctx
            .route
            .as_ref()
            .is_some_and(|r| !r.policy.filters.is_empty())
        {
            // Filters with nothing to do on this request still see its response.
            ctx.filtered = ctx.route.clone();
        }
        if !ctx.snapshot.plugins.is_empty() {
            let start = ctx.trace.is_some().then(std::time::SystemTime::now);
            let answered = self.request_plugins(session, ctx).await?;
            if let (Some(t), Some(start)) = (ctx.trace.as_mut(), start) {
                t.phase("plugins: request headers", start);
            }
            if answered {
                return Ok(true);
            }
        }
        // The route's redirect or rewrite (cloned only when it has one).
        if let Some(route) = ctx
            .route
            .as_ref()
            .filter(|r| rewrite::acts(r, control_done))
            .cloned()
        {
            let global = &ctx.snapshot.filters.global;
            let tls = self.listener.tls;
            if let Some(status) =
                rewrite::on_request(session, &route, tls, global, control_done).await?
            {
                ctx.local_status = Some(status);
                return Ok(true);
            }
        }
        // Going upstream: the gateway says `100 Continue` itself, as Envoy does.
        if normalize::expects_continue(session.req_header()) {
            session
                .req_header_mut()
                .remove_header(&http::header::EXPECT);
            session.write_continue_response().await?;
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        let attempt = ctx.attempts();
        if let Some(w) = ctx.wasm.as_mut() {
            if let Err(v) = w
                .on_request_body(session, body, end_of_stream, attempt)
                .await
            {
                return Err(wasm_error(v, w));
            }
        }
        if ctx.mirror.is_some() {
            self.mirror_body(body.as_ref(), end_of_stream, ctx);
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<Box<HttpPeer>> {
        let addr = load_balance::pick_endpoint(session, ctx)?;
        let Some(cluster) = ctx.cluster.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "no cluster selected");
        };
        let recording = stats::recording();
        if recording && ctx.attempts() > 1 {
            cluster.stats.rq_retry.inc();
        }
        ctx.upstream_timing = UpstreamTiming::Started(Instant::now());
        if let Some(t) = ctx.trace.as_mut() {
            t.begin_attempt(addr);
        }
        let global = &ctx.snapshot.filters.global;
        // The route's view of the destination: its protocol and TLS (annotations, else
        // the registry's).
        let dest = ctx
            .route
            .as_ref()
            .zip(ctx.destination)
            .and_then(|(r, i)| context::weighted(r, i));
        let protocol = dest.map_or(cluster.protocol, |d| d.protocol);
        let tls = dest.and_then(|d| d.tls.as_ref());
        // A new attempt: an earlier one's TLS failure is not this one's.
        ctx.transport_failure = None;
        let sni = match tls.map(|t| &t.sni) {
            None | Some(Sni::None) => String::new(),
            Some(Sni::Fixed(name)) => name.clone(),
            Some(Sni::RequestHost) => {
                model::sni_from_host(request_host(session.req_header())).unwrap_or_default()
            }
        };
        if sni.is_empty() && tls.is_some_and(|t| t.verify) {
            // Pingora would connect unverified without a name: refuse instead.
            let why = "TLS error: no server name to verify the certificate against (the request's host is empty or an IP address)";
            ctx.transport_failure = Some(Box::new(why.to_string()));
            ctx.flags.set(ResponseFlags::CONNECT_FAILURE);
            if recording {
                cluster.stats.ssl_connection_error.inc();
            }
            let mut e = Error::new_up(ErrorType::InvalidCert);
            e.context = Some(why.into());
            return Err(e);
        }
        let mut peer = HttpPeer::new(addr, tls.is_some(), sni);
        peer.group_key = cluster.pool_key ^ tls.map_or(0, |t| t.pool_salt);
        if let Some(t) = tls {
            peer.client_cert_key = t.client_cert.clone();
        }
        let o = &mut peer.options;
        if let Some(t) = tls {
            o.verify_cert = t.verify;
            o.verify_hostname = t.verify;
            o.ca = t.ca.clone();
        }
        if recording {
            o.tracer = Some(upstream_conn::ConnectionTracer::tracer(&cluster.stats));
        }
        o.connection_timeout = Some(CONNECT_TIMEOUT);
        if !global.upstream_idle_timeout.is_zero() {
            o.idle_timeout = Some(global.upstream_idle_timeout);
        }
        o.read_timeout = retry::read_timeout(ctx);
        if matches!(protocol, Protocol::Http2 | Protocol::Grpc | Protocol::Grpcs) {
            o.set_http_version(2, 2);
        }
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        if !reused && digest.is_some_and(|d| d.ssl_digest.is_some()) && stats::recording() {
            if let Some(c) = &ctx.cluster {
                c.stats.ssl_handshake.inc();
            }
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        ctx.upgrade_held = upgrade::hold_open(session, upstream_request);
        // Here the request has a connection: Envoy's `upstream_rq_total` counts it.
        if let (true, Some(c)) = (stats::recording(), &ctx.cluster) {
            c.stats.rq_total.inc();
            c.stats
                .cx_tx_bytes
                .add(headers::request_wire_size(upstream_request) as u64);
        }
        if let Some(t) = &ctx.trace {
            // (A shared copy of the URI: the request is taken apart for the edit.)
            let uri = upstream_request.uri.clone();
            headers::edit_request(upstream_request, |h| t.inject(h, uri.path()));
        } else if let Some(n) = &ctx.not_sampled {
            headers::edit_request(upstream_request, |h| n.inject(h));
        }
        if !ctx.mirror_decided
            && ctx
                .route
                .as_ref()
                .is_some_and(|r| r.policy.mirror.is_some())
        {
            self.mirror_start(session, upstream_request, ctx);
        }
        if ctx.redirected {
            retry::redirect_request(
                session.req_header(),
                ctx,
                self.listener.tls,
                upstream_request,
            );
        }
        if let Some(ops) = ctx
            .weighted_cluster()
            .and_then(|d| d.headers.as_deref())
            .map(|c| &c.request)
            .filter(|ops| !ops.is_empty())
        {
            headers::edit_request(upstream_request, |h| ops.apply(h));
        }
        // The edge headers are on the downstream request already (`request_filter`).
        headers::retry_attempt(
            upstream_request,
            ctx.attempts(),
            &ctx.snapshot.filters.global,
        );
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        if upstream_response.status.is_informational() && upstream_response.status != 101 {
            return Ok(());
        }
        faults::on_response(ctx, upstream_response.status.as_u16());
        if ctx
            .route
            .as_ref()
            .is_some_and(|r| r.policy.retry.is_some() || r.policy.fallback.is_some())
        {
            retry::on_response(session, ctx, upstream_response.status.as_u16())?;
        }
        ctx.upstream_headers_received = true;
        if std::mem::take(&mut ctx.cookie_made) {
            // The affinity cookie the gateway made (Envoy's router adds it here).
            if let Some(c) = load_balance::made_set_cookie(session, ctx) {
                upstream_response.append_header(http::header::SET_COOKIE, c)?;
            }
        }
        if let (true, Some(c)) = (stats::recording(), &ctx.cluster) {
            c.stats.response(upstream_response.status.as_u16());
            c.stats
                .cx_rx_bytes
                .add(headers::response_wire_size(upstream_response) as u64);
        }
        if let UpstreamTiming::Started(t) = ctx.upstream_timing {
            let ms = t.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
            ctx.upstream_timing = UpstreamTiming::Answered(ms);
        }
        route_filters::upstream_response(session.req_header(), upstream_response, ctx);
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<Option<Duration>> {
        if let (Some(b), Some(c)) = (body.as_ref(), &ctx.cluster) {
            if stats::recording() {
                c.stats.cx_rx_bytes.add(b.len() as u64);
            }
        }
        if end_of_stream {
            self.upstream_complete(ctx);
        }
        // The route timeout covers the whole response, as Envoy's does.
        if let Some(deadline) = ctx.deadline {
            if !end_of_stream && Instant::now() >= deadline {
                ctx.flags.set(ResponseFlags::UPSTREAM_TIMEOUT);
                return Error::e_explain(
                    ErrorType::ReadTimedout,
                    "route timeout during the response body",
                );
            }
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        let status = response.status.as_u16();
        if response.status.is_informational() && status != 101 {
            return Ok(());
        }
        if ctx.upgrade_held && status != 101 {
            // A refused upgrade: the body held open will never come; this connection ends.
            session.set_keepalive(None);
        }
        // Envoy decides on headers that end the stream: no body, nothing to compress.
        let no_body = session.req_header().method == http::Method::HEAD
            || status == 204
            || status == 304
            || response
                .headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        // The route's header control was applied with the upstream's response
        // (route_filters::upstream_response), before the plugins, as Envoy's router does.
        // Plugins see the response before compression.
        if let Some(w) = ctx.wasm.as_mut() {
            let start = ctx.trace.is_some().then(std::time::SystemTime::now);
            if let Err(v) = w.on_response_headers(session, response, no_body).await {
                return Err(wasm_error(v, w));
            }
            if let (Some(t), Some(start)) = (ctx.trace.as_mut(), start) {
                t.phase("plugins: response headers", start);
            }
        }
        // The route's filters ran before the plugins: they see the response after them
        // (without plugins they ran in route_filters::upstream_response).
        if let (Some(route), true) = (&ctx.filtered, ctx.wasm.is_some()) {
            let ran = route.policy.filters.len();
            let req = session.req_header();
            edit_parts(response, |p| route_filters::on_response(route, ran, req, p));
        }
        let Some(settings) = &ctx.snapshot.filters.gzip else {
            return Ok(());
        };
        // HTTP/1.0 has no chunked framing for a body whose length changes (Envoy
        // refuses HTTP/1.0 by default): such responses pass as they are.
        if session.req_header().version == http::Version::HTTP_10 {
            return Ok(());
        }
        // The request's Accept-Encoding is read here, and only for responses that pass
        // the response checks.
        ctx.gzip = compressor::on_response(
            settings,
            &self.hcm.gzip,
            &session.req_header().headers,
            response,
            no_body,
            !session.is_http2(),
        )
        .map(Box::new);
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<Option<Duration>> {
        if let Some(w) = ctx.wasm.as_mut() {
            if let Err(v) = w.on_response_body(session, body, end_of_stream) {
                return Err(wasm_error(v, w));
            }
        }
        if let Some(gz) = &mut ctx.gzip {
            if let Err(e) = gz.body(body, end_of_stream) {
                // The headers promised gzip: a broken stream must not look complete.
                return Error::e_explain(ErrorType::InternalError, format!("gzip: {e}"));
            }
        }
        Ok(None)
    }

    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<Option<bytes::Bytes>> {
        grpc::on_trailers(ctx, trailers);
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Connect failures are retried on another endpoint (`proxy/retry.rs`).
        e.set_retry(retry::after_connect_failure(session, ctx));
        // (Pingora's `HandshakeError` is the HTTP/2 handshake, not TLS.)
        let tls_failure = peer.is_tls()
            && matches!(
                e.etype(),
                ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert
            );
        if tls_failure {
            // Envoy's `upstream_transport_failure_reason`, for the reply and the log;
            // without Pingora's `, SNI: <name>` tail (the reply goes to the client).
            let why = e.context.as_ref().map_or_else(
                || e.etype().as_str().to_string(),
                |c| {
                    let c = c.as_str();
                    c.rsplit_once(", SNI: ")
                        .map_or(c, |(head, _)| head)
                        .to_string()
                },
            );
            ctx.transport_failure = Some(Box::new(format!("TLS error: {why}")));
        }
        if let (true, Some(c)) = (stats::recording(), &ctx.cluster) {
            c.stats.cx_connect_fail.inc();
            if *e.etype() == ErrorType::ConnectTimedout {
                c.stats.cx_connect_timeout.inc();
            }
            if tls_failure {
                c.stats.ssl_connection_error.inc();
            }
        }
        ctx.flags.set(ResponseFlags::CONNECT_FAILURE);
        faults::on_connect_failure(ctx);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        faults::on_attempt_error(ctx, peer, &e);
        // A reset before response headers is retried (docs/configuration.md's retry
        // policy, or the route's); a route timeout or anything after headers is not.
        e.set_retry(retry::after_error(session, ctx, &e));
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy
    where
        RequestCtx: Send + Sync,
    {
        if let Some(w) = ctx.wasm.as_mut() {
            if let Some(lr) = w.pending_reply.take() {
                // A plugin answered from the request body: its reply, as it made it.
                let mut code = session.response_written().map_or(0, |r| r.status.as_u16());
                if code == 0 {
                    match w.respond(session, lr).await {
                        Ok(s) => {
                            code = s;
                            ctx.local_status = Some(s);
                        }
                        Err(err) => {
                            tracing::debug!(error = %err, "could not send the plugin's reply")
                        }
                    }
                }
                return FailToProxy {
                    error_code: code,
                    can_reuse_downstream: false,
                };
            }
            if w.reset {
                ctx.flags.set(ResponseFlags::LOCAL_RESET);
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                };
            }
        }
        let (status, body, flag) = faults::reply(e, ctx);
        if flag != 0 {
            ctx.flags.set(flag);
        }
        if retry::exhausted(ctx, status) {
            ctx.flags.set(ResponseFlags::RETRY_EXHAUSTED);
        }
        if let (true, Some(c)) = (stats::recording(), &ctx.cluster) {
            if ctx.flags.has(ResponseFlags::UPSTREAM_TIMEOUT) {
                c.stats.rq_timeout.inc();
            }
            // The gateway answers for the cluster after an attempt (Envoy charges the
            // cluster with that 503/504 too); a response already under way was counted.
            if status != 0 && session.response_written().is_none() {
                c.stats.response(status);
            }
        }
        let mut code = status;
        if status != 0 {
            if session.response_written().is_some() {
                code = session.response_written().map_or(0, |r| r.status.as_u16());
                grpc::reset_started(session);
            } else {
                ctx.local_status = Some(status);
                let sent = match (&ctx.transport_failure, status) {
                    (Some(why), 503) => {
                        let text = format!("{body}, transport failure reason: {why}");
                        local_reply::send_text(session, status, text, false).await
                    }
                    _ => local_reply::send(session, status, body, false).await,
                };
                if let Err(err) = sent {
                    tracing::debug!(error = %err, "could not send the error reply");
                }
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx)
    where
        RequestCtx: Send + Sync,
    {
        // The status sent downstream; 0 when none was.
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.local_status)
            .unwrap_or(0);
        if stats::recording() {
            self.record_request(session, ctx, status);
        }
        if let Some(m) = ctx.mirror.take() {
            mirror::on_request_end(m, session.is_body_done());
        }
        let upstream = ctx.upstream_host();
        if let Some(w) = ctx.wasm.as_mut() {
            let info = w.info_mut();
            info.response_code = status;
            info.response_flags = ctx.flags.envoy_bits();
            info.upstream = upstream;
            info.request_size = session.body_bytes_read() as u64;
            info.response_size = session.body_bytes_sent() as u64;
            w.on_log(session);
        }
        let trace_id = ctx.trace.take().and_then(|t| match t.records() {
            true => Some(self.finish_trace(session, ctx, t, status)),
            false => t.drop_unrecorded(self.access_log.enabled()),
        });
        if self.access_log.enabled() {
            self.access_log
                .write(access_log::line(session, ctx, status, trace_id.as_deref()));
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Failures are in the access log with their response flags.
        true
    }
}
