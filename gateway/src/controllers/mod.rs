//! ConfigmapMgr and its item controllers, as Higress has them
//! (`pkg/ingress/kube/configmap`): each item validates its section of `higress-config`,
//! diffs old against new, and applies the new section as typed filter settings.
//!
//! The whole-config rule: if any item rejects a new `higress-config`, none of it applies
//! and every item keeps what it had.
//!
//! The settings they produce are runtime types of `model::filter_settings`, which the
//! data plane reads without importing this module.

mod global_option;
mod gzip;
mod tracing;

pub use global_option::GlobalOptionController;
pub use gzip::GzipController;
pub use tracing::TracingController;

use crate::model::filter_settings::FilterSettings;
use crate::resources::{FieldError, HigressConfig};

/// What an item decided about its section on a change (Higress's `Result` enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemResult {
    Nothing,
    Replace,
    Delete,
}

/// Higress's diff of one optional section: null → Delete, unchanged → Nothing.
fn diff_section<T: PartialEq>(old: &Option<T>, new: &Option<T>) -> ItemResult {
    match new {
        None => ItemResult::Delete,
        Some(_) if old == new => ItemResult::Nothing,
        Some(_) => ItemResult::Replace,
    }
}

/// Take the new section, or its defaults on Delete.
fn apply_section<T: Clone + Default>(current: &mut T, new: &Option<T>, result: ItemResult) {
    match result {
        ItemResult::Nothing => {}
        ItemResult::Delete => *current = T::default(),
        ItemResult::Replace => *current = new.clone().unwrap_or_default(),
    }
}

/// One section of `higress-config` and the filter settings it turns into.
pub trait ItemController: Send {
    /// Higress's item name (`global-option`, `tracing`, `gzip`).
    fn name(&self) -> &'static str;
    /// Check the item's section of a candidate config; errors carry the field path
    /// inside `data.higress`.
    fn validate(&self, config: &HigressConfig) -> Result<(), FieldError>;
    /// What changing from `old` to `new` means for this item.
    fn diff(&self, old: &HigressConfig, new: &HigressConfig) -> ItemResult;
    /// Take the new section (already validated); on `Delete` reset to defaults.
    fn apply(&mut self, new: &HigressConfig, result: ItemResult);
    /// Write the item's effective settings into the filter settings of the next snapshot.
    fn settings(&self, out: &mut FilterSettings);
    /// Effective settings for `/debug/configz`.
    fn describe(&self) -> serde_json::Value;
    /// Fields accepted for Higress compatibility that this gateway does not enforce.
    fn not_enforced(&self) -> Vec<String>;
}

/// Holds the current `higress-config` and the item controllers.
pub struct ConfigmapMgr {
    current: HigressConfig,
    items: Vec<Box<dyn ItemController>>,
}

impl Default for ConfigmapMgr {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigmapMgr {
    pub fn new() -> Self {
        ConfigmapMgr {
            current: HigressConfig::default(),
            // Higress's registration order.
            items: vec![
                Box::new(TracingController::default()),
                Box::new(GzipController::default()),
                Box::new(GlobalOptionController::default()),
            ],
        }
    }

    /// Validate `new` with every item; on the first error reject the whole config.
    pub fn validate(&self, new: &HigressConfig) -> Result<(), FieldError> {
        for item in &self.items {
            item.validate(new)?;
        }
        Ok(())
    }

    /// Apply a new `higress-config`. Returns the names of the items that changed, or the
    /// error that rejected the whole config (nothing applied then).
    pub fn update(&mut self, new: HigressConfig) -> Result<Vec<&'static str>, FieldError> {
        self.validate(&new)?;
        if new == self.current {
            return Ok(Vec::new());
        }
        let mut changed = Vec::new();
        for item in &mut self.items {
            let r = item.diff(&self.current, &new);
            if r != ItemResult::Nothing {
                item.apply(&new, r);
                changed.push(item.name());
            }
        }
        self.current = new;
        Ok(changed)
    }

    pub fn settings(&self) -> FilterSettings {
        let mut out = FilterSettings::default();
        for item in &self.items {
            item.settings(&mut out);
        }
        out
    }

    pub fn describe(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for item in &self.items {
            m.insert(item.name().to_string(), item.describe());
        }
        serde_json::Value::Object(m)
    }

