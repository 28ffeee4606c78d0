//! Istio's `Gateway` (`networking/v1beta1/gateway.proto`): which workloads it
//! configures (`selector`) and the servers it opens on them (port, hosts, TLS).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_api_version, check_host, check_port, from_yaml, FieldError};
use crate::resources::ObjectMeta;

/// An Istio `Gateway`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Gateway {
    pub metadata: ObjectMeta,
    pub spec: GatewaySpec,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpec {
    /// Labels of the gateway pods this Gateway configures; the gateway serves it when
    /// each label is among its own (`--gateway-selector`). Empty: every gateway.
    pub selector: BTreeMap<String, String>,
    /// The listeners' settings, in order.
    pub servers: Vec<Server>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Server {
    pub port: Port,
    /// Hosts exposed here: `host`, `*.suffix`, `*`, each optionally `ns/host` (only
    /// VirtualServices of namespace `ns` bind; `*/` any, `./` the Gateway's own).
    pub hosts: Vec<String>,
    /// TLS of the server; `None`: plain text.
    pub tls: Option<ServerTls>,
    /// Optional name (not read).
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Port {
    /// The port number (required, 1..65535).
    pub number: u32,
    /// `HTTP|HTTPS|GRPC|GRPC-WEB|HTTP2|MONGO|TCP|TLS`, upper case (required).
    pub protocol: String,
    /// The port's name (not read).
    pub name: String,
    /// The port the pod listens on (not read).
    pub target_port: u32,
}

/// The protocols of a server port Istio accepts.
const PROTOCOLS: [&str; 9] = [
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "REDIS",
];

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerTls {
    /// On a plain-HTTP server: answer with a 301 to `https://` (default false).
    pub https_redirect: bool,
    /// `PASSTHROUGH` (default in Istio's API when `tls` is set without a mode on a TLS
    /// port), `SIMPLE`, `MUTUAL`, `AUTO_PASSTHROUGH`, `ISTIO_MUTUAL`, `OPTIONAL_MUTUAL`.
    pub mode: TlsMode,
    /// The Secret (`tls.crt`/`tls.key`) in the Gateway's namespace with the server's
    /// certificate.
    pub credential_name: String,
    /// File paths of a certificate (not read: the gateway takes Secrets only).
    pub server_certificate: String,
    pub private_key: String,
    pub ca_certificates: String,
    /// Client certificate checks (not read).
    pub subject_alt_names: Vec<String>,
    /// `TLS_AUTO|TLSV1_0|..|TLSV1_3` (not read).
    pub min_protocol_version: String,
    pub max_protocol_version: String,
    pub cipher_suites: Vec<String>,
}

/// A server's TLS mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    #[default]
    Passthrough,
    Simple,
    Mutual,
    AutoPassthrough,
    IstioMutual,
    OptionalMutual,
}

impl Server {
    /// Whether the server terminates TLS with a certificate of ours (`HTTPS`/`TLS`, or
    /// `SIMPLE`/`MUTUAL` with a `credentialName`).
    pub fn terminates_tls(&self) -> bool {
        let Some(tls) = &self.tls else { return false };
        matches!(
            tls.mode,
            TlsMode::Simple | TlsMode::Mutual | TlsMode::OptionalMutual
        ) && (matches!(self.port.protocol.as_str(), "HTTPS" | "TLS")
            || !tls.credential_name.is_empty())
    }

    /// Whether the server speaks plain HTTP (`HTTP`, `HTTP2`, `GRPC`, `GRPC-WEB`).
    pub fn is_plain_http(&self) -> bool {
        matches!(
            self.port.protocol.as_str(),
            "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB"
        )
    }

    /// The server's hosts as (namespace part, host), lowercase: `None` when any
    /// namespace may bind.
    pub fn split_hosts(&self) -> impl Iterator<Item = (Option<&str>, String)> + '_ {
        self.hosts.iter().map(|h| match h.split_once('/') {
            Some(("*", host)) => (None, host.to_ascii_lowercase()),
            Some((ns, host)) => (Some(ns), host.to_ascii_lowercase()),
            None => (None, h.to_ascii_lowercase()),
        })
    }
}

