//! key-auth: Higress's `key-auth` plugin (Go, `plugins/wasm-go/extensions/key-auth`),
//! native. A request carries an API key in a header or query parameter; the key names a
//! consumer; a route may allow only some consumers.
//!
//! Configuration (global, in `defaultConfig`):
//! - `consumers`: `[{name, credential}]`, required, non-empty; both fields non-empty
//!   strings (numbers are taken as their text); a credential may name one consumer only.
//! - `keys`: header or query parameter names the key is looked for in; required.
//! - `in_header` / `in_query`: where to look; at least one must be present, each false
//!   when absent. With both true only the headers are read (as the Go plugin does).
//! - `global_auth`: `true` authenticates every request; `false` only requests whose
//!   rule has an `allow`; unset: every request when no `_rules_` exist, else only those.
//!
//! Rule configuration (`_rules_` / `matchRules`): `allow`, the consumers allowed there,
//! required and non-empty; the rule uses the global `keys` and `consumers`.
//!
//! Responses, as the Higress articles show them (they differ from the current Go plugin,
//! which answers an unknown key with 403): 401 for no key, several keys or an unknown
//! key, 403 for a consumer the route does not allow; the Go plugin's bodies; every
//! denial carries `WWW-Authenticate: Key realm=MSE Gateway`.
//!
//! The consumer's name goes upstream as `X-Mse-Consumer`, replacing whatever the client
//! sent (the filter always drops a client's value, so a later plugin or the upstream can
//! trust it); the access log's `consumer` field and the per-consumer counter record it.
//! Credentials are never logged or shown.

pub mod stats;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;
use pingora_http::RequestHeader;
use serde_json::Value;

use super::config::{self, object};
use super::{BuildContext, FilterFactory};
use crate::error::FieldError;
use crate::model::http_filter::{FilterStatus, HttpFilter, LocalReply, MatchInput};
use crate::model::plugin_chain::Phase;
pub use stats::KeyAuthStats;

pub use crate::model::http_filter::CONSUMER_HEADER;
/// [`CONSUMER_HEADER`] parsed once.
const CONSUMER: http::HeaderName = http::HeaderName::from_static(CONSUMER_HEADER);
/// The challenge on every denial (the realm is fixed in the Go plugin).
pub const CHALLENGE: &str = "Key realm=MSE Gateway";
pub const NO_KEY: &str =
    "Request denied by Key Auth check. No Key Authentication information found.";
pub const MULTI_KEY: &str =
    "Request denied by Key Auth check. Multi Key Authentication information found.";
pub const UNAUTHORIZED: &str = "Request denied by Key Auth check. Unauthorized consumer.";

/// The consumers and where keys are looked for: shared by the global configuration and
/// its rules.
#[derive(Debug)]
struct Consumers {
    /// Header names or query parameter names, as written.
    keys: Vec<String>,
    /// The same as header names (when `in_header`).
    header_keys: Vec<http::HeaderName>,
    in_header: bool,
    in_query: bool,
    /// Credential to consumer index (looked up by the header's bytes).
    by_credential: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    names: Vec<Arc<str>>,
    /// The consumer's name as a header value, by index.
    values: Vec<HeaderValue>,
    stats: KeyAuthStats,
}

/// One configuration of a key-auth plugin.
pub struct KeyAuth {
    consumers: Arc<Consumers>,
    /// `Some`: only these consumers (indexes) may pass.
    allow: Option<Vec<usize>>,
    /// Whether requests are authenticated at all under this configuration.
    enforce: bool,
}

impl std::fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("KeyAuth")
            .field("consumers", &self.consumers.names)
            .field("keys", &self.consumers.keys)
            .field("allow", &self.allow)
            .field("enforce", &self.enforce)
            .finish()
    }
}

fn drop_consumer(req: &mut RequestHeader) {
    if req.headers.contains_key(&CONSUMER) {
        req.remove_header(&CONSUMER);
    }
}

fn deny(status: u16, body: &str) -> FilterStatus {
    FilterStatus::Reply(LocalReply {
        status,
        headers: vec![("www-authenticate".into(), CHALLENGE.into())],
        body: body.as_bytes().to_vec(),
        ..Default::default()
    })
}

impl KeyAuth {
    /// The key the request carries: `Err` with the denial when none or several.
    fn key<'r>(&self, req: &'r RequestHeader) -> Result<&'r [u8], FilterStatus> {
        let c = &self.consumers;
        let mut found: Option<&[u8]> = None;
        let mut count = 0;
        if c.in_header {
            // A header sent twice is a repeated key, as a query parameter is.
            for k in &c.header_keys {
                for v in req.headers.get_all(k) {
                    if !v.is_empty() {
                        count += 1;
                        found = Some(v.as_bytes());
                    }
                }
            }
        } else if c.in_query {
            let path = req.uri.path_and_query().map_or("", |p| p.as_str());
            for k in &c.keys {
                for v in config::query_values(path, k) {
                    count += 1;
                    found = Some(v.as_bytes());
                }
            }
        }
        match (count, found) {
            (1, Some(k)) => Ok(k),
            (0, _) => {
                c.stats.no_key.inc();
                Err(deny(401, NO_KEY))
            }
            _ => {
                c.stats.multi_key.inc();
                Err(deny(401, MULTI_KEY))
            }
        }
    }
}

impl HttpFilter for KeyAuth {
    fn acts_on_response(&self) -> bool {
        false
    }

