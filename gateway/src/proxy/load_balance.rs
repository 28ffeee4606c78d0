//! The request's side of a cluster's load balancing (`model/load_balancer`): the
//! random numbers picks use, the hash key read from the request for a hashing policy
//! (once per request, kept for its retries), the affinity cookie made when the request
//! has none, and the active-request count of least request.

use std::io::Write;
use std::net::SocketAddr;

use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::context::{RequestCtx, NO_ENDPOINT};
use super::flags::ResponseFlags;
use crate::model::load_balancer::{cookie_value, xxh64, xxh64_chain};
use crate::model::{HashPolicy, LbPolicy};

/// A cheap per-thread random number, for weighted destinations and endpoint picks (the
/// high half of the generator trace ids use: its best bits).
#[inline]
pub fn roll() -> u32 {
    (telemetry::trace::ids::random_u64() >> 32) as u32
}

/// Pick the endpoint of this attempt with the cluster's policy, avoiding the endpoints
/// earlier attempts tried; recorded in `ctx.tried`. Round robin (the default) reads
/// nothing of the request.
pub fn pick_endpoint(session: &Session, ctx: &mut RequestCtx) -> pingora_error::Result<SocketAddr> {
    let cluster = ctx
        .cluster
        .as_ref()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no cluster selected"))?;
    let lb = &cluster.lb;
    let (hash, random) = match lb.policy() {
        LbPolicy::RoundRobin => (None, 0),
        policy => {
            if let (LbPolicy::RingHash(p), true) = (policy, ctx.tried.is_empty()) {
                // Computed once, on the first attempt (Envoy hashes once per request).
                let hash = request_hash(p, session, &mut ctx.cookie_made);
                ctx.lb_hash = hash.unwrap_or(0);
            }
            let hash = (ctx.lb_hash != 0).then_some(ctx.lb_hash);
            (hash, (u64::from(roll()) << 32) | u64::from(roll()))
        }
    };
    let Some((index, addr)) = cluster.pick_with(hash, random, ctx.tried.as_slice()) else {
        // Routing sends requests only to clusters with endpoints: outlier detection
        // ejected them all.
        ctx.flags.set(ResponseFlags::NO_HEALTHY_UPSTREAM);
        return Err(Error::explain(
            super::faults::NO_HEALTHY_UPSTREAM,
            "every endpoint is ejected",
        ));
    };
    if lb.counts_active() {
        // A retry leaves its failed endpoint: that request is no longer active there.
        let previous = std::mem::replace(&mut ctx.lb_active, index);
        if previous != NO_ENDPOINT {
            lb.end(previous);
        }
        lb.begin(index);
    }
    ctx.tried.push(index);
    Ok(addr)
}

/// The request's hash for `policy`; `None` when the request lacks the key (the ring
/// then takes a random point, as Envoy does). A request without the affinity cookie
/// gets one: its hash is the made value's, and `cookie_made` is set.
pub fn request_hash(policy: &HashPolicy, session: &Session, cookie_made: &mut bool) -> Option<u64> {
    let req = session.req_header();
    match policy {
        HashPolicy::Header { name, alt } => {
            header_hash(req, name).or_else(|| alt.as_ref().and_then(|alt| header_hash(req, alt)))
        }
        HashPolicy::Path => Some(xxh64(
            req.uri
                .path_and_query()
                .map_or(req.uri.path(), |p| p.as_str())
                .as_bytes(),
        )),
        HashPolicy::Authority => {
            let host = super::request_host(req);
            (!host.is_empty()).then(|| xxh64(host.as_bytes()))
        }
        HashPolicy::SourceIp => {
            let ip = session.client_addr()?.as_inet()?.ip();
            // The address as text, written on the stack.
            let mut buf = [0u8; 48];
            let mut w = &mut buf[..];
            write!(w, "{ip}").ok()?;
            let len = 48 - w.len();
            Some(xxh64(&buf[..len]))
        }
        HashPolicy::QueryParameter(name) => {
            let query = req.uri.query()?;
            query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name).then(|| xxh64(v.as_bytes()))
            })
        }
        HashPolicy::Cookie(cookie) => {
            let sent = req
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| cookie.value_in(v));
            if let Some(value) = sent {
                return Some(xxh64(value.as_bytes()));
            }
            let value = made_cookie_value(session)?;
            *cookie_made = true;
            Some(xxh64(value.as_bytes()))
        }
    }
}

/// The value made for a request without the affinity cookie (from the connection's
/// addresses, so making it again gives the same value).
fn made_cookie_value(session: &Session) -> Option<String> {
    let remote = session.client_addr()?.as_inet()?;
    let local = session.server_addr()?.as_inet()?;
    Some(cookie_value(remote, local))
}

/// The `Set-Cookie` of a made affinity cookie, for the upstream response.
pub fn made_set_cookie(session: &Session, ctx: &RequestCtx) -> Option<http::HeaderValue> {
    let Some(HashPolicy::Cookie(cookie)) = ctx.cluster.as_ref()?.lb.hash_policy() else {
        return None;
    };
    let value = made_cookie_value(session)?;
    http::HeaderValue::from_str(&cookie.set_cookie(&value)).ok()
}

/// A header's hash: its value's, or for a header sent several times, the values'
/// sorted and chained as Envoy does.
fn header_hash(req: &RequestHeader, name: &http::HeaderName) -> Option<u64> {
    let mut values = req.headers.get_all(name).iter();
    let first = values.next()?;
    match values.next() {
        None => Some(xxh64(first.as_bytes())),
        Some(second) => {
            let mut all: Vec<&[u8]> = vec![first.as_bytes(), second.as_bytes()];
            all.extend(values.map(|v| v.as_bytes()));
            all.sort();
            Some(xxh64_chain(all))
        }
    }
}
