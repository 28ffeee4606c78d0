//! Downstream certificates: Ingress `spec.tls` and the console's domain ConfigMaps,
//! with their Secrets, compiled into the store the HTTPS listener picks a certificate
//! from by SNI.
//!
//! Higress's rules: a rule's host gets the certificate of the `spec.tls` entry that lists
//! that exact host; an entry without hosts stands for `*`, so it serves the rules without
//! host, and is the certificate for any SNI no other names. When two Ingresses give the
//! same host a certificate, the older one wins (the other is reported). A domain
//! ConfigMap with `enableHttps: on|force` gives its host its `cert`; `force` also
//! redirects plain HTTP for the host. Domains are read before Ingresses.
//!
//! SNI lookup: the exact host, then the longest `*.suffix` that ends it (any depth, as
//! the route table matches), then the `*` certificate; no match fails the handshake.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{CertStore, ServerCert};
use crate::resources::domain::{DomainConfig, EnableHttps};
use crate::resources::{Ingress, Secret};
use crate::translate::route_name;

/// [`CertStore::insert`], reporting what stands in the way.
fn add(
    store: &mut CertStore,
    host: &str,
    cert: Result<Arc<ServerCert>, String>,
    origin: String,
    warnings: &mut Vec<String>,
) {
    match cert {
        Err(e) => warnings.push(format!("{origin}: {e}; host {host} has no certificate")),
        Ok(c) => {
            if host != "*" && !covers(&c.key_pair.info.dns_names, host) {
                warnings.push(format!(
                    "{origin}: the certificate of {} does not name {host} (its DNS names: {}); clients will reject it",
                    c.secret,
                    c.key_pair.info.dns_names.join(", ")
                ));
            }
            if let Err(e) = store.insert(host, c, origin) {
                warnings.push(e);
            }
        }
    }
}

/// Whether a certificate's DNS names cover `host` (one label for a `*.` name, as TLS
/// clients check).
fn covers(names: &[String], host: &str) -> bool {
    names.iter().any(|n| {
        n.eq_ignore_ascii_case(host)
            || match (n.strip_prefix("*."), host.split_once('.')) {
                (Some(suffix), Some((_, rest))) => rest.eq_ignore_ascii_case(suffix),
                _ => false,
            }
    })
}

/// A certificate another translator (KIngress `spec.tls`, an Istio Gateway server's
/// `credentialName`) asks the HTTPS listener to serve for `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsEntry {
    /// What warnings name (`kingress default/hello spec.tls[0]`).
    pub origin: String,
    pub host: String,
    /// The Secret, by namespace and name.
    pub namespace: String,
    pub secret: String,
}

/// Secrets by (namespace, name).
pub type Secrets = BTreeMap<(String, String), Secret>;

/// The certificate of secret `ns/name`, or why there is none.
fn server_cert(secrets: &Secrets, ns: &str, name: &str) -> Result<Arc<ServerCert>, String> {
    let secret = format!("{ns}/{name}");
    match secrets.get(&(ns.to_string(), name.to_string())) {
        None => Err(format!("secret {secret} not found")),
        Some(s) => match &s.key_pair {
            None => Err(format!("secret {secret} has no tls.crt and tls.key")),
            Some(kp) => Ok(Arc::new(ServerCert {
                key_pair: kp.clone(),
                secret,
            })),
        },
    }
}

