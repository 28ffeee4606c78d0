//! The balancing of services, from the Ingresses' `load-balance`, `upstream-hash-by` and
//! cookie `affinity` annotations, put on the clusters (a ring is built here).
//!
//! As in Higress, the policy belongs to the service port, not to the route: Higress
//! writes it into the DestinationRule of the backend's service (`ingress_config.go`
//! `convertDestinationRule`, `storeBackendTrafficPolicy`), and the first Ingress in
//! creation order that names a service port claims it; the others' policies for that
//! service are ignored (ingress-nginx documents the same: "the first created Ingress
//! will be used"). Every route to that service, annotated or not, then balances with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{cluster_name, Cluster, LbPolicy};
use crate::resources::ingress::IngressBackend;
use crate::resources::Ingress;

/// Give the clusters the Ingresses (in age order) name their policy: the oldest
/// Ingress with one of these annotations that names a cluster decides it. Returns one
/// note per Ingress whose policy a cluster ignores for that reason (for
/// `/debug/configz` warnings: the user's annotation does not act there).
pub fn apply(ingresses: &[&Ingress], clusters: &mut BTreeMap<String, Arc<Cluster>>) -> Vec<String> {
    let mut claimed: BTreeMap<String, (&LbPolicy, String)> = BTreeMap::new();
    let mut notes = Vec::new();
    for ing in ingresses {
        let Some(policy) = ing.annotations.load_balance.as_deref() else {
            continue;
        };
        for name in backend_clusters(ing, clusters) {
            match claimed.get(&name) {
                Some((p, by)) if *p != policy => notes.push(format!(
                    "ingress {}: its load balancing annotations do not apply to cluster {name}: \
                     ingress {by} (older) set the policy of that service first",
                    super::route_name(ing)
                )),
                Some(_) => {}
                None => {
                    claimed.insert(name, (policy, super::route_name(ing)));
                }
            }
        }
    }
    for (name, (policy, by)) in claimed {
        let Some(cluster) = clusters.get_mut(&name) else {
            continue;
        };
        match Arc::get_mut(cluster) {
            Some(c) => c.set_lb(policy.clone()),
            // Clusters are built afresh for each snapshot: this does not happen.
            None => {
                tracing::warn!(cluster = %name, ingress = %by, "cluster shared; its load balancing is left as it was")
            }
        }
    }
    notes
}

