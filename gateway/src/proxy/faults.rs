//! How an upstream attempt ended, in Envoy's terms: the cluster stats it counts in,
//! the result outlier detection is charged with, and the reply and response flag when
//! the request fails (docs/reliability.md lists each fault).
//!
//! | attempt ended by | reply (before the head) | flag | stats |
//! |---|---|---|---|
//! | connect refused or timed out | 503 | `UF` | `upstream_cx_connect_fail` |
//! | close or reset by the upstream | 503 | `UC` | `upstream_cx_destroy_remote_with_active_rq` |
//! | the route or per-try timeout | 504 | `UT` | `upstream_rq_timeout`, `upstream_cx_destroy_local_with_active_rq` |
//! | a response that breaks HTTP | 502 | `UPE` | `upstream_cx_protocol_error`, `upstream_cx_destroy_local_with_active_rq` |
//! | no endpoint left (all ejected) | 503 | `UH` | |
//!
//! After the head went downstream there is no reply: the downstream response is cut
//! (the connection closed, a chunked body without its last chunk), and the flag says why.

use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType};

use super::context::RequestCtx;
use super::flags::ResponseFlags;
use super::local_reply;
use crate::stats;

/// The error of an attempt that found every endpoint of its cluster ejected.
pub const NO_HEALTHY_UPSTREAM: ErrorType = ErrorType::Custom("no healthy upstream");

/// Envoy's body for a reply after an upstream protocol error.
pub const PROTOCOL_ERROR: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: protocol error";

/// How an attempt that had connected ended, when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttemptEnd {
    /// The route or per-try timeout: the gateway gave up on the response.
    Timeout,
    /// The response broke HTTP (invalid head, chunk or framing).
    ProtocolError,
    /// The upstream closed or reset the connection (or its stream).
    RemoteClose,
    /// Anything else (the client went away, a filter ended the request, a retried
    /// response): not the upstream's fault.
    Other,
}

fn classify(e: &Error) -> AttemptEnd {
    let upstream = e.esource() == &ErrorSource::Upstream;
    match e.etype() {
        _ if e.esource() == &ErrorSource::Downstream => AttemptEnd::Other,
        // (The route timeout met in a body filter carries no source.)
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => AttemptEnd::Timeout,
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::InvalidH2 if upstream => {
            AttemptEnd::ProtocolError
        }
        // Pingora's body decoder's own types.
        ErrorType::Custom("InvalidChunk" | "InvalidTrailerEnd") if upstream => {
            AttemptEnd::ProtocolError
        }
        ErrorType::ConnectionClosed
        | ErrorType::ReadError
        | ErrorType::WriteError
        | ErrorType::H2Error
            if upstream =>
        {
            AttemptEnd::RemoteClose
        }
        _ => AttemptEnd::Other,
    }
}

/// The endpoint of the current attempt, by index in its cluster.
fn attempt_endpoint(ctx: &RequestCtx) -> Option<usize> {
    ctx.tried.as_slice().last().map(|&i| i as usize)
}

/// Charge the current attempt's endpoint with `status` (outlier detection).
fn charge(ctx: &RequestCtx, status: u16) {
    if let (Some(d), Some(i)) = (
        ctx.cluster.as_ref().and_then(|c| c.outlier.as_ref()),
        attempt_endpoint(ctx),
    ) {
        d.report(i, status);
    }
}

/// The attempt's response head arrived with `status`.
#[inline]
pub fn on_response(ctx: &RequestCtx, status: u16) {
    charge(ctx, status);
}

/// The attempt could not connect: Envoy charges the endpoint with a 503.
pub fn on_connect_failure(ctx: &RequestCtx) {
    charge(ctx, 503);
}

