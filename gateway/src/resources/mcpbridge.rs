//! McpBridge (`networking.higress.io/v1`): service registries. `static` and `dns`
//! registries become clusters here; the others are watched by `crate::registry`, whose
//! services become clusters as they are discovered.
//!
//! These types are also the CRD's schema (`crds.rs`): their doc comments are its
//! descriptions. Fields of Higress's schema that this gateway does not read are typed
//! [`NotRead`] (any value parses, none is kept) and given their schema type with
//! `#[schemars(with = ..)]`.
#![deny(missing_docs)]

use std::net::SocketAddr;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::schema::{any_object, no_default, AnyStatus};
use super::{from_yaml, FieldError, ObjectMeta};

/// Only the McpBridge with this name is used, as in Higress.
pub const DEFAULT_MCPBRIDGE: &str = "default";

/// A field of Higress's schema that this gateway accepts and does not read: any value
/// parses (as before the field was listed), and `Some` only records that it was given.
pub type NotRead = Option<IgnoredAny>;

/// An McpBridge object as read from a file or the API.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct McpBridge {
    /// Name and namespace; only `default` is used.
    pub metadata: ObjectMeta,
    /// The registries.
    pub spec: McpBridgeSpec,
}

/// An McpBridge's `spec`: its service registries.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
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
#[serde(default)]
pub struct McpBridgeSpec {
    /// Service registries; each `static` or `dns` one becomes the cluster
    /// `outbound|<port>||<name>.<type>`, each service another registry holds a cluster
    /// named as Higress names it. Default: none.
    #[schemars(transform = no_default)]
    pub registries: Vec<Registry>,
    /// Outbound proxies that registries can reach their services through (`proxyName`).
    /// Accepted, not enforced.
    #[serde(skip_serializing)]
    #[schemars(with = "Vec<ProxyConfig>")]
    pub proxies: NotRead,
}

