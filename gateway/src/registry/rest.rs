//! One HTTP/1.1 GET to a registry's REST API (Consul's, Eureka's): a new connection per
//! request, bounded by a timeout. Watchers poll a handful of paths every few seconds at
//! most, so keeping connections alive is not worth the state it needs.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

/// The largest answer read: a registry's full listing of thousands of instances fits.
const MAX_BODY: usize = 64 << 20;

/// Why a registry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("connect {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("GET {path}: no answer within {after:?}")]
    Timeout { path: String, after: Duration },
    #[error("GET {path}: {reason}")]
    Exchange { path: String, reason: String },
    #[error("GET {path}: HTTP {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("GET {path}: unexpected answer: {reason}")]
    Decode { path: String, reason: String },
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Answer {
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, RestError> {
        serde_json::from_slice(&self.body).map_err(|e| RestError::Decode {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }
}

/// GET `path_and_query` from `authority` (`host:port`, resolved by the system) with
/// `headers`. Any non-2xx status is an error carrying the start of the body.
pub async fn get(
    authority: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Answer, RestError> {
    match tokio::time::timeout(timeout, exchange(authority, path_and_query, headers)).await {
        Ok(r) => r,
        Err(_) => Err(RestError::Timeout {
            path: path_and_query.to_string(),
            after: timeout,
        }),
    }
}

async fn exchange(
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, RestError> {
    let fail = |reason: String| RestError::Exchange {
        path: path.to_string(),
        reason,
    };
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|source| RestError::Connect {
            addr: authority.to_string(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| fail(format!("handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = http::Request::get(path).header(http::header::HOST, authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| fail(format!("body: {e}")))?
        .to_bytes();
    if !parts.status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        return Err(RestError::Status {
            path: path.to_string(),
            status: parts.status.as_u16(),
            body: text.trim().to_string(),
        });
    }
    Ok(Answer {
        headers: parts.headers,
        body,
    })
}

/// `s` as one path segment: everything but RFC 3986's unreserved characters
/// percent-encoded (service names are nearly always plain already).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_encodes_reserved_bytes() {
        assert_eq!(segment("web_api-1.v2"), "web_api-1.v2");
        assert_eq!(segment("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}
