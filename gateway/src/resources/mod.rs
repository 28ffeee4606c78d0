//! Typed, Kubernetes-shaped objects the gateway reads: ConfigMaps (with the
//! `higress-config` global config and the console's `domain-*` ConfigMaps), Ingresses,
//! McpBridges, Secrets (TLS certificates), WasmPlugins, Services and their endpoints
//! (EndpointSlices, or `v1` Endpoints in a directory), Knative's KIngresses and Istio's
//! Gateways, VirtualServices and DestinationRules. Parsing and validation
//! report the field path of the problem so users can find it in their YAML.

pub mod configmap;
pub mod crds;
pub mod domain;
pub mod endpoints;
pub mod higress_config;
pub mod ingress;
pub mod istio;
pub mod kingress;
pub mod mcpbridge;
pub mod meta;
pub mod redact;
pub mod schema;
pub mod secret;
pub mod service;
pub mod wasmplugin;

use std::fmt;

pub use crate::error::FieldError;
pub use configmap::ConfigMap;
pub use endpoints::{EndpointSlice, Endpoints};
pub use higress_config::HigressConfig;
pub use ingress::Ingress;
pub use istio::{DestinationRule, Gateway as IstioGateway, VirtualService};
pub use kingress::KIngress;
pub use mcpbridge::McpBridge;
pub use meta::ObjectMeta;
pub use secret::Secret;
pub use service::Service;
pub use wasmplugin::WasmPlugin;

/// Namespace every object lives in when read from a directory, as Higress standalone does.
pub const SYSTEM_NAMESPACE: &str = "higress-system";

/// The kinds of object the gateway understands, named by their folder in the standalone
/// layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ConfigMap,
    Ingress,
    McpBridge,
    Secret,
    WasmPlugin,
    Service,
    Endpoints,
    EndpointSlice,
    /// Knative's `networking.internal.knative.dev` Ingress.
    KIngress,
    /// `networking.istio.io` Gateway.
    IstioGateway,
    VirtualService,
    DestinationRule,
}

impl Kind {
    /// The folder of this kind in a Higress standalone config directory.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmaps",
            Kind::Ingress => "ingresses",
            Kind::McpBridge => "mcpbridges",
            Kind::Secret => "secrets",
            Kind::WasmPlugin => "wasmplugins",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslices",
            Kind::KIngress => "kingresses",
            Kind::IstioGateway => "gateways",
            Kind::VirtualService => "virtualservices",
            Kind::DestinationRule => "destinationrules",
        }
    }

    /// Whether objects of this kind keep their own `metadata.namespace` in a config
    /// directory (Knative's objects live in their service's namespace); the others are
    /// all in [`SYSTEM_NAMESPACE`], as Higress standalone reads them.
    pub fn keeps_namespace(self) -> bool {
        matches!(
            self,
            Kind::KIngress
                | Kind::Service
                | Kind::Endpoints
                | Kind::EndpointSlice
                | Kind::Secret
                | Kind::IstioGateway
                | Kind::VirtualService
                | Kind::DestinationRule
        )
    }

    pub const ALL: [Kind; 12] = [
        Kind::ConfigMap,
        Kind::Ingress,
        Kind::McpBridge,
        Kind::Secret,
        Kind::WasmPlugin,
        Kind::Service,
        Kind::Endpoints,
        Kind::EndpointSlice,
        Kind::KIngress,
        Kind::IstioGateway,
        Kind::VirtualService,
        Kind::DestinationRule,
    ];
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Ingress => "Ingress",
            Kind::McpBridge => "McpBridge",
            Kind::Secret => "Secret",
            Kind::WasmPlugin => "WasmPlugin",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::KIngress => "KIngress",
            Kind::IstioGateway => "Gateway",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
        })
    }
}

/// Identity of an object: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One parsed and validated object.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Resource {
    /// Boxed: the parsed `higress-config` makes ConfigMaps much larger than the rest.
    ConfigMap(Box<ConfigMap>),
    Ingress(Ingress),
    McpBridge(McpBridge),
    Secret(Secret),
    WasmPlugin(WasmPlugin),
    Service(Service),
    Endpoints(Endpoints),
    EndpointSlice(EndpointSlice),
    KIngress(KIngress),
    IstioGateway(IstioGateway),
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
}

