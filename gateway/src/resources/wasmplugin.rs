//! `WasmPlugin` (`extensions.higress.io/v1alpha1`): a proxy-wasm plugin, where to get its
//! module, where it runs in the filter chain, and its configuration, which is turned into
//! the JSON the plugin reads exactly as Higress's controller does
//! (`pkg/ingress/config/ingress_config.go` `convertIstioWasmPlugin`): `defaultConfig`
//! plus a `_rules_` array of `matchRules`, each with `_match_route_` (the `ingress`
//! entries), `_match_domain_` and `_match_service_`.
//!
//! These types are also the CRD's schema (`crds.rs`): their doc comments are its
//! descriptions. Where the parser is more lenient than the schema (a string the schema
//! limits to an enum), `#[schemars(with = ..)]` gives the schema type.
#![deny(missing_docs)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::schema::{any_object, default_of, no_default, AnyStatus};
use super::{from_yaml, FieldError, ObjectMeta};

/// A WasmPlugin object as read from a file or the API.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct WasmPlugin {
    /// Name and namespace: `<namespace>.<name>` is the plugin's name.
    pub metadata: ObjectMeta,
    /// The module, its place in the chain and its configuration.
    pub spec: WasmPluginSpec,
}

/// A WasmPlugin's `spec`: the module, its place in the chain, its configuration.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "extensions.higress.io",
    version = "v1alpha1",
    kind = "WasmPlugin",
    root = "WasmPluginResource",
    doc = "A proxy-wasm plugin: its module, its place in the filter chain and its configuration.",
    plural = "wasmplugins",
    namespaced,
    status = "AnyStatus",
    category = "higress-io",
    category = "extensions-higress-io"
)]
#[serde(rename_all = "camelCase", default)]
pub struct WasmPluginSpec {
    /// Where the module is: `file://` (absolute, or relative to the config directory),
    /// `http(s)://`, or an OCI image, `oci://<registry>/<repository>[:<tag>|@<digest>]`
    /// (the scheme may be left out, as Higress allows). An image whose name is one of the
    /// plugins the gateway implements natively (`key-auth`, ...) runs that. Required.
    #[schemars(with = "Option<String>", transform = no_default)]
    pub url: String,
    /// SHA-256, 64 hex digits: of the module for `file://` and `http(s)://`, of the
    /// image's manifest for an OCI image (an `@sha256:` digest in `url` stands in when
    /// unset). Default: not checked.
    pub sha256: Option<String>,
    /// When to pull an OCI image: `IfNotPresent` uses the image pulled before, `Always`
    /// asks the registry (the cached image only when it cannot be reached);
    /// `UNSPECIFIED_POLICY` is `IfNotPresent`, `Always` for the tag `latest`.
    #[schemars(with = "PullPolicy", transform = default_of::<PullPolicy>)]
    pub image_pull_policy: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret in the plugin's namespace with the OCI
    /// registry's pull credentials. Default: none (anonymous pulls).
    pub image_pull_secret: Option<String>,
    /// PEM public key that signed OCI images are verified with. Not enforced.
    pub verification_key: Option<String>,
    /// Istio's raw plugin configuration: when set, the plugin reads it as given and
    /// `defaultConfig` and `matchRules` are ignored. Default: none.
    #[schemars(schema_with = "any_object")]
    pub plugin_config: Option<Value>,
    /// The plugin's root id (Envoy's `root_id`), which a module holding several plugins
    /// picks one by. Default: empty.
    pub plugin_name: Option<String>,
    /// Where in the filter chain the plugin runs: `AUTHN`, then `AUTHZ`, then `STATS`,
    /// then `UNSPECIFIED_PHASE` (the default), just before the router.
    #[schemars(with = "Phase", transform = default_of::<Phase>)]
    pub phase: Option<Phase>,
    /// Order within a phase: higher runs first (response callbacks in reverse), ties by
    /// name. Default: 0.
    pub priority: Option<i32>,
    /// What a plugin's failure (a trap, the callback deadline, the memory limit) does to
    /// the request: `FAIL_CLOSE` (the default) answers 503, `FAIL_OPEN` skips the plugin
    /// for the rest of that request.
    #[schemars(with = "FailStrategy", transform = default_of::<FailStrategy>)]
    pub fail_strategy: Option<FailStrategy>,
    /// The plugin VM's environment (Istio's `vmConfig`). Default: empty.
    pub vm_config: Option<VmConfig>,
    /// Configuration for requests no rule matches (an object): the top level of the JSON
    /// the plugin reads. Default: `{}`.
    #[schemars(schema_with = "any_object")]
    pub default_config: Option<Value>,
    /// `true`: no default configuration, so the plugin acts only where a rule matches
    /// (and, without rules, nowhere). Default: false.
    pub default_config_disable: Option<bool>,
    /// Configurations for some routes, domains or services, in order (the plugin's SDK
    /// takes the first that matches); they become `_rules_`. Default: none.
    #[schemars(with = "Option<Vec<MatchRule>>", transform = no_default)]
    pub match_rules: Vec<MatchRule>,
}

/// A configuration that applies where any of its conditions matches. At least one of
/// `ingress`, `domain` and `service` is required.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MatchRule {
    /// Routes, by name: the Ingress's name in the gateway's namespace, else
    /// `<namespace>/<name>` (`_match_route_`).
    #[schemars(with = "Option<Vec<String>>", transform = no_default)]
    pub ingress: Vec<String>,
    /// Request hosts, port stripped: exact, `*.suffix` or `prefix*` (`_match_domain_`).
    #[schemars(with = "Option<Vec<String>>", transform = no_default)]
    pub domain: Vec<String>,
    /// Upstream services, `host` or `host:port` (`backend.static`,
    /// `web.default.svc.cluster.local:80`) (`_match_service_`).
    #[schemars(with = "Option<Vec<String>>", transform = no_default)]
    pub service: Vec<String>,
    /// The plugin's configuration where the rule matches (an object). Default: `{}`.
    #[schemars(schema_with = "any_object")]
    pub config: Option<Value>,
    /// `true`: the rule is left out. Default: false.
    pub config_disable: Option<bool>,
    /// `HTTP` (default) or `GRPC`. Not enforced.
    #[schemars(with = "RouteType", transform = default_of::<RouteType>)]
    pub route_type: Option<String>,
}

