//! key-auth's stats: who was let in, per consumer, and why others were not.

use std::sync::Arc;

use telemetry::stats::{Counter, Kind, Registry};

/// Counters of one key-auth plugin, resolved when it is built.
#[derive(Clone, Debug)]
pub struct KeyAuthStats {
    /// Requests let in, by consumer index.
    allowed: Vec<Counter>,
    pub no_key: Counter,
    pub multi_key: Counter,
    pub unknown_key: Counter,
    pub forbidden: Counter,
}

impl KeyAuthStats {
    /// The counters of plugin `plugin` (`<namespace>.<name>`) for consumers `names`.
    pub fn register(registry: &Registry, plugin: &str, names: &[Arc<str>]) -> KeyAuthStats {
        let allowed = registry.family(
            "gateway_key_auth_consumer_requests_total",
            "Requests key-auth let in, per plugin and consumer.",
            Kind::Counter,
        );
        let denied = registry.family(
            "gateway_key_auth_denied_total",
            "Requests key-auth denied, per plugin and reason: no_key, multi_key, unknown_key (401), forbidden (403, the consumer is not allowed on the route).",
            Kind::Counter,
        );
        let reason = |r: &str| denied.counter(&[("plugin", plugin), ("reason", r)]);
        KeyAuthStats {
            allowed: names
                .iter()
                .map(|n| allowed.counter(&[("plugin", plugin), ("consumer", n)]))
                .collect(),
            no_key: reason("no_key"),
            multi_key: reason("multi_key"),
            unknown_key: reason("unknown_key"),
            forbidden: reason("forbidden"),
        }
    }

    /// The counter of consumer `i`.
    pub fn consumer(&self, i: usize) -> &Counter {
        &self.allowed[i]
    }
}
