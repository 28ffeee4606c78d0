//! The filters a route's annotations put on it (`RoutePolicy::filters`): run on the
//! request headers in order after routing, before the plugin chain; on the response
//! headers in reverse. A filter's reply is sent at once, through the response side of
//! the filters before it, as Envoy runs a local reply through the encoders of the
//! filters that already decoded.

use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::context::RequestCtx;
use super::flags::ResponseFlags;
use super::grpc;
use super::headers::{millis_value, X_ENVOY_UPSTREAM_SERVICE_TIME};
use crate::model::http_filter::{
    edit_parts, FilterStatus, LocalReply, MatchInput, Pending, ReplyFlags, ResponseParts,
};
use crate::model::Route;

/// Headers a filter may add to a response (CORS adds the most), for one reserve.
const FILTER_ADDITIONS: usize = 3;

/// Whether any of `route`'s filters acts on a request with `method`.
pub fn act(route: &Route, method: &http::Method) -> bool {
    route
        .policy
        .filters
        .iter()
        .any(|f| f.acts_on_request(method))
}

/// The routed request's own filters on its headers; the status of their reply, if one
/// answered (sent already, its response flags in `ctx`).
pub async fn run(
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_error::Result<Option<u16>> {
    let Some(route) = ctx.route.clone() else {
        return Ok(None);
    };
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let req = session.req_header_mut();
    // Refcounted clones, no copy: filters may edit the request.
    let host = req.headers.get(http::header::HOST).cloned();
    let uri_authority = match host {
        Some(_) => None,
        None => req.uri.authority().cloned(),
    };
    let authority = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri_authority.as_ref().map(|a| a.as_str()))
        .unwrap_or("");
    let input = MatchInput {
        route: Some(&route.name),
        authority,
        cluster: ctx.cluster_name(),
        peer,
    };
    // A filter may make the request wait (a fault delay) and then decide.
    let mut from = 0;
    let outcome = loop {
        match on_request(&route, req, &input, from) {
            Step::Done => break Ok(()),
            Step::Reply(i, reply) => break Err((i, reply)),
            Step::Wait(i, pending) => match pending.0.await.reply {
                Some(reply) => break Err((i, reply)),
                None => from = i + 1,
            },
        }
    };
    match outcome {
        Ok(()) => {
            ctx.filtered = Some(route);
            Ok(None)
        }
        Err((i, reply)) => {
            if reply.flags.contains(ReplyFlags::RATE_LIMITED) {
                ctx.flags.set(ResponseFlags::RATE_LIMITED);
            }
            send(session, &route, i, reply).await.map(Some)
        }
    }
}

/// Where running a route's filters on the request stopped.
pub enum Step {
    /// Every filter went on.
    Done,
    /// Filter `i` answered.
    Reply(usize, LocalReply),
    /// Filter `i` decides once this is done; the filters after it have not run.
    Wait(usize, Pending),
}

/// Run `route`'s filters on the request, from filter `from` on.
pub fn on_request(
    route: &Route,
    req: &mut RequestHeader,
    input: &MatchInput<'_>,
    from: usize,
) -> Step {
    for (i, f) in route.policy.filters.iter().enumerate().skip(from) {
        match f.on_request_headers(req, input) {
            FilterStatus::Continue => {}
            FilterStatus::Reply(reply) => return Step::Reply(i, reply),
            FilterStatus::Wait(p) => return Step::Wait(i, p),
        }
    }
    Step::Done
}

/// Run the first `ran` of `route`'s filters on the response headers, last first. A
/// filter's reply on the response side replaces the status and headers only.
pub fn on_response(route: &Route, ran: usize, req: &RequestHeader, resp: &mut ResponseParts) {
    for f in route.policy.filters[..ran.min(route.policy.filters.len())]
        .iter()
        .rev()
    {
        if let FilterStatus::Reply(reply) = f.on_response_headers(req, resp) {
            *resp = header_of(&reply).into();
        }
    }
}

