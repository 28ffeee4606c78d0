//! Clusters: `outbound|<port>|<subset>|<host>` with their endpoints, built from the
//! McpBridge `default` registries (and, once resolved, DNS answers).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::resources::mcpbridge::{RegistryProtocol, DEFAULT_MCPBRIDGE};
use crate::resources::McpBridge;
use crate::stats::{ClusterIdentity, ClusterStats, ClusterStatsCache};
use crate::translate::upstream_tls::{self, UpstreamTls};

/// Envoy/Istio cluster name.
pub fn cluster_name(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

pub struct Cluster {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub protocol: RegistryProtocol,
    pub endpoints: Vec<SocketAddr>,
    /// The name a TLS registry sends as SNI (`sni`, or a `dns` registry's one domain).
    pub sni: Option<String>,
    /// The registry's own TLS (`protocol: https|grpcs`); Ingress annotations may override.
    pub tls: Option<Arc<UpstreamTls>>,
    /// A Service port's name, which an Ingress `backend.service.port.name` refers to.
    pub service_port: Option<String>,
    /// Round-robin cursor; a new snapshot starts a new rotation, which is harmless.
    next: AtomicUsize,
    pub stats: Arc<ClusterStats>,
    /// Keeps this cluster's pooled connections apart from another cluster's to the same
    /// address (Envoy pools per cluster), so bytes count for the right one.
    pub pool_key: u64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(
        host: &str,
        port: u16,
        protocol: RegistryProtocol,
        endpoints: Vec<SocketAddr>,
        stats_cache: &mut ClusterStatsCache,
    ) -> Self {
        let name = cluster_name(port, "", host);
        let port_name = format!("{protocol:?}").to_lowercase();
        let stats = stats_cache.get(
            &ClusterIdentity {
                name: &name,
                host,
                port,
                target_port: endpoints.first().map_or(port, |e| e.port()),
                port_name: &port_name,
                subset: "",
            },
            matches!(protocol, RegistryProtocol::Grpc | RegistryProtocol::Grpcs),
        );
        stats.membership_total.set(endpoints.len() as i64);
        stats.membership_healthy.set(endpoints.len() as i64);
        let pool_key = std::hash::BuildHasher::hash_one(
            &foldhash::fast::FixedState::with_seed(0),
            &stats.stat_name,
        );
        Cluster {
            stats,
            pool_key,
            name,
            host: host.to_string(),
            port,
            protocol,
            endpoints,
            sni: None,
            tls: None,
            service_port: None,
            next: AtomicUsize::new(0),
        }
    }

    /// A TLS registry's SNI; sets the cluster's own TLS from its protocol.
    pub fn with_sni(mut self, sni: Option<String>) -> Self {
        self.tls = upstream_tls::registry_tls(self.protocol, sni.clone());
        self.sni = sni;
        self
    }

    /// The next endpoint (index, address) in round-robin order, skipping the indices in
    /// `tried` while any untried one is left (retries go to another endpoint where there
    /// is one).
    pub fn pick(&self, tried: &[u32]) -> Option<(u32, SocketAddr)> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let i = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| !tried.contains(&(i as u32)))
            .unwrap_or(start % n);
        Some((i as u32, self.endpoints[i]))
    }
}

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

fn default_bridge<'a>(bridges: &[&'a McpBridge]) -> Option<&'a McpBridge> {
    bridges
        .iter()
        .copied()
        .find(|b| b.metadata.name == DEFAULT_MCPBRIDGE)
}

/// Build the clusters of the `default` McpBridge. `dns` maps a host name to its last
/// good answer. Registry types other than `static` and `dns` are returned in `skipped`.
pub fn build(
    bridges: &[&McpBridge],
    dns: &HashMap<String, Vec<IpAddr>>,
    stats: &mut ClusterStatsCache,
    skipped: &mut Vec<String>,
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
            other => {
                skipped.push(format!("mcpbridge registry {} (type {other})", r.name));
                continue;
            }
        };
        // Higress: `sni`, or for a `dns` registry with a single domain, that domain.
        let names = r.dns_names();
        let sni = r
            .sni
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| (r.kind == "dns" && names.len() == 1).then(|| names[0].clone()));
        let c = Cluster::new(&r.host(), port, r.protocol(), endpoints, stats).with_sni(sni);
        out.insert(c.name.clone(), Arc::new(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_tried_endpoints() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let c = Cluster::new(
            "x.static",
            80,
            RegistryProtocol::Http,
            vec![a, b],
            &mut ClusterStatsCache::detached(),
        );
        assert_eq!(c.name, "outbound|80||x.static");
        let first = c.pick(&[]).unwrap();
        let second = c.pick(&[]).unwrap();
        assert_ne!(first, second);
        for _ in 0..4 {
            assert_eq!(c.pick(&[0]), Some((1, b)));
        }
        assert_eq!(c.pick(&[1]), Some((0, a)));
        // All tried: still answer (the retry goes to some endpoint).
        assert!(c.pick(&[0, 1]).is_some());
        assert_eq!(
            Cluster::new(
                "e.dns",
                80,
                RegistryProtocol::Http,
                vec![],
                &mut ClusterStatsCache::detached()
            )
            .pick(&[]),
            None
        );
    }

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
        assert_eq!(
            cs["outbound|80||s.static"].endpoints,
            vec!["127.0.0.1:9".parse().unwrap()]
        );
        assert_eq!(
            cs["outbound|8080||d.dns"].endpoints,
            vec!["127.0.0.2:8080".parse().unwrap()]
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(dns_names(&[&b]), vec!["a.example.com"]);
    }
}
