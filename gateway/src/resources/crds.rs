//! The custom resources the gateway reads, typed for their CRDs: McpBridge
//! (`networking.higress.io/v1`) and WasmPlugin (`extensions.higress.io/v1alpha1`), with the
//! fields of Higress's `api/networking/v1/mcp_bridge.proto` and
//! `api/extensions/v1alpha1/wasmplugin.proto`. `gateway crds` prints the CRDs made from
//! these types (kube derive + schemars); `manifests/base/crds.yaml` is that output.
//!
//! The watchers do not deserialize into these types: they read objects as JSON and hand
//! them to the same parsers as files (`mcpbridge.rs`, `wasmplugin.rs`), so one bad object
//! is rejected alone instead of failing a whole list.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wasmplugin::{FailStrategy, Phase, VmConfig};

/// Free-form JSON kept as given (protobuf `Struct`).
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Whatever a controller writes; the gateway writes none.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(schema_with = "any_object")]
pub struct AnyStatus(pub Value);

#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "networking.higress.io",
    version = "v1",
    kind = "McpBridge",
    root = "McpBridgeResource",
    doc = "Service registries (only the one named `default`, in the gateway's namespace, is used).",
    plural = "mcpbridges",
    namespaced,
    status = "AnyStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct McpBridgeSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<RegistryConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<ProxyConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryConfig {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["nacos", "nacos2", "nacos3", "zookeeper", "consul", "eureka", "static", "dns"]))]
    pub kind: String,
    pub name: Option<String>,
    pub domain: String,
    #[schemars(range(max = 65535))]
    pub port: u32,
    pub protocol: Option<String>,
    pub sni: Option<String>,
    pub nacos_address_server: Option<String>,
    pub nacos_access_key: Option<String>,
    pub nacos_secret_key: Option<String>,
    pub nacos_namespace_id: Option<String>,
    pub nacos_namespace: Option<String>,
    pub nacos_groups: Option<Vec<String>>,
    pub nacos_refresh_interval: Option<i64>,
    pub consul_namespace: Option<String>,
    pub consul_datacenter: Option<String>,
    pub consul_service_tag: Option<String>,
    pub consul_refresh_interval: Option<i64>,
    pub zk_services_path: Option<Vec<String>>,
    pub auth_secret_name: Option<String>,
    pub mcp_server_export_domains: Option<Vec<String>>,
    pub mcp_server_base_url: Option<String>,
    #[serde(rename = "enableMCPServer")]
    pub enable_mcp_server: Option<bool>,
    pub enable_scope_mcp_servers: Option<bool>,
    pub allow_mcp_servers: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub metadata: Option<Value>,
    pub proxy_name: Option<String>,
    pub vport: Option<RegistryVport>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct RegistryVport {
    pub default: Option<u32>,
    pub services: Option<Vec<VportService>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct VportService {
    pub name: Option<String>,
    pub value: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub server_address: Option<String>,
    pub server_port: Option<u32>,
    pub listener_port: Option<u32>,
    pub connect_timeout: Option<u32>,
}

#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
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
#[serde(rename_all = "camelCase")]
pub struct WasmPluginSpec {
    /// `oci://` (not supported by this gateway yet), `file://` or `http(s)://`.
    pub url: Option<String>,
    pub sha256: Option<String>,
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    pub image_pull_secret: Option<String>,
    pub verification_key: Option<String>,
    pub plugin_name: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub plugin_config: Option<Value>,
    #[serde(default)]
    pub phase: Phase,
    pub priority: Option<i32>,
    #[serde(default)]
    pub fail_strategy: FailStrategy,
    pub vm_config: Option<VmConfig>,
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub default_config: Option<Value>,
    pub default_config_disable: Option<bool>,
    pub match_rules: Option<Vec<MatchRule>>,
}

// Not `Option`: a nullable enum would list `null` among its values.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub enum PullPolicy {
    #[default]
    #[serde(rename = "UNSPECIFIED_POLICY")]
    Unspecified,
    IfNotPresent,
    Always,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchRule {
    pub ingress: Option<Vec<String>>,
    pub domain: Option<Vec<String>>,
    pub service: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub config: Option<Value>,
    pub config_disable: Option<bool>,
    #[serde(default)]
    pub route_type: RouteType,
}

// Not `Option`: a nullable enum would list `null` among its values.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub enum RouteType {
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "GRPC")]
    Grpc,
}

/// Both CRDs.
pub fn definitions() -> [CustomResourceDefinition; 2] {
    [McpBridgeResource::crd(), WasmPluginResource::crd()]
}

/// The CRDs as one YAML stream, as `manifests/base/crds.yaml` holds them.
pub fn yaml() -> String {
    let mut out = String::from(
        "# Generated by `gateway crds` from gateway/src/resources/crds.rs; do not edit.\n",
    );
    for (i, crd) in definitions().iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let mut v = serde_json::to_value(crd).expect("a CRD serializes");
        whole_numbers(&mut v);
        out.push_str(&serde_yaml::to_string(&v).expect("a CRD serializes"));
    }
    out
}

/// `minimum: 0` rather than `0.0` (the schema's bounds are `f64`), as kubectl and
/// kustomize write them.
fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15) {
                if n.is_f64() {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(whole_numbers),
        Value::Object(m) => m.values_mut().for_each(whole_numbers),
        _ => {}
    }
}
