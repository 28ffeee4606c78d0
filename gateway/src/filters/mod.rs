//! Native HTTP filters: plugins the gateway implements itself (Higress's core plugins,
//! the filters Ingress annotations turn on), run in the same chain as Wasm plugins.
//!
//! A native filter lives in one folder, `filters/<name>/`, as an Envoy extension does:
//! its configuration schema and validation, its per-request code, its stats and docs.
//! It plugs in through two traits:
//! - [`FilterFactory`]: the plugin's name, its default phase and priority, and how one
//!   configuration (the global one or a rule's) becomes a filter;
//! - [`HttpFilter`]: the per-request callbacks, each of which may go on or answer the
//!   request itself.
//!
//! A configured plugin ([`NativeFilter`]) holds its `_rules_` ([`rules::RuleSet`]),
//! matched per request exactly as Higress's plugin SDKs match them (route, domain,
//! service, route prefix, then the global configuration), and takes its place in the
//! chain by phase and priority with the Wasm plugins (`model/plugin_chain.rs`).
//!
//! This module imports `model/`, the error type and `telemetry`, never the config
//! resources, translation or controllers.

pub mod basic_auth;
pub mod chatgpt_proxy;
pub mod cluster_key_rate_limit;
pub mod config;
pub mod cors;
pub mod fault;
pub mod ip_access;
pub mod key_auth;
pub mod key_rate_limit;
pub mod local_rate_limit;
pub mod request_block;
pub mod rules;

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use telemetry::stats::{Counter, Family, Kind, Registry};

use crate::error::FieldError;
pub use crate::model::http_filter::{
    edit_parts, FilterStatus, HttpFilter, LocalReply, MatchInput, ResponseParts,
};
pub use rules::RuleSet;

/// What building a filter may use besides its configuration.
pub struct BuildContext<'a> {
    /// `<namespace>.<name>` of the plugin object (the stats' `plugin` label).
    pub plugin: &'a str,
    /// Where the filter registers its own stats.
    pub registry: &'a Registry,
    /// A cluster's endpoint, for filters that call out (Redis, HTTP).
    pub resolve: ClusterResolver,
}

impl<'a> BuildContext<'a> {
    /// A context that resolves no cluster (checking a configuration, tests).
    pub fn detached(plugin: &'a str, registry: &'a Registry) -> BuildContext<'a> {
        BuildContext {
            plugin,
            registry,
            resolve: Arc::new(|_| None),
        }
    }
}

/// Cluster name (`outbound|<port>||<fqdn>`) to one of its endpoints, read from the
/// snapshot serving when it is called.
pub type ClusterResolver = Arc<dyn Fn(&str) -> Option<std::net::SocketAddr> + Send + Sync>;

/// A kind of native filter: Higress's plugin name and how its configuration is built.
pub trait FilterFactory: Send + Sync {
    /// The plugin name users know (`key-auth`, `cors` ...).
    fn name(&self) -> &'static str;
    /// Phase and priority when the WasmPlugin object does not set them (Higress's own
    /// defaults for the plugin).
    fn default_order(&self) -> (crate::model::plugin_chain::Phase, i32);
    /// The configuration keys the filter reads (global and rule); any other key is
    /// accepted and reported as not enforced.
    fn fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// One configuration: the global one (`global` is `None`), or a rule's, which may
    /// inherit from the global filter. Errors name the field inside `config`.
    fn build(
        &self,
        config: &Value,
        global: Option<&Arc<dyn HttpFilter>>,
        ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn HttpFilter>, FieldError>;
}

/// Stats of one configured filter, resolved when it is built: a request touches atomics.
#[derive(Clone, Debug)]
pub struct FilterStats {
    /// Requests the filter ran for (a rule or its global configuration matched).
    pub runs: Counter,
    /// Requests it answered itself.
    pub local_replies: Counter,
}

/// The families every native filter's stats live in, labelled by plugin.
#[derive(Clone)]
pub struct FilterFamilies {
    runs: Arc<Family>,
    local_replies: Arc<Family>,
}

impl FilterFamilies {
    pub fn register(registry: &Registry) -> FilterFamilies {
        FilterFamilies {
            runs: registry.family(
                "gateway_filter_runs_total",
                "Requests a native filter ran for (its rules or global configuration matched), per plugin.",
                Kind::Counter,
            ),
            local_replies: registry.family(
                "gateway_filter_local_replies_total",
                "Requests a native filter answered itself, per plugin.",
                Kind::Counter,
            ),
        }
    }

