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

use crate::annotations::UpstreamAnnotations;
use crate::model::{Protocol, Sni, UpstreamTls};
use crate::resources::Secret;

/// A registry's own TLS (no annotations): its SNI, verified when there is one.
pub fn registry_tls(protocol: Protocol, sni: Option<String>) -> Option<Arc<UpstreamTls>> {
    if !protocol.is_tls() {
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

/// What the annotations of one Ingress (in namespace `namespace`) make of a
/// destination: its protocol and TLS. `registry` is the destination cluster's own
/// (protocol, TLS, SNI); problems that leave a setting out are pushed to `warnings`.
pub fn resolve(
    ann: &UpstreamAnnotations,
    namespace: &str,
    registry: (Protocol, Option<&Arc<UpstreamTls>>, Option<&str>),
    secrets: &BTreeMap<(String, String), Secret>,
    warnings: &mut Vec<String>,
) -> (Protocol, Option<Arc<UpstreamTls>>) {
    let (reg_protocol, reg_tls, reg_sni) = registry;
    if ann.is_empty() {
        return (reg_protocol, reg_tls.cloned());
    }
    let protocol = ann.backend_protocol.unwrap_or(reg_protocol);
    if !protocol.is_tls() {
        if ann.secret.is_some() || ann.verify.is_some() || ann.ssl_name.is_some() {
            warnings.push(
                "proxy-ssl-* annotations apply to TLS upstreams only (backend-protocol HTTPS or GRPCS, or a registry with protocol https); ignored".into(),
            );
        }
        return (protocol, None);
    }
    let (mut ca, mut client_cert, mut secret_name) = (None, None, None);
    if let Some((ns, name)) = &ann.secret_in(namespace) {
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

    #[test]
    fn registry_tls_verifies_only_with_a_name() {
        let t = registry_tls(Protocol::Https, Some("api.example.com".into())).unwrap();
        assert!(t.verify);
        assert_eq!(t.sni, Sni::Fixed("api.example.com".into()));
        let t = registry_tls(Protocol::Grpcs, None).unwrap();
        assert!(!t.verify);
        assert_eq!(t.sni, Sni::None);
        assert!(registry_tls(Protocol::Http, Some("x".into())).is_none());
    }

    #[test]
    fn annotations_decide_protocol_sni_and_verification() {
        let secrets = BTreeMap::new();
        let mut w = Vec::new();
        let plain = (Protocol::Http, None, None);
        // Plain registry made TLS by backend-protocol: unverified, no SNI.
        let a = UpstreamAnnotations {
            backend_protocol: Some(Protocol::Https),
            ..Default::default()
        };
        let (p, t) = resolve(&a, "ns", plain, &secrets, &mut w);
        assert_eq!(p, Protocol::Https);
        let t = t.unwrap();
        assert!(!t.verify);
        assert_eq!(t.sni, Sni::None);
        // verify on: the name to check is sent as SNI.
        let a = UpstreamAnnotations {
            backend_protocol: Some(Protocol::Https),
            verify: Some(true),
            ssl_name: Some("be.test".into()),
            ..Default::default()
        };
        let t = resolve(&a, "ns", plain, &secrets, &mut w).1.unwrap();
        assert!(t.verify);
        assert_eq!(t.sni, Sni::Fixed("be.test".into()));
        // server-name on without a name: the request's host.
        let a = UpstreamAnnotations {
            backend_protocol: Some(Protocol::Https),
            server_name: Some(true),
            ..Default::default()
        };
        assert_eq!(
            resolve(&a, "ns", plain, &secrets, &mut w).1.unwrap().sni,
            Sni::RequestHost
        );
        // A name to verify wins over the registry's SNI.
        let reg = registry_tls(Protocol::Https, Some("r.test".into())).unwrap();
        let a = UpstreamAnnotations {
            verify: Some(true),
            ssl_name: Some("checked.test".into()),
            ..Default::default()
        };
        let t = resolve(
            &a,
            "ns",
            (Protocol::Https, Some(&reg), Some("r.test")),
            &secrets,
            &mut w,
        )
        .1
        .unwrap();
        assert_eq!(t.sni, Sni::Fixed("checked.test".into()));
        // A verified registry turned off by the annotation keeps its SNI.
        let reg = registry_tls(Protocol::Https, Some("r.test".into())).unwrap();
        let a = UpstreamAnnotations {
            verify: Some(false),
            ..Default::default()
        };
        let t = resolve(
            &a,
            "ns",
            (Protocol::Https, Some(&reg), Some("r.test")),
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
            backend_protocol: Some(Protocol::Https),
            secret: Some((Some("ns".into()), "gone".into())),
            ..Default::default()
        };
        resolve(&a, "ns", plain, &secrets, &mut w);
        let a = UpstreamAnnotations {
            verify: Some(true),
            ..Default::default()
        };
        let (p, t) = resolve(&a, "ns", plain, &secrets, &mut w);
        assert_eq!(p, Protocol::Http);
        assert!(t.is_none());
        assert_eq!(w.len(), 2, "{w:?}");
    }
}
