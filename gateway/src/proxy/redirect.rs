//! The HTTPS redirect of `ssl-redirect` / `force-ssl-redirect` and of domains with
//! `enableHttps: force`: a plain-HTTP request gets `308` to the same host, path and
//! query over `https://` (Higress's route redirect; requests on the HTTPS listener pass).
//!
//! Envoy's scheme redirect keeps the authority but drops a `:80`. We also turn the HTTP
//! listener's own port into the HTTPS listener's (so `localhost:8080` leads to
//! `localhost:8443`), and drop `:443`.

use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// The listener ports a redirect's authority is rewritten with.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub http: u16,
    /// `None` when the HTTPS listener is off: the HTTP listener's port is dropped too.
    pub https: Option<u16>,
}

/// Whether `host` is a plain authority: a name or IP literal and an optional port. Other
/// characters (`@`, `/`, `?`, `#`, spaces ...) would change what the `location` means.
fn plain_authority(host: &str) -> bool {
    !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

/// `https://<authority><path?query>` for a request with `host` (as sent, port included);
/// `None` when the host is not a plain authority (the request gets 400).
pub fn https_location(host: &str, path_and_query: &str, ports: Ports) -> Option<String> {
    if !plain_authority(host) {
        return None;
    }
    let (name, port) = split_port(host);
    let port = match port {
        None | Some(80) | Some(443) => None,
        Some(p) if p == ports.http => ports.https.filter(|&p| p != 443),
        Some(p) => Some(p),
    };
    let path = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    Some(match port {
        Some(p) => format!("https://{name}:{p}{path}"),
        None => format!("https://{name}{path}"),
    })
}

/// `host` without a numeric `:port`, and the port (`[v6]:port` kept bracketed).
fn split_port(host: &str) -> (&str, Option<u16>) {
    let split = if host.starts_with('[') {
        host.find("]:").map(|i| i + 1)
    } else {
        host.rfind(':')
    };
    match split {
        Some(i) => match host[i + 1..].parse::<u16>() {
            Ok(p) => (&host[..i], Some(p)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

/// Send the redirect (`code`: 308 or 301) with its `location`.
pub async fn send(session: &mut Session, code: u16, location: &str) -> pingora_error::Result<()> {
    let mut resp = ResponseHeader::build(code, Some(2))?;
    resp.insert_header(http::header::LOCATION, location)?;
    resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
    session.write_response_header(Box::new(resp), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(host: &str, path: &str, ports: Ports) -> String {
        https_location(host, path, ports).unwrap()
    }

    #[test]
    fn locations_keep_host_path_and_query() {
        let p = Ports {
            http: 8080,
            https: Some(8443),
        };
        assert_eq!(
            loc("foo.bar.com", "/a/b?x=1&y", p),
            "https://foo.bar.com/a/b?x=1&y"
        );
        assert_eq!(loc("foo.bar.com:80", "/", p), "https://foo.bar.com/");
        assert_eq!(
            loc("localhost:8080", "/get", p),
            "https://localhost:8443/get"
        );
        assert_eq!(loc("a.com:9000", "", p), "https://a.com:9000/");
        assert_eq!(loc("[::1]:8080", "/", p), "https://[::1]:8443/");
        assert_eq!(loc("[::1]", "/", p), "https://[::1]/");
        let standard = Ports {
            http: 80,
            https: Some(443),
        };
        assert_eq!(loc("a.com:80", "/", standard), "https://a.com/");
        let off = Ports {
            http: 8080,
            https: None,
        };
        assert_eq!(loc("a.com:8080", "/", off), "https://a.com/");
        for bad in ["a.com@evil.com", "a.com/x", "a b", "", "a.com?x", "a.com#f"] {
            assert_eq!(https_location(bad, "/", p), None, "{bad:?}");
        }
    }
}
