//! Retries and fallbacks of a route, as the `proxy-next-upstream*`, `default-backend`
//! and `custom-http-errors` annotations make them (Higress's `retry.go` and
//! `default_backend.go`, through its Istio and Envoy). The data plane reads these in
//! `proxy/retry.rs`.

use http::HeaderValue;

use super::route::WeightedCluster;

/// Attempts a request may make in all: Pingora's proxy loop stops after 16
/// (`ServerConf::max_retries`), so at most 15 retries act whatever the annotation says.
pub const MAX_TRIES: u32 = 16;

/// A route's own retry policy (Envoy's `RetryPolicy` as Higress's Istio writes it for
/// `proxy-next-upstream*`). Without one, the gateway's default applies: two retries
/// after a connect failure or a reset before the response headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (Envoy's `num_retries`; Higress writes
    /// `proxy-next-upstream-tries` there as it is). 0: no retry at all, not even after a
    /// connect failure.
    pub num_retries: u32,
    /// Envoy's `per_try_timeout` (`proxy-next-upstream-timeout`, whole seconds); `None`
    /// (or 0 in the annotation): the route timeout alone bounds the attempts.
    pub per_try_timeout: Option<std::time::Duration>,
    /// Envoy's `5xx`: any 5xx response, a connect failure, a reset before the response
    /// headers, a per-try timeout.
    pub on_5xx: bool,
    /// Envoy's `retriable-status-codes`: these response codes (nginx's `http_<code>`).
    pub status_codes: Vec<u16>,
    /// Retry `POST`, `PATCH` and `LOCK` too (nginx's `non_idempotent`); otherwise Istio
    /// only retries other methods.
    pub non_idempotent: bool,
}

impl RetryPolicy {
    /// Whether a response with `status` is retried (while retries are left).
    pub fn retries_status(&self, status: u16) -> bool {
        (self.on_5xx && (500..600).contains(&status)) || self.status_codes.contains(&status)
    }

    /// Whether the request's method may be retried at all.
    pub fn retries_method(&self, method: &http::Method) -> bool {
        self.non_idempotent || !matches!(method.as_str(), "POST" | "PATCH" | "LOCK")
    }

    /// Whether attempt number `attempts` (1 for the first) may be followed by another.
    pub fn has_retry_left(&self, attempts: u32) -> bool {
        attempts <= self.num_retries && attempts < MAX_TRIES
    }
}

/// Codes Higress's Envoy never redirects on, even when listed (its
/// `InternalActiveRedirectPolicyImpl` drops them).
pub const NEVER_REDIRECTED: [u16; 6] = [200, 301, 302, 303, 307, 308];

/// The route's `default-backend`: where requests go when the route's cluster has no
/// endpoint (Higress's `cluster_fallback`), and where a response with one of `codes`
/// is replaced by the default backend's answer (Higress's internal active redirect).
#[derive(Debug)]
pub struct Fallback {
    /// The default backend's Service, at its first port.
    pub destination: WeightedCluster,
    /// `custom-http-errors`, without [`NEVER_REDIRECTED`]; empty: only the
    /// no-endpoint fallback acts.
    pub codes: Vec<u16>,
    /// `x-envoy-route-name` on the redirected request: `<route>-fallback`.
    pub route_name: HeaderValue,
    /// `x-envoy-fallback-service` on the redirected request: `<namespace>/<name>`.
    pub service: HeaderValue,
}

impl Fallback {
    /// Whether a response with `status` is replaced by the default backend's.
    pub fn redirects(&self, status: u16) -> bool {
        self.codes.contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_xx_and_listed_codes_are_retried() {
        let p = RetryPolicy {
            num_retries: 3,
            on_5xx: true,
            ..RetryPolicy::default()
        };
        assert!(p.retries_status(500) && p.retries_status(503) && p.retries_status(599));
        assert!(!p.retries_status(404) && !p.retries_status(200));
        let p = RetryPolicy {
            num_retries: 3,
            status_codes: vec![404, 503],
            ..RetryPolicy::default()
        };
        assert!(p.retries_status(404) && p.retries_status(503) && !p.retries_status(502));
    }

    #[test]
    fn retries_are_counted_after_the_first_attempt() {
        let p = RetryPolicy {
            num_retries: 2,
            ..RetryPolicy::default()
        };
        assert!(p.has_retry_left(1) && p.has_retry_left(2) && !p.has_retry_left(3));
        let none = RetryPolicy::default();
        assert!(!none.has_retry_left(1));
        let many = RetryPolicy {
            num_retries: 100,
            ..RetryPolicy::default()
        };
        assert!(many.has_retry_left(15) && !many.has_retry_left(16));
    }

    #[test]
    fn non_idempotent_methods_need_the_flag() {
        let mut p = RetryPolicy::default();
        assert!(p.retries_method(&http::Method::GET) && p.retries_method(&http::Method::PUT));
        assert!(!p.retries_method(&http::Method::POST) && !p.retries_method(&http::Method::PATCH));
        p.non_idempotent = true;
        assert!(p.retries_method(&http::Method::POST));
    }
}
