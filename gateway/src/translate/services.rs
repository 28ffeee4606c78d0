//! Clusters of Kubernetes Services: `outbound|<port>||<name>.<namespace>.svc.cluster.local`
//! per Service port, with the ready addresses of its EndpointSlices (or, in a directory,
//! of the `v1` Endpoints of the same name) at the matching target port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::model::{Cluster, Protocol};
use crate::resources::endpoints::PortEndpoints;
use crate::resources::service::ServicePort;
use crate::resources::{EndpointSlice, Endpoints, Service};
use crate::stats::ClusterStatsCache;

/// What the Service's port asks for upstream, as Istio selects a protocol: `appProtocol`,
/// else the port name's prefix (`grpc`, `http2`, `https`).
fn protocol(p: &ServicePort) -> Protocol {
    let by = |s: &str| {
        let s = s.to_ascii_lowercase();
        if s.starts_with("grpcs") {
            Some(Protocol::Grpcs)
        } else if s.starts_with("grpc") {
            Some(Protocol::Grpc)
        } else if s.starts_with("http2") || s == "kubernetes.io/h2c" {
            Some(Protocol::Http2)
        } else if s.starts_with("https") {
            Some(Protocol::Https)
        } else {
            None
        }
    };
    p.app_protocol
        .as_deref()
        .and_then(by)
        .or_else(|| p.name.as_deref().and_then(by))
        .unwrap_or(Protocol::Http)
}

/// Add the Services' clusters to `out`. `skipped` names what is not supported.
pub fn build(
    services: &[&Service],
    slices: &[&EndpointSlice],
    endpoints: &[&Endpoints],
    stats: &mut ClusterStatsCache,
    out: &mut BTreeMap<String, Arc<Cluster>>,
    skipped: &mut Vec<String>,
) {
    for svc in services {
        let (ns, name) = (&svc.metadata.namespace, &svc.metadata.name);
        if svc.spec.kind.as_deref() == Some("ExternalName") {
            skipped.push(format!("service {ns}/{name} (type ExternalName)"));
            continue;
        }
        let own_slices: Vec<PortEndpoints> = slices
            .iter()
            .filter(|s| s.metadata.namespace == *ns && s.service() == Some(name.as_str()))
            .flat_map(|s| s.ready())
            .collect();
        let ready = if own_slices.is_empty() {
            endpoints
                .iter()
                .filter(|e| e.metadata.namespace == *ns && e.metadata.name == *name)
                .flat_map(|e| e.ready())
                .collect()
        } else {
            own_slices
        };
        for (i, p) in svc.spec.ports.iter().enumerate() {
            let port_name = p.name.clone().unwrap_or_default();
            // Sorted and deduplicated: slices may overlap while they are being updated.
            let addrs: BTreeSet<SocketAddr> = ready
                .iter()
                .filter(|r| r.port_name == port_name)
                .flat_map(|r| r.addresses.iter().map(|ip| SocketAddr::new(*ip, r.port)))
                .collect();
            let mut c = Cluster::new(
                &svc.host(),
                p.port as u16,
                protocol(p),
                addrs.into_iter().collect(),
                stats,
            );
            c.service_port = p.name.clone();
            c.service_port_index = u16::try_from(i).ok();
            out.insert(c.name.clone(), Arc::new(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ns<T>(mut t: T, meta: impl Fn(&mut T) -> &mut crate::resources::ObjectMeta) -> T {
        meta(&mut t).namespace = "apps".into();
        t
    }

    #[test]
    fn ports_match_slices_by_name_and_fall_back_to_endpoints() {
        let mut web = with_ns(
            Service::parse(
                b"spec:\n  ports:\n  - {name: http, port: 80}\n  - {name: grpc-api, port: 9090}\n",
            )
            .unwrap(),
            |s| &mut s.metadata,
        );
        web.metadata.name = "web".into();
        let slice = with_ns(
            EndpointSlice::parse(b"metadata:\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\nports:\n- {name: http, port: 8080}\n- {name: grpc-api, port: 9000}\n").unwrap(),
            |s| &mut s.metadata,
        );
        let mut old = with_ns(
            Service::parse(b"spec:\n  ports:\n  - {port: 8000}\n").unwrap(),
            |s| &mut s.metadata,
        );
        old.metadata.name = "old".into();
        let mut eps = with_ns(
            Endpoints::parse(b"subsets:\n- addresses: [{ip: 10.0.0.9}]\n  ports: [{port: 8001}]\n")
                .unwrap(),
            |e| &mut e.metadata,
        );
        eps.metadata.name = "old".into();
        let mut out = BTreeMap::new();
        let mut skipped = vec![];
        build(
            &[&web, &old],
            &[&slice],
            &[&eps],
            &mut ClusterStatsCache::detached(),
            &mut out,
            &mut skipped,
        );
        let http = &out["outbound|80||web.apps.svc.cluster.local"];
        assert_eq!(http.endpoints, vec!["10.0.0.1:8080".parse().unwrap()]);
        assert_eq!(http.service_port.as_deref(), Some("http"));
        let grpc = &out["outbound|9090||web.apps.svc.cluster.local"];
        assert_eq!(grpc.endpoints, vec!["10.0.0.1:9000".parse().unwrap()]);
        assert_eq!(grpc.protocol, Protocol::Grpc);
        assert_eq!(
            out["outbound|8000||old.apps.svc.cluster.local"].endpoints,
            vec!["10.0.0.9:8001".parse().unwrap()]
        );
        assert!(skipped.is_empty());
    }
}
