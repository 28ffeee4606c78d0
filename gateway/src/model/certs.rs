//! The certificates the HTTPS listener serves, by SNI: the exact host, then the longest
//! `*.suffix` that ends it (any depth, as the route table matches), then the `*`
//! certificate; no match fails the handshake. Built by `translate/certificates.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;

use crate::resources::secret::KeyPair;

/// One certificate the HTTPS listener serves.
#[derive(Debug)]
pub struct ServerCert {
    pub key_pair: Arc<KeyPair>,
    /// `namespace/name` of its Secret.
    pub secret: String,
}

#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<ServerCert>, foldhash::fast::RandomState>,
    /// (suffix with its leading dot, certificate), longest suffix first.
    wildcard: Vec<(String, Arc<ServerCert>)>,
    /// The `*` certificate.
    any: Option<Arc<ServerCert>>,
    /// Where each host's certificate came from, for `/debug/configz`.
    origins: BTreeMap<String, String>,
    /// Hosts (as written: `a.com`, `*.a.com`, `*`) whose plain-HTTP requests are
    /// redirected by a domain with `enableHttps: force`.
    pub force_https: HashSet<String>,
}

impl CertStore {
    /// No certificate at all: the HTTPS listener is not needed.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any.is_none()
    }

    /// The certificate for a ClientHello's server name.
    pub fn find(&self, sni: Option<&str>) -> Option<&Arc<ServerCert>> {
        let Some(name) = sni.filter(|s| !s.is_empty()) else {
            return self.any.as_ref();
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        self.exact
            .get(name)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| {
                        name.len() > suffix.len() && name.ends_with(suffix.as_str())
                    })
                    .map(|(_, c)| c)
            })
            .or(self.any.as_ref())
    }

    /// Every certificate once.
    fn all(&self) -> impl Iterator<Item = &Arc<ServerCert>> {
        self.exact
            .values()
            .chain(self.wildcard.iter().map(|(_, c)| c))
            .chain(self.any.iter())
    }

    /// The earliest `notAfter` of the served certificates (seconds since the epoch).
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.all().map(|c| c.key_pair.info.not_after_unix).min()
    }

    /// Hosts and their certificates, for `/debug/configz`.
    pub fn describe(&self) -> serde_json::Value {
        let mut hosts: Vec<(String, &Arc<ServerCert>)> =
            self.exact.iter().map(|(h, c)| (h.clone(), c)).collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        hosts.extend(self.wildcard.iter().map(|(s, c)| (format!("*{s}"), c)));
        hosts.extend(self.any.iter().map(|c| ("*".to_string(), c)));
        let list: Vec<serde_json::Value> = hosts
            .into_iter()
            .map(|(host, c)| {
                json!({
                    "host": host,
                    "secret": c.secret,
                    "from": self.origins.get(&host),
                    "certificate": c.key_pair.info,
                })
            })
            .collect();
        let mut force: Vec<&String> = self.force_https.iter().collect();
        force.sort();
        json!({"certificates": list, "force_https": force})
    }

    /// Give `host` (`a.com`, `*.a.com` or `*`) a certificate unless it has one; `origin`
    /// says where it came from. Another certificate already there is the error.
    pub fn insert(
        &mut self,
        host: &str,
        cert: Arc<ServerCert>,
        origin: String,
    ) -> Result<(), String> {
        if let Some(prev) = self.origins.get(host) {
            let held = self.find_exact(host).map(|c| c.secret.clone());
            if held.as_deref() == Some(cert.secret.as_str()) {
                return Ok(());
            }
            return Err(format!(
                "host {host} already has the certificate of {} from {prev}; {origin} is ignored for it (duplicated TLS)",
                held.unwrap_or_default()
            ));
        }
        self.origins.insert(host.to_string(), origin);
        if host == "*" {
            self.any = Some(cert);
        } else if let Some(suffix) = host.strip_prefix('*') {
            self.wildcard.push((suffix.to_string(), cert));
            self.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        } else {
            self.exact.insert(host.to_string(), cert);
        }
        Ok(())
    }

    fn find_exact(&self, host: &str) -> Option<&Arc<ServerCert>> {
        if host == "*" {
            self.any.as_ref()
        } else if let Some(suffix) = host.strip_prefix('*') {
            self.wildcard
                .iter()
                .find(|(s, _)| s == suffix)
                .map(|(_, c)| c)
        } else {
            self.exact.get(host)
        }
    }
}
