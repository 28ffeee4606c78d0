//! `WasmPlugin` (`extensions.higress.io/v1alpha1`): a proxy-wasm plugin, where to get its
//! module, where it runs in the filter chain, and its configuration, which is turned into
//! the JSON the plugin reads exactly as Higress's controller does
//! (`pkg/ingress/config/ingress_config.go` `convertIstioWasmPlugin`): `defaultConfig`
//! plus a `_rules_` array of `matchRules`, each with `_match_route_` (the `ingress`
//! entries), `_match_domain_` and `_match_service_`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{from_yaml, FieldError, ObjectMeta};

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct WasmPlugin {
    pub metadata: ObjectMeta,
    pub spec: WasmPluginSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WasmPluginSpec {
    pub url: String,
    pub sha256: Option<String>,
    pub image_pull_policy: Option<String>,
    pub image_pull_secret: Option<String>,
    pub verification_key: Option<String>,
    /// Istio's raw config: when set, `defaultConfig` and `matchRules` are ignored.
    pub plugin_config: Option<Value>,
    /// The plugin's root id.
    pub plugin_name: Option<String>,
    pub phase: Option<Phase>,
    pub priority: Option<i32>,
    pub fail_strategy: Option<FailStrategy>,
    pub vm_config: Option<VmConfig>,
    pub default_config: Option<Value>,
    pub default_config_disable: Option<bool>,
    pub match_rules: Vec<MatchRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MatchRule {
    pub ingress: Vec<String>,
    pub domain: Vec<String>,
    pub service: Vec<String>,
    pub config: Option<Value>,
    pub config_disable: Option<bool>,
    pub route_type: Option<String>,
}

// These types also give the CRD its schema (`crds.rs`).
/// Istio's `vmConfig`: the environment of the plugin's VM (WASI `environ`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default)]
pub struct VmConfig {
    pub env: Vec<EnvVar>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value_from: EnvValueSource,
    #[serde(default)]
    pub value: Option<String>,
}

/// `INLINE` (the default): `value` as given; `HOST`: the gateway process's own variable
/// of that name.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
pub enum EnvValueSource {
    #[default]
    #[serde(rename = "INLINE")]
    Inline,
    #[serde(rename = "HOST")]
    Host,
}

/// Where in the chain a plugin runs: AUTHN, then AUTHZ, then STATS, then unspecified
/// (just before the router).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
)]
pub enum Phase {
    #[serde(rename = "AUTHN")]
    Authn,
    #[serde(rename = "AUTHZ")]
    Authz,
    #[serde(rename = "STATS")]
    Stats,
    #[default]
    #[serde(rename = "UNSPECIFIED_PHASE")]
    Unspecified,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
pub enum FailStrategy {
    /// A failing plugin fails the request (503), as Envoy's fail-closed.
    #[default]
    #[serde(rename = "FAIL_CLOSE")]
    FailClose,
    /// A failing plugin is skipped for the request.
    #[serde(rename = "FAIL_OPEN")]
    FailOpen,
}

/// Where a module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleSource {
    /// An absolute path, or one relative to the config directory.
    File(String),
    Http(String),
}