/// One service registry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("required" = ["domain", "port", "type"]))]
pub struct Registry {
    /// Registry type: `static` and `dns` become one cluster each; `nacos` (the v1 HTTP
    /// API), `nacos2` and `nacos3` (Nacos 2's gRPC API), `zookeeper`, `consul` and `eureka`
    /// are watched and each of their services becomes a cluster. Required.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = KNOWN_TYPES), transform = no_default)]
    pub kind: String,
    /// Registry name: its services' host is `<name>.<type>` (`httpbin.dns`). Required
    /// here, though Higress's schema leaves it optional.
    #[schemars(with = "Option<String>", transform = no_default)]
    pub name: String,
    /// `static`: comma-separated `ip:port` / `[ipv6]:port` endpoints; `dns`:
    /// comma-separated host names of two labels at least, resolved every `--dns-refresh`;
    /// other types: the registry's own address. Required.
    #[schemars(transform = no_default)]
    pub domain: String,
    /// Port, 1 to 65535: `dns` endpoints are dialled at it and it names the cluster
    /// (`outbound|<port>||<host>`); for other types, the registry's port. Required.
    #[schemars(range(max = 65535), transform = no_default)]
    pub port: u32,
    /// Upstream protocol, case-insensitive: `http` (default), `https` (TLS), `http2`
    /// (h2c), `grpc` / `triple` / `tri` (h2c), `grpcs` (HTTP/2 over TLS); `tcp` and `dubbo`
    /// are accepted and served as `http`.
    pub protocol: Option<String>,
    /// TLS server name for `https` / `grpcs`. Default: for a `dns` registry with a single
    /// domain, that domain; else none.
    pub sni: Option<String>,
    /// Nacos address server (`nacos2`, `nacos3`): an endpoint that lists the Nacos
    /// servers, instead of `domain`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nacos_address_server: Option<String>,
    /// Nacos access key (`nacos2`, `nacos3`; Alibaba Cloud MSE). Default: none.
    #[serde(skip_serializing)]
    pub nacos_access_key: Option<String>,
    /// Nacos secret key (`nacos2`, `nacos3`). Default: none. Never shown.
    #[serde(skip_serializing)]
    pub nacos_secret_key: Option<String>,
    /// Nacos namespace id services are discovered in. Default: `public`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nacos_namespace_id: Option<String>,
    /// Nacos namespace as it appears in host names
    /// (`<service>.<group>.<namespace>.nacos`). Default: the namespace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nacos_namespace: Option<String>,
    /// Nacos groups whose services are discovered. Default: none, and then nothing is
    /// discovered, as in Higress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nacos_groups: Option<Vec<String>>,
    /// How often Nacos is polled for its services, in nanoseconds. Anything below 10 s,
    /// unset included, is raised to 10 s, as in Higress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nacos_refresh_interval: Option<i64>,
    /// Consul namespace. Accepted and not read, as in Higress.
    #[serde(skip_serializing)]
    #[schemars(with = "Option<String>")]
    pub consul_namespace: NotRead,
    /// Consul datacenter to discover in, and part of the host
    /// `<service>.<datacenter>.consul`. Default: the agent's own (empty in the host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consul_datacenter: Option<String>,
    /// Tag a Consul service must carry (compared case-insensitively) to be discovered.
    /// Default: none, every service is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consul_service_tag: Option<String>,
    /// How often Consul's service list is refreshed, in nanoseconds. Anything below 10 s,
    /// unset included, is raised to 10 s, as in Higress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consul_refresh_interval: Option<i64>,
    /// ZooKeeper roots scanned for Spring Cloud services besides `/services`; Dubbo
    /// providers are read under `/dubbo`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zk_services_path: Option<Vec<String>>,
    /// Secret in the gateway's namespace with the registry's credentials: keys
    /// `nacosUsername` / `nacosPassword` (Nacos), `consulToken` (Consul). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_secret_name: Option<String>,
    /// Domains the registry's MCP servers are exposed on (none: all). Not enforced.
    #[serde(skip_serializing)]
    #[schemars(with = "Option<Vec<String>>")]
    pub mcp_server_export_domains: NotRead,
    /// URL, or URL prefix, the registry's MCP servers are exposed at. Not enforced.
    #[serde(skip_serializing)]
    #[schemars(with = "Option<String>")]
    pub mcp_server_base_url: NotRead,
    /// Expose the registry's MCP servers (`nacos3`). Default false. Not enforced.
    #[serde(rename = "enableMCPServer", skip_serializing)]
    #[schemars(with = "Option<bool>")]
    pub enable_mcp_server: NotRead,
    /// Expose only the MCP servers `allowMcpServers` names. Not enforced.
    #[serde(skip_serializing)]
    #[schemars(with = "Option<bool>")]
    pub enable_scope_mcp_servers: NotRead,
    /// The MCP servers exposed when `enableScopeMcpServers` is set. Not enforced.
    #[serde(skip_serializing)]
    #[schemars(with = "Option<Vec<String>>")]
    pub allow_mcp_servers: NotRead,
    /// Free-form metadata for the registry's services. Not enforced.
    #[serde(skip_serializing)]
    #[schemars(schema_with = "any_object")]
    pub metadata: NotRead,
    /// Name of the `spec.proxies` entry the registry's services are reached through. Not
    /// enforced.
    #[serde(skip_serializing)]
    #[schemars(with = "Option<String>")]
    pub proxy_name: NotRead,
    /// Port given to discovered services (their cluster's port) instead of their first
    /// instance's. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vport: Option<RegistryVport>,
}

/// Port overrides for a registry's discovered services.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct RegistryVport {
    /// Port of every service without an entry in `services`. Default: none.
    pub default: Option<u32>,
    /// Ports of single services, by host. Default: none.
    pub services: Vec<VportService>,
}

/// The port of one discovered service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct VportService {
    /// The service's host (`<service>.<group>.<namespace>.nacos`, ...).
    pub name: String,
    /// Its port, 1 to 65535.
    pub value: u32,
}

impl RegistryVport {
    /// The port a service of `host` is given, if any.
    pub fn port_of(&self, host: &str) -> Option<u16> {
        self.services
            .iter()
            .find(|s| s.name == host)
            .map(|s| s.value)
            .or(self.default)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
    }
}

/// An outbound proxy (not read by this gateway).
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Proxy type (Higress's console offers `HTTP`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Name registries refer to in `proxyName`.
    pub name: Option<String>,
    /// The proxy's IP address or host name.
    pub server_address: Option<String>,
    /// The proxy's port.
    pub server_port: Option<u32>,
    /// Higress's listener port for this proxy.
    pub listener_port: Option<u32>,
    /// Milliseconds to connect to the proxy (Higress's console default: 1200).
    pub connect_timeout: Option<u32>,
}

