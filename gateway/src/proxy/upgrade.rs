//! HTTP/1 upgrades (WebSocket) around cloudflare/pingora#946: Pingora 0.9 ends a tunnel
//! right after its 101 when the upstream's answer is read before the upgrade request's
//! own (empty) body end, which its proxy loop then takes for the end of the tunnel.
//!
//! The way around it: an upgrade request is given an open-ended body on the downstream
//! side (`Transfer-Encoding: chunked` on the request Pingora holds, set before its body
//! reader starts), so no body end is queued before the 101; the 101 then turns the body
//! into the tunnel's bytes. Upstream the request goes with `Content-Length: 0`, which
//! is what it carries (no body). An upstream that refuses the upgrade ends the
//! connection after its answer, since the held-open body will never come.

use pingora_http::RequestHeader;
use pingora_proxy::Session;

/// Whether `req` asks an HTTP/1.1 upgrade without a body of its own.
fn is_bodiless_upgrade(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req.headers.contains_key(http::header::UPGRADE)
        && req
            .headers
            .get(http::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        && !req.headers.contains_key(http::header::CONTENT_LENGTH)
        && !req.headers.contains_key(http::header::TRANSFER_ENCODING)
}

/// Before the request goes upstream: hold an HTTP/1 upgrade request's body open
/// downstream and frame it `Content-Length: 0` upstream. Returns whether it did.
pub fn hold_open(session: &mut Session, upstream_request: &mut RequestHeader) -> bool {
    if session.as_downstream().is_http2() || !is_bodiless_upgrade(session.req_header()) {
        return false;
    }
    let held = session
        .req_header_mut()
        .insert_header(http::header::TRANSFER_ENCODING, "chunked")
        .is_ok();
    if held {
        // Nothing else may frame it: the upstream gets the request as the client sent it.
        let _ = upstream_request.insert_header(http::header::CONTENT_LENGTH, "0");
    }
    held
}