impl WasmPlugin {
    pub fn parse(bytes: &[u8]) -> Result<WasmPlugin, FieldError> {
        let p: WasmPlugin = from_yaml(bytes)?;
        p.source()?;
        if let Some(h) = &p.spec.sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FieldError::new(
                    "spec.sha256",
                    format!("expected 64 hex digits, got {h:?}"),
                ));
            }
        }
        p.plugin_config()?;
        for (i, e) in p.vm_env_spec().iter().enumerate() {
            if e.name.is_empty() || e.name.contains('=') || e.name.contains('\0') {
                return Err(FieldError::new(
                    format!("spec.vmConfig.env[{i}].name"),
                    format!("{:?} is not a variable name", e.name),
                ));
            }
        }
        Ok(p)
    }

    fn vm_env_spec(&self) -> &[EnvVar] {
        self.spec.vm_config.as_ref().map_or(&[], |v| &v.env)
    }

    /// The VM's environment, `HOST` values read from this process (a variable it does
    /// not have is left out, as Envoy does).
    pub fn vm_env(&self) -> Vec<(String, String)> {
        self.vm_env_spec()
            .iter()
            .filter_map(|e| match e.value_from {
                EnvValueSource::Inline => {
                    Some((e.name.clone(), e.value.clone().unwrap_or_default()))
                }
                EnvValueSource::Host => std::env::var(&e.name).ok().map(|v| (e.name.clone(), v)),
            })
            .collect()
    }

    /// The module's source, from `spec.url`.
    pub fn source(&self) -> Result<ModuleSource, FieldError> {
        let url = self.spec.url.trim();
        let err = |m: String| FieldError::new("spec.url", m);
        if url.is_empty() {
            return Err(err("is required".into()));
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(err("file:// needs a path".into()));
            }
            return Ok(ModuleSource::File(path.to_string()));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(ModuleSource::Http(url.to_string()));
        }
        if url.starts_with("oci://") || !url.contains("://") {
            return Err(err(format!(
                "{url:?} is an OCI image (oci://, Higress's default scheme): pulling OCI images is not supported yet; use file:// or http(s):// with sha256"
            )));
        }
        Err(err(format!(
            "unsupported scheme in {url:?}: use file:// or http(s)://"
        )))
    }

    pub fn phase(&self) -> Phase {
        self.spec.phase.unwrap_or_default()
    }

    pub fn priority(&self) -> i32 {
        self.spec.priority.unwrap_or(0)
    }

    pub fn fail_open(&self) -> bool {
        self.spec.fail_strategy == Some(FailStrategy::FailOpen)
    }

    /// `<namespace>.<name>`: what the `plugin_name` property returns (Istio's naming).
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.metadata.namespace, self.metadata.name)
    }

    /// The plugin's root id: `pluginName`, else empty.
    pub fn root_id(&self) -> String {
        self.spec.plugin_name.clone().unwrap_or_default()
    }

    /// The configuration the plugin reads, as Higress builds it; `None` when the plugin is
    /// disabled (`defaultConfigDisable` and no valid rule).
    pub fn plugin_config(&self) -> Result<Option<Value>, FieldError> {
        if let Some(raw) = &self.spec.plugin_config {
            return Ok(Some(raw.clone()));
        }
        let disabled = self.spec.default_config_disable == Some(true);
        let mut config = match (&self.spec.default_config, disabled) {
            (_, true) | (None, false) => Map::new(),
            (Some(Value::Object(m)), false) => m.clone(),
            (Some(Value::Null), false) => Map::new(),
            (Some(_), false) => {
                return Err(FieldError::new("spec.defaultConfig", "must be an object"))
            }
        };
        let mut rules = Vec::new();
        for (i, r) in self.spec.match_rules.iter().enumerate() {
            let at = format!("spec.matchRules[{i}]");
            if r.config_disable == Some(true) {
                continue;
            }
            if r.ingress.is_empty() && r.domain.is_empty() && r.service.is_empty() {
                return Err(FieldError::new(
                    at,
                    "invalid match rule has no match condition (ingress, domain or service)",
                ));
            }
            let mut rule = match &r.config {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => {
                    return Err(FieldError::new(format!("{at}.config"), "must be an object"))
                }
            };
            let list = |v: &[String]| Value::from(v.to_vec());
            if !r.ingress.is_empty() {
                rule.insert("_match_route_".into(), list(&r.ingress));
            }
            if !r.domain.is_empty() {
                rule.insert("_match_domain_".into(), list(&r.domain));
            }
            if !r.service.is_empty() {
                rule.insert("_match_service_".into(), list(&r.service));
            }
            rules.push(Value::Object(rule));
        }
        if rules.is_empty() && disabled {
            return Ok(None);
        }
        if !rules.is_empty() {
            config.insert("_rules_".into(), Value::Array(rules));
        }
        Ok(Some(Value::Object(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(spec: &str) -> Result<WasmPlugin, FieldError> {
        WasmPlugin::parse(format!("apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: p, namespace: higress-system}}\nspec:\n{spec}").as_bytes())
    }

    #[test]
    fn rules_become_higress_match_keys() {
        let p = plugin(
            "  url: file:///plugins/t.wasm\n  phase: AUTHN\n  priority: 310\n  failStrategy: FAIL_OPEN\n  defaultConfig: {a: 1}\n  matchRules:\n  - ingress: [default/foo]\n    config: {b: 2}\n  - domain: [\"*.example.com\"]\n    service: [s.dns]\n    config: {c: 3}\n  - ingress: [off]\n    configDisable: true\n",
        )
        .unwrap();
        assert_eq!(p.phase(), Phase::Authn);
        assert_eq!(p.priority(), 310);
        assert!(p.fail_open());
        assert_eq!(
            p.source().unwrap(),
            ModuleSource::File("/plugins/t.wasm".into())
        );
        assert_eq!(
            p.plugin_config().unwrap().unwrap(),
            serde_json::json!({
                "a": 1,
                "_rules_": [
                    {"b": 2, "_match_route_": ["default/foo"]},
                    {"c": 3, "_match_domain_": ["*.example.com"], "_match_service_": ["s.dns"]},
                ]
            })
        );
    }

    #[test]
    fn disabled_defaults_and_raw_plugin_config() {
        let p = plugin("  url: http://127.0.0.1/p.wasm\n  defaultConfig: {a: 1}\n  defaultConfigDisable: true\n  matchRules:\n  - domain: [a.com]\n    config: {x: 1}\n").unwrap();
        assert_eq!(
            p.plugin_config().unwrap().unwrap(),
            serde_json::json!({"_rules_": [{"x": 1, "_match_domain_": ["a.com"]}]})
        );
        let p = plugin("  url: http://127.0.0.1/p.wasm\n  defaultConfigDisable: true\n").unwrap();
        assert_eq!(p.plugin_config().unwrap(), None);
        let p = plugin("  url: http://127.0.0.1/p.wasm\n  pluginConfig: {raw: true}\n  defaultConfig: {a: 1}\n").unwrap();
        assert_eq!(
            p.plugin_config().unwrap().unwrap(),
            serde_json::json!({"raw": true})
        );
        let p = plugin("  url: http://127.0.0.1/p.wasm\n").unwrap();
        assert_eq!(p.plugin_config().unwrap().unwrap(), serde_json::json!({}));
        assert_eq!(p.phase(), Phase::Unspecified);
        assert!(!p.fail_open());
        assert_eq!(p.full_name(), "higress-system.p");
    }

    #[test]
    fn bad_specs_name_the_field() {
        let e =
            plugin("  url: oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/x:1.0.0\n")
                .unwrap_err();
        assert_eq!(e.path, "spec.url");
        assert!(e.message.contains("use file:// or http(s)://"), "{e}");
        let e = plugin("  url: higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/x:1.0.0\n")
            .unwrap_err();
        assert!(e.message.contains("OCI"), "{e}");
        let e = plugin("  url: ftp://x/y.wasm\n").unwrap_err();
        assert_eq!(e.path, "spec.url");
        let e = plugin("  url: file:///x.wasm\n  sha256: abc\n").unwrap_err();
        assert_eq!(e.path, "spec.sha256");
        let e = plugin("  url: file:///x.wasm\n  phase: SOMEWHERE\n").unwrap_err();
        assert_eq!(e.path, "spec.phase");
        let e = plugin("  url: file:///x.wasm\n  matchRules:\n  - config: {a: 1}\n").unwrap_err();
        assert_eq!(e.path, "spec.matchRules[0]");
        assert!(e.message.contains("no match condition"), "{e}");
        let e = plugin("  url: file:///x.wasm\n  defaultConfig: [1]\n").unwrap_err();
        assert_eq!(e.path, "spec.defaultConfig");
    }
}