/// An attempt that had connected failed with `e`: its stats, and the endpoint charged
/// with 503 (a reset or protocol error) or 504 (a timeout), as Envoy does.
pub fn on_attempt_error(ctx: &RequestCtx, peer: &HttpPeer, e: &Error) {
    let end = classify(e);
    if end == AttemptEnd::Other {
        return;
    }
    // HTTP/1 ends the connection with the request; HTTP/2 only the stream.
    let h1 = peer.options.alpn.get_min_http_version() == 1;
    if let (true, Some(c)) = (stats::recording(), &ctx.cluster) {
        let s = &c.stats;
        match end {
            AttemptEnd::Timeout if h1 => s.cx_destroy_local_with_active_rq.inc(),
            AttemptEnd::ProtocolError => {
                s.cx_protocol_error.inc();
                if h1 {
                    s.cx_destroy_local_with_active_rq.inc();
                }
            }
            AttemptEnd::RemoteClose if super::grpc::remote_reset(e) => s.rq_rx_reset.inc(),
            AttemptEnd::RemoteClose => s.cx_destroy_remote_with_active_rq.inc(),
            _ => {}
        }
    }
    charge(ctx, if end == AttemptEnd::Timeout { 504 } else { 503 });
}

/// The reply for a request that failed with `e` (status 0: none, the client went
/// away), its body and response flag.
pub fn reply(e: &Error, ctx: &RequestCtx) -> (u16, &'static str, u16) {
    match (e.esource(), e.etype()) {
        // A chunked request body that breaks its framing: Envoy's codec error.
        (ErrorSource::Downstream, ErrorType::Custom("InvalidChunk")) => {
            (400, "", ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR)
        }
        (ErrorSource::Downstream, _) => (0, "", ResponseFlags::DOWNSTREAM_CLOSED),
        (_, ErrorType::ReadTimedout) => (
            504,
            local_reply::UPSTREAM_TIMEOUT,
            ResponseFlags::UPSTREAM_TIMEOUT,
        ),
        (_, ErrorType::HTTPStatus(code)) => (*code, "", 0),
        (_, &NO_HEALTHY_UPSTREAM) => (
            503,
            local_reply::NO_HEALTHY_UPSTREAM,
            ResponseFlags::NO_HEALTHY_UPSTREAM,
        ),
        _ if classify(e) == AttemptEnd::ProtocolError => {
            (502, PROTOCOL_ERROR, ResponseFlags::UPSTREAM_PROTOCOL_ERROR)
        }
        (ErrorSource::Upstream, _)
            if ctx.flags.has(ResponseFlags::CONNECT_FAILURE) && !ctx.upstream_headers_received =>
        {
            (
                503,
                local_reply::CONNECT_FAILURE,
                ResponseFlags::CONNECT_FAILURE,
            )
        }
        (ErrorSource::Upstream, _) if super::grpc::remote_reset(e) => (
            503,
            local_reply::REMOTE_RESET,
            ResponseFlags::UPSTREAM_REMOTE_RESET,
        ),
        (ErrorSource::Upstream, _) => (
            503,
            local_reply::CONNECTION_TERMINATION,
            ResponseFlags::CONNECTION_TERMINATION,
        ),
        _ => (500, "", ResponseFlags::LOCAL_RESET),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(t: ErrorType) -> Box<Error> {
        Error::new_up(t)
    }

    #[test]
    fn attempt_ends_by_error() {
        assert_eq!(classify(&up(ErrorType::ReadTimedout)), AttemptEnd::Timeout);
        assert_eq!(
            classify(&Error::new(ErrorType::ReadTimedout)),
            AttemptEnd::Timeout,
            "the route timeout met in a body filter"
        );
        assert_eq!(
            classify(&up(ErrorType::InvalidHTTPHeader)),
            AttemptEnd::ProtocolError
        );
        assert_eq!(
            classify(&up(ErrorType::Custom("InvalidChunk"))),
            AttemptEnd::ProtocolError
        );
        assert_eq!(
            classify(&up(ErrorType::ConnectionClosed)),
            AttemptEnd::RemoteClose
        );
        assert_eq!(classify(&up(ErrorType::ReadError)), AttemptEnd::RemoteClose);
        assert_eq!(
            classify(&Error::new_down(ErrorType::ReadTimedout)),
            AttemptEnd::Other,
            "the client's timeout"
        );
        assert_eq!(
            classify(&Error::new(ErrorType::ConnectionClosed)),
            AttemptEnd::Other,
            "a plugin's reset"
        );
    }
}
