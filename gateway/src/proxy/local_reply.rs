//! Replies the gateway makes itself, in Envoy's wording.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::context::RequestCtx;
use super::{grpc, headers, redirect, request_host, Gateway};

pub const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";
pub const UPSTREAM_TIMEOUT: &str = "upstream request timeout";
pub const CONNECT_FAILURE: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
pub const CONNECTION_TERMINATION: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
pub const REMOTE_RESET: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: remote reset";
pub const HEADERS_TOO_LARGE: &str = "Request Header Fields Too Large";
pub const PAYLOAD_TOO_LARGE: &str = "Payload Too Large";

/// Write a short plain-text reply; the connection stays usable when `keepalive`.
pub async fn send(
    session: &mut Session,
    status: u16,
    body: &'static str,
    keepalive: bool,
) -> pingora_error::Result<()> {
    write(
        session,
        status,
        Bytes::from_static(body.as_bytes()),
        keepalive,
    )
    .await
}

/// [`send`] with a body made for this reply (a failure reason in it).
pub async fn send_text(
    session: &mut Session,
    status: u16,
    body: String,
    keepalive: bool,
) -> pingora_error::Result<()> {
    write(session, status, Bytes::from(body), keepalive).await
}

async fn write(
    session: &mut Session,
    status: u16,
    body: Bytes,
    keepalive: bool,
) -> pingora_error::Result<()> {
    if grpc::is_grpc(session) {
        // The route timeout is DEADLINE_EXCEEDED, as current Envoy answers (releases
        // before 2026, such as Higress ships, mapped its 504 to UNAVAILABLE).
        let code = match (status, &body[..]) {
            (504, b) if b == UPSTREAM_TIMEOUT.as_bytes() => grpc::DEADLINE_EXCEEDED,
            _ => grpc::status_of_http(status),
        };
        return grpc::local_reply(session, code, &body).await;
    }
    let mut resp = ResponseHeader::build(status, Some(3))?;
    if !body.is_empty() {
        resp.insert_header(http::header::CONTENT_TYPE, "text/plain")?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    if !keepalive {
        session.set_keepalive(None);
    }
    session
        .write_response_header(Box::new(resp), body.is_empty())
        .await?;
    if !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// How routing ends when the gateway answers itself.
pub(super) enum LocalReply {
    /// Status, plain-text body, response flag.
    Status(u16, &'static str, u16),
    /// 308 to `https://` (the route's `ssl-redirect`).
    HttpsRedirect,
}

impl Gateway {
    /// Answer a request routing did not send upstream.
    pub(super) async fn local_reply(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        reply: LocalReply,
    ) -> pingora_error::Result<bool> {
        // Local replies keep their id beside the request, for the access log.
        ctx.request_id = headers::new_request_id(session.req_header()).map(Box::new);
        match reply {
            LocalReply::Status(status, body, flag) => {
                if flag != 0 {
                    ctx.flags.set(flag);
                }
                ctx.local_status = Some(status);
                // 431 leaves the request body unread: do not reuse the connection.
                send(session, status, body, status != 431).await?;
            }
            LocalReply::HttpsRedirect => {
                let req = session.req_header();
                let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
                match redirect::https_location(request_host(req), path, self.listener.ports) {
                    Some(location) => {
                        let code = ctx.route.as_ref().map_or(308, |r| r.ssl_redirect_code);
                        ctx.local_status = Some(code);
                        redirect::send(session, code, &location).await?;
                    }
                    None => {
                        // Envoy refuses such an authority outright.
                        ctx.local_status = Some(400);
                        send(session, 400, "", false).await?;
                    }
                }
            }
        }
        Ok(true)
    }
}