    pub fn not_enforced(&self) -> Vec<String> {
        let mut out: Vec<String> = self.items.iter().flat_map(|i| i.not_enforced()).collect();
        if self.current.mcp_server.is_some() {
            out.push("higress-config: mcpServer (the MCP server is not built here)".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry::export::Provider;

    #[test]
    fn mcp_server_is_listed_as_not_enforced() {
        let mut mgr = ConfigmapMgr::new();
        assert!(mgr.not_enforced().iter().all(|n| !n.contains("mcpServer")));
        let cfg = HigressConfig::parse(b"mcpServer:\n  enable: true\n").unwrap();
        mgr.update(cfg).unwrap();
        assert!(
            mgr.not_enforced().iter().any(|n| n.contains("mcpServer")),
            "{:?}",
            mgr.not_enforced()
        );
    }

    #[test]
    fn invalid_config_changes_nothing() {
        let mut mgr = ConfigmapMgr::new();
        let ok = HigressConfig::parse(b"downstream:\n  idleTimeout: 7\n").unwrap();
        assert_eq!(mgr.update(ok).unwrap(), vec!["global-option"]);
        assert_eq!(mgr.settings().global.downstream_idle_timeout.as_secs(), 7);

        let bad =
            HigressConfig::parse(b"downstream:\n  idleTimeout: 9\n  maxRequestHeadersKb: 9000\n")
                .unwrap();
        let e = mgr.update(bad).unwrap_err();
        assert_eq!(e.path, "downstream.maxRequestHeadersKb");
        assert_eq!(mgr.settings().global.downstream_idle_timeout.as_secs(), 7);
    }

    #[test]
    fn tracing_and_gzip_sections_are_validated_with_paths() {
        let mgr = ConfigmapMgr::new();
        let cases = [
            ("tracing:\n  sampling: 101\n", "tracing.sampling"),
            ("tracing:\n  timeout: 0\n", "tracing.timeout"),
            ("tracing:\n  enable: false\n  zipkin:\n    service: z.dns\n", "tracing.zipkin.port"),
            ("tracing:\n  enable: true\n", "tracing"),
            (
                "tracing:\n  enable: true\n  zipkin: {service: a, port: 1}\n  skywalking: {service: b, port: 2}\n",
                "tracing",
            ),
            (
                "tracing:\n  zipkin: {service: z.dns, port: http}\n",
                "tracing.zipkin.port",
            ),
            ("gzip:\n  enable: false\n  windowBits: 8\n", "gzip.windowBits"),
            ("gzip:\n  memoryLevel: 10\n", "gzip.memoryLevel"),
            ("gzip:\n  compressionLevel: FAST\n", "gzip.compressionLevel"),
            ("gzip:\n  contentType: []\n", "gzip.contentType"),
        ];
        for (yaml, path) in cases {
            let c = HigressConfig::parse(yaml.as_bytes()).unwrap();
            assert_eq!(mgr.validate(&c).unwrap_err().path, path, "{yaml}");
        }
        let ok = HigressConfig::parse(
            b"tracing:\n  enable: true\n  sampling: 50\n  skywalking: {service: oap.static, port: 11800}\n",
        )
        .unwrap();
        assert!(mgr.validate(&ok).is_ok());
    }

    #[test]
    fn tracing_settings_follow_enable_and_provider() {
        let mut mgr = ConfigmapMgr::new();
        assert!(mgr.settings().tracing.is_none(), "off by default");
        let on = HigressConfig::parse(
            b"tracing:\n  enable: true\n  sampling: 25\n  timeout: 800\n  skywalking: {service: oap.static, port: 11800, access_token: tok}\n",
        )
        .unwrap();
        assert_eq!(mgr.update(on).unwrap(), vec!["tracing"]);
        let t = mgr.settings().tracing.unwrap();
        assert_eq!(t.sampling, 25.0);
        assert_eq!(t.timeout, std::time::Duration::from_millis(800));
        assert_eq!(t.collector.kind, Provider::SkyWalking);
        assert_eq!(
            (t.collector.service.as_str(), t.collector.port),
            ("oap.static", 11800)
        );
        assert_eq!(t.collector.access_token.as_deref(), Some("tok"));
        let otlp = HigressConfig::parse(
            b"tracing:\n  enable: true\n  opentelemetry: {service: otel.dns, port: 4318, protocol: http}\n",
        )
        .unwrap();
        mgr.update(otlp).unwrap();
        let t = mgr.settings().tracing.unwrap();
        assert_eq!(t.collector.kind, Provider::OpenTelemetry);
        assert!(t.collector.otlp_http);
        let off = HigressConfig::parse(
            b"tracing:\n  enable: false\n  zipkin: {service: z.dns, port: 9411}\n",
        )
        .unwrap();
        mgr.update(off).unwrap();
        assert!(mgr.settings().tracing.is_none());
    }

    #[test]
    fn same_config_is_nothing() {
        let mut mgr = ConfigmapMgr::new();
        assert!(mgr.update(HigressConfig::default()).unwrap().is_empty());
    }
}
