//! gRPC requests, as Envoy's router and connection manager treat them.
//!
//! A request is gRPC when it is HTTP/2 (gRPC needs it; HTTP/1 requests pay one flag
//! test) and its `content-type` is `application/grpc` or `application/grpc+<codec>`
//! (gRPC-Web's `application/grpc-web` is not). For such a request:
//! - `grpc-timeout` sets the route timeout, capped by the route's own when that is not
//!   0: Istio (and so Higress) sets each route's `max_grpc_timeout` to its timeout;
//! - a reply the gateway makes itself is a trailers-only gRPC response: HTTP 200,
//!   `content-type: application/grpc`, `grpc-status` mapped from the HTTP status
//!   (DEADLINE_EXCEEDED for the route timeout) and the reply's text as `grpc-message`;
//! - the Istio metrics say `request_protocol="grpc"` with the response's `grpc-status`.
//!
//! Also here, for any HTTP/2 stream: an upstream's RST_STREAM is told from a connection
//! that ended, and a response under way is broken off with RST_STREAM NO_ERROR.

use std::time::Duration;

use http::HeaderMap;
use pingora_core::protocols::http::ServerSession;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::context::RequestCtx;
use crate::stats::RequestProtocol;

pub const GRPC_STATUS: &str = "grpc-status";
pub const GRPC_MESSAGE: &str = "grpc-message";
const GRPC_TIMEOUT: &str = "grpc-timeout";
const CONTENT_TYPE_GRPC: &[u8] = b"application/grpc";

/// gRPC status codes the gateway produces.
pub const UNKNOWN: u8 = 2;
pub const DEADLINE_EXCEEDED: u8 = 4;
pub const UNAVAILABLE: u8 = 14;
/// The highest code gRPC defines (UNAUTHENTICATED).
const MAX_STATUS: u8 = 16;
/// A `grpc-status` that is not a defined code (Envoy's `InvalidCode`, shown as -1).
pub const INVALID_STATUS: u8 = u8::MAX;

/// A request's gRPC side in one byte (the request context stays small): not gRPC, gRPC
/// with no status from trailers (yet), or gRPC with its trailers' `grpc-status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcState(u8);

impl GrpcState {
    pub const NOT_GRPC: GrpcState = GrpcState(0);
    pub const GRPC: GrpcState = GrpcState(1);

    /// The state of a request: [`is_grpc`].
    pub fn of(session: &Session) -> GrpcState {
        if is_grpc(session) {
            GrpcState::GRPC
        } else {
            GrpcState::NOT_GRPC
        }
    }

    pub fn is_grpc(self) -> bool {
        self != GrpcState::NOT_GRPC
    }

    /// A gRPC request whose trailers carried `status` ([`status_in`]).
    pub fn with_trailers(status: Option<u8>) -> GrpcState {
        match status {
            None => GrpcState::GRPC,
            Some(INVALID_STATUS) => GrpcState(u8::MAX),
            Some(s) => GrpcState(s + 2),
        }
    }

    /// The `grpc-status` of the trailers, if any were seen.
    pub fn trailer_status(self) -> Option<u8> {
        match self.0 {
            0 | 1 => None,
            u8::MAX => Some(INVALID_STATUS),
            s => Some(s - 2),
        }
    }
}

/// Whether the request is gRPC (Envoy's `isGrpcRequestHeaders`), for an HTTP/2 request.
pub fn is_grpc(session: &Session) -> bool {
    session.is_http2() && has_grpc_content_type(session.req_header())
}

fn has_grpc_content_type(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            let v = v.as_bytes();
            v.starts_with(CONTENT_TYPE_GRPC)
                && matches!(v.get(CONTENT_TYPE_GRPC.len()), None | Some(b'+'))
        })
}

/// `grpc-timeout`: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The route timeout of a gRPC request, as Envoy computes it for a route whose
/// `max_grpc_timeout` is its `timeout` (`route`): the request's `grpc-timeout`, capped
/// by `route` unless that is 0 (none); without the header (or with 0), `route`.
pub fn timeout(req: &RequestHeader, route: Duration) -> Duration {
    let asked = req
        .headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| parse_timeout(v.as_bytes()))
        .filter(|t| !t.is_zero());
    match asked {
        None => route,
        Some(t) if route.is_zero() => t,
        Some(t) => t.min(route),
    }
}

