//! Resources → the runtime types of `model/`: McpBridge registries and Services become
//! clusters, Ingresses (with their parsed annotations) a route table, `spec.tls`, domains
//! and Secrets the certificate store, WasmPlugins an ordered plugin chain, KIngresses and
//! Istio's VirtualServices more routes (on the gateway's listeners or the cluster-local
//! one). Pure functions
//! of their inputs, run in the config loop; the only place config becomes runtime types.

pub mod access;
pub mod canary;
pub mod certificates;
pub mod clusters;
pub mod cors;
pub mod destinations;
pub mod hosts;
pub mod istio;
pub mod kingress;
pub mod load_balance;
pub mod mirror;
pub mod plugin_chain;
pub mod regex_cache;
pub mod retry;
pub mod rewrite;
pub mod route_table;
pub mod services;
pub mod upstream_tls;
pub mod wasm_plugins;

use crate::model::Protocol;
use crate::resources::mcpbridge::RegistryProtocol;
use crate::resources::{Ingress, ObjectMeta, SYSTEM_NAMESPACE};

/// `<name>` in the gateway namespace, else `<namespace>/<name>` (Higress's
/// GenerateUniqueRouteName).
pub fn route_name(ing: &Ingress) -> String {
    unique_route_name(&ing.metadata)
}

/// [`route_name`] of any object (a KIngress's routes are named the same way).
pub fn unique_route_name(m: &ObjectMeta) -> String {
    if m.namespace == SYSTEM_NAMESPACE || m.namespace.is_empty() {
        m.name.clone()
    } else {
        format!("{}/{}", m.namespace, m.name)
    }
}

impl From<RegistryProtocol> for Protocol {
    fn from(p: RegistryProtocol) -> Protocol {
        match p {
            RegistryProtocol::Http => Protocol::Http,
            RegistryProtocol::Https => Protocol::Https,
            RegistryProtocol::Http2 => Protocol::Http2,
            RegistryProtocol::Grpc => Protocol::Grpc,
            RegistryProtocol::Grpcs => Protocol::Grpcs,
        }
    }
}
