//! DestinationRules onto the clusters of their host, before routes share them:
//!
//! - the host (a name without dots: a Service of the rule's namespace; `*.suffix`)
//!   names the clusters `outbound|<port>||<host>`; an exact host wins over a wildcard,
//!   and among rules for the same host the first (by namespace and name) wins;
//! - `loadBalancer` sets the cluster's policy (`simple`, or a ring hash keyed by a
//!   header, a cookie, the source IP or a query parameter), over what Ingress
//!   annotations set;
//! - `tls` (`SIMPLE`, `MUTUAL`) makes the cluster speak TLS: SNI `sni`, verified unless
//!   `insecureSkipVerify` when the `credentialName` Secret has a `ca.crt`, a client
//!   certificate for `MUTUAL` from the same Secret;
//! - `portLevelSettings` replace the rule's settings on their port;
//! - connection pools, outlier detection, subsets and `ISTIO_MUTUAL` are listed as not
//!   enforced.

use std::sync::Arc;
use std::time::Duration;

use super::{Clusters, Output};
use crate::annotations::UpstreamAnnotations;
use crate::model::{CookiePolicy, HashPolicy, LbPolicy, Protocol};
use crate::resources::istio::destination_rule::{
    ClientTls, ClientTlsMode, LoadBalancerSettings, SimpleLb,
};
use crate::resources::istio::duration_of;
use crate::resources::DestinationRule;
use crate::translate::certificates::Secrets;
use crate::translate::upstream_tls;

use super::virtual_service::qualify;

/// The load balancing policy of Istio's settings.
pub fn lb_policy(lb: &LoadBalancerSettings) -> Option<LbPolicy> {
    if let Some(h) = &lb.consistent_hash {
        let policy = if let Some(n) = &h.http_header_name {
            HashPolicy::Header {
                name: http::HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok()?,
                alt: None,
            }
        } else if let Some(c) = &h.http_cookie {
            HashPolicy::Cookie(CookiePolicy {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl: duration_of(&c.ttl).unwrap_or(Duration::ZERO),
            })
        } else if h.use_source_ip == Some(true) {
            HashPolicy::SourceIp
        } else {
            HashPolicy::QueryParameter(h.http_query_parameter_name.clone()?)
        };
        return Some(LbPolicy::RingHash(policy));
    }
    Some(match lb.simple? {
        SimpleLb::RoundRobin | SimpleLb::Unspecified => LbPolicy::RoundRobin,
        SimpleLb::LeastConn | SimpleLb::LeastRequest => LbPolicy::LeastRequest,
        SimpleLb::Random => LbPolicy::Random,
        // Istio's PASSTHROUGH goes to the address the client asked for: a gateway has
        // none but the cluster's endpoints.
        SimpleLb::Passthrough => return None,
    })
}

/// Whether a rule for `host` (qualified) names a cluster of host `cluster_host`, and how
/// closely (2 exact, 1 wildcard).
fn covers(host: &str, cluster_host: &str) -> Option<u8> {
    if host == cluster_host {
        Some(2)
    } else if host == "*" {
        Some(1)
    } else if let Some(suffix) = host.strip_prefix('*') {
        (cluster_host.len() > suffix.len() && cluster_host.ends_with(suffix)).then_some(1)
    } else {
        None
    }
}

/// Put the rules' policies on the clusters of their hosts.
pub fn apply(
    rules: &[&DestinationRule],
    clusters: &mut Clusters,
    secrets: &Secrets,
    out: &mut Output,
) {
    let mut sorted: Vec<&DestinationRule> = rules.to_vec();
    sorted.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    for dr in &sorted {
        note(dr, out);
    }
    for (name, cluster) in clusters.iter_mut() {
        // The closest rule for this cluster's host.
        let mut best: Option<(u8, &DestinationRule)> = None;
        for dr in &sorted {
            let host = qualify(&dr.spec.host, &dr.metadata.namespace);
            if let Some(rank) = covers(&host, &cluster.host) {
                if best.is_none_or(|(r, _)| r < rank) {
                    best = Some((rank, dr));
                }
            }
        }
        let Some((_, dr)) = best else { continue };
        let Some(tp) = &dr.spec.traffic_policy else {
            continue;
        };
        let port_level = tp
            .port_level_settings
            .iter()
            .find(|p| p.port.is_some_and(|p| p.number == u32::from(cluster.port)));
        let lb = port_level
            .and_then(|p| p.load_balancer.as_ref())
            .or(tp.load_balancer.as_ref());
        let tls = port_level.and_then(|p| p.tls.as_ref()).or(tp.tls.as_ref());
        let who = format!(
            "destinationrule {}/{}",
            dr.metadata.namespace, dr.metadata.name
        );
        let Some(c) = Arc::get_mut(cluster) else {
            out.warnings.push(format!(
                "{who}: cluster {name} is shared; its policy is left as it was"
            ));
            continue;
        };
        if let Some(policy) = lb.and_then(lb_policy) {
            c.set_lb(policy);
        }
        if let Some(t) = tls {
            apply_tls(c, t, &dr.metadata.namespace, secrets, &who, out);
        }
    }
}

