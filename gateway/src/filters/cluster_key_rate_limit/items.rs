//! `rule_items`: what a request is counted by. Each item reads one value of the request
//! (a header, query parameter, cookie, the consumer or the client IP) and lists the
//! values it limits; the first item whose value is present and listed decides.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora_http::RequestHeader;
use regex::Regex;
use serde_json::{Map, Value};

use super::super::config;
use super::super::key_rate_limit::limit_of;
use crate::error::FieldError;
use crate::model::cidr::Cidr;
use crate::model::http_filter::CONSUMER_HEADER;

/// The selector kinds, as Higress names them (also the Redis key's `<limit_type>`).
pub const KINDS: [&str; 9] = [
    "limit_by_header",
    "limit_by_param",
    "limit_by_cookie",
    "limit_by_consumer",
    "limit_by_per_header",
    "limit_by_per_param",
    "limit_by_per_cookie",
    "limit_by_per_consumer",
    "limit_by_per_ip",
];

/// Where an item's value comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Header(http::HeaderName),
    Param(String),
    Cookie(String),
    /// `x-mse-consumer`, set by key-auth.
    Consumer,
    /// The TCP peer's address.
    RemoteAddr,
    /// The first element of a comma-separated header (`X-Forwarded-For`).
    IpHeader(http::HeaderName),
}

/// Which values of the source a limit applies to.
#[derive(Debug)]
pub enum KeyMatch {
    Exact(String),
    /// `*`: every value, each counted on its own.
    Any,
    /// `regexp:<re>`: values the regex finds a match in, each counted on its own.
    Regex(Regex),
    /// An IP or CIDR (per_ip).
    Net(Cidr),
}

#[derive(Debug)]
pub struct LimitKey {
    pub matches: KeyMatch,
    pub count: u64,
    pub window: Duration,
    /// The script's arguments and the Redis key up to the request's value, made once.
    pub redis: Arc<RedisArgs>,
}

/// What a request limited by one limit sends to Redis, but its value.
#[derive(Debug)]
pub struct RedisArgs {
    /// `<prefix>:<rule_name>:<limit_type>:<window>:<key_name>:` (the whole key for a
    /// global threshold).
    pub key_prefix: String,
    pub threshold: String,
    pub window: String,
}

impl RedisArgs {
    pub fn new(key_prefix: String, count: u64, window: Duration) -> Arc<RedisArgs> {
        Arc::new(RedisArgs {
            key_prefix,
            threshold: count.to_string(),
            window: window.as_secs().to_string(),
        })
    }
}

/// One rule item.
#[derive(Debug)]
pub struct RuleItem {
    /// `limit_by_header` ...
    pub kind: &'static str,
    pub source: Source,
    /// The Redis key's `<key_name>`: the header, parameter or cookie name,
    /// `x-mse-consumer`, or the per_ip setting as written.
    pub key_name: String,
    pub keys: Vec<LimitKey>,
}

/// A matched limit: the value counted and its limit.
pub struct Hit<'a> {
    pub item: &'a RuleItem,
    pub value: String,
    pub limit: &'a LimitKey,
}

impl RuleItem {
    /// The request's value for this item, if it has one.
    fn value(&self, req: &RequestHeader, peer: Option<IpAddr>) -> Option<String> {
        let header = |h: &http::HeaderName| req.headers.get(h).and_then(|v| v.to_str().ok());
        match &self.source {
            Source::Header(h) => header(h).map(str::to_string),
            Source::Param(p) => {
                let path = req.uri.path_and_query().map_or("", |p| p.as_str());
                config::query_values(path, p).next().map(str::to_string)
            }
            Source::Cookie(name) => {
                crate::model::cookie::cookie(&req.headers, name).map(str::to_string)
            }
            Source::Consumer => req
                .headers
                .get(CONSUMER_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            Source::RemoteAddr => peer.map(|p| p.to_string()),
            Source::IpHeader(h) => {
                let first = header(h)?.split(',').next()?.trim();
                Some(strip_ip_port(first).to_string())
            }
        }
        .filter(|v| !v.is_empty())
    }

    /// The limit this item puts on the request, if any.
    pub fn hit(&self, req: &RequestHeader, peer: Option<IpAddr>) -> Option<Hit<'_>> {
        let value = self.value(req, peer)?;
        let limit = self.keys.iter().find(|k| match &k.matches {
            KeyMatch::Exact(s) => *s == value,
            KeyMatch::Any => true,
            KeyMatch::Regex(r) => r.is_match(&value),
            KeyMatch::Net(n) => value.parse::<IpAddr>().is_ok_and(|ip| n.contains(ip)),
        })?;
        Some(Hit {
            item: self,
            value,
            limit,
        })
    }
}

