//! Redirects, read under either prefix (nginx's first) as Higress's `redirect.go` reads
//! them:
//!
//! - `ssl-redirect` and `force-ssl-redirect` (Higress treats both alike): plain-HTTP
//!   requests to the Ingress's routes get a 308 to `https://`.
//! - `temporal-redirect` (302) wins over `permanent-redirect` (301, or
//!   `permanent-redirect-code`): the route answers with a redirect to the URL's scheme,
//!   host and path (an empty path keeps the request's; the request's query is kept, as
//!   Envoy's `path_redirect`; the URL's own query is not used: Higress takes `url.Path`).
//!   Either wins over `ssl-redirect` on the route, as in Higress.
//! - `app-root`: requests for exactly `/` on the Ingress's hosts get a 302 to it (a route
//!   of its own, first on the host).

use super::{Annotations, Found, Prefixes};
use crate::error::FieldError;
use crate::model::rewrite::Redirect;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "app-root",
    "temporal-redirect",
    "permanent-redirect",
    "permanent-redirect-code",
];

/// Whether either HTTPS annotation asks for the redirect.
pub fn from_annotations(map: &Annotations) -> Result<bool, FieldError> {
    let mut redirect = false;
    for name in &NAMES[..2] {
        redirect |= super::bool_value(map, name, PREFIXES)? == Some(true);
    }
    Ok(redirect)
}

/// `app-root` and the URL redirects of one Ingress (absent by default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RedirectAnnotations {
    /// `app-root`: where `/` is sent (302).
    pub app_root: Option<String>,
    /// `temporal-redirect` or `permanent-redirect`, with its code.
    pub url: Option<Redirect>,
}

impl super::Empty for RedirectAnnotations {
    const EMPTY: &'static Self = &RedirectAnnotations {
        app_root: None,
        url: None,
    };
}

/// Higress's code when `permanent-redirect-code` is absent or outside 300..=308.
const DEFAULT_PERMANENT_CODE: u16 = 301;
const TEMPORAL_CODE: u16 = 302;

/// `app-root`, `temporal-redirect`, `permanent-redirect` and `permanent-redirect-code`,
/// checked.
pub fn redirects(map: &Annotations) -> Result<RedirectAnnotations, FieldError> {
    let mut out = RedirectAnnotations::default();
    if let Some(found) = super::get(map, "app-root", PREFIXES) {
        let v = found.value.trim();
        if !v.is_empty() {
            if !v.starts_with('/') || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(found.error(format!("{v:?} is not a path starting with '/'")));
            }
            out.app_root = Some(v.to_string());
        }
    }
    let code = match super::get(map, "permanent-redirect-code", PREFIXES) {
        None => DEFAULT_PERMANENT_CODE,
        Some(found) => permanent_code(found)?,
    };
    let temporal = super::get(map, "temporal-redirect", PREFIXES)
        .map(|f| url(f, TEMPORAL_CODE))
        .transpose()?
        .flatten();
    let permanent = super::get(map, "permanent-redirect", PREFIXES)
        .map(|f| url(f, code))
        .transpose()?
        .flatten();
    out.url = temporal.or(permanent);
    Ok(out)
}

/// The code: an integer; outside 300..=308 it is 301 (Higress); 300, 304, 305 and 306
/// are refused (Envoy's redirect has no such code, and Istio would drop the route).
fn permanent_code(found: Found<'_>) -> Result<u16, FieldError> {
    let v = found.value.trim();
    let code: i64 = v
        .parse()
        .map_err(|_| found.error(format!("{v:?} is not an integer")))?;
    match code {
        301 | 302 | 303 | 307 | 308 => Ok(code as u16),
        300..=308 => Err(found.error(format!(
            "{code} is not a redirect code Envoy sends (301, 302, 303, 307, 308)"
        ))),
        _ => {
            tracing::warn!(
                annotation = found.key,
                code,
                "outside 300-308: 301 is used, as Higress does"
            );
            Ok(DEFAULT_PERMANENT_CODE)
        }
    }
}

/// An `http(s)://host[:port][/path]` URL as the redirect it makes (Go's `url.Parse`
/// split: the query and fragment of the URL are not used); empty is absent.
fn url(found: Found<'_>, code: u16) -> Result<Option<Redirect>, FieldError> {
    let v = found.value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || found.error(format!("{v:?} is not an http or https URL"));
    if !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    let (scheme, rest) = v.split_once("://").ok_or_else(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(bad());
    }
    Ok(Some(Redirect {
        scheme: Some(scheme),
        authority: (!authority.is_empty()).then(|| authority.to_string()),
        path: (!path.is_empty()).then(|| path.to_string()),
        code,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<RedirectAnnotations, FieldError> {
        let m = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        redirects(&m)
    }

    fn url_of(pairs: &[(&str, &str)]) -> Redirect {
        parse(pairs).unwrap().url.unwrap()
    }

    #[test]
    fn temporal_wins_and_codes_follow_higress() {
        let r = url_of(&[
            (
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "https://b.com/x?q=1",
            ),
            ("higress.io/temporal-redirect", "http://a.com"),
            ("higress.io/permanent-redirect-code", "308"),
        ]);
        assert_eq!(
            r,
            Redirect {
                scheme: Some("http".into()),
                authority: Some("a.com".into()),
                path: None,
                code: 302
            }
        );
        let r = url_of(&[("higress.io/permanent-redirect", "https://b.com:8443/x?q=1")]);
        assert_eq!(r.code, 301);
        assert_eq!(r.authority.as_deref(), Some("b.com:8443"));
        assert_eq!(r.path.as_deref(), Some("/x"));
        let code = |c: &str| {
            url_of(&[
                ("higress.io/permanent-redirect", "http://b.com"),
                ("higress.io/permanent-redirect-code", c),
            ])
            .code
        };
        assert_eq!(code("308"), 308);
        assert_eq!(code("307"), 307);
        assert_eq!(code("200"), 301, "outside 300..308: Higress's 301");
        assert_eq!(code("404"), 301);
    }

    #[test]
    fn app_root_is_a_path() {
        let r = parse(&[("nginx.ingress.kubernetes.io/app-root", "/app1")]).unwrap();
        assert_eq!(r.app_root.as_deref(), Some("/app1"));
        assert!(r.url.is_none());
        let e = parse(&[("nginx.ingress.kubernetes.io/app-root", "app1")]).unwrap_err();
        assert_eq!(
            e.path,
            "metadata.annotations[\"nginx.ingress.kubernetes.io/app-root\"]"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for (k, v, why) in [
            (
                "higress.io/permanent-redirect-code",
                "abc",
                "\"abc\" is not an integer",
            ),
            (
                "higress.io/permanent-redirect-code",
                "305",
                "not a redirect code",
            ),
            (
                "higress.io/permanent-redirect",
                "ftp://a.com",
                "not an http or https URL",
            ),
            (
                "higress.io/temporal-redirect",
                "a.com/x",
                "not an http or https URL",
            ),
            (
                "higress.io/temporal-redirect",
                "http://u@a.com",
                "not an http",
            ),
        ] {
            let e = parse(&[(k, v)]).unwrap_err();
            assert!(e.message.contains(why), "{k}={v}: {e}");
            assert_eq!(e.path, format!("metadata.annotations[\"{k}\"]"));
        }
        assert_eq!(
            parse(&[("higress.io/temporal-redirect", "")]).unwrap(),
            Default::default()
        );
    }
}
