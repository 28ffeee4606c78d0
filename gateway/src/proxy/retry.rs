//! Retries and the default backend, on Pingora's proxy loop.
//!
//! Pingora makes another attempt (calling `upstream_peer` again) when an attempt ends
//! with an error marked `retry`. Connect failures and resets reach `fail_to_connect` and
//! `error_while_proxy`; a response to retry or to replace with the default backend's is
//! turned into such an error in `upstream_response_filter`, before its headers go
//! downstream, so the client never sees it. The request body is replayed from Pingora's
//! retry buffer (64 KiB; a longer body is not retried).
//!
//! Without a route policy (`route.policy.retry`), the gateway's default stays: two
//! retries after a connect failure or a reset before the response headers.

use std::time::{Duration, Instant};

use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::context::{RequestCtx, Tried, FALLBACK_DESTINATION, MAX_ATTEMPTS};
use super::flags::ResponseFlags;
use crate::model::retry::RetryPolicy;
use crate::model::{Cluster, Route};
use std::sync::Arc;

/// The error that ends an attempt whose response is retried or replaced.
const RETRIED_RESPONSE: ErrorType = ErrorType::Custom("upstream response retried");

fn policy(ctx: &RequestCtx) -> Option<&RetryPolicy> {
    ctx.route.as_ref()?.policy.retry.as_deref()
}

/// Whether a connect failure is followed by another attempt.
pub fn after_connect_failure(session: &Session, ctx: &RequestCtx) -> bool {
    match policy(ctx) {
        None => ctx.attempts() < MAX_ATTEMPTS,
        Some(p) => {
            p.on_5xx
                && p.has_retry_left(ctx.attempts())
                && p.retries_method(&session.req_header().method)
        }
    }
}

/// Whether an attempt that failed with `e` (after connecting) is followed by another.
pub fn after_error(session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
    if *e.etype() == RETRIED_RESPONSE {
        // Decided in `on_response`.
        return true;
    }
    if ctx.upstream_headers_received
        || e.esource() != &ErrorSource::Upstream
        || session.as_ref().retry_buffer_truncated()
    {
        return false;
    }
    let timed_out = *e.etype() == ErrorType::ReadTimedout;
    match policy(ctx) {
        // A timeout is the route's: not retried.
        None => !timed_out && ctx.attempts() < MAX_ATTEMPTS,
        Some(p) => {
            p.on_5xx
                && p.has_retry_left(ctx.attempts())
                && p.retries_method(&session.req_header().method)
                && (!timed_out || per_try_timed_out(p, ctx))
        }
    }
}

/// A read timeout with a per-try timeout set is the attempt's, unless the route's own
/// deadline has passed (the route timeout is never retried, as in Envoy).
fn per_try_timed_out(p: &RetryPolicy, ctx: &RequestCtx) -> bool {
    p.per_try_timeout.is_some() && ctx.deadline.is_none_or(|d| Instant::now() < d)
}

/// The read timeout of the next attempt: the per-try timeout, within what is left of
/// the route timeout.
pub fn read_timeout(ctx: &RequestCtx) -> Option<Duration> {
    let left = ctx.deadline.map(|d| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    });
    let per_try = policy(ctx).and_then(|p| p.per_try_timeout);
    match (left, per_try) {
        (Some(l), Some(t)) => Some(l.min(t)),
        (l, t) => l.or(t),
    }
}

/// Whether a failed request used up its retries (Envoy's `URX`).
pub fn exhausted(ctx: &RequestCtx, status: u16) -> bool {
    match policy(ctx) {
        None => ctx.attempts() >= MAX_ATTEMPTS && status == 503,
        Some(p) => {
            p.num_retries > 0 && !p.has_retry_left(ctx.attempts()) && matches!(status, 503 | 504)
        }
    }
}

/// The response headers of an attempt arrived with `status`: `Err` ends the attempt for
/// another one (a retry, or the default backend for a `custom-http-errors` code).
pub fn on_response(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
) -> pingora_error::Result<()> {
    let Some(route) = ctx.route.clone() else {
        return Ok(());
    };
    if let Some(p) = route.policy.retry.as_deref() {
        if p.retries_status(status) && !session.as_ref().retry_buffer_truncated() {
            if p.has_retry_left(ctx.attempts()) {
                if p.retries_method(&session.req_header().method) {
                    return Err(retried(status));
                }
            } else if p.num_retries > 0 {
                ctx.flags.set(ResponseFlags::RETRY_EXHAUSTED);
            }
        }
    }
    if let Some(f) = route.policy.fallback.as_deref() {
        // Higress's internal active redirect: once, and only for a request without a
        // body (Envoy does not replay a body there).
        if !ctx.redirected && f.redirects(status) && session.as_mut().is_body_empty() {
            if let Some(c) = usable(f.destination.cluster.as_ref()) {
                ctx.redirected = true;
                ctx.destination = Some(FALLBACK_DESTINATION);
                ctx.cluster = Some(c.clone());
                // A new request to a new cluster: its attempts count from one.
                ctx.tried = Tried::default();
                ctx.flags.clear(ResponseFlags::RETRY_EXHAUSTED);
                return Err(retried(status));
            }
        }
    }
    Ok(())
}

fn retried(status: u16) -> Box<Error> {
    let mut e = Error::new_up(RETRIED_RESPONSE);
    e.context = Some(format!("status {status}").into());
    e.set_retry(true);
    e
}

fn usable(c: Option<&Arc<Cluster>>) -> Option<&Arc<Cluster>> {
    c.filter(|c| !c.endpoints.is_empty())
}

/// The route's default backend when its chosen cluster has no endpoint (Higress's
/// `cluster_fallback`): the request goes there as it is.
pub fn no_endpoint_fallback(route: &Route) -> Option<&Arc<Cluster>> {
    usable(route.policy.fallback.as_ref()?.destination.cluster.as_ref())
}

/// The request the default backend gets after a `custom-http-errors` code, as Higress's
/// internal active redirect to `http://example.com/` with the original host makes it:
/// path `/` (no query), `x-envoy-route-name: <route>-fallback`,
/// `x-envoy-fallback-service: <namespace>/<name>`, and `x-envoy-original-url`.
pub fn redirect_request(
    downstream: &RequestHeader,
    ctx: &RequestCtx,
    tls: bool,
    upstream: &mut RequestHeader,
) {
    let Some(f) = ctx
        .route
        .as_ref()
        .and_then(|r| r.policy.fallback.as_deref())
    else {
        return;
    };
    let host = downstream
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| downstream.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let path = downstream.uri.path_and_query().map_or("/", |p| p.as_str());
    let scheme = if tls { "https://" } else { "http://" };
    let original = [scheme, host, path].concat();
    upstream.set_uri(http::Uri::from_static("/"));
    // Names are valid and values came from valid headers: these cannot fail.
    let _ = upstream.insert_header("x-envoy-route-name", f.route_name.clone());
    let _ = upstream.insert_header("x-envoy-fallback-service", f.service.clone());
    if let Ok(v) = http::HeaderValue::from_str(&original) {
        let _ = upstream.insert_header("x-envoy-original-url", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_responses_are_marked_for_another_attempt() {
        let e = retried(503);
        assert!(e.retry());
        assert_eq!(e.esource(), &ErrorSource::Upstream);
        assert_eq!(*e.etype(), RETRIED_RESPONSE);
    }
}
