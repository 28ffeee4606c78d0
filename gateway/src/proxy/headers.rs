//! Header policy: what the gateway adds on the way up and down, as Envoy does at the
//! edge (`use_remote_address: true`, no trusted hops).
//!
//! Pingora keeps a case-preserving name map beside every header map, and its
//! `insert_header` parses the name and allocates twice on each call (about 2k
//! instructions a header, measured with callgrind). Envoy lowercases header names
//! anyway, so the gateway edits headers as plain `http` parts with names parsed at
//! compile time: one map, no name parsing, one reserve for all additions.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::model::filter_settings::GlobalOptionSettings;
use crate::model::header_control::HeaderOps;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
pub const X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");

/// Edge headers the gateway may add to a request (room reserved once).
const EDGE_HEADERS: usize = 5;

/// A fresh `x-request-id` (UUID v4) when the request has none; `None` keeps the client's.
pub fn new_request_id(req: &RequestHeader) -> Option<HeaderValue> {
    if req.headers.contains_key(X_REQUEST_ID) {
        return None;
    }
    Some(super::request_id::generate())
}

/// What the forwarded headers are made of.
pub struct Forwarded {
    pub peer: Option<IpAddr>,
    pub tls: bool,
    /// Headers each upstream request will get later (trace propagation): room made
    /// now, so that adding them to the upstream copy, whose map is as big as this one,
    /// does not regrow and rehash it.
    pub later: usize,
}

/// Edge headers, set once on the routed downstream request as Envoy's connection
/// manager does (so the access log sees them too); every attempt's upstream request is
/// a copy of it: `x-request-id` (kept or made), `x-forwarded-for` (peer appended),
/// `x-forwarded-proto`, `x-real-ip` if enabled, and `x-envoy-attempt-count: 1`
/// ([`retry_attempt`] updates it).
///
/// `route_control`: the route's request header control, when nothing that runs before
/// the router could see the difference (`rewrite::early_control`): applied last, in
/// the same edit, as Envoy's router applies it after the edge headers.
pub fn forwarded_request(
    req: &mut RequestHeader,
    fwd: &Forwarded,
    global: &GlobalOptionSettings,
    route_control: Option<&HeaderOps>,
) {
    use http::header::Entry;
    edit_request(req, |h| {
        h.reserve(
            EDGE_HEADERS + fwd.later + route_control.map_or(0, |c| c.set.len() + c.add.len()),
        );
        if let Entry::Vacant(v) = h.entry(X_REQUEST_ID) {
            v.insert(super::request_id::generate());
        }
        if let Some(ip) = fwd.peer {
            let mut ipbuf = IpBuf::new();
            let ip_str = ipbuf.format(ip);
            let ip_value = HeaderValue::from_str(ip_str).ok();
            if global.add_x_real_ip {
                if let Some(v) = &ip_value {
                    h.insert(X_REAL_IP, v.clone());
                }
            }
            match h.entry(X_FORWARDED_FOR) {
                Entry::Occupied(mut o) if !o.get().is_empty() => {
                    let old = o.get().as_bytes();
                    let mut s = Vec::with_capacity(old.len() + 2 + ip_str.len());
                    s.extend_from_slice(old);
                    s.extend_from_slice(b", ");
                    s.extend_from_slice(ip_str.as_bytes());
                    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(s)) {
                        o.insert(v);
                    }
                }
                Entry::Occupied(mut o) => {
                    if let Some(v) = ip_value {
                        o.insert(v);
                    }
                }
                Entry::Vacant(e) => {
                    if let Some(v) = ip_value {
                        e.insert(v);
                    }
                }
            }
        }
        let proto = HeaderValue::from_static(if fwd.tls { "https" } else { "http" });
        h.insert(X_FORWARDED_PROTO, proto);
        if global.disable_x_envoy_headers {
            h.remove(X_ENVOY_ATTEMPT_COUNT);
        } else {
            h.insert(X_ENVOY_ATTEMPT_COUNT, attempt_value(1));
        }
        if let Some(c) = route_control {
            c.apply(h);
        }
    });
}

/// The upstream request of a retry: its attempt number.
pub fn retry_attempt(req: &mut RequestHeader, attempt: u32, global: &GlobalOptionSettings) {
    if attempt > 1 && !global.disable_x_envoy_headers {
        edit_request(req, |h| {
            h.insert(X_ENVOY_ATTEMPT_COUNT, attempt_value(attempt));
        });
    }
}

fn attempt_value(attempt: u32) -> HeaderValue {
    match attempt {
        1 => HeaderValue::from_static("1"),
        2 => HeaderValue::from_static("2"),
        3 => HeaderValue::from_static("3"),
        n => HeaderValue::from(n),
    }
}

/// `ms` as a header value; the common small values are shared, not allocated.
pub(super) fn millis_value(ms: u64) -> HeaderValue {
    const SHARED: usize = 1000;
    static VALUES: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    if ms >= SHARED as u64 {
        return HeaderValue::from(ms);
    }
    let values = VALUES.get_or_init(|| {
        (0..SHARED)
            .map(|i| HeaderValue::from_static(Box::leak(i.to_string().into_boxed_str())))
            .collect()
    });
    values[ms as usize].clone()
}