/// Upstream protocol of a registry's service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryProtocol {
    /// HTTP/1.1 in clear text (`http`, and anything else accepted).
    Http,
    /// HTTP/1.1 over TLS (`https`).
    Https,
    /// HTTP/2 in clear text, h2c (`http2`).
    Http2,
    /// gRPC: HTTP/2 in clear text (`grpc`, `triple`, `tri`).
    Grpc,
    /// gRPC over TLS (`grpcs`).
    Grpcs,
}

impl RegistryProtocol {
    /// A protocol name as McpBridge and registries' instance metadata spell it
    /// (case-insensitive; `tcp`, `dubbo` and unknown names are served as `http`).
    pub fn parse(s: &str) -> RegistryProtocol {
        match s.to_ascii_lowercase().as_str() {
            "https" => RegistryProtocol::Https,
            "http2" => RegistryProtocol::Http2,
            "grpc" | "triple" | "tri" => RegistryProtocol::Grpc,
            "grpcs" => RegistryProtocol::Grpcs,
            _ => RegistryProtocol::Http,
        }
    }
}

const KNOWN_TYPES: [&str; 8] = [
    "nacos",
    "nacos2",
    "nacos3",
    "zookeeper",
    "consul",
    "eureka",
    "static",
    "dns",
];

impl McpBridge {
    /// Parse and validate an McpBridge; the error names the registry field at fault.
    pub fn parse(bytes: &[u8]) -> Result<McpBridge, FieldError> {
        let b: McpBridge = from_yaml(bytes)?;
        for (i, r) in b.spec.registries.iter().enumerate() {
            r.validate()
                .map_err(|e| e.under(&format!("spec.registries[{i}]")))?;
        }
        Ok(b)
    }
}

impl Registry {
    /// `<name>.<type>`, the host destinations and `_match_service_` refer to.
    pub fn host(&self) -> String {
        format!("{}.{}", self.name, self.kind)
    }

    /// `protocol` read as the gateway applies it (case-insensitive, `http` by default).
    pub fn protocol(&self) -> RegistryProtocol {
        RegistryProtocol::parse(self.protocol.as_deref().unwrap_or(""))
    }


    /// `static`: the `ip:port` endpoints of `domain`.
    pub fn static_endpoints(&self) -> Vec<SocketAddr> {
        split_domain(&self.domain)
            .filter_map(|d| d.parse().ok())
            .collect()
    }

