//! The CORS filter of a route (`enable-cors` and the `cors-*` annotations), behaving as
//! Envoy's CORS filter (`source/extensions/filters/http/cors/cors_filter.cc`) with the
//! `CorsPolicy` Istio builds from Higress's conversion:
//!
//! - **Preflight**: `OPTIONS` with a non-empty `Origin` that is allowed and a non-empty
//!   `Access-Control-Request-Method` is answered here with `200` and no body; nothing
//!   goes upstream. The reply carries `access-control-allow-origin` (the request's
//!   origin), `-allow-credentials: true` when credentials are allowed,
//!   `-allow-methods` (the request's method when the list is `*`), `-allow-headers`
//!   (the request's `Access-Control-Request-Headers` when the list is `*`), `-max-age`,
//!   and `-expose-headers` (Envoy runs its own response side on the reply too).
//! - **Anything else goes upstream**, a preflight from an origin that is not allowed
//!   included (Istio keeps Envoy's `forward_not_matching_preflights` default, true).
//! - **Actual responses** to a request whose `Origin` is allowed get
//!   `access-control-allow-origin: <the request's origin>` (Envoy echoes the origin, never
//!   `*`), `access-control-allow-credentials: true` when allowed, and
//!   `access-control-expose-headers` when configured, replacing the upstream's.
//! - **Origin matching**: each matcher is exact (case-sensitive) or an RE2-style regex
//!   matched against the whole origin; an origin is allowed when a matcher matches it or
//!   matches the literal `*` (so `.*` allows every origin), as Envoy checks.
//!
//! Everything a reply or response needs is a [`http::HeaderValue`] built at
//! translation; a request pays one `Origin` lookup (and a match when it has one).
//!
//! Not here: Envoy's `cors.origin_valid` / `origin_invalid` counters (they are
//! per-listener stats, and a route filter does not know its listener).

mod config;

pub use config::{CorsConfig, Origin};

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::{HeaderMap, HeaderValue, Method};
use pingora_http::RequestHeader;

use crate::model::http_filter::{FilterStatus, HttpFilter, LocalReply, MatchInput, ResponseParts};

/// One route's CORS policy, ready to answer.
#[derive(Debug)]
pub struct CorsFilter {
    config: CorsConfig,
}

impl CorsFilter {
    pub fn new(config: CorsConfig) -> CorsFilter {
        CorsFilter { config }
    }

    /// The request's `Origin`, when present, non-empty and allowed.
    fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(ORIGIN).filter(|o| !o.is_empty())?;
        self.config.allows(origin.as_bytes()).then_some(origin)
    }

    /// The preflight reply to a request from `origin`.
    fn preflight(&self, req: &RequestHeader, origin: &HeaderValue) -> LocalReply {
        let c = &self.config;
        let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let mut headers = Vec::with_capacity(6);
        headers.push((ACCESS_CONTROL_ALLOW_ORIGIN.as_str().into(), text(origin)));
        if c.allow_credentials {
            headers.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS.as_str().into(),
                "true".into(),
            ));
        }
        let echo = |name| {
            req.headers
                .get(name)
                .filter(|v: &&HeaderValue| !v.is_empty())
        };
        let methods = match &c.allow_methods {
            config::List::Any => echo(ACCESS_CONTROL_REQUEST_METHOD),
            config::List::Values(v) => Some(v),
            config::List::None => None,
        };
        if let Some(m) = methods {
            headers.push((ACCESS_CONTROL_ALLOW_METHODS.as_str().into(), text(m)));
        }
        let allowed_headers = match &c.allow_headers {
            config::List::Any => echo(ACCESS_CONTROL_REQUEST_HEADERS),
            config::List::Values(v) => Some(v),
            config::List::None => None,
        };
        if let Some(h) = allowed_headers {
            headers.push((ACCESS_CONTROL_ALLOW_HEADERS.as_str().into(), text(h)));
        }
        if let Some(age) = &c.max_age {
            headers.push((ACCESS_CONTROL_MAX_AGE.as_str().into(), text(age)));
        }
        if let Some(expose) = &c.expose_headers {
            headers.push((ACCESS_CONTROL_EXPOSE_HEADERS.as_str().into(), text(expose)));
        }
        LocalReply {
            status: 200,
            headers,
            body: Vec::new(),
            flags: Default::default(),
        }
    }
}

impl HttpFilter for CorsFilter {
    fn name(&self) -> &'static str {
        "envoy.filters.http.cors"
    }

    fn acts_on_request(&self, method: &Method) -> bool {
        method == Method::OPTIONS
    }

    fn on_request_headers(&self, req: &mut RequestHeader, _input: &MatchInput<'_>) -> FilterStatus {
        if req.method != Method::OPTIONS {
            return FilterStatus::Continue;
        }
        let is_preflight = req
            .headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|m| !m.is_empty());
        if !is_preflight {
            return FilterStatus::Continue;
        }
        match self.allowed_origin(&req.headers) {
            Some(origin) => FilterStatus::Reply(self.preflight(req, origin)),
            None => FilterStatus::Continue,
        }
    }

    fn on_response_headers(&self, req: &RequestHeader, resp: &mut ResponseParts) -> FilterStatus {
        let Some(origin) = self.allowed_origin(&req.headers) else {
            return FilterStatus::Continue;
        };
        let c = &self.config;
        let h = &mut resp.headers;
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if c.allow_credentials {
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &c.expose_headers {
            h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        FilterStatus::Continue
    }
}

#[cfg(test)]
mod tests;