impl Resource {
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Resource::ConfigMap(o) => &o.metadata,
            Resource::Ingress(o) => &o.metadata,
            Resource::McpBridge(o) => &o.metadata,
            Resource::Secret(o) => &o.metadata,
            Resource::WasmPlugin(o) => &o.metadata,
            Resource::Service(o) => &o.metadata,
            Resource::Endpoints(o) => &o.metadata,
            Resource::EndpointSlice(o) => &o.metadata,
            Resource::KIngress(o) => &o.metadata,
            Resource::IstioGateway(o) => &o.metadata,
            Resource::VirtualService(o) => &o.metadata,
            Resource::DestinationRule(o) => &o.metadata,
        }
    }

    /// Parse and validate one object of `kind` from YAML. `name` and `namespace`
    /// override what the document says (standalone mode derives them from the path).
    pub fn parse(
        kind: Kind,
        bytes: &[u8],
        name: &str,
        namespace: &str,
    ) -> Result<Resource, FieldError> {
        let mut res = match kind {
            Kind::ConfigMap => Resource::ConfigMap(Box::new(ConfigMap::parse(bytes, name)?)),
            Kind::Ingress => Resource::Ingress(Ingress::parse(bytes)?),
            Kind::McpBridge => Resource::McpBridge(McpBridge::parse(bytes)?),
            Kind::Secret => Resource::Secret(Secret::parse(bytes)?),
            Kind::WasmPlugin => Resource::WasmPlugin(WasmPlugin::parse(bytes)?),
            Kind::Service => Resource::Service(Service::parse(bytes)?),
            Kind::Endpoints => Resource::Endpoints(Endpoints::parse(bytes)?),
            Kind::EndpointSlice => Resource::EndpointSlice(EndpointSlice::parse(bytes)?),
            Kind::KIngress => Resource::KIngress(KIngress::parse(bytes)?),
            Kind::IstioGateway => Resource::IstioGateway(IstioGateway::parse(bytes)?),
            Kind::VirtualService => Resource::VirtualService(VirtualService::parse(bytes)?),
            Kind::DestinationRule => Resource::DestinationRule(DestinationRule::parse(bytes)?),
        };
        let meta = match &mut res {
            Resource::ConfigMap(o) => &mut o.metadata,
            Resource::Ingress(o) => &mut o.metadata,
            Resource::McpBridge(o) => &mut o.metadata,
            Resource::Secret(o) => &mut o.metadata,
            Resource::WasmPlugin(o) => &mut o.metadata,
            Resource::Service(o) => &mut o.metadata,
            Resource::Endpoints(o) => &mut o.metadata,
            Resource::EndpointSlice(o) => &mut o.metadata,
            Resource::KIngress(o) => &mut o.metadata,
            Resource::IstioGateway(o) => &mut o.metadata,
            Resource::VirtualService(o) => &mut o.metadata,
            Resource::DestinationRule(o) => &mut o.metadata,
        };
        meta.name = name.to_string();
        meta.namespace = namespace.to_string();
        Ok(res)
    }
}

/// Deserialize YAML into `T`, reporting the field path of the first error.
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    let de = serde_yaml::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = field_path(e.path());
        let serde_path = e.path().to_string();
        let inner = e.into_inner();
        let mut msg = inner.to_string();
        // serde_yaml may lead with the path itself; we report it separately.
        if let Some(rest) = msg.strip_prefix(&format!("{serde_path}: ")) {
            msg = rest.to_string();
        }
        // It appends " at line N column M"; keep it, it helps find the spot.
        if msg.is_empty() {
            msg = "invalid document".into();
        }
        // The typed parse stops at the first value it cannot take, which in a document
        // that is not YAML at all may come before the syntax error: say which it is.
        if let Err(syntax) = serde_yaml::from_slice::<serde::de::IgnoredAny>(bytes) {
            return FieldError::new(path, format!("invalid YAML: {syntax}"));
        }
        FieldError::new(path, plain_types(&msg))
    })
}

/// A field path as the gateway's checks write them: `spec.rules[0].host`, a key that is
/// not a plain name in brackets (`data["tls.crt"]`), and nothing past a key the parser
/// could not read (serde's `?`).
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                let plain = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if plain {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                } else {
                    out.push_str(&format!("[{key:?}]"));
                }
            }
            Segment::Unknown => break,
        }
    }
    out
}

/// serde's message with the Rust type names it expected said the way a YAML author
/// reads them (`expected struct Downstream` is a map, `expected u16` a port-sized
/// integer).
fn plain_types(msg: &str) -> String {
    const TYPES: [(&str, &str); 10] = [
        ("expected u8", "expected an integer within 0..255"),
        ("expected u16", "expected an integer within 0..65535"),
        ("expected u32", "expected an integer within 0..4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        (
            "expected i32",
            "expected an integer within -2147483648..2147483647",
        ),
        ("expected i64", "expected an integer"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a borrowed string", "expected a string"),
    ];
    let mut out = msg.to_string();
    if let Some(at) = out.find("expected struct ") {
        let rest = &out[at + "expected struct ".len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        out.replace_range(at..at + "expected struct ".len() + end, "expected a map");
    }
    for (from, to) in TYPES {
        // Whole words only: `expected u16` is not a prefix of `expected u160`.
        if let Some(at) = out.find(from) {
            let after = out[at + from.len()..].chars().next();
            if !after.is_some_and(|c| c.is_ascii_alphanumeric()) {
                out.replace_range(at..at + from.len(), to);
            }
        }
    }
    out
}
