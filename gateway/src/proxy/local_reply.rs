//! Replies the gateway makes itself, in Envoy's wording.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

pub const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";
pub const UPSTREAM_TIMEOUT: &str = "upstream request timeout";
pub const CONNECT_FAILURE: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
pub const CONNECTION_TERMINATION: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
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