    /// The stats of plugin `name` (`<namespace>.<name>` of its object).
    pub fn stats(&self, name: &str) -> FilterStats {
        let labels = [("plugin", name)];
        FilterStats {
            runs: self.runs.counter(&labels),
            local_replies: self.local_replies.counter(&labels),
        }
    }
}

/// A configured native filter: one plugin object's rules, in the chain.
pub struct NativeFilter {
    /// `<namespace>.<name>` of the object, as Wasm plugins are named.
    pub name: Arc<str>,
    /// The Higress plugin it implements (`key-auth`).
    pub plugin: &'static str,
    /// Configuration keys the filter does not read (`_rules_[0].realm`).
    pub not_enforced: Vec<String>,
    pub phase: crate::model::plugin_chain::Phase,
    pub priority: i32,
    pub rules: RuleSet<Arc<dyn HttpFilter>>,
    pub stats: FilterStats,
}

impl fmt::Debug for NativeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeFilter")
            .field("name", &self.name)
            .field("phase", &self.phase)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl NativeFilter {
    /// Build a plugin object's filter from its configuration (`_rules_` form).
    pub fn build(
        factory: &dyn FilterFactory,
        name: Arc<str>,
        order: Option<(crate::model::plugin_chain::Phase, i32)>,
        config: &Value,
        stats: FilterStats,
        ctx: &BuildContext<'_>,
    ) -> Result<NativeFilter, FieldError> {
        let rules = RuleSet::parse(config, |c, global| factory.build(c, global, ctx))?;
        let (phase, priority) = order.unwrap_or_else(|| factory.default_order());
        Ok(NativeFilter {
            name,
            plugin: factory.name(),
            not_enforced: unread_fields(config, factory.fields()),
            phase,
            priority,
            rules,
            stats,
        })
    }

    /// The filter that applies to a request, if any (counted as a run).
    pub fn select(&self, input: &MatchInput<'_>) -> Option<&Arc<dyn HttpFilter>> {
        let f = self.rules.select(input)?;
        self.stats.runs.inc();
        Some(f)
    }
}

/// The keys of `config` (top level and each rule, match keys aside) not in `known`.
fn unread_fields(config: &Value, known: &[&str]) -> Vec<String> {
    let unread = |obj: &serde_json::Map<String, Value>, at: &str| -> Vec<String> {
        obj.keys()
            .filter(|k| !k.starts_with('_') && !known.contains(&k.as_str()))
            .map(|k| format!("{at}{k}"))
            .collect()
    };
    let Value::Object(top) = config else {
        return Vec::new();
    };
    let mut out = unread(top, "");
    if let Some(Value::Array(rules)) = top.get(rules::RULES) {
        for (i, r) in rules.iter().enumerate() {
            if let Value::Object(r) = r {
                out.extend(unread(r, &format!("{}[{i}].", rules::RULES)));
            }
        }
    }
    out
}

/// One entry of the filter chain: a native filter, or a plugin of another kind (the Wasm
/// host's loaded plugins); one ordering by phase and priority covers both.
#[derive(Debug)]
pub enum ChainEntry<P> {
    Native(Arc<NativeFilter>),
    Plugin(Arc<P>),
}

impl<P> Clone for ChainEntry<P> {
    fn clone(&self) -> Self {
        match self {
            ChainEntry::Native(f) => ChainEntry::Native(f.clone()),
            ChainEntry::Plugin(p) => ChainEntry::Plugin(p.clone()),
        }
    }
}

impl<P: crate::model::plugin_chain::Ordered> crate::model::plugin_chain::Ordered for ChainEntry<P> {
    fn phase(&self) -> crate::model::plugin_chain::Phase {
        match self {
            ChainEntry::Native(f) => f.phase,
            ChainEntry::Plugin(p) => p.phase(),
        }
    }
    fn priority(&self) -> i32 {
        match self {
            ChainEntry::Native(f) => f.priority,
            ChainEntry::Plugin(p) => p.priority(),
        }
    }
    fn name(&self) -> &str {
        match self {
            ChainEntry::Native(f) => &f.name,
            ChainEntry::Plugin(p) => p.name(),
        }
    }
}

/// The native filters this gateway has, by plugin name; the WasmPlugin translation asks
/// it before pulling an `oci://` image.
pub const FACTORIES: &[&dyn FilterFactory] = &[
    &key_auth::KeyAuthFactory,
    &key_rate_limit::KeyRateLimitFactory,
    &cluster_key_rate_limit::ClusterKeyRateLimitFactory,
    &request_block::RequestBlockFactory,
    &chatgpt_proxy::ChatgptProxyFactory,
];

/// The native implementation of plugin `name`, if the gateway has one.
pub fn factory(name: &str) -> Option<&'static dyn FilterFactory> {
    FACTORIES.iter().copied().find(|f| f.name() == name)
}

