//! What the HTTP connection manager does to a request before any filter or route sees
//! it, as Higress configures Envoy: `normalize_path` on (RFC 3986 dot segments removed,
//! `%2e` counted as a dot), `merge_slashes` off, escaped slashes kept as they are; at
//! most 100 request headers; `Expect: 100-continue` answered by the gateway itself
//! (Envoy's default, `proxy_100_continue: false`).

use http::uri::{PathAndQuery, Uri};
use pingora_http::RequestHeader;

/// Envoy's `max_request_headers_count` default.
pub const MAX_REQUEST_HEADERS: usize = 100;

/// The path with its dot segments removed, or `None` when it has none (the usual case,
/// decided without allocating).
pub fn normalize_path(path: &str) -> Option<String> {
    // Origin-form paths start with `/`: a dot segment (plain or escaped) follows one.
    let dotted = path.as_bytes().windows(2).any(|w| w == b"/." || w == b"/%");
    if !dotted {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    let mut changed = false;
    for (i, seg) in segments.iter().enumerate() {
        match dots(seg) {
            1 => {
                changed = true;
                // `/a/.` keeps its trailing slash: `/a/`.
                if i == last {
                    out.push("");
                }
            }
            2 => {
                changed = true;
                // Never above the root: the leading empty segment stays.
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            _ => out.push(seg),
        }
    }
    if !changed {
        return None;
    }
    let mut p = out.join("/");
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    Some(p)
}

/// 1 for `.` or `%2e`, 2 for `..` and its escaped forms, 0 otherwise.
fn dots(seg: &str) -> u8 {
    let mut n = 0u8;
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b[i] == b'%'
            && b.get(i + 1) == Some(&b'2')
            && matches!(b.get(i + 2), Some(b'e' | b'E'))
        {
            i += 3;
        } else {
            return 0;
        }
        n += 1;
        if n > 2 {
            return 0;
        }
    }
    n
}

/// Rewrite the request's path in place when normalising changes it.
pub fn apply(req: &mut RequestHeader) {
    let Some(path) = normalize_path(req.uri.path()) else {
        return;
    };
    let pq = match req.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let Ok(pq) = pq.parse::<PathAndQuery>() else {
        return;
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(parts) {
        req.set_uri(uri);
    }
}

/// Whether the client waits for `100 Continue` before sending its body.
pub fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_go_escaped_slashes_and_double_slashes_stay() {
        for (p, want) in [
            ("/a/../b", Some("/b")),
            ("/a/./b/", Some("/a/b/")),
            ("/../../etc/passwd", Some("/etc/passwd")),
            ("/a/%2e%2e/b", Some("/b")),
            ("/a/%2E/b", Some("/a/b")),
            ("/a/.%2e/b", Some("/b")),
            ("/a/b/..", Some("/a/")),
            ("/a/.", Some("/a/")),
            ("/..", Some("/")),
            ("/a%2Fb/../c", Some("/c")),
            ("/a//b", None),
            ("/a/b", None),
            ("/a/.b/...c/...", None),
            ("/a/%2Fb", None),
            ("/", None),
        ] {
            assert_eq!(normalize_path(p).as_deref(), want, "{p}");
        }
    }

    #[test]
    fn the_query_is_kept_verbatim() {
        let mut r = RequestHeader::build("GET", b"/q/../r?x=/../y", None).unwrap();
        apply(&mut r);
        assert_eq!(r.uri.path_and_query().unwrap().as_str(), "/r?x=/../y");
        let mut r = RequestHeader::build("GET", b"/plain?a=1", None).unwrap();
        apply(&mut r);
        assert_eq!(r.uri.path_and_query().unwrap().as_str(), "/plain?a=1");
    }
}