    fn on_request_headers(&self, req: &mut RequestHeader, _: &MatchInput<'_>) -> FilterStatus {
        // Only this filter says who the consumer is: a client's value is dropped (on the
        // way in, by the insert below; elsewhere here).
        if !self.enforce {
            drop_consumer(req);
            return FilterStatus::Continue;
        }
        let c = &self.consumers;
        let consumer = match self.key(req) {
            Ok(key) => c.by_credential.get(key).copied(),
            Err(denied) => {
                drop_consumer(req);
                return denied;
            }
        };
        let Some(consumer) = consumer else {
            drop_consumer(req);
            c.stats.unknown_key.inc();
            return deny(401, UNAUTHORIZED);
        };
        // As the Go plugin: the name is recorded before the allow check. The insert
        // replaces what the client sent; a static name spares Pingora copying it for
        // its case map.
        let _ = req.insert_header(CONSUMER_HEADER, c.values[consumer].clone());
        if self.allow.as_ref().is_some_and(|a| !a.contains(&consumer)) {
            c.stats.forbidden.inc();
            return deny(403, UNAUTHORIZED);
        }
        c.stats.consumer(consumer).inc();
        FilterStatus::Continue
    }
}

/// The `key-auth` plugin.
pub struct KeyAuthFactory;

pub const FIELDS: &[&str] = &[
    "consumers",
    "keys",
    "in_header",
    "in_query",
    "global_auth",
    "allow",
];

impl FilterFactory for KeyAuthFactory {
    fn name(&self) -> &'static str {
        "key-auth"
    }

    fn default_order(&self) -> (Phase, i32) {
        (Phase::Authn, 321)
    }

    fn fields(&self) -> &'static [&'static str] {
        FIELDS
    }

    fn build(
        &self,
        config: &Value,
        global: Option<&Arc<dyn HttpFilter>>,
        ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn HttpFilter>, FieldError> {
        let obj = object(config)?;
        match global {
            None => {
                let consumers = Arc::new(parse_consumers(obj, ctx)?);
                let allow = parse_allow(obj, &consumers, false)?;
                let rules_exist = obj
                    .get(super::rules::RULES)
                    .and_then(Value::as_array)
                    .is_some_and(|r| !r.is_empty());
                let enforce = allow.is_some()
                    || match config::opt_bool(obj, "global_auth")? {
                        Some(g) => g,
                        None => !rules_exist,
                    };
                Ok(Arc::new(KeyAuth {
                    consumers,
                    allow,
                    enforce,
                }))
            }
            Some(global) => {
                // Rules inherit the global consumers; the global filter is ours.
                let global = global_of(global)?;
                let allow = parse_allow(obj, &global.consumers, true)?;
                Ok(Arc::new(KeyAuth {
                    consumers: global.consumers.clone(),
                    allow,
                    enforce: true,
                }))
            }
        }
    }
}

/// The global key-auth configuration a rule inherits from.
fn global_of(f: &Arc<dyn HttpFilter>) -> Result<&KeyAuth, FieldError> {
    // The rule set only ever holds what this factory built.
    let any: &dyn std::any::Any = &**f;
    any.downcast_ref::<KeyAuth>()
        .ok_or_else(|| FieldError::new("", "internal: the global configuration is not key-auth"))
}

fn parse_consumers(
    obj: &serde_json::Map<String, Value>,
    ctx: &BuildContext<'_>,
) -> Result<Consumers, FieldError> {
    let keys = config::strings(obj, "keys")?;
    let in_header = config::opt_bool(obj, "in_header")?;
    let in_query = config::opt_bool(obj, "in_query")?;
    if in_header.is_none() && in_query.is_none() {
        return Err(FieldError::new(
            "in_header",
            "one of in_query and in_header is required",
        ));
    }
    let list = config::opt_objects(obj, "consumers")?
        .ok_or_else(|| FieldError::new("consumers", "is required"))?;
    if list.is_empty() {
        return Err(FieldError::new("consumers", "must not be empty"));
    }
    let mut by_credential =
        HashMap::with_capacity_and_hasher(list.len(), foldhash::fast::RandomState::default());
    let mut names: Vec<Arc<str>> = Vec::with_capacity(list.len());
    let mut values = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let at = |e: FieldError| e.under(&format!("consumers[{i}]"));
        let name = config::string(c, "name").map_err(at)?;
        let credential = config::string(c, "credential").map_err(at)?;
        let value = HeaderValue::from_str(&name)
            .map_err(|_| at(FieldError::new("name", "must be usable as a header value")))?;
        if by_credential
            .insert(credential.into_bytes().into_boxed_slice(), i)
            .is_some()
        {
            // The message never repeats the credential.
            return Err(at(FieldError::new(
                "credential",
                "duplicate: another consumer has the same credential",
            )));
        }
        names.push(name.into());
        values.push(value);
    }
    let in_header = in_header.unwrap_or(false);
    let header_keys = if in_header {
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    FieldError::new(format!("keys[{i}]"), format!("{k:?} is not a header name"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let stats = KeyAuthStats::register(ctx.registry, ctx.plugin, &names);
    Ok(Consumers {
        keys,
        header_keys,
        in_header,
        in_query: in_query.unwrap_or(false),
        by_credential,
        names,
        values,
        stats,
    })
}

/// `allow`: consumer names. `required` for a rule.
fn parse_allow(
    obj: &serde_json::Map<String, Value>,
    consumers: &Consumers,
    required: bool,
) -> Result<Option<Vec<usize>>, FieldError> {
    let list = match config::opt_strings(obj, "allow")? {
        None if required => return Err(FieldError::new("allow", "is required in a rule")),
        None => return Ok(None),
        Some(l) if l.is_empty() => return Err(FieldError::new("allow", "must not be empty")),
        Some(l) => l,
    };
    // A name no consumer has is allowed (as in Higress) and lets nobody in.
    Ok(Some(
        list.iter()
            .filter_map(|name| consumers.names.iter().position(|n| **n == **name))
            .collect(),
    ))
}

#[cfg(test)]
mod tests;