impl crate::model::plugin_chain::Ordered for NativeFilter {
    fn phase(&self) -> crate::model::plugin_chain::Phase {
        self.phase
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use pingora_http::RequestHeader;
    use serde_json::json;

    use super::*;
    use crate::model::plugin_chain::{order, Phase};

    /// A test filter: answers requests carrying `x-deny` with its configured status,
    /// stamps `x-stamp: <tag>` on the rest and on their responses.
    #[derive(Debug)]
    struct Stamp {
        tag: String,
        deny_status: u16,
    }

    impl HttpFilter for Stamp {
        fn on_request_headers(&self, req: &mut RequestHeader, _: &MatchInput<'_>) -> FilterStatus {
            if req.headers.contains_key("x-deny") {
                return FilterStatus::Reply(LocalReply {
                    status: self.deny_status,
                    headers: vec![("x-denied-by".into(), self.tag.clone())],
                    body: b"denied".to_vec(),
                    ..Default::default()
                });
            }
            let _ = req.insert_header("x-stamp", self.tag.as_str());
            FilterStatus::Continue
        }

        fn on_response_headers(
            &self,
            _req: &RequestHeader,
            resp: &mut ResponseParts,
        ) -> FilterStatus {
            if let Ok(v) = http::HeaderValue::from_str(&self.tag) {
                resp.headers.insert("x-stamp", v);
            }
            FilterStatus::Continue
        }
    }

    struct StampFactory;

    impl FilterFactory for StampFactory {
        fn name(&self) -> &'static str {
            "stamp"
        }
        fn default_order(&self) -> (Phase, i32) {
            (Phase::Authn, 100)
        }
        fn build(
            &self,
            config: &Value,
            _global: Option<&Arc<dyn HttpFilter>>,
            _ctx: &BuildContext<'_>,
        ) -> Result<Arc<dyn HttpFilter>, FieldError> {
            let tag = match config.get("tag") {
                None => "global".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(FieldError::new("tag", "expected a string")),
            };
            let deny_status = match config.get("deny_status") {
                None => 403,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| (200..600).contains(n))
                    .ok_or_else(|| FieldError::new("deny_status", "expected an HTTP status"))?,
            };
            Ok(Arc::new(Stamp { tag, deny_status }))
        }
    }

    fn stats(registry: &Registry, name: &str) -> FilterStats {
        FilterFamilies::register(registry).stats(name)
    }

    #[test]
    fn a_native_filter_runs_the_configuration_its_rules_select() {
        let registry = Registry::new();
        let f = NativeFilter::build(
            &StampFactory,
            "higress-system.stamp".into(),
            None,
            &json!({"_rules_": [
                {"tag": "route", "deny_status": 401, "_match_route_": ["api"]},
                {"tag": "domain", "_match_domain_": ["*.example.com"]},
            ]}),
            stats(&registry, "higress-system.stamp"),
            &BuildContext::detached("higress-system.stamp", &registry),
        )
        .unwrap();
        assert_eq!(
            (f.phase, f.priority),
            (Phase::Authn, 100),
            "the factory's order"
        );
        let run = |route: &str, host: &str, deny: bool| {
            let input = MatchInput {
                route: Some(route),
                authority: host,
                cluster: None,
                peer: None,
            };
            let filter = f.select(&input)?;
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            if deny {
                req.insert_header("x-deny", "1").unwrap();
            }
            Some(match filter.on_request_headers(&mut req, &input) {
                FilterStatus::Continue => {
                    let mut resp = http::Response::new(()).into_parts().0;
                    assert_eq!(
                        filter.on_response_headers(&req, &mut resp),
                        FilterStatus::Continue
                    );
                    let stamp = |h: &http::HeaderMap| h["x-stamp"].to_str().unwrap().to_string();
                    assert_eq!(stamp(&req.headers), stamp(&resp.headers));
                    stamp(&req.headers)
                }
                FilterStatus::Reply(r) => {
                    f.stats.local_replies.inc();
                    format!("{} {}", r.status, r.headers[0].1)
                }
                FilterStatus::Wait(_) => unreachable!("the stamp filter never waits"),
            })
        };
        assert_eq!(run("api", "a.example.com", false).as_deref(), Some("route"));
        assert_eq!(
            run("web", "a.example.com", false).as_deref(),
            Some("domain")
        );
        assert_eq!(run("api", "x", true).as_deref(), Some("401 route"));
        assert_eq!(
            run("web", "a.example.com", true).as_deref(),
            Some("403 domain")
        );
        assert_eq!(
            run("web", "example.com", false),
            None,
            "no rule, no global: skipped"
        );
        assert_eq!(f.stats.runs.get(), 4);
        assert_eq!(f.stats.local_replies.get(), 2);
        let text = registry.render();
        assert!(
            text.contains("gateway_filter_runs_total{plugin=\"higress-system.stamp\"} 4"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_configuration_names_its_field_and_the_chain_orders_natives_by_phase() {
        let registry = Registry::new();
        let bad = NativeFilter::build(
            &StampFactory,
            "ns.bad".into(),
            None,
            &json!({"_rules_": [{"deny_status": 99, "_match_route_": ["a"]}]}),
            stats(&registry, "ns.bad"),
            &BuildContext::detached("ns.bad", &registry),
        )
        .unwrap_err();
        assert_eq!(bad.path, "_rules_[0].deny_status");
        let build = |name: &str, order| {
            Arc::new(
                NativeFilter::build(
                    &StampFactory,
                    name.into(),
                    order,
                    &json!({}),
                    stats(&registry, name),
                    &BuildContext::detached(name, &registry),
                )
                .unwrap(),
            )
        };
        let chain = order(vec![
            build("ns.stats", Some((Phase::Stats, 0))),
            build("ns.authn-low", Some((Phase::Authn, 1))),
            build("ns.default", None),
            build("ns.authz", Some((Phase::Authz, 900))),
        ]);
        let names: Vec<&str> = chain.iter().map(|f| &*f.name).collect();
        assert_eq!(
            names,
            ["ns.default", "ns.authn-low", "ns.authz", "ns.stats"]
        );
    }
}
