//! The retry policy and the default backend of an Ingress's routes (`annotations/retry.rs`,
//! `annotations/fallback.rs`) put on each route's policy.
//!
//! The default backend is the Service's first port (Higress reads the Service and takes
//! `spec.ports[0]`). A Service no registry knows leaves the route without a fallback
//! (Higress logs and drops the annotation), with a note naming it.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderValue;

use crate::annotations::IngressAnnotations;
use crate::model::retry::{Fallback, NEVER_REDIRECTED};
use crate::model::{Cluster, Route, WeightedCluster};
use crate::resources::service::service_host;

/// What the route's Ingress (in `namespace`) asks of retries and fallbacks; the
/// default backend is resolved once per Ingress and shared by its routes through
/// [`FallbackTarget`].
pub fn apply(route: &mut Route, ann: &IngressAnnotations, target: Option<&FallbackTarget>) {
    route.policy.retry = ann.retry.clone();
    if let Some(t) = target {
        route.policy.fallback = Some(Box::new(t.for_route(&route.name)));
    }
}

/// The default backend of one Ingress, resolved against the clusters.
pub struct FallbackTarget {
    cluster: Arc<Cluster>,
    codes: Vec<u16>,
    service: HeaderValue,
}

impl FallbackTarget {
    /// The Ingress's `default-backend` Service, at its first port; `None` (with a note)
    /// when no such Service is known.
    pub fn resolve(
        ann: &IngressAnnotations,
        namespace: &str,
        clusters: &BTreeMap<String, Arc<Cluster>>,
        notes: &mut Vec<String>,
    ) -> Option<FallbackTarget> {
        let b = ann.default_backend.as_ref()?;
        let ns = b.namespace.as_deref().unwrap_or(namespace);
        let host = service_host(&b.name, ns);
        let cluster = clusters
            .values()
            .find(|c| c.host == host && c.service_port_index == Some(0));
        let Some(cluster) = cluster else {
            notes.push(format!(
                "default-backend: Service {ns}/{} not found (or without ports); no fallback",
                b.name
            ));
            return None;
        };
        let service = HeaderValue::from_str(&format!("{ns}/{}", b.name)).ok()?;
        Some(FallbackTarget {
            cluster: cluster.clone(),
            codes: b
                .codes
                .iter()
                .copied()
                .filter(|c| !NEVER_REDIRECTED.contains(c))
                .collect(),
            service,
        })
    }

    fn for_route(&self, route_name: &str) -> Fallback {
        let c = &self.cluster;
        Fallback {
            destination: WeightedCluster {
                name: c.name.as_str().into(),
                cluster: Some(c.clone()),
                weight: 100,
                protocol: c.protocol,
                tls: c.tls.clone(),
                headers: None,
            },
            codes: self.codes.clone(),
            route_name: HeaderValue::from_str(&format!("{route_name}-fallback"))
                .unwrap_or_else(|_| HeaderValue::from_static("-fallback")),
            service: self.service.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::DefaultBackend;
    use crate::model::Protocol;
    use crate::stats::ClusterStatsCache;

    fn clusters() -> BTreeMap<String, Arc<Cluster>> {
        let mut stats = ClusterStatsCache::detached();
        let mut out = BTreeMap::new();
        for (i, port) in [8080u16, 80].into_iter().enumerate() {
            let mut c = Cluster::new(
                "errors.apps.svc.cluster.local",
                port,
                Protocol::Http,
                vec!["127.0.0.1:9".parse().unwrap()],
                &mut stats,
            );
            c.service_port_index = Some(i as u16);
            out.insert(c.name.clone(), Arc::new(c));
        }
        out
    }

    fn ann(namespace: Option<&str>, name: &str, codes: &[u16]) -> IngressAnnotations {
        IngressAnnotations {
            default_backend: Some(Box::new(DefaultBackend {
                namespace: namespace.map(String::from),
                name: name.into(),
                codes: codes.to_vec(),
            })),
            ..IngressAnnotations::default()
        }
    }

    #[test]
    fn first_port_of_the_service_in_the_ingress_namespace() {
        let mut notes = vec![];
        let t = FallbackTarget::resolve(
            &ann(None, "errors", &[404, 302, 503]),
            "apps",
            &clusters(),
            &mut notes,
        )
        .unwrap();
        assert!(notes.is_empty());
        let f = t.for_route("apps/shop");
        assert_eq!(
            f.destination.name.as_ref(),
            "outbound|8080||errors.apps.svc.cluster.local"
        );
        assert_eq!(f.codes, vec![404, 503], "302 is never redirected");
        assert_eq!(f.route_name, "apps/shop-fallback");
        assert_eq!(f.service, "apps/errors");
    }

    #[test]
    fn unknown_service_is_noted_and_ignored() {
        let mut notes = vec![];
        let t = FallbackTarget::resolve(
            &ann(Some("other"), "errors", &[]),
            "apps",
            &clusters(),
            &mut notes,
        );
        assert!(t.is_none());
        assert!(notes[0].contains("other/errors"), "{notes:?}");
    }
}
