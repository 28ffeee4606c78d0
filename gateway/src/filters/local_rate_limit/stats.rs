//! Envoy's local rate limit stats, `<stat_prefix>.http_local_rate_limit.<name>`, with
//! the prefix Higress sets on every route (`http_local_rate_limiter`). Istio's bootstrap
//! (`use_all_default_tags: false`, its own tag list) extracts no tag from these names,
//! so in Prometheus form they are plain `envoy_http_local_rate_limiter_http_local_rate_limit_*`
//! counters without labels. Higress's gateway always has the filter in its chain, so
//! they exist (at 0) from start-up: register them there and keep the handles.

use telemetry::stats::{Counter, Kind, Registry};

const PREFIX: &str = "envoy_http_local_rate_limiter_http_local_rate_limit_";

/// The four counters every route's limit counts into.
#[derive(Clone, Debug)]
pub struct LocalRateLimitStats {
    /// Requests the filter saw.
    pub enabled: Counter,
    /// Requests that got a token.
    pub ok: Counter,
    /// Requests that found the bucket empty.
    pub rate_limited: Counter,
    /// Limited requests answered with 429 (all of them: enforcement is 100 %).
    pub enforced: Counter,
}

impl LocalRateLimitStats {
    /// The counters in `r` (the same series on every call).
    pub fn register(r: &Registry) -> Self {
        let c = |name: &str, help: &str| {
            r.family(&format!("{PREFIX}{name}"), help, Kind::Counter)
                .counter(&[])
        };
        LocalRateLimitStats {
            enabled: c("enabled", "Requests a route's local rate limit checked."),
            ok: c("ok", "Requests under a route's local rate limit."),
            rate_limited: c(
                "rate_limited",
                "Requests over a route's local rate limit (no token left).",
            ),
            enforced: c(
                "enforced",
                "Requests over a route's local rate limit answered with 429.",
            ),
        }
    }
}