/// Build the store. `ingresses` are ours, oldest first; domains and their secrets live in
/// `namespace`. Problems (a missing secret, a duplicate, a certificate that does not name
/// its host) go to `warnings`; the rest still applies.
pub fn build(
    ingresses: &[&Ingress],
    domains: &[&DomainConfig],
    secrets: &Secrets,
    extra: &[TlsEntry],
    namespace: &str,
    warnings: &mut Vec<String>,
) -> CertStore {
    let mut store = CertStore::default();
    for d in domains {
        if d.enable_https == EnableHttps::Off {
            continue;
        }
        let host = if d.is_default() {
            "*"
        } else {
            d.domain.as_str()
        };
        let origin = format!("domain {}", d.domain);
        let cert = server_cert(secrets, namespace, d.cert.as_deref().unwrap_or_default());
        add(&mut store, host, cert, origin, warnings);
        if d.enable_https == EnableHttps::Force {
            store.force_https.insert(host.to_string());
        }
    }
    for ing in ingresses {
        let name = route_name(ing);
        let rule_hosts: Vec<String> = ing
            .spec
            .rules
            .iter()
            .map(|r| r.host.as_deref().unwrap_or("*").to_ascii_lowercase())
            .collect();
        for (i, tls) in ing.spec.tls.iter().enumerate() {
            let origin = format!("ingress {name} spec.tls[{i}]");
            let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                warnings.push(format!("{origin}: no secretName; ignored"));
                continue;
            };
            let hosts: Vec<String> = if tls.hosts.is_empty() {
                vec!["*".to_string()]
            } else {
                tls.hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
            };
            for host in hosts {
                if !rule_hosts.contains(&host) {
                    warnings.push(if host == "*" {
                        format!("{origin}: lists no hosts, so it serves the rules without host, and this Ingress has none; ignored")
                    } else {
                        format!("{origin}: host {host} has no rule in this Ingress; ignored")
                    });
                    continue;
                }
                let cert = server_cert(secrets, &ing.metadata.namespace, secret);
                add(&mut store, &host, cert, origin.clone(), warnings);
            }
        }
    }
    // KIngresses' and Istio Gateways' certificates, after the Ingresses'.
    for e in extra {
        let cert = server_cert(secrets, &e.namespace, &e.secret);
        add(&mut store, &e.host, cert, e.origin.clone(), warnings);
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::secret::test_certs;
    use crate::resources::Resource;

    fn secret(name: &str, names: &[&str]) -> ((String, String), Secret) {
        let (crt, key) = test_certs::pem(names);
        let y = format!(
            "type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            crt.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>(),
            key.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        );
        let mut s = Secret::parse(y.as_bytes()).unwrap();
        s.metadata.name = name.into();
        s.metadata.namespace = "higress-system".into();
        (("higress-system".into(), name.into()), s)
    }

    fn ingress(name: &str, rules: &[&str], tls: &str) -> Ingress {
        let mut y =
            format!("metadata: {{name: {name}, namespace: higress-system}}\nspec:\n  rules:\n");
        for h in rules {
            if h.is_empty() {
                y.push_str("  - http: {paths: []}\n");
            } else {
                y.push_str(&format!("  - host: \"{h}\"\n"));
            }
        }
        y.push_str(tls);
        let Resource::Ingress(i) = Resource::parse(
            crate::resources::Kind::Ingress,
            y.as_bytes(),
            name,
            "higress-system",
        )
        .unwrap() else {
            unreachable!()
        };
        i
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_catch_all() {
        let secrets: Secrets = [
            secret("a", &["a.test"]),
            secret("w", &["*.w.test"]),
            secret("d", &["default.test"]),
        ]
        .into_iter()
        .collect();
        let i1 = ingress(
            "one",
            &["a.test", "*.w.test", ""],
            "  tls:\n  - {hosts: [a.test], secretName: a}\n  - {hosts: [\"*.w.test\"], secretName: w}\n  - {secretName: d}\n",
        );
        let mut warnings = vec![];
        let store = build(&[&i1], &[], &secrets, &[], "higress-system", &mut warnings);
        let pick = |sni: Option<&str>| store.find(sni).map(|c| c.secret.clone());
        assert_eq!(pick(Some("a.test")).as_deref(), Some("higress-system/a"));
        assert_eq!(pick(Some("A.Test")).as_deref(), Some("higress-system/a"));
        assert_eq!(pick(Some("x.w.test")).as_deref(), Some("higress-system/w"));
        assert_eq!(
            pick(Some("y.x.w.test")).as_deref(),
            Some("higress-system/w")
        );
        assert_eq!(pick(Some("w.test")).as_deref(), Some("higress-system/d"));
        assert_eq!(pick(None).as_deref(), Some("higress-system/d"));
        assert_eq!(
            pick(Some("other.test")).as_deref(),
            Some("higress-system/d")
        );
        // The catch-all certificate names no rule host: no warning for it.
        assert!(warnings.is_empty(), "{warnings:?}");
        let earliest = secrets
            .values()
            .map(|s| s.key_pair.as_ref().unwrap().info.not_after_unix)
            .min();
        assert_eq!(store.earliest_expiry(), earliest);
    }

    #[test]
    fn no_match_without_catch_all_and_problems_are_reported() {
        let secrets: Secrets = [secret("a", &["a.test"]), secret("b", &["b.test"])]
            .into_iter()
            .collect();
        let old = ingress(
            "old",
            &["a.test"],
            "  tls:\n  - {hosts: [a.test], secretName: a}\n",
        );
        let new = ingress(
            "new",
            &["a.test", "c.test"],
            "  tls:\n  - {hosts: [a.test, c.test, z.test], secretName: b}\n  - {hosts: [d.test], secretName: gone}\n  - {secretName: a}\n",
        );
        let mut warnings = vec![];
        let store = build(
            &[&old, &new],
            &[],
            &secrets,
            &[],
            "higress-system",
            &mut warnings,
        );
        assert_eq!(
            store.find(Some("a.test")).unwrap().secret,
            "higress-system/a"
        );
        assert_eq!(
            store.find(Some("c.test")).unwrap().secret,
            "higress-system/b"
        );
        assert!(store.find(Some("q.test")).is_none());
        assert!(store.find(None).is_none());
        let all = warnings.join("\n");
        for part in [
            "duplicated TLS",
            "host z.test has no rule",
            "host d.test has no rule",
            "does not name c.test",
            "lists no hosts",
        ] {
            assert!(all.contains(part), "no {part:?} in\n{all}");
        }
    }

    #[test]
    fn domains_give_certificates_and_force_redirects() {
        let secrets: Secrets = [secret("dc", &["*.d.test"]), secret("def", &["any.test"])]
            .into_iter()
            .collect();
        let d1 = DomainConfig {
            domain: "*.d.test".into(),
            enable_https: EnableHttps::Force,
            cert: Some("dc".into()),
        };
        let d2 = DomainConfig {
            domain: crate::resources::domain::DEFAULT_DOMAIN.into(),
            enable_https: EnableHttps::On,
            cert: Some("def".into()),
        };
        let d3 = DomainConfig {
            domain: "off.test".into(),
            enable_https: EnableHttps::Off,
            cert: Some("missing".into()),
        };
        let mut warnings = vec![];
        let store = build(
            &[],
            &[&d1, &d2, &d3],
            &secrets,
            &[],
            "higress-system",
            &mut warnings,
        );
        assert_eq!(
            store.find(Some("x.d.test")).unwrap().secret,
            "higress-system/dc"
        );
        assert_eq!(
            store.find(Some("off.test")).unwrap().secret,
            "higress-system/def"
        );
        assert!(store.force_https.contains("*.d.test"));
        assert_eq!(store.force_https.len(), 1);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(CertStore::default().is_empty() && !store.is_empty());
    }

    #[test]
    fn coverage_is_one_label_deep() {
        let names = vec!["*.a.com".to_string(), "b.com".to_string()];
        assert!(covers(&names, "x.a.com"));
        assert!(!covers(&names, "y.x.a.com"));
        assert!(covers(&names, "*.a.com"));
        assert!(covers(&names, "B.com"));
        assert!(!covers(&names, "a.com"));
    }
}
