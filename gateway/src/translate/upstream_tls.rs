//! Upstream TLS: how the gateway talks to a destination, from its registry
//! (`protocol: https|grpcs`, `sni`) and the Ingress annotations `backend-protocol`,
//! `proxy-ssl-secret`, `proxy-ssl-verify`, `proxy-ssl-name`, `proxy-ssl-server-name`
//! (either prefix, nginx's first, as Higress reads them).
//!
//! The rules:
//! - TLS when `backend-protocol` is `HTTPS`/`GRPCS`, or, without that annotation, when the
//!   registry's protocol is `https`/`grpcs`. `HTTP2`, `GRPC` and `GRPCS` speak HTTP/2.
//! - A registry's TLS sends `sni` (or, for a `dns` registry with one domain, that domain)
//!   and verifies the server's certificate against the system trust store for that name
//!   (a registry without a name to check connects unverified, as Higress does).
//! - `proxy-ssl-verify: on` verifies the certificate chain and name; the CA is `ca.crt` of
//!   `proxy-ssl-secret` (or of `<secret>-cacert`), else the system trust store. `off`
//!   turns a registry's verification off.
//! - `proxy-ssl-server-name: on` sends `proxy-ssl-name` as SNI, or the request's host
//!   when no name is given. The name a verified certificate must carry is the SNI sent;
//!   Pingora verifies only a name it sends, so verification without an SNI setting sends
//!   `proxy-ssl-name`, else the registry's name, else the request's host.
//! - `proxy-ssl-secret` (`name` or `namespace/name`) with `tls.crt`/`tls.key` presents a
//!   client certificate (mutual TLS).
//!
//! Everything here is decided when the snapshot is built; a request only picks up the
//! result (and, for a request-host SNI, copies its host).

use std::collections::BTreeMap;
use std::sync::Arc;

use openssl::x509::X509;
use pingora_core::utils::tls::CertKey;
use serde_json::json;

use crate::resources::mcpbridge::RegistryProtocol;
use crate::resources::{FieldError, ObjectMeta, Secret};

const BACKEND_PROTOCOL: &str = "backend-protocol";
const PROXY_SSL_SECRET: &str = "proxy-ssl-secret";
const PROXY_SSL_VERIFY: &str = "proxy-ssl-verify";
const PROXY_SSL_NAME: &str = "proxy-ssl-name";
const PROXY_SSL_SERVER_NAME: &str = "proxy-ssl-server-name";

/// The upstream annotations of one Ingress, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpstreamAnnotations {
    pub backend_protocol: Option<RegistryProtocol>,
    /// (namespace, name).
    pub secret: Option<(String, String)>,
    pub verify: Option<bool>,
    pub ssl_name: Option<String>,
    pub server_name: Option<bool>,
}

/// The annotation's key as written (nginx prefix first), and its value.
fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<(String, &'a str)> {
    for prefix in ["nginx.ingress.kubernetes.io/", "higress.io/"] {
        let k = format!("{prefix}{key}");
        if let Some(v) = meta.annotation(&k) {
            return Some((k, v.trim()));
        }
    }
    None
}

fn on_off(meta: &ObjectMeta, key: &str) -> Result<Option<bool>, FieldError> {
    match annotation(meta, key) {
        None => Ok(None),
        Some((_, "on")) => Ok(Some(true)),
        Some((_, "off")) => Ok(Some(false)),
        Some((k, v)) => Err(FieldError::new(
            format!("metadata.annotations[\"{k}\"]"),
            format!("expected on or off, got {v:?}"),
        )),
    }
}

