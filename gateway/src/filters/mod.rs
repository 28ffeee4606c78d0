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

pub mod rules;

use std::fmt;
use std::sync::Arc;

use pingora_http::{RequestHeader, ResponseHeader};
use serde_json::Value;
use telemetry::stats::{Counter, Family, Kind, Registry};

use crate::error::FieldError;
pub use rules::{MatchInput, RuleSet};

/// A reply a filter gives instead of the upstream's response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// Headers added to the reply (`content-type` and `content-length` are set from the
    /// body when absent).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a callback decided.
#[derive(Debug, PartialEq, Eq)]
pub enum FilterStatus {
    /// Go on with the next filter.
    Continue,
    /// Answer the request now; the filters after this one do not run.
    Reply(LocalReply),
}

/// The per-request side of a native filter. Callbacks are synchronous and see what
/// they may edit; a filter that has nothing to do in a phase keeps the default.
pub trait HttpFilter: Send + Sync + fmt::Debug {
    /// The request headers, after routing and before any upstream is chosen.
    fn on_request_headers(
        &self,
        _req: &mut RequestHeader,
        _input: &MatchInput<'_>,
    ) -> FilterStatus {
        FilterStatus::Continue
    }

    /// The response headers, from the upstream or a local reply, before they are sent;
    /// filters see them in reverse chain order.
    fn on_response_headers(&self, _resp: &mut ResponseHeader) -> FilterStatus {
        FilterStatus::Continue
    }
}

/// A kind of native filter: Higress's plugin name and how its configuration is built.
pub trait FilterFactory: Send + Sync {
    /// The plugin name users know (`key-auth`, `cors` ...).
    fn name(&self) -> &'static str;
    /// Phase and priority when the WasmPlugin object does not set them (Higress's own
    /// defaults for the plugin).
    fn default_order(&self) -> (crate::model::plugin_chain::Phase, i32);
    /// One configuration: the global one (`global` is `None`), or a rule's, which may
    /// inherit from the global filter. Errors name the field inside `config`.
    fn build(
        &self,
        config: &Value,
        global: Option<&Arc<dyn HttpFilter>>,
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
    ) -> Result<NativeFilter, FieldError> {
        let rules = RuleSet::parse(config, |c, global| factory.build(c, global))?;
        let (phase, priority) = order.unwrap_or_else(|| factory.default_order());
        Ok(NativeFilter {
            name,
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

/// The native filters this gateway has, by plugin name. Empty until the first native
/// plugin lands; the WasmPlugin translation asks it before loading a module.
pub const FACTORIES: &[&dyn FilterFactory] = &[];

/// The native implementation of plugin `name`, if the gateway has one.
pub fn factory(name: &str) -> Option<&'static dyn FilterFactory> {
    FACTORIES.iter().copied().find(|f| f.name() == name)
}