/// The upstream response's headers, edited once on their way down:
/// `x-envoy-upstream-service-time`, then the route's response header control (Envoy's
/// router applies it before the filters see the response), then the route's filters
/// when no plugin runs on this response (they come after the plugins, so with plugins
/// `response_filter` runs them). Each conversion of the header costs a few hundred
/// instructions; one covers all the edits.
pub fn upstream_response(req: &RequestHeader, resp: &mut ResponseHeader, ctx: &RequestCtx) {
    let service_time = if ctx.snapshot.filters.global.disable_x_envoy_headers {
        None
    } else {
        ctx.upstream_service_time_ms()
    };
    // Route policy does not touch an interim response (`100 Continue`).
    let interim =
        resp.status.is_informational() && resp.status != http::StatusCode::SWITCHING_PROTOCOLS;
    let control = ctx
        .route
        .as_deref()
        .filter(|_| !interim)
        .and_then(|r| r.policy.header_control.as_deref())
        .map(|c| &c.response)
        .filter(|ops| !ops.is_empty());
    // The destination's own edits (an Istio destination's `headers.response`), after.
    let dest_control = ctx
        .weighted_cluster()
        .filter(|_| !interim)
        .and_then(|d| d.headers.as_deref())
        .map(|c| &c.response)
        .filter(|ops| !ops.is_empty());
    let filters = ctx
        .filtered
        .as_deref()
        .filter(|_| !interim && ctx.wasm.is_none());
    if service_time.is_none() && control.is_none() && dest_control.is_none() && filters.is_none() {
        return;
    }
    edit_parts(resp, |p| {
        let room = 1
            + control.map_or(0, |c| c.set.len() + c.add.len())
            + filters.map_or(0, |r| r.policy.filters.len() * FILTER_ADDITIONS);
        p.headers.reserve(room);
        if let Some(ms) = service_time {
            p.headers
                .insert(X_ENVOY_UPSTREAM_SERVICE_TIME, millis_value(ms.into()));
        }
        if let Some(ops) = control {
            ops.apply(&mut p.headers);
        }
        if let Some(ops) = dest_control {
            ops.apply(&mut p.headers);
        }
        if let Some(route) = filters {
            on_response(route, route.policy.filters.len(), req, p);
        }
    });
}

/// The response header of a filter's reply: its headers, `content-type: text/plain`
/// when a body has none, and its length.
pub fn header_of(reply: &LocalReply) -> ResponseHeader {
    let mut h = ResponseHeader::build(reply.status, Some(reply.headers.len() + 2))
        .unwrap_or_else(|_| ResponseHeader::build(500, None).expect("500 is a status"));
    for (k, v) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            let _ = h.append_header(name, value);
        }
    }
    if !reply.body.is_empty() && h.headers.get(http::header::CONTENT_TYPE).is_none() {
        let _ = h.insert_header(http::header::CONTENT_TYPE, "text/plain");
    }
    let _ = h.insert_header(http::header::CONTENT_LENGTH, reply.body.len());
    h
}

/// Send filter `i`'s reply through the response side of the filters before it; the
/// status sent.
pub async fn send(
    session: &mut Session,
    route: &Route,
    i: usize,
    reply: LocalReply,
) -> pingora_error::Result<u16> {
    let mut header = header_of(&reply);
    let grpc = grpc::is_grpc(session);
    if grpc {
        // Envoy shapes a gRPC request's local reply before the response filters see it.
        let code = grpc::status_of_http(reply.status);
        grpc::shape_reply(&mut header, code, &reply.body)?;
    }
    edit_parts(&mut header, |p| {
        on_response(route, i, session.req_header(), p)
    });
    let status = header.status.as_u16();
    if grpc {
        grpc::send_trailers_only(session, header).await?;
        return Ok(status);
    }
    let body = Bytes::from(reply.body);
    // The request body was not read: the connection is reused only when there is none.
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    session
        .write_response_header(Box::new(header), body.is_empty())
        .await?;
    if !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(status)
}
