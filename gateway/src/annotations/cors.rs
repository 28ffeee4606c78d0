//! CORS: `enable-cors` and the `cors-*` annotations (both prefixes), read as Higress's
//! `pkg/ingress/kube/annotations/cors.go` reads them, with its defaults. Nothing acts
//! unless `enable-cors` is true.
//!
//! Lists are split on `,` with the spaces around each item trimmed; an item `*` makes
//! the whole list `*` (Higress's `splitStringWithSpaceTrim`). An empty value keeps the
//! default, as Higress's string reader refuses an empty value.

use super::{Annotations, Found, Prefixes};
use crate::error::FieldError;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &[
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
];

/// Higress's (and nginx-ingress's) default `cors-allow-methods`.
pub const DEFAULT_ALLOW_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
/// Higress's (and nginx-ingress's) default `cors-allow-headers`.
pub const DEFAULT_ALLOW_HEADERS: &str = "DNT,X-CustomHeader,Keep-Alive,User-Agent,\
X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Authorization";
/// Default `cors-max-age`, seconds (20 days).
pub const DEFAULT_MAX_AGE: u64 = 1_728_000;

/// The CORS policy of an Ingress with `enable-cors: "true"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsAnnotations {
    /// `cors-allow-origin` items: `*`, an exact origin (`https://a.com:8443`), or a
    /// one-level wildcard (`https://*.a.com`). Default `["*"]`.
    pub allow_origin: Vec<String>,
    /// `cors-allow-methods` items. Default [`DEFAULT_ALLOW_METHODS`].
    pub allow_methods: Vec<String>,
    /// `cors-allow-headers` items. Default [`DEFAULT_ALLOW_HEADERS`].
    pub allow_headers: Vec<String>,
    /// `cors-expose-headers` items. Default none.
    pub expose_headers: Vec<String>,
    /// `cors-allow-credentials`. Default `true`.
    pub allow_credentials: bool,
    /// `cors-max-age`, seconds. Default [`DEFAULT_MAX_AGE`].
    pub max_age: u64,
}

impl Default for CorsAnnotations {
    fn default() -> Self {
        CorsAnnotations {
            allow_origin: vec!["*".into()],
            allow_methods: split_list(DEFAULT_ALLOW_METHODS),
            allow_headers: split_list(DEFAULT_ALLOW_HEADERS),
            expose_headers: Vec::new(),
            allow_credentials: true,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// The CORS policy, when `enable-cors` is true. Every spelling present is checked.
pub fn from_annotations(map: &Annotations) -> Result<Option<CorsAnnotations>, FieldError> {
    let enabled = super::bool_value(map, "enable-cors", PREFIXES)?;
    // Checked even when CORS is off, so a typo does not wait for the day it is turned on.
    let credentials = super::bool_value(map, "cors-allow-credentials", PREFIXES)?;
    let max_age = match super::get(map, "cors-max-age", PREFIXES) {
        Some(found) => Some(parse_max_age(&found)?),
        None => None,
    };
    if let Some(found) = super::all(map, "cors-max-age", PREFIXES).nth(1) {
        parse_max_age(&found)?;
    }
    if enabled != Some(true) {
        return Ok(None);
    }
    let mut cors = CorsAnnotations::default();
    let list = |name: &str| -> Result<Option<Vec<String>>, FieldError> {
        let Some(found) = super::get(map, name, PREFIXES) else {
            return Ok(None);
        };
        let v = found.value.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let items = split_list(v);
        // The items become header values: no control characters, ASCII only.
        let ok = |i: &String| i.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
        if !items.iter().all(ok) {
            return Err(found.error(format!(
                "{:?} has a character a header value cannot carry",
                found.value
            )));
        }
        Ok(Some(items))
    };
    if let Some(v) = list("cors-allow-origin")? {
        cors.allow_origin = v;
    }
    if let Some(v) = list("cors-allow-methods")? {
        cors.allow_methods = v;
    }
    if let Some(v) = list("cors-allow-headers")? {
        cors.allow_headers = v;
    }
    if let Some(v) = list("cors-expose-headers")? {
        cors.expose_headers = v;
    }
    if let Some(c) = credentials {
        cors.allow_credentials = c;
    }
    if let Some(age) = max_age {
        cors.max_age = age;
    }
    Ok(Some(cors))
}

/// Seconds, a non-negative integer (Higress reads it with Go's `strconv.Atoi`).
fn parse_max_age(found: &Found<'_>) -> Result<u64, FieldError> {
    found
        .value
        .trim()
        .parse::<u64>()
        .map_err(|_| found.error(format!("{:?} is not a non-negative integer", found.value)))
}

/// Split on `,`, trim each item; an item `*` is the whole list.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim) {
        if item == "*" {
            return vec!["*".into()];
        }
        if !item.is_empty() {
            out.push(item.to_string());
        }
    }
    out
}

/// How Higress turns one `cors-allow-origin` item into Envoy's `allow_origin_string_match`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginMatch {
    /// Matches the whole `Origin` exactly (case-sensitive, as Envoy's `exact`).
    Exact(String),
    /// An RE2 pattern matched against the whole `Origin` (Envoy's `safe_regex`).
    Regex(String),
}