/// Istio's `vmConfig`: the environment of the plugin's VM (WASI `environ`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default)]
pub struct VmConfig {
    /// Variables set in the VM, and nothing else of the gateway's environment. Default:
    /// none.
    pub env: Vec<EnvVar>,
}

/// One variable of the VM's environment.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// The variable's name: not empty, without `=` or NUL. Required.
    pub name: String,
    /// `INLINE` (the default): `value` as given; `HOST`: the gateway process's own
    /// variable of that name, left out when it has none.
    #[serde(default)]
    pub value_from: EnvValueSource,
    /// The value, for `INLINE` (ignored for `HOST`). Default: empty.
    #[serde(default)]
    pub value: Option<String>,
}

/// Where a VM variable's value comes from.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
pub enum EnvValueSource {
    /// `value` as given (the default).
    #[default]
    #[serde(rename = "INLINE")]
    Inline,
    /// The gateway process's own variable of that name; left out when it has none.
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
    /// First: where authentication plugins go.
    #[serde(rename = "AUTHN")]
    Authn,
    /// After AUTHN: where authorization plugins go.
    #[serde(rename = "AUTHZ")]
    Authz,
    /// After AUTHZ: where stats plugins go.
    #[serde(rename = "STATS")]
    Stats,
    /// Last, just before the router (the default).
    #[default]
    #[serde(rename = "UNSPECIFIED_PHASE")]
    Unspecified,
}

/// What a plugin's failure (a trap, the callback deadline, the memory limit) does to the
/// request; either way the VM is rebuilt for the next request.
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

/// Schema of `imagePullPolicy`, which the parser keeps as a plain string.
#[derive(Default, Serialize, JsonSchema)]
pub enum PullPolicy {
    /// `IfNotPresent`, or `Always` for an image tagged `latest` (the default).
    #[default]
    #[serde(rename = "UNSPECIFIED_POLICY")]
    Unspecified,
    /// Pull only an image not pulled before.
    IfNotPresent,
    /// Pull on every change of the plugin.
    Always,
}

/// Schema of a rule's `routeType`, which the parser keeps as a plain string.
#[derive(Default, Serialize, JsonSchema)]
pub enum RouteType {
    /// HTTP routes (the default).
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    /// gRPC routes.
    #[serde(rename = "GRPC")]
    Grpc,
}

/// Where a module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleSource {
    /// An absolute path, or one relative to the config directory.
    File(String),
    /// An `http://` or `https://` URL to download.
    Http(String),
    /// An OCI image: `oci://<registry>/<repository>[:<tag>|@<digest>]`, or the same
    /// without a scheme (Higress's default); held without the `oci://`.
    Oci(String),
}

impl ModuleSource {
    /// The plugin an OCI image names: the last path segment before `:` or `@`
    /// (`oci://r.example/plugins/key-auth:1.0.0` -> `key-auth`). `None` for other sources.
    pub fn oci_plugin_name(&self) -> Option<&str> {
        let ModuleSource::Oci(image) = self else {
            return None;
        };
        let no_digest = image.split('@').next().unwrap_or(image);
        let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
        Some(last.split(':').next().unwrap_or(last))
    }
}

impl WasmPlugin {
    /// Parse and validate a WasmPlugin; the error names the field at fault.
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
        if let Some(image) = url
            .strip_prefix("oci://")
            .or((!url.contains("://")).then_some(url))
        {
            if image.is_empty() || !image.contains('/') {
                return Err(err(format!(
                    "{url:?} is not an OCI image reference: expected oci://<registry>/<repository>[:<tag>|@sha256:<digest>]"
                )));
            }
            return Ok(ModuleSource::Oci(image.to_string()));
        }
        Err(err(format!(
            "unsupported scheme in {url:?}: use file:// or http(s)://"
        )))
    }

    /// `spec.phase`, `UNSPECIFIED_PHASE` when unset.
    pub fn phase(&self) -> Phase {
        self.spec.phase.unwrap_or_default()
    }

    /// `spec.priority`, 0 when unset.
    pub fn priority(&self) -> i32 {
        self.spec.priority.unwrap_or(0)
    }

    /// Whether `spec.failStrategy` is `FAIL_OPEN`.
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
    fn oci_images_name_their_plugin() {
        for (url, name) in [
            (
                "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-auth:1.0.0",
                "key-auth",
            ),
            (
                "higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/request-block:2.0.0",
                "request-block",
            ),
            (
                "oci://127.0.0.1:5000/p/key-rate-limit@sha256:0123",
                "key-rate-limit",
            ),
            (
                "oci://127.0.0.1:5000/zwj_test/chatgpt-proxy",
                "chatgpt-proxy",
            ),
        ] {
            let p = plugin(&format!("  url: {url}\n")).unwrap();
            assert_eq!(p.source().unwrap().oci_plugin_name(), Some(name), "{url}");
        }
        let p = plugin("  url: file:///plugins/key-auth.wasm\n").unwrap();
        assert_eq!(p.source().unwrap().oci_plugin_name(), None);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let e = plugin("  url: oci://key-auth\n").unwrap_err();
        assert_eq!(e.path, "spec.url");
        assert!(e.message.contains("OCI image reference"), "{e}");
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
