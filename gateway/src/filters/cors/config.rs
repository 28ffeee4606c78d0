//! The CORS filter's configuration, compiled at translation: origin matchers and every
//! header value the filter writes.

use http::HeaderValue;

/// One `allow_origin_string_match` entry.
#[derive(Debug)]
pub enum Origin {
    /// The whole origin, case-sensitive.
    Exact(String),
    /// A regex matched against the whole origin (compiled anchored).
    Regex(regex::bytes::Regex),
}

impl Origin {
    /// A regex matcher for `pattern`, anchored at both ends as Envoy's RE2 full match.
    pub fn regex(pattern: &str) -> Result<Origin, regex::Error> {
        regex::bytes::Regex::new(&format!("^(?:{pattern})$")).map(Origin::Regex)
    }

    fn matches(&self, origin: &[u8]) -> bool {
        match self {
            Origin::Exact(s) => s.as_bytes() == origin,
            Origin::Regex(r) => r.is_match(origin),
        }
    }
}

/// A comma-joined list as a header value: absent, `*` (echo the request's), or values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum List {
    None,
    Any,
    Values(HeaderValue),
}

impl List {
    fn new(items: &[String]) -> Result<List, ConfigError> {
        if items.is_empty() {
            return Ok(List::None);
        }
        if items.len() == 1 && items[0] == "*" {
            return Ok(List::Any);
        }
        joined(items).map(List::Values)
    }
}

/// A value that cannot be a header value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0:?} is not a valid header value")]
    HeaderValue(String),
    #[error("invalid origin regex: {0}")]
    Regex(#[from] regex::Error),
}

/// Items joined with `,` (as Istio joins them into Envoy's `CorsPolicy`).
fn joined(items: &[String]) -> Result<HeaderValue, ConfigError> {
    let s = items.join(",");
    HeaderValue::from_str(&s).map_err(|_| ConfigError::HeaderValue(s))
}

/// A route's CORS policy.
#[derive(Debug)]
pub struct CorsConfig {
    origins: Vec<Origin>,
    /// Some matcher matches the literal `*`: every origin is allowed (Envoy's check).
    any_origin: bool,
    pub(super) allow_methods: List,
    pub(super) allow_headers: List,
    /// `None`: no `access-control-expose-headers`.
    pub(super) expose_headers: Option<HeaderValue>,
    /// Seconds, as Envoy's `max_age` string.
    pub(super) max_age: Option<HeaderValue>,
    pub(super) allow_credentials: bool,
}

impl CorsConfig {
    /// A policy from the converted origin matchers and the annotation lists; fails on a
    /// value that cannot be sent as a header.
    pub fn new(
        origins: Vec<Origin>,
        allow_methods: &[String],
        allow_headers: &[String],
        expose_headers: &[String],
        allow_credentials: bool,
        max_age_seconds: Option<u64>,
    ) -> Result<CorsConfig, ConfigError> {
        let any_origin = origins.iter().any(|o| o.matches(b"*"));
        Ok(CorsConfig {
            origins,
            any_origin,
            allow_methods: List::new(allow_methods)?,
            allow_headers: List::new(allow_headers)?,
            expose_headers: match expose_headers.is_empty() {
                true => None,
                false => Some(joined(expose_headers)?),
            },
            max_age: max_age_seconds.map(HeaderValue::from),
            allow_credentials,
        })
    }

    /// Whether a request from `origin` is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.matches(origin))
    }
}
