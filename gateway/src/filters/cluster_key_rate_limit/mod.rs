//! cluster-key-rate-limit: Higress's `cluster-key-rate-limit` plugin (Go,
//! `plugins/wasm-go/extensions/cluster-key-rate-limit`), native. Requests are counted in
//! Redis, so every gateway replica shares one count per key and window.
//!
//! Configuration:
//! - `rule_name`: required; part of every Redis key;
//! - exactly one of `global_threshold` (`{query_per_second|minute|hour|day}`: one count
//!   for every request) and `rule_items` (see [`items`]: `limit_by_header`,
//!   `limit_by_param`, `limit_by_cookie`, `limit_by_consumer`, their `limit_by_per_*`
//!   forms and `limit_by_per_ip`, each with `limit_keys`);
//! - `show_limit_quota_header` (default false): `X-RateLimit-Limit` and
//!   `X-RateLimit-Remaining` on every response;
//! - `rejected_code` (default 429), `rejected_msg` (default `Too many requests`);
//! - `redis`: `service_name` (required, the FQDN a registry gives the server:
//!   `redis.static`, `redis.dns`), `service_port` (default 80 for `.static`, else 6379),
//!   `username`, `password`, `timeout` (ms, default 1000), `database` (default 0). The
//!   server is the endpoint of cluster `outbound|<port>||<service_name>`.
//!
//! Per request: exactly one Redis round trip, an `EVAL` of a fixed-window script on
//! `higress-cluster-key-rate-limit:<rule_name>:<limit_type>:<window>:<key_name>:<value>`
//! (or `...:<rule_name>:global_threshold:<window>`): the count rises by one unless it is
//! already past the threshold, the key expires with its window, so exactly `threshold`
//! requests pass per window across every replica. A request past it gets
//! `rejected_code` with `rejected_msg` and `X-RateLimit-Reset: <seconds left>`.
//!
//! Redis unreachable, slow (past `timeout`), or answering an error: the request passes
//! (fail open, as Higress), `gateway_cluster_rate_limit_redis_errors_total` counts it by
//! reason, and a log line (at most one a second per plugin) says why. A `service_name`
//! no registry names yet is the same (reason `no_endpoint`) until one does.

pub mod items;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_http::RequestHeader;
use serde_json::Value;
use telemetry::stats::{Counter, Kind};

use super::config::{self, object};
use super::key_rate_limit::limit_of;
use super::{BuildContext, ClusterResolver, FilterFactory};
use crate::error::FieldError;
use crate::model::http_filter::{
    Decision, FilterStatus, HttpFilter, LocalReply, MatchInput, Pending,
};
use crate::model::plugin_chain::Phase;
use crate::redis::{RedisClient, RedisOptions, Reply};
use items::{RedisArgs, RuleItem};

/// Prefix of every Redis key.
pub const KEY_PREFIX: &str = "higress-cluster-key-rate-limit";

/// Fixed window: past the threshold the count stays; otherwise +1, and a new key expires
/// with its window. Returns `{threshold, count, ttl}`; the request passes when
/// `count <= threshold`.
pub const SCRIPT: &str = "local c = tonumber(redis.call('get', KEYS[1]) or '0')
local t = tonumber(ARGV[1])
if c <= t then
  c = redis.call('incr', KEYS[1])
  if c == 1 then redis.call('expire', KEYS[1], ARGV[2]) end
end
return {t, c, redis.call('ttl', KEYS[1])}";

/// What the requests are counted by.
#[derive(Debug)]
enum Limits {
    Global(Arc<RedisArgs>),
    Items(Vec<RuleItem>),
}

/// Why Redis failed a request, as the error counter's `reason`.
const REASONS: [&str; 6] = [
    "no_endpoint",
    "connect",
    "connection",
    "timeout",
    "error_reply",
    "bad_reply",
];

#[derive(Debug)]
struct Stats {
    limited: Counter,
    /// By [`REASONS`] index.
    errors: Vec<Counter>,
    plugin: String,
    /// Milliseconds since `start` of the last error log line.
    last_log: AtomicU64,
    start: Instant,
}

impl Stats {
    /// Count a Redis failure and say why, at most once a second.
    fn error(&self, reason: &str, detail: &dyn std::fmt::Display) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.errors[i].inc();
        }
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last_log.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .last_log
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(plugin = %self.plugin, reason, "cluster-key-rate-limit: Redis failed, requests pass unlimited (fail open): {detail}");
        }
    }
}