/// Run `f` on the request's headers as a plain `http` map (dropping Pingora's case map).
pub(super) fn edit_request(req: &mut RequestHeader, f: impl FnOnce(&mut HeaderMap)) {
    let blank = RequestHeader::from(http::Request::new(()).into_parts().0);
    let original = std::mem::replace(req, blank);
    // A non-UTF-8 target lives beside the URI, not in it: carry it over. (An
    // absolute-form target goes upstream in origin-form, as Envoy sends it.)
    let raw_target = (!original.raw_path_is_utf8()).then(|| original.raw_path().to_vec());
    let end_stream = original.send_end_stream();
    let mut parts = http::request::Parts::from(original);
    f(&mut parts.headers);
    *req = RequestHeader::from(parts);
    if let Some(raw) = raw_target {
        // The bytes were accepted as this request's target already.
        let _ = req.set_raw_path(&raw);
    }
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
}

/// Text of an IP address without the formatting machinery (IPv4 is the hot case).
struct IpBuf([u8; 48]);

impl IpBuf {
    fn new() -> Self {
        IpBuf([0; 48])
    }

    fn format(&mut self, ip: IpAddr) -> &str {
        let n = match ip {
            IpAddr::V4(v4) => {
                let mut n = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.0[n] = b'.';
                        n += 1;
                    }
                    let mut digits = itoa::Buffer::new();
                    let d = digits.format(octet).as_bytes();
                    self.0[n..n + d.len()].copy_from_slice(d);
                    n += d.len();
                }
                n
            }
            IpAddr::V6(_) => {
                use std::io::Write;
                let mut cur = std::io::Cursor::new(&mut self.0[..]);
                let _ = write!(cur, "{ip}");
                cur.position() as usize
            }
        };
        std::str::from_utf8(&self.0[..n]).unwrap_or("")
    }
}

/// Request header size as Envoy counts it against `maxRequestHeadersKb`: the sum of
/// every header's name and value.
pub fn request_headers_size(req: &RequestHeader) -> usize {
    req.headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum()
}

/// Size of the request head as HTTP/1.1 puts it on the wire: request line, `name: value`
/// lines and the blank line (Istio's `istio_request_bytes` counts head and body).
pub fn request_wire_size(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len()
        + 1
        + req.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len();
    line + headers_wire_size(&req.headers) + 2
}

/// Size of the response head as HTTP/1.1 puts it on the wire.
pub fn response_wire_size(resp: &ResponseHeader) -> usize {
    let line = "HTTP/1.1 200 ".len() + resp.status.canonical_reason().map_or(0, str::len) + 2;
    line + headers_wire_size(&resp.headers) + 2
}

fn headers_wire_size(h: &HeaderMap) -> usize {
    h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(peer: Option<&str>, tls: bool) -> Forwarded {
        Forwarded {
            peer: peer.map(|p| p.parse().unwrap()),
            tls,
            later: 0,
        }
    }

    #[test]
    fn forwarded_headers() {
        let mut req = RequestHeader::build("GET", b"/a?b=c", None).unwrap();
        req.insert_header("X-Forwarded-For", "1.2.3.4").unwrap();
        let mut g = GlobalOptionSettings {
            add_x_real_ip: true,
            ..Default::default()
        };
        forwarded_request(&mut req, &fwd(Some("127.0.0.9"), false), &g, None);
        assert_eq!(req.headers[X_FORWARDED_FOR], "1.2.3.4, 127.0.0.9");
        assert_eq!(req.headers[X_REAL_IP], "127.0.0.9");
        assert_eq!(req.headers[X_FORWARDED_PROTO], "http");
        assert_eq!(req.headers[X_ENVOY_ATTEMPT_COUNT], "1");
        assert_eq!(req.raw_path(), b"/a?b=c");
        retry_attempt(&mut req, 2, &g);
        assert_eq!(req.headers[X_ENVOY_ATTEMPT_COUNT], "2");
        g.disable_x_envoy_headers = true;
        forwarded_request(&mut req, &fwd(None, true), &g, None);
        assert!(req.headers.get(X_ENVOY_ATTEMPT_COUNT).is_none());
        retry_attempt(&mut req, 3, &g);
        assert!(req.headers.get(X_ENVOY_ATTEMPT_COUNT).is_none());
        assert_eq!(req.headers[X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn ip_text() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.40",
            "::1",
            "fe80::1:2",
        ] {
            assert_eq!(IpBuf::new().format(ip.parse().unwrap()), ip);
        }
    }

    #[test]
    fn non_utf8_target_survives() {
        let mut req = RequestHeader::build("GET", b"/caf\xe9", None).unwrap();
        assert!(!req.raw_path_is_utf8());
        forwarded_request(&mut req, &fwd(None, false), &Default::default(), None);
        assert_eq!(req.raw_path(), b"/caf\xe9");
    }

    #[test]
    fn request_id_is_kept_or_made() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(new_request_id(&req).expect("made when absent").len(), 36);
        forwarded_request(&mut req, &fwd(None, false), &Default::default(), None);
        let id = req.headers[X_REQUEST_ID].clone();
        assert_eq!(id.len(), 36);
        assert!(new_request_id(&req).is_none(), "kept when present");
        forwarded_request(&mut req, &fwd(None, false), &Default::default(), None);
        assert_eq!(req.headers[X_REQUEST_ID], id, "kept when present");
    }

    #[test]
    fn empty_forwarded_for_becomes_the_peer() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-for", "").unwrap();
        forwarded_request(
            &mut req,
            &fwd(Some("10.0.0.1"), false),
            &Default::default(),
            None,
        );
        assert_eq!(req.headers[X_FORWARDED_FOR], "10.0.0.1");
    }

    #[test]
    fn service_time_values() {
        for ms in [0, 7, 999, 1000, 123_456] {
            assert_eq!(millis_value(ms), ms.to_string().as_str());
        }
    }
}