/// Higress's conversion of the origin list: `*` becomes the regex `.*` (and ends the
/// list); an item with a `*` whose host starts with `*` becomes `.*` followed by the rest
/// of the host with its dots escaped (the scheme is dropped, so `https://*.a.com` also
/// matches `http://x.a.com`); any other item with a `*` is dropped; the rest are exact.
pub fn origin_matches(items: &[String]) -> Vec<OriginMatch> {
    let mut out = Vec::new();
    for origin in items {
        if origin == "*" {
            out.push(OriginMatch::Regex(".*".into()));
            break;
        }
        if !origin.contains('*') {
            out.push(OriginMatch::Exact(origin.clone()));
            continue;
        }
        if let Some(host) = url_host(origin).and_then(|h| h.strip_prefix('*')) {
            let mut re = String::from(".*");
            for c in host.chars() {
                if c == '.' {
                    re.push('\\');
                }
                re.push(c);
            }
            out.push(OriginMatch::Regex(re));
        }
    }
    out
}

/// The host (with port) of `scheme://host[:port][/...]`, as Go's `url.Parse` finds it;
/// `None` without a `scheme://`.
fn url_host(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Userinfo is not part of the host.
    Some(authority.rsplit_once('@').map_or(authority, |(_, h)| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::annotations::tests::map;

    #[test]
    fn defaults_are_higress_ones() {
        let c = from_annotations(&map(&[("nginx.ingress.kubernetes.io/enable-cors", "true")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.allow_origin, vec!["*"]);
        assert_eq!(
            c.allow_methods,
            vec!["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]
        );
        assert_eq!(c.allow_headers.len(), 9);
        assert_eq!(c.allow_headers[0], "DNT");
        assert!(c.expose_headers.is_empty());
        assert!(c.allow_credentials);
        assert_eq!(c.max_age, 1_728_000);
    }

    #[test]
    fn off_unless_enabled_but_values_are_checked() {
        assert_eq!(
            from_annotations(&map(&[("higress.io/cors-allow-origin", "https://a.com")])),
            Ok(None)
        );
        assert_eq!(
            from_annotations(&map(&[("higress.io/enable-cors", "false")])),
            Ok(None)
        );
        let e = from_annotations(&map(&[("higress.io/cors-max-age", "abc")])).unwrap_err();
        assert_eq!(e.path, "metadata.annotations[\"higress.io/cors-max-age\"]");
        assert!(e.message.contains("\"abc\" is not a non-negative integer"));
        let e = from_annotations(&map(&[("nginx.ingress.kubernetes.io/enable-cors", "yes")]))
            .unwrap_err();
        assert!(e.path.contains("enable-cors"));
        assert!(from_annotations(&map(&[
            ("higress.io/enable-cors", "true"),
            ("higress.io/cors-allow-credentials", "maybe"),
        ]))
        .is_err());
        assert!(from_annotations(&map(&[
            ("higress.io/enable-cors", "true"),
            ("higress.io/cors-max-age", "-1"),
        ]))
        .is_err());
        let e = from_annotations(&map(&[
            ("higress.io/enable-cors", "true"),
            ("higress.io/cors-allow-headers", "X-A,\u{1}X-B"),
        ]))
        .unwrap_err();
        assert!(e.path.contains("cors-allow-headers"), "{e:?}");
    }

    #[test]
    fn values_nginx_prefix_first() {
        let c = from_annotations(&map(&[
            ("higress.io/enable-cors", "true"),
            (
                "nginx.ingress.kubernetes.io/cors-allow-origin",
                "https://a.com, http://b.com:8080",
            ),
            ("higress.io/cors-allow-origin", "https://ignored.com"),
            ("higress.io/cors-allow-methods", "GET , POST"),
            ("higress.io/cors-allow-headers", "X-A, *, X-B"),
            ("higress.io/cors-expose-headers", "X-Total, X-Page"),
            ("higress.io/cors-allow-credentials", "false"),
            ("higress.io/cors-max-age", "600"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.allow_origin, vec!["https://a.com", "http://b.com:8080"]);
        assert_eq!(c.allow_methods, vec!["GET", "POST"]);
        assert_eq!(c.allow_headers, vec!["*"]);
        assert_eq!(c.expose_headers, vec!["X-Total", "X-Page"]);
        assert!(!c.allow_credentials);
        assert_eq!(c.max_age, 600);
        // An empty value keeps the default.
        let c = from_annotations(&map(&[
            ("higress.io/enable-cors", "true"),
            ("higress.io/cors-allow-origin", "  "),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.allow_origin, vec!["*"]);
    }

    #[test]
    fn origins_convert_as_higress_does() {
        let items = split_list(
            "https://a.com, https://*.b.com:8443, http://x*y.com, *.c.com, https://*.d.com",
        );
        assert_eq!(
            origin_matches(&items),
            vec![
                OriginMatch::Exact("https://a.com".into()),
                OriginMatch::Regex(r".*\.b\.com:8443".into()),
                OriginMatch::Regex(r".*\.d\.com".into()),
            ]
        );
        assert_eq!(
            origin_matches(&split_list("https://a.com, *, https://b.com")),
            vec![OriginMatch::Regex(".*".into())]
        );
        assert_eq!(
            origin_matches(&["https://a.com".into(), "*".into(), "https://b.com".into()]),
            vec![
                OriginMatch::Exact("https://a.com".into()),
                OriginMatch::Regex(".*".into())
            ]
        );
    }
}
