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
//! - `outlierDetection` gives the cluster a passive outlier detector
//!   ([`outlier_config`]: Istio's translation onto Envoy's settings);
//! - `portLevelSettings` replace the rule's settings on their port;
//! - connection pools, subsets and `ISTIO_MUTUAL` are listed as not enforced.

use std::sync::Arc;
use std::time::Duration;

use super::{Clusters, Output};
use crate::annotations::UpstreamAnnotations;
use crate::model::outlier::OutlierConfig;
use crate::model::{CookiePolicy, HashPolicy, LbPolicy, Protocol};
use crate::resources::istio::destination_rule::{
    ClientTls, ClientTlsMode, LoadBalancerSettings, OutlierDetection, SimpleLb,
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

/// Envoy's outlier detection as Istio writes it from `outlierDetection`: a threshold set
/// to 0 turns its detector off, one set above 0 enforces it (the gateway failure
/// detector only then); absent fields keep Envoy's defaults, `maxEjectionPercent` 0
/// included.
pub fn outlier_config(o: &OutlierDetection) -> OutlierConfig {
    let mut c = OutlierConfig::default();
    let count = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    // The deprecated `consecutiveErrors` counts gateway errors, as Istio maps it.
    if let Some(v) = o.consecutive_errors.filter(|v| *v > 0) {
        c.consecutive_gateway_failure = count(v);
        c.enforcing_consecutive_gateway_failure = true;
    }
    if let Some(v) = o.consecutive_gateway_errors {
        c.consecutive_gateway_failure = count(v);
        c.enforcing_consecutive_gateway_failure = v > 0;
    }
    if let Some(v) = o.consecutive_5xx_errors {
        c.consecutive_5xx = count(v);
        c.enforcing_consecutive_5xx = v > 0;
    }
    if let Some(d) = duration_of(&o.interval).filter(|d| !d.is_zero()) {
        c.interval = d;
    }
    if let Some(d) = duration_of(&o.base_ejection_time).filter(|d| !d.is_zero()) {
        c.base_ejection_time = d;
    }
    c.max_ejection_time = c.max_ejection_time.max(c.base_ejection_time);
    if let Some(p) = o.max_ejection_percent.filter(|p| *p > 0) {
        c.max_ejection_percent = p.min(100) as u32;
    }
    c
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
        let outlier = port_level
            .and_then(|p| p.outlier_detection.as_ref())
            .or(tp.outlier_detection.as_ref());
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
        if let Some(o) = outlier {
            c.set_outlier_detection(outlier_config(o));
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
        &tp.outlier_detection,
        &tp.tls,
    ))
    .chain(tp.port_level_settings.iter().enumerate().map(|(i, p)| {
        (
            format!("spec.trafficPolicy.portLevelSettings[{i}]"),
            &p.load_balancer,
            p.connection_pool.is_some(),
            &p.outlier_detection,
            &p.tls,
        )
    }));
    for (at, lb, pool, outlier, tls) in parts {
        if pool {
            note(format!("{at}.connectionPool"));
        }
        if let Some(o) = outlier {
            if o.min_health_percent.is_some_and(|p| p > 0) {
                note(format!(
                    "{at}.outlierDetection.minHealthPercent (no panic routing: with every endpoint ejected, 503)"
                ));
            }
            if o.split_external_local_origin_errors == Some(true)
                || o.consecutive_local_origin_failures.is_some()
            {
                note(format!(
                    "{at}.outlierDetection local-origin errors (counted with the 5xx)"
                ));
            }
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
