//! McpBridge (`networking.higress.io/v1`): service registries. Only `static` and `dns`
//! registries are turned into clusters here; the other types are accepted for
//! compatibility and reported as not enforced.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{from_yaml, FieldError, ObjectMeta};

/// Only the McpBridge with this name is used, as in Higress.
pub const DEFAULT_MCPBRIDGE: &str = "default";

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct McpBridge {
    pub metadata: ObjectMeta,
    pub spec: McpBridgeSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct McpBridgeSpec {
    pub registries: Vec<Registry>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Registry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub domain: String,
    pub port: u32,
    pub protocol: Option<String>,
    pub sni: Option<String>,
}

/// Upstream protocol of a registry's service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryProtocol {
    Http,
    Https,
    Http2,
    Grpc,
    Grpcs,
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

    pub fn protocol(&self) -> RegistryProtocol {
        match self
            .protocol
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("https") => RegistryProtocol::Https,
            Some("http2") => RegistryProtocol::Http2,
            Some("grpc") | Some("triple") | Some("tri") => RegistryProtocol::Grpc,
            Some("grpcs") => RegistryProtocol::Grpcs,
            _ => RegistryProtocol::Http,
        }
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
    }
}
