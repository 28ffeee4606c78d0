//! key-rate-limit: Higress's `key-rate-limit` plugin (C++,
//! `plugins/wasm-cpp/extensions/key_rate_limit`), native. Requests are counted per key
//! (a header's or query parameter's value) in this gateway process; past a key's limit
//! in its window they get 429 `rate_limited`.
//!
//! Configuration (global or per rule; each configuration counts on its own):
//! - `limit_by_header` or `limit_by_param` (exactly one): where the key is read;
//! - `limit_keys`: `[{key, query_per_second | query_per_minute | query_per_hour |
//!   query_per_day}]`, required, non-empty; `key` is a string (a number is taken as its
//!   text) and appears once; the first non-zero `query_per_*` in that order is the limit
//!   (a count per 1 s, 60 s, 3600 s or 86400 s window), and one is required.
//!
//! A request whose key is not listed, or that has no such header or parameter (its key
//! is then `""`), is not limited. The parameter's value is matched undecoded.
//!
//! Windows: the C++ plugin refills a key's tokens when a whole window has passed since
//! the last refill; here a key's window starts with its first request and the next one
//! starts with the first request after it ends, so exactly `limit` requests pass per
//! window. Counts live in one atomic word per key, shared by every worker thread.

pub mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pingora_http::RequestHeader;
use serde_json::Value;
use telemetry::stats::{Counter, Kind};

use super::config::{self, object};
use super::{BuildContext, FilterFactory};
use crate::error::FieldError;
use crate::model::http_filter::{FilterStatus, HttpFilter, LocalReply, MatchInput};
use crate::model::plugin_chain::Phase;
pub use window::FixedWindow;

/// The C++ plugin's reply body.
pub const LIMITED_BODY: &str = "rate_limited";
pub const LIMITED_STATUS: u16 = 429;

/// The windows `query_per_*` count in, in the order the plugin reads them.
pub const WINDOWS: [(&str, u64); 4] = [
    ("query_per_second", 1),
    ("query_per_minute", 60),
    ("query_per_hour", 3600),
    ("query_per_day", 86400),
];

/// Where the key is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A request header (lowercase name).
    Header(http::HeaderName),
    /// A query parameter.
    Param(String),
}

impl KeySource {
    /// The request's key, empty when it has none.
    pub fn read<'r>(&self, req: &'r RequestHeader) -> &'r [u8] {
        match self {
            KeySource::Header(h) => req.headers.get(h).map_or(&[], |v| v.as_bytes()),
            KeySource::Param(p) => {
                let path = req.uri.path_and_query().map_or("", |p| p.as_str());
                config::query_values(path, p)
                    .next()
                    .unwrap_or("")
                    .as_bytes()
            }
        }
    }
}

/// One configuration: its keys, each with its window.
#[derive(Debug)]
pub struct KeyRateLimit {
    source: KeySource,
    windows: HashMap<Box<[u8]>, FixedWindow, foldhash::fast::RandomState>,
    limited: Counter,
}

impl HttpFilter for KeyRateLimit {
    fn acts_on_response(&self) -> bool {
        false
    }

    fn on_request_headers(&self, req: &mut RequestHeader, _: &MatchInput<'_>) -> FilterStatus {
        let key = self.source.read(req);
        let Some(window) = self.windows.get(key) else {
            return FilterStatus::Continue;
        };
        if window.try_acquire() {
            return FilterStatus::Continue;
        }
        self.limited.inc();
        FilterStatus::Reply(LocalReply {
            status: LIMITED_STATUS,
            body: LIMITED_BODY.as_bytes().to_vec(),
            ..Default::default()
        })
    }
}

/// `limit_by_header` / `limit_by_param`, exactly one.
pub fn key_source(
    obj: &serde_json::Map<String, Value>,
    header: &str,
    param: &str,
) -> Result<KeySource, FieldError> {
    match (
        config::opt_string(obj, header)?,
        config::opt_string(obj, param)?,
    ) {
        (Some(_), Some(_)) => Err(FieldError::new(
            param,
            format!("{header} and {param} cannot both be set"),
        )),
        (Some(h), None) => http::HeaderName::from_bytes(h.as_bytes())
            .map(KeySource::Header)
            .map_err(|_| FieldError::new(header, format!("{h:?} is not a header name"))),
        (None, Some(p)) if !p.is_empty() => Ok(KeySource::Param(p)),
        (None, Some(_)) => Err(FieldError::new(param, "must not be empty")),
        (None, None) => Err(FieldError::new(
            header,
            format!("one of {header} and {param} is required"),
        )),
    }
}

/// A limit entry's window: the first non-zero `query_per_*` as (count, window).
pub fn limit_of(entry: &serde_json::Map<String, Value>) -> Result<(u64, Duration), FieldError> {
    for (field, secs) in WINDOWS {
        if let Some(n) = config::opt_u64(entry, field)? {
            if n > 0 {
                return Ok((n, Duration::from_secs(secs)));
            }
        }
    }
    Err(FieldError::new(
        "query_per_second",
        "one of query_per_second, query_per_minute, query_per_hour and query_per_day is required, above 0",
    ))
}

/// The `key-rate-limit` plugin.
pub struct KeyRateLimitFactory;

pub const FIELDS: &[&str] = &["limit_by_header", "limit_by_param", "limit_keys"];

impl FilterFactory for KeyRateLimitFactory {
    fn name(&self) -> &'static str {
        "key-rate-limit"
    }

    fn default_order(&self) -> (Phase, i32) {
        (Phase::Unspecified, 10)
    }

    fn fields(&self) -> &'static [&'static str] {
        FIELDS
    }

    fn build(
        &self,
        config: &Value,
        _global: Option<&Arc<dyn HttpFilter>>,
        ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn HttpFilter>, FieldError> {
        let obj = object(config)?;
        let source = key_source(obj, "limit_by_header", "limit_by_param")?;
        let entries = config::opt_objects(obj, "limit_keys")?
            .ok_or_else(|| FieldError::new("limit_keys", "is required"))?;
        if entries.is_empty() {
            return Err(FieldError::new("limit_keys", "must not be empty"));
        }
        let mut windows = HashMap::with_capacity_and_hasher(
            entries.len(),
            foldhash::fast::RandomState::default(),
        );
        for (i, e) in entries.iter().enumerate() {
            let at = |err: FieldError| err.under(&format!("limit_keys[{i}]"));
            let key = config::opt_string(e, "key")
                .map_err(at)?
                .ok_or_else(|| at(FieldError::new("key", "is required")))?;
            let (count, window) = limit_of(e).map_err(at)?;
            if windows
                .insert(
                    key.clone().into_bytes().into_boxed_slice(),
                    FixedWindow::new(count, window),
                )
                .is_some()
            {
                return Err(at(FieldError::new(
                    "key",
                    format!("{key:?} is listed twice"),
                )));
            }
        }
        let limited = ctx
            .registry
            .family(
                "gateway_key_rate_limit_limited_total",
                "Requests key-rate-limit answered with 429, per plugin.",
                Kind::Counter,
            )
            .counter(&[("plugin", ctx.plugin)]);
        Ok(Arc::new(KeyRateLimit {
            source,
            windows,
            limited,
        }))
    }
}

#[cfg(test)]
mod tests;