impl UpstreamAnnotations {
    pub fn parse(meta: &ObjectMeta) -> Result<UpstreamAnnotations, FieldError> {
        let backend_protocol = match annotation(meta, BACKEND_PROTOCOL) {
            None => None,
            Some((k, v)) => Some(match v.to_ascii_uppercase().as_str() {
                "HTTP" => RegistryProtocol::Http,
                "HTTP2" => RegistryProtocol::Http2,
                "HTTPS" => RegistryProtocol::Https,
                "GRPC" => RegistryProtocol::Grpc,
                "GRPCS" => RegistryProtocol::Grpcs,
                _ => {
                    return Err(FieldError::new(
                        format!("metadata.annotations[\"{k}\"]"),
                        format!("expected HTTP, HTTP2, HTTPS, GRPC or GRPCS, got {v:?}"),
                    ))
                }
            }),
        };
        let secret = match annotation(meta, PROXY_SSL_SECRET) {
            None => None,
            Some((k, v)) => {
                let (ns, name) = match v.split_once('/') {
                    Some((ns, name)) => (ns.to_string(), name.to_string()),
                    None => (meta.namespace.clone(), v.to_string()),
                };
                if name.is_empty() || name.contains('/') {
                    return Err(FieldError::new(
                        format!("metadata.annotations[\"{k}\"]"),
                        format!("expected <name> or <namespace>/<name>, got {v:?}"),
                    ));
                }
                Some((ns, name))
            }
        };
        let ssl_name = annotation(meta, PROXY_SSL_NAME)
            .map(|(_, v)| v.to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        Ok(UpstreamAnnotations {
            backend_protocol,
            secret,
            verify: on_off(meta, PROXY_SSL_VERIFY)?,
            ssl_name,
            server_name: on_off(meta, PROXY_SSL_SERVER_NAME)?,
        })
    }

    fn is_empty(&self) -> bool {
        *self == UpstreamAnnotations::default()
    }
}

/// The SNI a request's `Host` gives: the name without port or trailing dot, lowercase;
/// `None` for an IP literal or no host (SNI carries DNS names only).
pub fn sni_from_host(host: &str) -> Option<String> {
    let name = crate::translate::route_table::strip_port(host).trim_end_matches('.');
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() || bare.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Some(bare.to_ascii_lowercase())
}

/// The SNI an upstream TLS connection sends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Sni {
    None,
    Fixed(String),
    /// The request's host (`Host` / `:authority`, port removed).
    RequestHost,
}

/// TLS towards one destination.
pub struct UpstreamTls {
    pub sni: Sni,
    /// Verify the certificate chain and that it names the SNI.
    pub verify: bool,
    /// Trust anchors; `None`: the system trust store.
    pub ca: Option<Arc<Box<[X509]>>>,
    pub client_cert: Option<Arc<CertKey>>,
    /// Mixed into the pool key: connections with other TLS settings are not shared.
    pub pool_salt: u64,
    /// What `/debug/configz` shows.
    pub describe: serde_json::Value,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe.to_string())
    }
}

/// A registry's own TLS (no annotations): its SNI, verified when there is one.
pub fn registry_tls(protocol: RegistryProtocol, sni: Option<String>) -> Option<Arc<UpstreamTls>> {
    if !matches!(protocol, RegistryProtocol::Https | RegistryProtocol::Grpcs) {
        return None;
    }
    let verify = sni.is_some();
    let sni = sni.map_or(Sni::None, Sni::Fixed);
    Some(Arc::new(build(sni, verify, None, None, None, "registry")))
}

fn build(
    sni: Sni,
    verify: bool,
    ca: Option<Arc<Box<[X509]>>>,
    client_cert: Option<Arc<CertKey>>,
    secret: Option<&str>,
    source: &str,
) -> UpstreamTls {
    let describe = json!({
        "source": source,
        "sni": match &sni {
            Sni::None => serde_json::Value::Null,
            Sni::Fixed(s) => json!(s),
            Sni::RequestHost => json!("<request host>"),
        },
        "verify": verify,
        "ca": if ca.is_some() { "secret ca.crt" } else { "system trust store" },
        // The pool key follows the trust anchors: a rotated CA gets new connections.
        "ca_sha256": ca.as_ref().map(|list| {
            list.iter()
                .map(|c| crate::resources::secret::cert_info(c).sha256)
                .collect::<Vec<_>>()
        }),
        "client_certificate_sha256": client_cert
            .as_ref()
            .map(|k| crate::resources::secret::cert_info(k.leaf()).sha256),
        "client_certificate": client_cert.is_some(),
        "secret": secret,
    });
    let pool_salt = std::hash::BuildHasher::hash_one(
        &foldhash::fast::FixedState::with_seed(1),
        describe.to_string(),
    );
    UpstreamTls {
        sni,
        verify,
        ca,
        client_cert,
        pool_salt,
        describe,
    }
}

