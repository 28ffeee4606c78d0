//! What a route does besides choosing its destination: the policy Ingress annotations
//! put on it. Each group of annotations (`annotations/<group>.rs`) is translated into one
//! field here; the data plane reads only these.

use std::sync::Arc;

use super::header_control::HeaderControl;
use super::http_filter::HttpFilter;
use super::mirror::MirrorPolicy;
use super::retry::{Fallback, RetryPolicy};
use super::rewrite::{Redirect, Rewrite};

/// A route's policy; the default does nothing.
#[derive(Debug, Default)]
pub struct RoutePolicy {
    /// Filters of this route only (IP access, CORS, local rate limit, basic auth), run
    /// on the request headers in order before the plugin chain, and on the response
    /// headers in reverse.
    pub filters: Vec<Arc<dyn HttpFilter>>,
    /// `temporal-redirect` / `permanent-redirect` / `app-root`: answer with this
    /// redirect, after the filters and plugins (where Envoy's router does), instead of
    /// going upstream.
    pub redirect: Option<Box<Redirect>>,
    /// `rewrite-target` / `higress.io/rewrite-path` / `upstream-vhost`: the path and
    /// host sent upstream.
    pub rewrite: Option<Box<Rewrite>>,
    /// `request-header-control-*` / `response-header-control-*`.
    pub header_control: Option<Arc<HeaderControl>>,
    /// `mirror-*`: a copy of each sampled request goes to another cluster
    /// (`proxy/mirror.rs`); shared by the routes of one Ingress.
    pub mirror: Option<Arc<MirrorPolicy>>,
    /// `proxy-next-upstream*`; `None`: the gateway's default retries.
    pub retry: Option<Box<RetryPolicy>>,
    /// `default-backend` (+ `custom-http-errors`); `None`: no fallback.
    pub fallback: Option<Box<Fallback>>,
}

impl RoutePolicy {
    /// Whether the policy does nothing (the common case, checked once per request).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
            && self.redirect.is_none()
            && self.rewrite.is_none()
            && self.header_control.is_none()
            && self.mirror.is_none()
            && self.retry.is_none()
            && self.fallback.is_none()
    }
}