fn apply_tls(
    c: &mut crate::model::Cluster,
    t: &ClientTls,
    namespace: &str,
    secrets: &Secrets,
    who: &str,
    out: &mut Output,
) {
    match t.mode {
        ClientTlsMode::Disable => {
            c.tls = None;
            c.protocol = match c.protocol {
                Protocol::Https => Protocol::Http,
                Protocol::Grpcs => Protocol::Grpc,
                p => p,
            };
            return;
        }
        ClientTlsMode::IstioMutual => return,
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {}
    }
    let has_ca = !t.credential_name.is_empty()
        && secrets
            .get(&(namespace.to_string(), t.credential_name.clone()))
            .is_some_and(|s| s.ca.is_some());
    let ann = UpstreamAnnotations {
        backend_protocol: Some(match c.protocol {
            Protocol::Grpc | Protocol::Grpcs => Protocol::Grpcs,
            _ => Protocol::Https,
        }),
        secret: (!t.credential_name.is_empty())
            .then(|| (Some(namespace.to_string()), t.credential_name.clone())),
        verify: Some(has_ca && t.insecure_skip_verify != Some(true)),
        ssl_name: (!t.sni.is_empty()).then(|| t.sni.to_ascii_lowercase()),
        server_name: Some(!t.sni.is_empty()),
    };
    let mut notes = Vec::new();
    let registry = (c.protocol, c.tls.as_ref(), c.sni.as_deref());
    let (protocol, tls) = upstream_tls::resolve(&ann, namespace, registry, secrets, &mut notes);
    c.protocol = protocol;
    c.tls = tls;
    out.warnings
        .extend(notes.into_iter().map(|n| format!("{who}: {n}")));
}

/// What a rule says that is not enforced.
fn note(dr: &DestinationRule, out: &mut Output) {
    let who = format!(
        "destinationrule {}/{}",
        dr.metadata.namespace, dr.metadata.name
    );
    let mut note = |what: String| out.not_enforced.push(format!("{who}: {what}"));
    if !dr.spec.subsets.is_empty() {
        note("spec.subsets (destinations naming a subset go to every endpoint of the host)".into());
    }
    let Some(tp) = &dr.spec.traffic_policy else {
        return;
    };
    let parts = std::iter::once((
        "spec.trafficPolicy".to_string(),
        &tp.load_balancer,
        tp.connection_pool.is_some(),
        tp.outlier_detection.is_some(),
        &tp.tls,
    ))
    .chain(tp.port_level_settings.iter().enumerate().map(|(i, p)| {
        (
            format!("spec.trafficPolicy.portLevelSettings[{i}]"),
            &p.load_balancer,
            p.connection_pool.is_some(),
            p.outlier_detection.is_some(),
            &p.tls,
        )
    }));
    for (at, lb, pool, outlier, tls) in parts {
        if pool {
            note(format!("{at}.connectionPool"));
        }
        if outlier {
            note(format!("{at}.outlierDetection"));
        }
        if let Some(lb) = lb {
            if lb.simple == Some(SimpleLb::Passthrough) {
                note(format!(
                    "{at}.loadBalancer.simple PASSTHROUGH (round robin)"
                ));
            }
            if lb.locality_lb_setting.is_some() {
                note(format!("{at}.loadBalancer.localityLbSetting"));
            }
            if lb.warmup_duration_secs.is_some() {
                note(format!("{at}.loadBalancer.warmupDurationSecs"));
            }
            if let Some(h) = &lb.consistent_hash {
                if h.ring_hash.is_some() || h.maglev.is_some() || h.minimum_ring_size.is_some() {
                    note(format!(
                        "{at}.loadBalancer.consistentHash ring size (the default ring is used)"
                    ));
                }
            }
        }
        if let Some(t) = tls {
            if t.mode == ClientTlsMode::IstioMutual {
                note(format!("{at}.tls.mode ISTIO_MUTUAL"));
            }
            if !t.ca_certificates.is_empty() || !t.client_certificate.is_empty() {
                note(format!(
                    "{at}.tls certificate files (only credentialName Secrets are read)"
                ));
            }
            if !t.subject_alt_names.is_empty() {
                note(format!("{at}.tls.subjectAltNames"));
            }
        }
    }
}
