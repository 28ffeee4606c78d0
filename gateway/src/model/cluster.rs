//! A cluster: `outbound|<port>|<subset>|<host>` with its endpoints, its own TLS and
//! stats, and how a request picks an endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use super::load_balancer::{LbPolicy, LoadBalancer};
use super::outlier::{OutlierConfig, OutlierDetector};
use super::protocol::Protocol;
use super::upstream_tls::UpstreamTls;
use crate::stats::{ClusterIdentity, ClusterStats, ClusterStatsCache};

/// Envoy/Istio cluster name.
pub fn cluster_name(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

pub struct Cluster {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    pub endpoints: Vec<SocketAddr>,
    /// The endpoints' load balancing weights, in their order (a registry's instances);
    /// `None`: all alike.
    pub weights: Option<Box<[u32]>>,
    /// The name a TLS registry sends as SNI (`sni`, or a `dns` registry's one domain).
    pub sni: Option<String>,
    /// The registry's own TLS (`protocol: https|grpcs`); Ingress annotations may override.
    pub tls: Option<Arc<UpstreamTls>>,
    /// A Service port's name, which an Ingress `backend.service.port.name` refers to.
    pub service_port: Option<String>,
    /// How an endpoint is picked (`load-balance`, `upstream-hash-by`, cookie
    /// `affinity` of the oldest Ingress naming this service; round robin by default).
    pub lb: LoadBalancer,
    /// The position of that port in the Service's `spec.ports` (`default-backend` goes
    /// to the first, as nginx-ingress and Higress do).
    pub service_port_index: Option<u16>,
    pub stats: Arc<ClusterStats>,
    /// Keeps this cluster's pooled connections apart from another cluster's to the same
    /// address (Envoy pools per cluster), so bytes count for the right one.
    pub pool_key: u64,
    /// Passive outlier detection (a DestinationRule's `outlierDetection`); none by
    /// default, as in Istio.
    pub outlier: Option<Arc<OutlierDetector>>,
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
        protocol: Protocol,
        endpoints: Vec<SocketAddr>,
        stats_cache: &mut ClusterStatsCache,
    ) -> Self {
        let name = cluster_name(port, "", host);
        let port_name = format!("{protocol:?}").to_lowercase();
        let stats = stats_cache.get(&ClusterIdentity {
            name: &name,
            host,
            port,
            target_port: endpoints.first().map_or(port, |e| e.port()),
            port_name: &port_name,
            subset: "",
        });
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
            weights: None,
            sni: None,
            tls: None,
            service_port: None,
            lb: LoadBalancer::default(),
            service_port_index: None,
            outlier: None,
        }
    }

    /// A TLS registry's SNI and the TLS it makes of the registry's own protocol.
    pub fn with_tls(mut self, sni: Option<String>, tls: Option<Arc<UpstreamTls>>) -> Self {
        self.tls = tls;
        self.sni = sni;
        self
    }

    /// Balance over the endpoints with `policy` (its ring, if any, is built now).
    pub fn set_lb(&mut self, policy: LbPolicy) {
        self.lb = LoadBalancer::weighted(policy, &self.endpoints, self.weights.as_deref());
    }

    /// Give the endpoints weights (one each, in order), kept by later [`Self::set_lb`].
    pub fn with_weights(mut self, weights: Vec<u32>) -> Self {
        self.weights = Some(weights.into_boxed_slice());
        self.set_lb(self.lb.policy().clone());
        self
    }

    /// Detect outliers among the endpoints with `config` (the live detector when the
    /// cluster had one with the same settings and endpoints).
    pub fn set_outlier_detection(&mut self, config: OutlierConfig) {
        self.outlier = Some(OutlierDetector::for_cluster(
            config,
            &self.endpoints,
            &self.stats,
        ));
    }

    /// An endpoint (index, address) for a request without a hash key, skipping the
    /// indices in `tried` while any untried one is left.
    pub fn pick(&self, tried: &[u32]) -> Option<(u32, SocketAddr)> {
        self.pick_with(None, 0, tried)
    }

    /// The endpoint (index, address) the cluster's policy picks: `hash` is the request's
    /// hash for a hashing policy, `random` a uniform random number; the indices in
    /// `tried` are skipped while any untried one is left (retries go to another
    /// endpoint where there is one); ejected endpoints are never picked (`None` when
    /// all are).
    pub fn pick_with(
        &self,
        hash: Option<u64>,
        random: u64,
        tried: &[u32],
    ) -> Option<(u32, SocketAddr)> {
        let n = self.endpoints.len();
        let i = match &self.outlier {
            None => self.lb.pick(n, hash, random, tried)?,
            Some(d) => self
                .lb
                .pick_healthy(n, hash, random, tried, |i| !d.is_ejected(i))?,
        };
        Some((i, *self.endpoints.get(i as usize)?))
    }
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
            Protocol::Http,
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
                Protocol::Http,
                vec![],
                &mut ClusterStatsCache::detached()
            )
            .pick(&[]),
            None
        );
    }
}