/// One configuration.
pub struct ClusterKeyRateLimit {
    rule_name: String,
    limits: Limits,
    show_quota: bool,
    rejected_code: u16,
    rejected_msg: Arc<[u8]>,
    /// `outbound|<port>||<service_name>`.
    cluster: String,
    client: RedisClient,
    resolve: ClusterResolver,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for ClusterKeyRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterKeyRateLimit")
            .field("rule_name", &self.rule_name)
            .field("limits", &self.limits)
            .field("cluster", &self.cluster)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// The Redis key and the script's arguments for a request, if it is limited.
fn key_of(
    limits: &Limits,
    req: &RequestHeader,
    input: &MatchInput<'_>,
) -> Option<(String, Arc<RedisArgs>)> {
    match limits {
        Limits::Global(args) => Some((args.key_prefix.clone(), args.clone())),
        Limits::Items(items) => items.iter().find_map(|item| {
            let hit = item.hit(req, input.peer)?;
            let args = &hit.limit.redis;
            let mut key = String::with_capacity(args.key_prefix.len() + hit.value.len());
            key.push_str(&args.key_prefix);
            key.push_str(&hit.value);
            Some((key, args.clone()))
        }),
    }
}

fn header(name: &'static str, v: i64) -> (http::HeaderName, http::HeaderValue) {
    (
        http::HeaderName::from_static(name),
        http::HeaderValue::from(v),
    )
}

impl HttpFilter for ClusterKeyRateLimit {
    fn acts_on_response(&self) -> bool {
        false
    }