/// What the annotations of one Ingress make of a destination: its protocol and TLS.
/// `registry` is the destination cluster's own (protocol, TLS, SNI); problems that
/// leave a setting out are pushed to `warnings`.
pub fn resolve(
    ann: &UpstreamAnnotations,
    registry: (RegistryProtocol, Option<&Arc<UpstreamTls>>, Option<&str>),
    secrets: &BTreeMap<(String, String), Secret>,
    warnings: &mut Vec<String>,
) -> (RegistryProtocol, Option<Arc<UpstreamTls>>) {
    let (reg_protocol, reg_tls, reg_sni) = registry;
    if ann.is_empty() {
        return (reg_protocol, reg_tls.cloned());
    }
    let protocol = ann.backend_protocol.unwrap_or(reg_protocol);
    let tls = matches!(protocol, RegistryProtocol::Https | RegistryProtocol::Grpcs);
    if !tls {
        if ann.secret.is_some() || ann.verify.is_some() || ann.ssl_name.is_some() {
            warnings.push(
                "proxy-ssl-* annotations apply to TLS upstreams only (backend-protocol HTTPS or GRPCS, or a registry with protocol https); ignored".into(),
            );
        }
        return (protocol, None);
    }
    let (mut ca, mut client_cert, mut secret_name) = (None, None, None);
    if let Some((ns, name)) = &ann.secret {
        secret_name = Some(format!("{ns}/{name}"));
        match secrets.get(&(ns.clone(), name.clone())) {
            None => warnings.push(format!(
                "proxy-ssl-secret {ns}/{name} not found; no client certificate, system trust store"
            )),
            Some(s) => {
                client_cert = s
                    .key_pair
                    .as_ref()
                    .map(|kp| Arc::new(CertKey::new(kp.chain.clone(), kp.key.clone())));
                // The CA is the secret's own ca.crt, else `<name>-cacert`'s (Istio's rule).
                let cacert = secrets.get(&(ns.clone(), format!("{name}-cacert")));
                ca =
                    s.ca.as_ref()
                        .or_else(|| cacert.and_then(|c| c.ca.as_ref()))
                        .map(|list| Arc::new(list.to_vec().into_boxed_slice()));
            }
        }
    }
    // Verification: the annotation decides; without it a registry's TLS keeps its own.
    let verify = ann
        .verify
        .unwrap_or_else(|| reg_tls.is_some_and(|t| t.verify));
    // `proxy-ssl-name` is the name a verified certificate must carry (nginx's rule);
    // Pingora checks only the name it sends, so verifying sends it.
    let sni = match (&ann.ssl_name, ann.server_name == Some(true), reg_sni) {
        (Some(name), true, _) => Sni::Fixed(name.clone()),
        (None, true, _) => Sni::RequestHost,
        (Some(name), false, _) if verify => Sni::Fixed(name.clone()),
        (_, false, Some(s)) => Sni::Fixed(s.to_string()),
        (_, false, None) if verify => Sni::RequestHost,
        _ => Sni::None,
    };
    let up = build(
        sni,
        verify,
        ca,
        client_cert,
        secret_name.as_deref(),
        "annotations",
    );
    (protocol, Some(Arc::new(up)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            namespace: "ns".into(),
            annotations: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn annotations_parse_with_either_prefix_and_bad_values_are_named() {
        let a = UpstreamAnnotations::parse(&meta(&[
            ("higress.io/backend-protocol", "https"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-secret", "certs"),
            ("higress.io/proxy-ssl-verify", "on"),
            ("higress.io/proxy-ssl-name", "Backend.Test"),
            ("higress.io/proxy-ssl-server-name", "off"),
        ]))
        .unwrap();
        assert_eq!(a.backend_protocol, Some(RegistryProtocol::Https));
        assert_eq!(a.secret, Some(("ns".into(), "certs".into())));
        assert_eq!(a.verify, Some(true));
        assert_eq!(a.ssl_name.as_deref(), Some("backend.test"));
        assert_eq!(a.server_name, Some(false));
        let e = UpstreamAnnotations::parse(&meta(&[("higress.io/proxy-ssl-verify", "yes")]))
            .unwrap_err();
        assert_eq!(
            e.path,
            "metadata.annotations[\"higress.io/proxy-ssl-verify\"]"
        );
        let e = UpstreamAnnotations::parse(&meta(&[(
            "nginx.ingress.kubernetes.io/backend-protocol",
            "AJP",
        )]))
        .unwrap_err();
        assert!(e.path.contains("backend-protocol"), "{e}");
        let e = UpstreamAnnotations::parse(&meta(&[("higress.io/proxy-ssl-secret", "a/b/c")]))
            .unwrap_err();
        assert!(e.path.contains("proxy-ssl-secret"), "{e}");
        let a =
            UpstreamAnnotations::parse(&meta(&[("higress.io/proxy-ssl-secret", "o/s")])).unwrap();
        assert_eq!(a.secret, Some(("o".into(), "s".into())));
    }

    #[test]
    fn request_hosts_become_dns_names_only() {
        assert_eq!(
            sni_from_host("Api.Example.com:8443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            sni_from_host("api.example.com.").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(sni_from_host("127.0.0.1:80"), None);
        assert_eq!(sni_from_host("[::1]:8080"), None);
        assert_eq!(sni_from_host(""), None);
    }

    #[test]
    fn registry_tls_verifies_only_with_a_name() {
        let t = registry_tls(RegistryProtocol::Https, Some("api.example.com".into())).unwrap();
        assert!(t.verify);
        assert_eq!(t.sni, Sni::Fixed("api.example.com".into()));
        let t = registry_tls(RegistryProtocol::Grpcs, None).unwrap();
        assert!(!t.verify);
        assert_eq!(t.sni, Sni::None);
        assert!(registry_tls(RegistryProtocol::Http, Some("x".into())).is_none());
    }

    #[test]
    fn annotations_decide_protocol_sni_and_verification() {
        let secrets = BTreeMap::new();
        let mut w = Vec::new();
        let plain = (RegistryProtocol::Http, None, None);
        // Plain registry made TLS by backend-protocol: unverified, no SNI.
        let a = UpstreamAnnotations {
            backend_protocol: Some(RegistryProtocol::Https),
            ..Default::default()
        };
        let (p, t) = resolve(&a, plain, &secrets, &mut w);
        assert_eq!(p, RegistryProtocol::Https);
        let t = t.unwrap();
        assert!(!t.verify);
        assert_eq!(t.sni, Sni::None);
        // verify on: the name to check is sent as SNI.
        let a = UpstreamAnnotations {
            backend_protocol: Some(RegistryProtocol::Https),
            verify: Some(true),
            ssl_name: Some("be.test".into()),
            ..Default::default()
        };
        let t = resolve(&a, plain, &secrets, &mut w).1.unwrap();
        assert!(t.verify);
        assert_eq!(t.sni, Sni::Fixed("be.test".into()));
        // server-name on without a name: the request's host.
        let a = UpstreamAnnotations {
            backend_protocol: Some(RegistryProtocol::Https),
            server_name: Some(true),
            ..Default::default()
        };
        assert_eq!(
            resolve(&a, plain, &secrets, &mut w).1.unwrap().sni,
            Sni::RequestHost
        );
        // A name to verify wins over the registry's SNI.
        let reg = registry_tls(RegistryProtocol::Https, Some("r.test".into())).unwrap();
        let a = UpstreamAnnotations {
            verify: Some(true),
            ssl_name: Some("checked.test".into()),
            ..Default::default()
        };
        let t = resolve(
            &a,
            (RegistryProtocol::Https, Some(&reg), Some("r.test")),
            &secrets,
            &mut w,
        )
        .1
        .unwrap();
        assert_eq!(t.sni, Sni::Fixed("checked.test".into()));
        // A verified registry turned off by the annotation keeps its SNI.
        let reg = registry_tls(RegistryProtocol::Https, Some("r.test".into())).unwrap();
        let a = UpstreamAnnotations {
            verify: Some(false),
            ..Default::default()
        };
        let t = resolve(
            &a,
            (RegistryProtocol::Https, Some(&reg), Some("r.test")),
            &secrets,
            &mut w,
        )
        .1
        .unwrap();
        assert!(!t.verify);
        assert_eq!(t.sni, Sni::Fixed("r.test".into()));
        assert!(w.is_empty(), "{w:?}");
        // A missing secret is a warning; proxy-ssl-* on a plain upstream too.
        let a = UpstreamAnnotations {
            backend_protocol: Some(RegistryProtocol::Https),
            secret: Some(("ns".into(), "gone".into())),
            ..Default::default()
        };
        resolve(&a, plain, &secrets, &mut w);
        let a = UpstreamAnnotations {
            verify: Some(true),
            ..Default::default()
        };
        let (p, t) = resolve(&a, plain, &secrets, &mut w);
        assert_eq!(p, RegistryProtocol::Http);
        assert!(t.is_none());
        assert_eq!(w.len(), 2, "{w:?}");
    }
}
