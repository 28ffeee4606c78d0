//! Where an Ingress backend's traffic goes: the cluster of each destination, found by
//! (port, subset, host) in a table built once per route table, with the protocol and TLS
//! the Ingress's upstream annotations give it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::certificates::Secrets;
use super::upstream_tls;
use crate::annotations::{Destination, UpstreamAnnotations};
use crate::model::{cluster_name, Cluster, Protocol, WeightedCluster};

/// A cluster name's parts: (port, subset, host).
type ClusterParts<'a> = (u16, &'a str, &'a str);

/// The ports of the clusters by host, found once per table rather than by a scan over
/// every cluster for every destination.
pub(super) struct ClusterPorts<'a> {
    /// A destination without a port takes the first cluster of its host (by name).
    pub(super) first: HashMap<&'a str, u16>,
    /// A Service port by name: the cluster of that host and port name.
    pub(super) named: HashMap<(&'a str, &'a str), u16>,
    /// Each cluster by (port, subset, host), with its name once, shared by every route
    /// to it: 10,000 routes to 100 clusters keep 100 names, and finding a destination's
    /// cluster formats no name.
    by_parts: HashMap<ClusterParts<'a>, (&'a Arc<Cluster>, Arc<str>)>,
}

impl<'a> ClusterPorts<'a> {
    pub(super) fn new(clusters: &'a BTreeMap<String, Arc<Cluster>>) -> Self {
        let mut me = ClusterPorts {
            first: HashMap::new(),
            named: HashMap::new(),
            by_parts: HashMap::with_capacity(clusters.len()),
        };
        for c in clusters.values() {
            // `outbound|<port>|<subset>|<host>`
            let mut parts = c.name.splitn(4, '|').skip(1);
            if let (Some(port), Some(subset), Some(host)) = (
                parts.next().and_then(|p| p.parse().ok()),
                parts.next(),
                parts.next(),
            ) {
                me.by_parts
                    .insert((port, subset, host), (c, Arc::from(c.name.as_str())));
            }
            me.first.entry(c.host.as_str()).or_insert(c.port);
            if let Some(name) = c.service_port.as_deref() {
                me.named.entry((c.host.as_str(), name)).or_insert(c.port);
            }
        }
        me
    }
}

/// A destination's cluster: `outbound|<port>|<subset>|<host>`, the port defaulting to the
/// registry's. An unknown host stays unresolved (503 `no healthy upstream`). The
/// Ingress's upstream annotations decide its protocol and TLS.
pub(super) fn resolve(
    d: &Destination,
    ports: &ClusterPorts,
    upstream: &UpstreamAnnotations,
    namespace: &str,
    secrets: &Secrets,
    notes: &mut Vec<String>,
) -> WeightedCluster {
    let port = d.port.or_else(|| ports.first.get(d.host.as_str()).copied());
    let known = port.and_then(|p| ports.by_parts.get(&(p, d.subset.as_str(), d.host.as_str())));
    let (name, cluster): (Arc<str>, _) = match known {
        Some((c, name)) => (name.clone(), Some((*c).clone())),
        None => {
            let name = match port {
                Some(p) => cluster_name(p, &d.subset, &d.host),
                None => format!("outbound|||{}", d.host),
            };
            tracing::warn!(cluster = %name, "destination names a host no registry defines yet; 503 until it appears");
            (name.into(), None)
        }
    };
    let registry = match &cluster {
        Some(c) => (c.protocol, c.tls.as_ref(), c.sni.as_deref()),
        None => (Protocol::Http, None, None),
    };
    let (protocol, tls) = upstream_tls::resolve(upstream, namespace, registry, secrets, notes);
    WeightedCluster {
        name,
        cluster,
        weight: d.weight,
        protocol,
        tls,
        headers: None,
    }
}
