//! The model call: one HTTP/1.1 POST over a new connection (`crate::http1`).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;

use crate::model::http_filter::LocalReply;

/// Largest model answer passed on.
const MAX_ANSWER: usize = 8 << 20;

/// POST `body` (JSON) to `addr` as `host` + `path`; the answer as a reply.
pub async fn post(
    addr: SocketAddr,
    host: &str,
    path: &str,
    api_key: &str,
    body: String,
) -> Result<LocalReply, String> {
    let req = http::Request::post(path)
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::AUTHORIZATION, format!("Bearer {api_key}"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = crate::http1::exchange(addr, req, MAX_ANSWER).await?;
    let body = body.to_bytes();
    let headers = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| vec![("content-type".to_string(), ct.to_string())])
        .unwrap_or_default();
    Ok(LocalReply {
        status: parts.status.as_u16(),
        headers,
        body: body.to_vec(),
        ..Default::default()
    })
}