    fn on_request_headers(&self, req: &mut RequestHeader, input: &MatchInput<'_>) -> FilterStatus {
        let Some((key, redis_args)) = key_of(&self.limits, req, input) else {
            return FilterStatus::Continue;
        };
        let Some(addr) = (self.resolve)(&self.cluster) else {
            self.stats.error(
                "no_endpoint",
                &format_args!("no registry names {} yet", self.cluster),
            );
            return FilterStatus::Continue;
        };
        let client = self.client.clone();
        let stats = self.stats.clone();
        let (show_quota, code, msg) = (
            self.show_quota,
            self.rejected_code,
            self.rejected_msg.clone(),
        );
        FilterStatus::Wait(Pending::new(async move {
            let args: [&[u8]; 6] = [
                b"EVAL",
                SCRIPT.as_bytes(),
                b"1",
                key.as_bytes(),
                redis_args.threshold.as_bytes(),
                redis_args.window.as_bytes(),
            ];
            let reply = match client.query(addr, &args).await {
                Ok(r) => r,
                Err(e) => {
                    let reason = match e {
                        crate::redis::RedisError::Timeout => "timeout",
                        crate::redis::RedisError::Server(_) => "error_reply",
                        crate::redis::RedisError::Connect(_) => "connect",
                        _ => "connection",
                    };
                    stats.error(reason, &e);
                    return Decision::default();
                }
            };
            let Some((limit, count, ttl)) = triple(&reply) else {
                stats.error("bad_reply", &format_args!("unexpected reply {reply:?}"));
                return Decision::default();
            };
            let remaining = (limit - count).max(0);
            if count > limit {
                stats.limited.inc();
                let mut headers = vec![("X-RateLimit-Reset".to_string(), ttl.max(0).to_string())];
                if show_quota {
                    headers.push(("X-RateLimit-Limit".into(), limit.to_string()));
                    headers.push(("X-RateLimit-Remaining".into(), "0".into()));
                }
                return Decision {
                    reply: Some(LocalReply {
                        status: code,
                        headers,
                        body: msg.to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
            }
            Decision {
                reply: None,
                response_headers: if show_quota {
                    vec![
                        header("x-ratelimit-limit", limit),
                        header("x-ratelimit-remaining", remaining),
                    ]
                } else {
                    Vec::new()
                },
            }
        }))
    }
}

/// `{threshold, count, ttl}` as integers.
fn triple(r: &Reply) -> Option<(i64, i64, i64)> {
    let Reply::Array(Some(items)) = r else {
        return None;
    };
    let int = |r: &Reply| match r {
        Reply::Integer(i) => Some(*i),
        Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    };
    match items.as_slice() {
        [a, b, c] => Some((int(a)?, int(b)?, int(c)?)),
        _ => None,
    }
}

/// The `cluster-key-rate-limit` plugin.
pub struct ClusterKeyRateLimitFactory;

pub const FIELDS: &[&str] = &[
    "rule_name",
    "global_threshold",
    "rule_items",
    "show_limit_quota_header",
    "rejected_code",
    "rejected_msg",
    "redis",
];

impl FilterFactory for ClusterKeyRateLimitFactory {
    fn name(&self) -> &'static str {
        "cluster-key-rate-limit"
    }

    fn default_order(&self) -> (Phase, i32) {
        (Phase::Unspecified, 20)
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
        let rule_name = config::string(obj, "rule_name")?;
        let limits = match (obj.get("global_threshold"), obj.get("rule_items")) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "rule_items",
                    "global_threshold and rule_items cannot both be set",
                ))
            }
            (None, None) => {
                return Err(FieldError::new(
                    "rule_items",
                    "one of global_threshold and rule_items is required",
                ))
            }
            (Some(g), None) => {
                let g = g
                    .as_object()
                    .ok_or_else(|| FieldError::new("global_threshold", "expected an object"))?;
                let (count, window) = limit_of(g).map_err(|e| e.under("global_threshold"))?;
                let key = format!(
                    "{KEY_PREFIX}:{rule_name}:global_threshold:{}",
                    window.as_secs()
                );
                Limits::Global(RedisArgs::new(key, count, window))
            }
            (None, Some(_)) => {
                let list = config::opt_objects(obj, "rule_items")?.unwrap_or_default();
                if list.is_empty() {
                    return Err(FieldError::new("rule_items", "must not be empty"));
                }
                Limits::Items(
                    list.iter()
                        .enumerate()
                        .map(|(i, it)| {
                            items::parse_item(it, &rule_name)
                                .map_err(|e| e.under(&format!("rule_items[{i}]")))
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
        };
        let show_quota = config::opt_bool(obj, "show_limit_quota_header")?.unwrap_or(false);
        let rejected_code = match config::opt_u64(obj, "rejected_code")? {
            None => 429,
            Some(c) if (200..600).contains(&c) => c as u16,
            Some(c) => {
                return Err(FieldError::new(
                    "rejected_code",
                    format!("{c} is not an HTTP status"),
                ))
            }
        };
        let rejected_msg =
            config::opt_string(obj, "rejected_msg")?.unwrap_or_else(|| "Too many requests".into());
        let redis = obj
            .get("redis")
            .ok_or_else(|| FieldError::new("redis", "is required"))?
            .as_object()
            .ok_or_else(|| FieldError::new("redis", "expected an object"))?;
        let at = |e: FieldError| e.under("redis");
        let service = config::string(redis, "service_name").map_err(at)?;
        let port = match config::opt_u64(redis, "service_port").map_err(at)? {
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => {
                return Err(at(FieldError::new(
                    "service_port",
                    format!("{p} is not a port"),
                )))
            }
            None if service.ends_with(".static") => 80,
            None => 6379,
        };
        let timeout = config::opt_u64(redis, "timeout")
            .map_err(at)?
            .unwrap_or(1000);
        if timeout == 0 {
            return Err(at(FieldError::new(
                "timeout",
                "must be above 0 (milliseconds)",
            )));
        }
        let database = config::opt_u64(redis, "database").map_err(at)?.unwrap_or(0);
        let database =
            u32::try_from(database).map_err(|_| at(FieldError::new("database", "too large")))?;
        let options = RedisOptions {
            username: config::opt_string(redis, "username")
                .map_err(at)?
                .filter(|s| !s.is_empty()),
            password: config::opt_string(redis, "password")
                .map_err(at)?
                .filter(|s| !s.is_empty()),
            database,
            timeout: Duration::from_millis(timeout),
        };
        let cluster = crate::model::cluster_name(port, "", &service);
        if (ctx.resolve)(&cluster).is_none() {
            tracing::warn!(plugin = ctx.plugin, cluster = %cluster, "cluster-key-rate-limit: no registry names the Redis service yet; requests pass unlimited until one does");
        }
        let registry = ctx.registry;
        Ok(Arc::new(ClusterKeyRateLimit {
            rule_name,
            limits,
            show_quota,
            rejected_code,
            rejected_msg: rejected_msg.into_bytes().into(),
            cluster,
            client: RedisClient::new(options),
            resolve: ctx.resolve.clone(),
            stats: Arc::new(Stats {
                limited: registry
                    .family(
                        "gateway_cluster_rate_limit_limited_total",
                        "Requests cluster-key-rate-limit rejected, per plugin.",
                        Kind::Counter,
                    )
                    .counter(&[("plugin", ctx.plugin)]),
                errors: {
                    let f = registry.family(
                        "gateway_cluster_rate_limit_redis_errors_total",
                        "Requests cluster-key-rate-limit let pass because Redis failed (fail open), per plugin and reason: no_endpoint, connect, connection, timeout, error_reply, bad_reply.",
                        Kind::Counter,
                    );
                    REASONS
                        .iter()
                        .map(|r| f.counter(&[("plugin", ctx.plugin), ("reason", r)]))
                        .collect()
                },
                plugin: ctx.plugin.to_string(),
                last_log: AtomicU64::new(0),
                start: Instant::now(),
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn build(v: Value) -> Result<Arc<dyn HttpFilter>, FieldError> {
        let registry = telemetry::stats::Registry::new();
        ClusterKeyRateLimitFactory.build(&v, None, &BuildContext::detached("ns.p", &registry))
    }

    #[test]
    fn keys_are_higress_keys() {
        let f = build(json!({"rule_name": "r1", "rule_items": [
            {"limit_by_per_ip": "from-remote-addr", "limit_keys": [{"key": "0.0.0.0/0", "query_per_second": 10}]},
        ], "redis": {"service_name": "redis.static"}}))
        .unwrap();
        let f: &dyn std::any::Any = &*f;
        let f = f.downcast_ref::<ClusterKeyRateLimit>().unwrap();
        assert_eq!(f.cluster, "outbound|80||redis.static");
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let input = MatchInput {
            peer: Some("1.2.3.4".parse().unwrap()),
            ..Default::default()
        };
        let (key, args) = key_of(&f.limits, &req, &input).unwrap();
        assert_eq!(
            (key.as_str(), args.threshold.as_str(), args.window.as_str()),
            (
                "higress-cluster-key-rate-limit:r1:limit_by_per_ip:1:from-remote-addr:1.2.3.4",
                "10",
                "1"
            )
        );
        let g = build(json!({"rule_name": "g", "global_threshold": {"query_per_minute": 5}, "redis": {"service_name": "redis.dns"}})).unwrap();
        let g: &dyn std::any::Any = &*g;
        let g = g.downcast_ref::<ClusterKeyRateLimit>().unwrap();
        assert_eq!(g.cluster, "outbound|6379||redis.dns");
        assert_eq!(
            key_of(&g.limits, &req, &input).unwrap().0,
            "higress-cluster-key-rate-limit:g:global_threshold:60"
        );
    }

    #[test]
    fn bad_configurations_name_their_field() {
        let redis = json!({"service_name": "redis.static"});
        for (v, field) in [
            (
                json!({"global_threshold": {"query_per_second": 1}, "redis": redis}),
                "rule_name",
            ),
            (json!({"rule_name": "r", "redis": redis}), "rule_items"),
            (
                json!({"rule_name": "r", "global_threshold": {"query_per_second": 1}, "rule_items": [], "redis": redis}),
                "rule_items",
            ),
            (
                json!({"rule_name": "r", "global_threshold": {"query_per_second": 0}, "redis": redis}),
                "global_threshold.query_per_second",
            ),
            (
                json!({"rule_name": "r", "global_threshold": {"query_per_second": 1}}),
                "redis",
            ),
            (
                json!({"rule_name": "r", "global_threshold": {"query_per_second": 1}, "redis": {"service_port": 6379}}),
                "redis.service_name",
            ),
            (
                json!({"rule_name": "r", "global_threshold": {"query_per_second": 1}, "redis": {"service_name": "r.static", "timeout": -1}}),
                "redis.timeout",
            ),
            (
                json!({"rule_name": "r", "rule_items": [{"limit_by_header": "h", "limit_keys": [{"key": "a", "query_per_hour": -3}]}], "redis": redis}),
                "rule_items[0].limit_keys[0].query_per_hour",
            ),
        ] {
            assert_eq!(build(v.clone()).unwrap_err().path, field, "{v}");
        }
    }
}