/// `1.2.3.4:80` -> `1.2.3.4`, `[::1]:80` -> `::1`; anything else as it is.
fn strip_ip_port(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match s.split_once(':') {
        Some((ip, port)) if !port.contains(':') && ip.parse::<std::net::Ipv4Addr>().is_ok() => ip,
        _ => s,
    }
}

/// One `rule_items` entry of rule `rule_name`.
pub fn parse_item(obj: &Map<String, Value>, rule_name: &str) -> Result<RuleItem, FieldError> {
    let present: Vec<&'static str> = KINDS
        .iter()
        .copied()
        .filter(|k| obj.contains_key(*k))
        .collect();
    let kind = match present.as_slice() {
        [k] => *k,
        [] => {
            return Err(FieldError::new(
                "limit_by_header",
                format!("one of {} is required", KINDS.join(", ")),
            ))
        }
        [_, second, ..] => {
            return Err(FieldError::new(
                *second,
                format!("only one of {} may be set", KINDS.join(", ")),
            ))
        }
    };
    // Consumer kinds read x-mse-consumer whatever the value says (as Higress).
    let setting = config::opt_string(obj, kind)?.unwrap_or_default();
    let header = |name: &str| {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| FieldError::new(kind, format!("{name:?} is not a header name")))
    };
    let nonempty = || {
        if setting.is_empty() {
            Err(FieldError::new(kind, "must not be empty"))
        } else {
            Ok(setting.clone())
        }
    };
    let (source, key_name) = match kind {
        "limit_by_header" | "limit_by_per_header" => {
            (Source::Header(header(&setting)?), setting.clone())
        }
        "limit_by_param" | "limit_by_per_param" => (Source::Param(nonempty()?), setting.clone()),
        "limit_by_cookie" | "limit_by_per_cookie" => (Source::Cookie(nonempty()?), setting.clone()),
        "limit_by_consumer" | "limit_by_per_consumer" => {
            (Source::Consumer, CONSUMER_HEADER.to_string())
        }
        _ => {
            let source = if setting == "from-remote-addr" {
                Source::RemoteAddr
            } else if let Some(h) = setting.strip_prefix("from-header-") {
                Source::IpHeader(header(h)?)
            } else {
                return Err(FieldError::new(
                    kind,
                    "expected from-remote-addr or from-header-<name>",
                ));
            };
            (source, setting.clone())
        }
    };
    let per = kind.starts_with("limit_by_per_");
    let entries = config::opt_objects(obj, "limit_keys")?
        .ok_or_else(|| FieldError::new("limit_keys", "is required"))?;
    if entries.is_empty() {
        return Err(FieldError::new("limit_keys", "must not be empty"));
    }
    let mut keys = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let at = |err: FieldError| err.under(&format!("limit_keys[{i}]"));
        let key = config::string(e, "key").map_err(at)?;
        let bad = |m: &str| at(FieldError::new("key", format!("{key:?}: {m}")));
        let matches = if kind == "limit_by_per_ip" {
            KeyMatch::Net(Cidr::parse(&key).ok_or_else(|| bad("expected an IP or a CIDR"))?)
        } else if !per {
            KeyMatch::Exact(key.clone())
        } else if key == "*" {
            KeyMatch::Any
        } else if let Some(re) = key.strip_prefix("regexp:") {
            KeyMatch::Regex(Regex::new(re).map_err(|e| bad(&format!("bad regex: {e}")))?)
        } else {
            return Err(bad("a limit_by_per_* key is * or regexp:<regex>"));
        };
        let (count, window) = limit_of(e).map_err(at)?;
        let prefix = format!(
            "{}:{rule_name}:{kind}:{}:{key_name}:",
            super::KEY_PREFIX,
            window.as_secs()
        );
        keys.push(LimitKey {
            matches,
            count,
            window,
            redis: RedisArgs::new(prefix, count, window),
        });
    }
    Ok(RuleItem {
        kind,
        source,
        key_name,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn item(v: Value) -> Result<RuleItem, FieldError> {
        parse_item(v.as_object().unwrap(), "r")
    }

    fn req(headers: &[(&str, &str)], path: &str) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn selectors_read_their_value_and_match_keys() {
        let h = item(json!({"limit_by_header": "x-ca-key", "limit_keys": [{"key": 123, "query_per_second": 5}]})).unwrap();
        assert!(h.hit(&req(&[("x-ca-key", "123")], "/"), None).is_some());
        assert!(h.hit(&req(&[("x-ca-key", "1234")], "/"), None).is_none());
        let p = item(json!({"limit_by_per_param": "uid", "limit_keys": [{"key": "regexp:^a", "query_per_minute": 5}, {"key": "*", "query_per_hour": 1}]})).unwrap();
        let hit = p.hit(&req(&[], "/?uid=abc"), None).unwrap();
        assert_eq!((hit.value.as_str(), hit.limit.count), ("abc", 5));
        assert_eq!(p.hit(&req(&[], "/?uid=zzz"), None).unwrap().limit.count, 1);
        let c = item(
            json!({"limit_by_cookie": "sid", "limit_keys": [{"key": "s1", "query_per_second": 1}]}),
        )
        .unwrap();
        assert!(c
            .hit(&req(&[("cookie", "a=b; sid=s1")], "/"), None)
            .is_some());
        let consumer = item(json!({"limit_by_consumer": "", "limit_keys": [{"key": "consumer1", "query_per_second": 1}]})).unwrap();
        assert!(consumer
            .hit(&req(&[("x-mse-consumer", "consumer1")], "/"), None)
            .is_some());
        assert_eq!(consumer.key_name, "x-mse-consumer");
        let ip = item(json!({"limit_by_per_ip": "from-header-x-forwarded-for", "limit_keys": [{"key": "10.0.0.0/8", "query_per_second": 1}]})).unwrap();
        let hit = ip
            .hit(
                &req(&[("x-forwarded-for", "10.1.2.3:5555, 1.1.1.1")], "/"),
                None,
            )
            .unwrap();
        assert_eq!(hit.value, "10.1.2.3");
        let remote = item(json!({"limit_by_per_ip": "from-remote-addr", "limit_keys": [{"key": "127.0.0.1", "query_per_second": 1}]})).unwrap();
        assert!(remote
            .hit(&req(&[], "/"), Some("127.0.0.1".parse().unwrap()))
            .is_some());
        assert!(remote.hit(&req(&[], "/"), None).is_none());
    }

    #[test]
    fn bad_items_name_their_field() {
        for (v, field) in [
            (json!({"limit_keys": []}), "limit_by_header"),
            (
                json!({"limit_by_header": "a", "limit_by_param": "b", "limit_keys": []}),
                "limit_by_param",
            ),
            (
                json!({"limit_by_per_header": "a", "limit_keys": [{"key": "x", "query_per_second": 1}]}),
                "limit_keys[0].key",
            ),
            (
                json!({"limit_by_per_ip": "from-x", "limit_keys": [{"key": "1.1.1.1", "query_per_second": 1}]}),
                "limit_by_per_ip",
            ),
            (
                json!({"limit_by_per_ip": "from-remote-addr", "limit_keys": [{"key": "nope", "query_per_second": 1}]}),
                "limit_keys[0].key",
            ),
            (
                json!({"limit_by_header": "a", "limit_keys": [{"key": "x", "query_per_second": -2}]}),
                "limit_keys[0].query_per_second",
            ),
        ] {
            assert_eq!(item(v.clone()).unwrap_err().path, field, "{v}");
        }
    }
}