impl Gateway {
    pub fn parse(bytes: &[u8]) -> Result<Gateway, FieldError> {
        check_api_version(bytes)?;
        let g: Gateway = from_yaml(bytes)?;
        g.validate()?;
        Ok(g)
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.spec.servers.is_empty() {
            return Err(FieldError::new(
                "spec.servers",
                "at least one server is required",
            ));
        }
        for (i, s) in self.spec.servers.iter().enumerate() {
            let at = format!("spec.servers[{i}]");
            check_port(s.port.number, &format!("{at}.port.number"))?;
            if !PROTOCOLS.contains(&s.port.protocol.as_str()) {
                return Err(FieldError::new(
                    format!("{at}.port.protocol"),
                    format!(
                        "{:?} is not one of {}",
                        s.port.protocol,
                        PROTOCOLS.join(", ")
                    ),
                ));
            }
            if s.hosts.is_empty() {
                return Err(FieldError::new(
                    format!("{at}.hosts"),
                    "at least one host is required",
                ));
            }
            for (h, host) in s.hosts.iter().enumerate() {
                let bare = host.split_once('/').map_or(host.as_str(), |(_, h)| h);
                check_host(bare, &format!("{at}.hosts[{h}]"))?;
            }
            if let Some(tls) = &s.tls {
                let needs_cert = matches!(
                    tls.mode,
                    TlsMode::Simple | TlsMode::Mutual | TlsMode::OptionalMutual
                );
                if needs_cert
                    && matches!(s.port.protocol.as_str(), "HTTPS" | "TLS")
                    && tls.credential_name.is_empty()
                    && tls.server_certificate.is_empty()
                {
                    return Err(FieldError::new(
                        format!("{at}.tls.credentialName"),
                        "required for SIMPLE and MUTUAL TLS",
                    ));
                }
            } else if matches!(s.port.protocol.as_str(), "HTTPS") {
                return Err(FieldError::new(
                    format!("{at}.tls"),
                    "required on an HTTPS server",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: gw, namespace: apps}
spec:
  selector: {higress: higress-system-higress-gateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com", "apps/www.example.org"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*/secure.example.com"]
    tls: {mode: SIMPLE, credentialName: secure-cert}
"#;

    #[test]
    fn servers_parse() {
        let g = Gateway::parse(GW.as_bytes()).unwrap();
        let s = &g.spec.servers;
        assert!(s[0].is_plain_http() && !s[0].terminates_tls());
        assert!(s[0].tls.as_ref().unwrap().https_redirect);
        assert!(s[1].terminates_tls());
        let hosts: Vec<_> = s[0].split_hosts().collect();
        assert_eq!(
            hosts,
            [
                (None, "*.example.com".to_string()),
                (Some("apps"), "www.example.org".to_string())
            ]
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let err = |from: &str, to: &str| {
            Gateway::parse(GW.replace(from, to).as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("number: 443", "number: 0"),
            "spec.servers[1].port.number: 0 is not a port (1..65535)"
        );
        assert!(err("protocol: HTTPS", "protocol: QUIC")
            .starts_with("spec.servers[1].port.protocol: \"QUIC\" is not one of"));
        assert_eq!(
            err(", credentialName: secure-cert", ""),
            "spec.servers[1].tls.credentialName: required for SIMPLE and MUTUAL TLS"
        );
        assert!(err("mode: SIMPLE", "mode: STRICT")
            .starts_with("spec.servers[1].tls.mode: unknown variant `STRICT`"));
        assert_eq!(
            err("\"*/secure.example.com\"", "\"bad host/x y\""),
            "spec.servers[1].hosts[0]: \"x y\" is not a host name"
        );
        // Unknown fields are accepted.
        assert!(Gateway::parse(GW.replace("selector:", "foo: 1\n  selector:").as_bytes()).is_ok());
    }
}