/// The gRPC status of an HTTP status (gRPC's HTTP-to-gRPC mapping, as Envoy applies it).
pub fn status_of_http(code: u16) -> u8 {
    match code {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// The upstream's response trailers: a gRPC request keeps their `grpc-status`.
pub fn on_trailers(ctx: &mut RequestCtx, trailers: &HeaderMap) {
    if ctx.grpc.is_grpc() {
        ctx.grpc = GrpcState::with_trailers(status_in(trailers));
    }
}

/// `grpc-status` in `headers` (response headers or trailers), if any.
pub fn status_in(headers: &HeaderMap) -> Option<u8> {
    let v = headers.get(GRPC_STATUS)?;
    Some(
        std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u8>().ok())
            .filter(|s| *s <= MAX_STATUS)
            .unwrap_or(INVALID_STATUS),
    )
}

/// What the Istio labels say of a finished request: its protocol and, for gRPC, the
/// status from the trailers, else the response headers (trailers-only), else mapped from
/// the HTTP status sent (none when nothing was sent), as Envoy's `getGrpcStatus` reads it.
pub fn outcome(session: &Session, ctx: &RequestCtx, status: u16) -> RequestProtocol {
    if !ctx.grpc.is_grpc() {
        return RequestProtocol::Http;
    }
    let status = ctx
        .grpc
        .trailer_status()
        .or_else(|| {
            session
                .response_written()
                .and_then(|r| status_in(&r.headers))
        })
        .or_else(|| (status != 0).then(|| status_of_http(status)));
    RequestProtocol::Grpc(status)
}

/// gRPC's percent-encoding of `grpc-message`: printable ASCII but `%` as it is, every
/// other byte as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Make `resp` the trailers-only gRPC form of a reply the gateway makes (Envoy's local
/// reply for gRPC requests): HTTP 200, `content-type: application/grpc`, `grpc-status`
/// (unless the reply set one) and `text`, if any, as `grpc-message`; no body, so no
/// `content-length`. Other headers stay.
pub fn shape_reply(
    resp: &mut ResponseHeader,
    grpc_status: u8,
    text: &[u8],
) -> pingora_error::Result<()> {
    resp.set_status(200)?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
    resp.remove_header(&http::header::CONTENT_LENGTH);
    if !resp.headers.contains_key(GRPC_STATUS) {
        resp.insert_header(GRPC_STATUS, grpc_status.to_string())?;
    }
    if !text.is_empty() {
        let text = String::from_utf8_lossy(text);
        resp.insert_header(GRPC_MESSAGE, percent_encode(text.trim_end_matches('\n')))?;
    }
    Ok(())
}

/// Send a reply [`shape_reply`] made: HEADERS with END_STREAM (gRPC clients read a DATA
/// frame ending the stream after the headers as a broken response).
pub async fn send_trailers_only(
    session: &mut Session,
    resp: ResponseHeader,
) -> pingora_error::Result<()> {
    match session.as_downstream_mut() {
        ServerSession::H2(s) => s.write_response_header(Box::new(resp), true),
        _ => {
            let mut resp = resp;
            resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
            session.write_response_header(Box::new(resp), true).await
        }
    }
}

/// Answer a gRPC request with a trailers-only response carrying `grpc_status` and `text`.
pub async fn local_reply(
    session: &mut Session,
    grpc_status: u8,
    text: &[u8],
) -> pingora_error::Result<()> {
    let mut resp = ResponseHeader::build(200, Some(4))?;
    shape_reply(&mut resp, grpc_status, text)?;
    send_trailers_only(session, resp).await
}

/// Whether an upstream error is the HTTP/2 upstream resetting the stream (RST_STREAM):
/// Envoy's `remote reset` (`UR`), not a connection that ended.
///
/// Known gap: Pingora writes the request body and reads the response concurrently and
/// keeps the first error. A reset that lands before the body is written can surface as
/// the write's "inactive stream", which carries no reason, so that attempt counts as a
/// connection that ended (`upstream_cx_destroy_remote_with_active_rq`) instead.
pub fn remote_reset(e: &pingora_error::Error) -> bool {
    e.root_cause()
        .downcast_ref::<h2::Error>()
        .is_some_and(|h| h.is_reset() && h.is_remote())
}

/// Break an HTTP/2 response already under way with RST_STREAM NO_ERROR, as Envoy's codec
/// resets a stream it gives up on (gRPC clients read it as INTERNAL, where the CANCEL
/// that dropping the stream would send reads as CANCELLED, which the client did not do).
pub fn reset_started(session: &mut Session) {
    if let ServerSession::H2(s) = session.as_downstream_mut() {
        s.shutdown_with_reason(h2::Reason::NO_ERROR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_in_every_unit() {
        let ms = Duration::from_millis;
        assert_eq!(parse_timeout(b"250m"), Some(ms(250)));
        assert_eq!(parse_timeout(b"2S"), Some(ms(2000)));
        assert_eq!(parse_timeout(b"1M"), Some(ms(60_000)));
        assert_eq!(parse_timeout(b"1H"), Some(ms(3_600_000)));
        assert_eq!(parse_timeout(b"1500u"), Some(Duration::from_micros(1500)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            &b""[..],
            b"m",
            b"100",
            b"123456789m",
            b"-1S",
            b"1s",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(
                parse_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn req(grpc_timeout: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/svc/M", None).unwrap();
        r.insert_header("content-type", "application/grpc").unwrap();
        if let Some(t) = grpc_timeout {
            r.insert_header(GRPC_TIMEOUT, t).unwrap();
        }
        r
    }

    #[test]
    fn grpc_timeout_within_the_route_timeout() {
        let s = Duration::from_secs;
        let none = Duration::ZERO;
        // No route timeout: the header's, uncapped; neither: none.
        assert_eq!(timeout(&req(Some("30S")), none), s(30));
        assert_eq!(timeout(&req(None), none), none);
        // A route timeout caps it and applies without it (or with 0).
        assert_eq!(timeout(&req(Some("30S")), s(5)), s(5));
        assert_eq!(timeout(&req(Some("2S")), s(5)), s(2));
        assert_eq!(timeout(&req(None), s(5)), s(5));
        assert_eq!(timeout(&req(Some("0m")), s(5)), s(5));
        assert_eq!(timeout(&req(Some("soon")), s(5)), s(5));
    }

    #[test]
    fn content_types() {
        let with = |ct: &str| {
            let mut r = RequestHeader::build("POST", b"/svc/M", None).unwrap();
            r.insert_header("content-type", ct).unwrap();
            has_grpc_content_type(&r)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/grpc-web+proto"));
        assert!(!with("application/json"));
    }

    #[test]
    fn statuses() {
        assert_eq!(status_of_http(503), UNAVAILABLE);
        assert_eq!(status_of_http(504), UNAVAILABLE);
        assert_eq!(status_of_http(404), 12);
        assert_eq!(status_of_http(200), UNKNOWN);
        let mut h = HeaderMap::new();
        assert_eq!(status_in(&h), None);
        h.insert(GRPC_STATUS, "8".parse().unwrap());
        assert_eq!(status_in(&h), Some(8));
        h.insert(GRPC_STATUS, "17".parse().unwrap());
        assert_eq!(status_in(&h), Some(INVALID_STATUS));
    }

    #[test]
    fn state_keeps_the_trailers_status() {
        assert!(!GrpcState::NOT_GRPC.is_grpc());
        assert_eq!(GrpcState::GRPC.trailer_status(), None);
        for s in [Some(0), Some(16), Some(INVALID_STATUS), None] {
            let st = GrpcState::with_trailers(s);
            assert!(st.is_grpc());
            assert_eq!(st.trailer_status(), s);
        }
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(
            percent_encode("upstream request timeout"),
            "upstream request timeout"
        );
        assert_eq!(percent_encode("100% done\n"), "100%25 done%0A");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