/// The clusters an Ingress's backends resolve to, as the route table resolves them: a
/// Service backend's `outbound|<port>||<svc>.<ns>.svc.cluster.local` (a port by name is
/// the Service port of that name), else the `higress.io/destination` list (a missing
/// port is the registry's).
fn backend_clusters(ing: &Ingress, clusters: &BTreeMap<String, Arc<Cluster>>) -> Vec<String> {
    let ns = &ing.metadata.namespace;
    let registry_port = |host: &str| clusters.values().find(|c| c.host == host).map(|c| c.port);
    let of = |b: &IngressBackend| -> Vec<String> {
        match (&b.service, &ing.annotations.destination) {
            (Some(svc), _) => {
                let host = crate::resources::service::service_host(&svc.name, ns);
                let port = svc
                    .port
                    .number
                    .or_else(|| {
                        let by_name = svc.port.name.as_deref()?;
                        clusters
                            .values()
                            .find(|c| c.host == host && c.service_port.as_deref() == Some(by_name))
                            .map(|c| c.port)
                    })
                    .or_else(|| registry_port(&host));
                port.map(|p| cluster_name(p, "", &host))
                    .into_iter()
                    .collect()
            }
            (None, Some(list)) => list
                .iter()
                .filter_map(|d| {
                    let port = d.port.or_else(|| registry_port(&d.host))?;
                    Some(cluster_name(port, &d.subset, &d.host))
                })
                .collect(),
            (None, None) => Vec::new(),
        }
    };
    let rules = ing
        .spec
        .rules
        .iter()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| h.paths.iter().map(|p| &p.backend));
    let mut out: Vec<String> = ing
        .spec
        .default_backend
        .iter()
        .chain(rules)
        .flat_map(of)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HashPolicy, Protocol};
    use crate::stats::ClusterStatsCache;

    fn ingress(name: &str, created: &str, annotations: &[(&str, &str)], backend: &str) -> Ingress {
        let mut y = format!(
            "metadata:\n  name: {name}\n  namespace: apps\n  creationTimestamp: \"{created}\"\n  annotations:\n"
        );
        for (k, v) in annotations {
            y.push_str(&format!("    {k}: \"{v}\"\n"));
        }
        if annotations.is_empty() {
            y.push_str("    {}\n");
        }
        y.push_str(&format!("spec:\n  rules:\n  - http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n{backend}"));
        Ingress::parse(y.as_bytes()).unwrap()
    }

    fn svc(name: &str, port: u16) -> String {
        format!(
            "          service:\n            name: {name}\n            port: {{number: {port}}}\n"
        )
    }

    fn clusters() -> BTreeMap<String, Arc<Cluster>> {
        let mut stats = ClusterStatsCache::detached();
        let eps = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        [
            ("web.apps.svc.cluster.local", 80),
            ("web.apps.svc.cluster.local", 81),
            ("api.apps.svc.cluster.local", 80),
            ("a.static", 80),
        ]
        .into_iter()
        .map(|(h, p)| {
            let c = Cluster::new(h, p, Protocol::Http, eps.clone(), &mut stats);
            (c.name.clone(), Arc::new(c))
        })
        .collect()
    }

    fn policy(cs: &BTreeMap<String, Arc<Cluster>>, name: &str) -> LbPolicy {
        cs[name].lb.policy().clone()
    }

    #[test]
    fn the_oldest_ingress_naming_a_service_port_decides_its_policy() {
        let older = ingress(
            "older",
            "2024-01-01T00:00:00Z",
            &[("nginx.ingress.kubernetes.io/load-balance", "random")],
            &svc("web", 80),
        );
        let newer = ingress(
            "newer",
            "2024-02-01T00:00:00Z",
            &[("nginx.ingress.kubernetes.io/upstream-hash-by", "$host")],
            &svc("web", 80),
        );
        let other_port = ingress(
            "other-port",
            "2024-03-01T00:00:00Z",
            &[("higress.io/load-balance", "least_conn")],
            &svc("web", 81),
        );
        let plain = ingress("plain", "2023-01-01T00:00:00Z", &[], &svc("api", 80));
        let dest = ingress(
            "dest",
            "2024-01-01T00:00:00Z",
            &[
                ("higress.io/destination", "a.static"),
                ("higress.io/upstream-hash-by", "$remote_addr"),
            ],
            "          resource: {kind: McpBridge, name: default}\n",
        );
        let mut cs = clusters();
        apply(&[&plain, &older, &dest, &newer, &other_port], &mut cs);
        assert_eq!(
            policy(&cs, "outbound|80||web.apps.svc.cluster.local"),
            LbPolicy::Random
        );
        assert_eq!(
            policy(&cs, "outbound|81||web.apps.svc.cluster.local"),
            LbPolicy::LeastRequest
        );
        assert_eq!(
            policy(&cs, "outbound|80||api.apps.svc.cluster.local"),
            LbPolicy::RoundRobin
        );
        assert_eq!(
            policy(&cs, "outbound|80||a.static"),
            LbPolicy::RingHash(HashPolicy::SourceIp)
        );
        // The newer Ingress claims the service when it is the only one with a policy.
        let mut cs = clusters();
        apply(&[&plain, &newer], &mut cs);
        assert_eq!(
            policy(&cs, "outbound|80||web.apps.svc.cluster.local"),
            LbPolicy::RingHash(HashPolicy::Authority)
        );
    }
}
