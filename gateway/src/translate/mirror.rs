//! `mirror-*` compiled into the route's mirror policy (`model/mirror.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::annotations::{MirrorAnnotations, MirrorTarget};
use crate::model::mirror::MirrorPolicy;
use crate::model::{cluster_name, Cluster};

/// The mirror of `mirror-*`: the cluster `outbound|<port>||<host>` of the FQDN or of the
/// Service `<name>.<namespace>.svc.cluster.local` (the port defaulting to the Service's
/// lowest-named cluster port, as `route_table::resolve` does). An unknown host mirrors nothing
/// until a registry defines it.
pub fn mirror_policy(
    m: &MirrorAnnotations,
    namespace: &str,
    clusters: &BTreeMap<String, Arc<Cluster>>,
) -> MirrorPolicy {
    let (host, port) = match &m.target {
        MirrorTarget::Fqdn { host, port } => (host.clone(), Some(*port)),
        MirrorTarget::Service {
            namespace: ns,
            name,
            port,
        } => (
            crate::resources::service::service_host(name, ns.as_deref().unwrap_or(namespace)),
            *port,
        ),
    };
    let port = port.or_else(|| clusters.values().find(|c| c.host == host).map(|c| c.port));
    let name = match port {
        Some(p) => cluster_name(p, "", &host),
        None => format!("outbound|||{host}"),
    };
    let cluster = clusters.get(&name).cloned();
    if cluster.is_none() {
        tracing::warn!(cluster = %name, "mirror target names a host no registry defines yet; nothing is mirrored until it appears");
    }
    MirrorPolicy::new(name.into(), cluster, m.percentage)
}
