//! Header policy: what the gateway adds on the way up and down, as Envoy does at the
//! edge (`use_remote_address: true`, no trusted hops).

use std::net::IpAddr;

use http::HeaderValue;

use pingora_http::{RequestHeader, ResponseHeader};

use crate::controllers::GlobalOptionSettings;

pub const X_REQUEST_ID: &str = "x-request-id";
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_REAL_IP: &str = "x-real-ip";
pub const X_ENVOY_ATTEMPT_COUNT: &str = "x-envoy-attempt-count";
pub const X_ENVOY_UPSTREAM_SERVICE_TIME: &str = "x-envoy-upstream-service-time";

/// Give the request an `x-request-id` (UUID v4) unless it has one.
pub fn ensure_request_id(req: &mut RequestHeader) -> pingora_error::Result<()> {
    if req.headers.get(X_REQUEST_ID).is_none() {
        let mut buf = uuid::Uuid::encode_buffer();
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        req.insert_header(X_REQUEST_ID, &*id)?;
    }
    Ok(())
}

/// Headers for the upstream request of one attempt.
pub fn upstream_request(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    tls: bool,
    attempt: u32,
    global: &GlobalOptionSettings,
) -> pingora_error::Result<()> {
    if let Some(ip) = peer {
        let mut ipbuf = [0u8; 64];
        let ip_str = fmt_ip(ip, &mut ipbuf);
        let xff = match req.headers.get(X_FORWARDED_FOR) {
            Some(v) if !v.is_empty() => {
                let mut s = Vec::with_capacity(v.len() + 2 + ip_str.len());
                s.extend_from_slice(v.as_bytes());
                s.extend_from_slice(b", ");
                s.extend_from_slice(ip_str.as_bytes());
                HeaderValue::from_bytes(&s).ok()
            }
            _ => HeaderValue::from_str(ip_str).ok(),
        };
        if let Some(v) = xff {
            req.insert_header(X_FORWARDED_FOR, v)?;
        }
        if global.add_x_real_ip {
            req.insert_header(X_REAL_IP, ip_str)?;
        }
    }
    // Static values: no allocation for them on every request.
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    req.insert_header(X_FORWARDED_PROTO, proto)?;
    if !global.disable_x_envoy_headers {
        let count = match attempt {
            1 => HeaderValue::from_static("1"),
            2 => HeaderValue::from_static("2"),
            3 => HeaderValue::from_static("3"),
            n => HeaderValue::from(n),
        };
        req.insert_header(X_ENVOY_ATTEMPT_COUNT, count)?;
    } else {
        req.remove_header(X_ENVOY_ATTEMPT_COUNT);
    }
    Ok(())
}

/// Headers on the response from the upstream.
pub fn downstream_response(
    resp: &mut ResponseHeader,
    upstream_service_time_ms: Option<u64>,
    global: &GlobalOptionSettings,
) -> pingora_error::Result<()> {
    if global.disable_x_envoy_headers {
        return Ok(());
    }
    if let Some(ms) = upstream_service_time_ms {
        resp.insert_header(
            X_ENVOY_UPSTREAM_SERVICE_TIME,
            itoa::Buffer::new().format(ms),
        )?;
    }
    Ok(())
}

fn fmt_ip(ip: IpAddr, buf: &mut [u8; 64]) -> &str {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{ip}");
    let n = cur.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// Request header size as Envoy counts it against `maxRequestHeadersKb`: the sum of
/// every header's name and value.
pub fn request_headers_size(req: &RequestHeader) -> usize {
    req.headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header(X_FORWARDED_FOR, "1.2.3.4").unwrap();
        let mut g = GlobalOptionSettings {
            add_x_real_ip: true,
            ..Default::default()
        };
        upstream_request(&mut req, Some("127.0.0.9".parse().unwrap()), false, 2, &g).unwrap();
        assert_eq!(req.headers[X_FORWARDED_FOR], "1.2.3.4, 127.0.0.9");
        assert_eq!(req.headers[X_REAL_IP], "127.0.0.9");
        assert_eq!(req.headers[X_FORWARDED_PROTO], "http");
        assert_eq!(req.headers[X_ENVOY_ATTEMPT_COUNT], "2");
        g.disable_x_envoy_headers = true;
        upstream_request(&mut req, None, true, 1, &g).unwrap();
        assert!(req.headers.get(X_ENVOY_ATTEMPT_COUNT).is_none());
        assert_eq!(req.headers[X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn request_id_is_kept_or_made() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        ensure_request_id(&mut req).unwrap();
        let id = req.headers[X_REQUEST_ID].to_str().unwrap().to_string();
        assert_eq!(id.len(), 36);
        ensure_request_id(&mut req).unwrap();
        assert_eq!(req.headers[X_REQUEST_ID], id.as_str());
    }
}
