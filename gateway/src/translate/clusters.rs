//! Clusters: `outbound|<port>|<subset>|<host>` with their endpoints, built from the
//! McpBridge `default` registries (and, once resolved, DNS answers).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::model::{Cluster, Protocol};
use crate::registry::DiscoveredService;
use crate::resources::mcpbridge::{RegistryProtocol, DEFAULT_MCPBRIDGE};
use crate::resources::McpBridge;
use crate::stats::ClusterStatsCache;
use crate::translate::upstream_tls;

/// Every `dns` host name the registries need resolved.
pub fn dns_names(bridges: &[&McpBridge]) -> Vec<String> {
    let mut v: Vec<String> = default_bridge(bridges)
        .map(|b| {
            b.spec
                .registries
                .iter()
                .filter(|r| r.kind == "dns")
                .flat_map(|r| r.dns_names())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

/// The clusters (by name) whose endpoints come from resolving `name`.
pub fn clusters_resolving(bridges: &[&McpBridge], name: &str) -> Vec<String> {
    default_bridge(bridges)
        .map(|b| {
            b.spec
                .registries
                .iter()
                .filter(|r| r.kind == "dns" && r.dns_names().iter().any(|n| n == name))
                .map(|r| crate::model::cluster_name(r.port as u16, "", &r.host()))
                .collect()
        })
        .unwrap_or_default()
}

fn default_bridge<'a>(bridges: &[&'a McpBridge]) -> Option<&'a McpBridge> {
    bridges
        .iter()
        .copied()
        .find(|b| b.metadata.name == DEFAULT_MCPBRIDGE)
}

/// Build the clusters of the `default` McpBridge's `static` and `dns` registries. `dns`
/// maps a host name to its last good answer.
pub fn build(
    bridges: &[&McpBridge],
    dns: &HashMap<String, Vec<IpAddr>>,
    stats: &mut ClusterStatsCache,
    _skipped: &mut Vec<String>,
) -> BTreeMap<String, Arc<Cluster>> {
    let mut out = BTreeMap::new();
    let Some(bridge) = default_bridge(bridges) else {
        return out;
    };
    for r in &bridge.spec.registries {
        let port = r.port as u16;
        let endpoints = match r.kind.as_str() {
            "static" => r.static_endpoints(),
            "dns" => r
                .dns_names()
                .iter()
                .flat_map(|n| dns.get(n).into_iter().flatten())
                .map(|ip| SocketAddr::new(*ip, port))
                .collect(),
            // Watched: their services become clusters in `build_discovered`.
            _ => continue,
        };
        // Higress: `sni`, or for a `dns` registry with a single domain, that domain.
        let names = r.dns_names();
        let sni = r
            .sni
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| (r.kind == "dns" && names.len() == 1).then(|| names[0].clone()));
        let protocol = Protocol::from(r.protocol());
        let tls = upstream_tls::registry_tls(protocol, sni.clone());
        let c = Cluster::new(&r.host(), port, protocol, endpoints, stats).with_tls(sni, tls);
        out.insert(c.name.clone(), Arc::new(c));
    }
    out
}

/// Add a cluster `outbound|<port>||<host>` for each service the registries discovered
/// (by registry id), its endpoints weighted as the registry weighs them. A host two
/// registries both hold keeps the first's cluster.
pub fn build_discovered<'a>(
    services: impl Iterator<Item = (&'a str, &'a DiscoveredService)>,
    stats: &mut ClusterStatsCache,
    out: &mut BTreeMap<String, Arc<Cluster>>,
) {
    for (registry, s) in services {
        let protocol = Protocol::from(RegistryProtocol::parse(&s.protocol));
        let endpoints = s.endpoints.iter().map(|e| e.addr).collect();
        let weights = s.endpoints.iter().map(|e| e.weight.max(1)).collect();
        let c = Cluster::new(&s.host, s.port, protocol, endpoints, stats).with_weights(weights);
        if out.contains_key(&c.name) {
            tracing::warn!(cluster = %c.name, registry, "another registry already defines this cluster; ignored");
            continue;
        }
        let tls = upstream_tls::registry_tls(protocol, None);
        out.insert(c.name.clone(), Arc::new(c.with_tls(None, tls)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_static_and_dns_clusters_from_default_bridge_only() {
        let y = "spec:\n  registries:\n  - {type: static, name: s, domain: \"127.0.0.1:9\", port: 80}\n  - {type: dns, name: d, domain: a.example.com, port: 8080}\n  - {type: nacos, name: n, domain: nacos.example.com, port: 8848}\n";
        let mut b = McpBridge::parse(y.as_bytes()).unwrap();
        b.metadata.name = "default".into();
        let mut other = b.clone();
        other.metadata.name = "other".into();
        let mut dns = HashMap::new();
        dns.insert(
            "a.example.com".to_string(),
            vec!["127.0.0.2".parse().unwrap()],
        );
        let mut skipped = vec![];
        let cs = build(
            &[&other, &b],
            &dns,
            &mut ClusterStatsCache::detached(),
            &mut skipped,
        );
        assert_eq!(cs.len(), 2);
        assert!(skipped.is_empty(), "a nacos registry is watched, not skipped");
        assert_eq!(
            cs["outbound|80||s.static"].endpoints,
            vec!["127.0.0.1:9".parse().unwrap()]
        );
        assert_eq!(
            cs["outbound|8080||d.dns"].endpoints,
            vec!["127.0.0.2:8080".parse().unwrap()]
        );
        assert_eq!(dns_names(&[&b]), vec!["a.example.com"]);
        assert_eq!(
            clusters_resolving(&[&b], "a.example.com"),
            vec!["outbound|8080||d.dns"]
        );
        assert!(clusters_resolving(&[&b], "b.example.com").is_empty());
    }
}
