//! request-block: Higress's `request-block` plugin (Go,
//! `plugins/wasm-go/extensions/request-block`), native. Requests whose URL, headers or
//! body contain a blocked word are answered with `blocked_code` and `blocked_message`.
//!
//! Configuration (global or per rule; each stands alone):
//! - `block_urls`: substrings of the path with its query (`:path`);
//! - `block_exact_urls`: whole paths with their query;
//! - `block_regexp_urls`: regular expressions searched in the path with its query;
//! - `block_headers`: substrings of the headers, each written as `name\nvalue` and joined
//!   with `\n` (so an entry may span a name and its value);
//! - `block_bodies`: substrings of the request body (the body is then held, up to the
//!   chain's buffer limit, before it goes upstream);
//! - `blocked_code`: the reply's status, default 403; a value outside 101..=599 is 403,
//!   as in the Go plugin;
//! - `blocked_message`: the reply's body, default empty;
//! - `case_sensitive`: default false (the Go plugin's default; its README's `true` is
//!   the C++ plugin's): patterns and inputs are compared lowercased.
//!
//! Empty strings in the lists are skipped; at least one list must have an entry.
//!
//! Deviations from the Go plugin, for what its README promises: the exact and regexp
//! lists are checked even when `block_urls` is empty (Go checks URLs only when
//! `block_urls` has an entry), and a configuration with only exact or regexp URLs is
//! accepted (Go rejects it with "there is no block rules"; the C++ plugin accepts it).

use std::sync::Arc;

use pingora_http::RequestHeader;
use regex::Regex;
use serde_json::Value;
use telemetry::stats::{Counter, Kind};

use super::config::{self, object};
use super::{BuildContext, FilterFactory};
use crate::error::FieldError;
use crate::model::http_filter::{FilterStatus, HttpFilter, LocalReply, MatchInput};
use crate::model::plugin_chain::Phase;

/// Default reply status.
pub const DEFAULT_CODE: u16 = 403;

/// One configuration.
#[derive(Debug)]
pub struct RequestBlock {
    exact_urls: Vec<String>,
    urls: Vec<String>,
    regexp_urls: Vec<Regex>,
    headers: Vec<String>,
    bodies: Vec<String>,
    code: u16,
    message: Vec<u8>,
    case_sensitive: bool,
    blocked: Counter,
}

impl RequestBlock {
    fn block(&self) -> FilterStatus {
        self.blocked.inc();
        FilterStatus::Reply(LocalReply {
            status: self.code,
            body: self.message.clone(),
            ..Default::default()
        })
    }

    fn url_blocked(&self, path: &str) -> bool {
        if self.exact_urls.is_empty() && self.urls.is_empty() && self.regexp_urls.is_empty() {
            return false;
        }
        let lower;
        let path = if self.case_sensitive {
            path
        } else {
            lower = path.to_lowercase();
            &lower
        };
        self.exact_urls.iter().any(|u| u == path)
            || self.urls.iter().any(|u| path.contains(u.as_str()))
            || self.regexp_urls.iter().any(|r| r.is_match(path))
    }

    fn headers_blocked(&self, req: &RequestHeader) -> bool {
        if self.headers.is_empty() {
            return false;
        }
        let mut text = String::new();
        for (name, value) in req.headers.iter() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(name.as_str());
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        if !self.case_sensitive {
            text = text.to_lowercase();
        }
        self.headers.iter().any(|h| text.contains(h.as_str()))
    }
}

impl HttpFilter for RequestBlock {
    fn acts_on_response(&self) -> bool {
        false
    }

    fn on_request_headers(&self, req: &mut RequestHeader, _: &MatchInput<'_>) -> FilterStatus {
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        if self.url_blocked(path) || self.headers_blocked(req) {
            return self.block();
        }
        FilterStatus::Continue
    }

    fn wants_request_body(&self) -> bool {
        !self.bodies.is_empty()
    }

    fn on_request_body(&self, _req: &RequestHeader, body: &[u8]) -> FilterStatus {
        let text = String::from_utf8_lossy(body);
        let text = if self.case_sensitive {
            text
        } else {
            text.to_lowercase().into()
        };
        if self.bodies.iter().any(|b| text.contains(b.as_str())) {
            return self.block();
        }
        FilterStatus::Continue
    }
}

/// The `request-block` plugin.
pub struct RequestBlockFactory;

pub const FIELDS: &[&str] = &[
    "block_urls",
    "block_exact_urls",
    "block_regexp_urls",
    "block_headers",
    "block_bodies",
    "blocked_code",
    "blocked_message",
    "case_sensitive",
];

impl FilterFactory for RequestBlockFactory {
    fn name(&self) -> &'static str {
        "request-block"
    }

    fn default_order(&self) -> (Phase, i32) {
        (Phase::Authn, 320)
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
        let case_sensitive = config::opt_bool(obj, "case_sensitive")?.unwrap_or(false);
        let fold = |s: String| {
            if case_sensitive {
                s
            } else {
                s.to_lowercase()
            }
        };
        let list = |key: &str| -> Result<Vec<String>, FieldError> {
            Ok(config::opt_strings(obj, key)?
                .unwrap_or_default()
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(fold)
                .collect())
        };
        let exact_urls = list("block_exact_urls")?;
        let urls = list("block_urls")?;
        let headers = list("block_headers")?;
        let bodies = list("block_bodies")?;
        let regexp_urls = list("block_regexp_urls")?
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Regex::new(r).map_err(|e| {
                    FieldError::new(format!("block_regexp_urls[{i}]"), format!("bad regex: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if exact_urls.is_empty()
            && urls.is_empty()
            && regexp_urls.is_empty()
            && headers.is_empty()
            && bodies.is_empty()
        {
            return Err(FieldError::new(
                "block_urls",
                "there is no block rule: set one of block_urls, block_exact_urls, block_regexp_urls, block_headers and block_bodies",
            ));
        }
        let code = match config::opt_u64(obj, "blocked_code")? {
            Some(c) if c > 100 && c < 600 => c as u16,
            _ => DEFAULT_CODE,
        };
        let message = config::opt_string(obj, "blocked_message")?.unwrap_or_default();
        let blocked = ctx
            .registry
            .family(
                "gateway_request_block_blocked_total",
                "Requests request-block answered, per plugin.",
                Kind::Counter,
            )
            .counter(&[("plugin", ctx.plugin)]);
        Ok(Arc::new(RequestBlock {
            exact_urls,
            urls,
            regexp_urls,
            headers,
            bodies,
            code,
            message: message.into_bytes(),
            case_sensitive,
            blocked,
        }))
    }
}

#[cfg(test)]
mod tests;
