//! Local rate limit: the route filter of `route-limit-rps` / `route-limit-rpm` /
//! `route-limit-burst-multiplier`, Envoy's `envoy.filters.http.local_ratelimit` as
//! Higress configures it per route (its Istio's `mseingress/local_rate_limit.go`):
//!
//! - one token bucket per route per gateway process, shared by every worker thread
//!   ([`TokenBucket`]); it starts full (`max_tokens`) and refills continuously at
//!   `tokens_per_fill / fill_interval`, as Envoy's atomic token bucket does;
//! - a request without a token gets 429 with the body `local_rate_limited` and the
//!   header `x-local-rate-limit: true` (Higress's `response_headers_to_add`), and the
//!   response flag `RL`; no `x-envoy-ratelimited` (Envoy's local filter never adds it);
//! - `filter_enabled` and `filter_enforced` are 100 % in Higress's config, so every
//!   request counts as `enabled` and every limited one as `enforced`.
//!
//! Stats (see [`stats`]): Higress sets the stat prefix `http_local_rate_limiter` on every
//! route, so all routes count into the same four counters.

pub mod bucket;
pub mod stats;

pub use bucket::TokenBucket;
pub use stats::LocalRateLimitStats;

use crate::model::http_filter::{FilterStatus, HttpFilter, LocalReply, MatchInput, ReplyFlags};

/// Envoy's local reply body for a limited request.
pub const LIMITED_BODY: &str = "local_rate_limited";
/// The header Higress's config adds to a limited reply.
pub const LIMITED_HEADER: (&str, &str) = ("x-local-rate-limit", "true");
/// Higress's `defaultStatusCode`.
pub const LIMITED_STATUS: u16 = 429;

/// One route's limit.
#[derive(Debug)]
pub struct LocalRateLimitFilter {
    bucket: TokenBucket,
    stats: LocalRateLimitStats,
}

impl LocalRateLimitFilter {
    /// A bucket of `max_tokens` refilled by `tokens_per_fill` every `fill_interval`.
    pub fn new(
        max_tokens: u32,
        tokens_per_fill: u32,
        fill_interval: std::time::Duration,
        stats: LocalRateLimitStats,
    ) -> Self {
        LocalRateLimitFilter {
            bucket: TokenBucket::new(max_tokens, tokens_per_fill, fill_interval),
            stats,
        }
    }
}

impl HttpFilter for LocalRateLimitFilter {
    fn name(&self) -> &'static str {
        "envoy.filters.http.local_ratelimit"
    }

    fn on_request_headers(
        &self,
        _req: &mut pingora_http::RequestHeader,
        _input: &MatchInput<'_>,
    ) -> FilterStatus {
        self.stats.enabled.inc();
        if self.bucket.try_acquire() {
            self.stats.ok.inc();
            return FilterStatus::Continue;
        }
        self.stats.rate_limited.inc();
        self.stats.enforced.inc();
        let (k, v) = LIMITED_HEADER;
        FilterStatus::Reply(LocalReply {
            status: LIMITED_STATUS,
            headers: vec![(k.to_string(), v.to_string())],
            body: LIMITED_BODY.as_bytes().to_vec(),
            flags: ReplyFlags::RATE_LIMITED,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use telemetry::stats::Registry;

    #[test]
    fn limited_requests_get_429_rl_and_count() {
        let r = Registry::new();
        let stats = LocalRateLimitStats::register(&r);
        let f = LocalRateLimitFilter::new(2, 1, Duration::from_secs(3600), stats.clone());
        let mut req = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
        let input = MatchInput::default();
        assert_eq!(
            f.on_request_headers(&mut req, &input),
            FilterStatus::Continue
        );
        assert_eq!(
            f.on_request_headers(&mut req, &input),
            FilterStatus::Continue
        );
        match f.on_request_headers(&mut req, &input) {
            FilterStatus::Reply(r) => {
                assert_eq!(r.status, 429);
                assert_eq!(r.body, b"local_rate_limited");
                assert_eq!(
                    r.headers,
                    vec![("x-local-rate-limit".into(), "true".into())]
                );
                assert!(r.flags.contains(ReplyFlags::RATE_LIMITED));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stats.enabled.get(), 3);
        assert_eq!(stats.ok.get(), 2);
        assert_eq!(stats.rate_limited.get(), 1);
        assert_eq!(stats.enforced.get(), 1);
        let text = r.render();
        assert!(
            text.contains("envoy_http_local_rate_limiter_http_local_rate_limit_rate_limited 1"),
            "{text}"
        );
    }
}