    /// `dns`: the host names of `domain`.
    pub fn dns_names(&self) -> Vec<String> {
        split_domain(&self.domain).map(str::to_string).collect()
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.kind.is_empty() {
            return Err(FieldError::new("type", "is required"));
        }
        if !KNOWN_TYPES.contains(&self.kind.as_str()) {
            return Err(FieldError::new(
                "type",
                format!(
                    "unknown registry type {:?}, expected one of {}",
                    self.kind,
                    KNOWN_TYPES.join(", ")
                ),
            ));
        }
        if self.name.is_empty() {
            return Err(FieldError::new("name", "is required"));
        }
        if self.domain.trim().is_empty() {
            return Err(FieldError::new("domain", "is required"));
        }
        if self.port == 0 || self.port > 65535 {
            return Err(FieldError::new(
                "port",
                format!("must be 1..65535, got {}", self.port),
            ));
        }
        if let Some(p) = &self.protocol {
            const OK: [&str; 10] = [
                "http", "https", "http2", "grpc", "triple", "tri", "grpcs", "tcp", "dubbo", "",
            ];
            if !OK.contains(&p.to_ascii_lowercase().as_str()) {
                return Err(FieldError::new(
                    "protocol",
                    format!("unknown protocol {p:?}"),
                ));
            }
        }
        if let Some(v) = &self.vport {
            if v.default.is_some_and(|p| p == 0 || p > 65535) {
                return Err(FieldError::new(
                    "vport.default",
                    format!("must be 1..65535, got {}", v.default.unwrap_or(0)),
                ));
            }
            for (i, s) in v.services.iter().enumerate() {
                if s.value == 0 || s.value > 65535 {
                    return Err(FieldError::new(
                        format!("vport.services[{i}].value"),
                        format!("must be 1..65535, got {}", s.value),
                    ));
                }
            }
        }
        match self.kind.as_str() {
            "static" => {
                for d in split_domain(&self.domain) {
                    if d.parse::<SocketAddr>().is_err() {
                        return Err(FieldError::new(
                            "domain",
                            format!("static endpoint {d:?} is not ip:port or [ipv6]:port"),
                        ));
                    }
                }
            }
            "dns" => {
                for d in split_domain(&self.domain) {
                    if !is_dns_name(d) {
                        return Err(FieldError::new(
                            "domain",
                            format!("{d:?} is not a DNS name with at least two labels"),
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn split_domain(domain: &str) -> impl Iterator<Item = &str> {
    domain.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Higress's check for dns registries: `^(label\.)+[a-zA-Z]{2,63}$`.
fn is_dns_name(s: &str) -> bool {
    let mut labels: Vec<&str> = s.split('.').collect();
    let Some(tld) = labels.pop() else {
        return false;
    };
    let tld_ok = (2..=63).contains(&tld.len()) && tld.bytes().all(|b| b.is_ascii_alphabetic());
    let labels_ok = !labels.is_empty()
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    tld_ok && labels_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(reg: &str) -> Result<McpBridge, FieldError> {
        McpBridge::parse(format!("spec:\n  registries:\n  - {reg}\n").as_bytes())
    }

    #[test]
    fn static_and_dns_registries() {
        let b =
            bridge("{type: static, name: s, domain: \"127.0.0.1:1, [::1]:2\", port: 80}").unwrap();
        let r = &b.spec.registries[0];
        assert_eq!(r.host(), "s.static");
        assert_eq!(r.static_endpoints().len(), 2);
        let b = bridge("{type: dns, name: httpbin, domain: httpbin.org, port: 80}").unwrap();
        assert_eq!(b.spec.registries[0].dns_names(), vec!["httpbin.org"]);
    }

    #[test]
    fn fields_not_read_take_any_value_and_are_not_shown() {
        let b = bridge("{type: nacos2, name: n, domain: nacos.example.com, port: 8848, nacosSecretKey: s3cret, nacosRefreshInterval: 5000000000, vport: {default: 81, services: [{name: a.DEFAULT-GROUP.public.nacos, value: 82}]}, metadata: 7, mcpServerBaseUrl: [1]}").unwrap();
        let r = &b.spec.registries[0];
        assert!(r.nacos_secret_key.is_some() && r.metadata.is_some());
        let v = r.vport.as_ref().unwrap();
        assert_eq!(v.port_of("a.DEFAULT-GROUP.public.nacos"), Some(82));
        assert_eq!(v.port_of("b.DEFAULT-GROUP.public.nacos"), Some(81));
        let shown = serde_json::to_string(&b).unwrap();
        assert!(
            !shown.contains("s3cret") && !shown.contains("nacosSecretKey"),
            "{shown}"
        );
    }

    #[test]
    fn errors_name_the_registry_field() {
        let e = bridge("{type: static, name: s, domain: \"localhost:1\", port: 80}").unwrap_err();
        assert_eq!(e.path, "spec.registries[0].domain");
        let e = bridge("{type: dns, name: s, domain: \"1.2.3.4\", port: 80}").unwrap_err();
        assert_eq!(e.path, "spec.registries[0].domain");
        let e = bridge("{type: dns, name: s, domain: a.com, port: 0}").unwrap_err();
        assert_eq!(e.path, "spec.registries[0].port");
        let e = bridge("{type: foo, name: s, domain: a.com, port: 1}").unwrap_err();
        assert_eq!(e.path, "spec.registries[0].type");
        let e = bridge("{type: dns, name: s, domain: a.com, port: 1, protocol: quic}").unwrap_err();
        assert_eq!(e.path, "spec.registries[0].protocol");
        let e =
            bridge("{type: nacos, name: s, domain: a.com, port: 1, nacosGroups: DEFAULT_GROUP}")
                .unwrap_err();
        assert_eq!(e.path, "spec.registries[0].nacosGroups");
        let e = bridge("{type: eureka, name: s, domain: a.com, port: 1, vport: {default: 70000}}")
            .unwrap_err();
        assert_eq!(e.path, "spec.registries[0].vport.default");
    }
}
