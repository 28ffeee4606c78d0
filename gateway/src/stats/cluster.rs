//! Envoy's per-cluster stats (`cluster.<name>.upstream_*`), labelled `cluster_name`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use telemetry::stats::{Counter, Family, Gauge, Histogram, Kind, Registry, ENVOY_DEFAULT_BUCKETS};

use super::istio::{Destination, IstioFamilies, IstioStats};
use super::roster::Roster;
use super::stat_name::{ClusterIdentity, StatNamePattern};
use super::{class_index, CLASSES};

/// Status codes with a slot of their own (`upstream_rq_<code>`).
const CODES: std::ops::RangeInclusive<u16> = 100..=599;

/// The stats of one cluster, shared by every snapshot in which the cluster's stat
/// name stays the same, so its counts survive reloads.
pub struct ClusterStats {
    /// The `cluster_name` label value.
    pub stat_name: String,
    /// Requests sent on an upstream connection, retries included.
    pub rq_total: Counter,
    rq_class: [Counter; 5],
    /// `upstream_rq_<code>`, created on a code's first use.
    rq_code: Box<[OnceLock<Counter>]>,
    rq_family: Arc<Family>,
    pub rq_time: Histogram,
    pub rq_timeout: Counter,
    pub rq_retry: Counter,
    /// Requests dropped because too many were in flight (`upstream_rq_pending_overflow`;
    /// counted for mirrored requests, on the mirror's cluster).
    pub rq_pending_overflow: Counter,
    /// Mirrors given up because the request body passed the buffer limit
    /// (`upstream_rq_retry_or_shadow_abandoned`, on the route's cluster as Envoy counts).
    pub rq_retry_or_shadow_abandoned: Counter,
    pub cx_total: Counter,
    pub cx_active: Gauge,
    pub cx_connect_fail: Counter,
    pub cx_connect_timeout: Counter,
    /// Connections the upstream closed or reset with a request on them
    /// (`upstream_cx_destroy_remote_with_active_rq`).
    pub cx_destroy_remote_with_active_rq: Counter,
    /// Connections the gateway closed with a request on them: a timeout, a protocol
    /// error (`upstream_cx_destroy_local_with_active_rq`).
    pub cx_destroy_local_with_active_rq: Counter,
    /// Responses that broke HTTP (`upstream_cx_protocol_error`).
    pub cx_protocol_error: Counter,
    /// Requests whose stream the upstream reset (`upstream_rq_rx_reset`; HTTP/2
    /// `RST_STREAM`).
    pub rq_rx_reset: Counter,
    pub cx_rx_bytes: Counter,
    pub cx_tx_bytes: Counter,
    /// TLS connections established (`ssl.handshake`).
    pub ssl_handshake: Counter,
    /// TLS handshakes that failed, certificate verification included (`ssl.connection_error`).
    pub ssl_connection_error: Counter,
    pub membership_total: Gauge,
    pub membership_healthy: Gauge,
    /// Refreshes of a `dns` registry's endpoints: tried, answered, answered with
    /// nothing new, failed (the last good endpoints kept).
    pub update_attempt: Counter,
    pub update_success: Counter,
    pub update_no_rebuild: Counter,
    pub update_failure: Counter,
    pub istio: IstioStats,
    /// `outlier_detection.*`, made when the cluster first gets a detector (Envoy has
    /// them only for clusters with outlier detection).
    outlier: OnceLock<OutlierStats>,
    outlier_families: Arc<OutlierFamilies>,
}

/// Envoy's `cluster.<name>.outlier_detection.*` (the consecutive detectors').
#[derive(Debug)]
pub struct OutlierStats {
    pub ejections_active: Gauge,
    pub ejections_enforced_total: Counter,
    pub ejections_overflow: Counter,
    pub ejections_enforced_consecutive_5xx: Counter,
    pub ejections_detected_consecutive_5xx: Counter,
    pub ejections_enforced_consecutive_gateway_failure: Counter,
    pub ejections_detected_consecutive_gateway_failure: Counter,
}

struct OutlierFamilies {
    ejections_active: Arc<Family>,
    ejections_enforced_total: Arc<Family>,
    ejections_overflow: Arc<Family>,
    ejections_enforced_consecutive_5xx: Arc<Family>,
    ejections_detected_consecutive_5xx: Arc<Family>,
    ejections_enforced_consecutive_gateway_failure: Arc<Family>,
    ejections_detected_consecutive_gateway_failure: Arc<Family>,
}

impl OutlierFamilies {
    fn register(r: &Registry) -> Self {
        let counter = |name, help| r.family(name, help, Kind::Counter);
        OutlierFamilies {
            ejections_active: r.family(
                "envoy_cluster_outlier_detection_ejections_active",
                "Endpoints ejected by outlier detection now.",
                Kind::Gauge,
            ),
            ejections_enforced_total: counter(
                "envoy_cluster_outlier_detection_ejections_enforced_total",
                "Ejections enforced, of any kind.",
            ),
            ejections_overflow: counter(
                "envoy_cluster_outlier_detection_ejections_overflow",
                "Ejections not made because of the maximum ejection percentage.",
            ),
            ejections_enforced_consecutive_5xx: counter(
                "envoy_cluster_outlier_detection_ejections_enforced_consecutive_5xx",
                "Consecutive 5xx ejections enforced.",
            ),
            ejections_detected_consecutive_5xx: counter(
                "envoy_cluster_outlier_detection_ejections_detected_consecutive_5xx",
                "Consecutive 5xx outliers detected (enforced or not).",
            ),
            ejections_enforced_consecutive_gateway_failure: counter(
                "envoy_cluster_outlier_detection_ejections_enforced_consecutive_gateway_failure",
                "Consecutive gateway failure (502, 503, 504) ejections enforced.",
            ),
            ejections_detected_consecutive_gateway_failure: counter(
                "envoy_cluster_outlier_detection_ejections_detected_consecutive_gateway_failure",
                "Consecutive gateway failure outliers detected (enforced or not).",
            ),
        }
    }
}

impl std::fmt::Debug for ClusterStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStats")
            .field("stat_name", &self.stat_name)
            .finish_non_exhaustive()
    }
}

/// The cluster families, registered once.
struct ClusterFamilies {
    rq_total: Arc<Family>,
    rq: Arc<Family>,
    rq_time: Arc<Family>,
    rq_timeout: Arc<Family>,
    rq_retry: Arc<Family>,
    rq_pending_overflow: Arc<Family>,
    rq_retry_or_shadow_abandoned: Arc<Family>,
    cx_total: Arc<Family>,
    cx_active: Arc<Family>,
    cx_connect_fail: Arc<Family>,
    cx_connect_timeout: Arc<Family>,
    cx_destroy_remote_with_active_rq: Arc<Family>,
    cx_destroy_local_with_active_rq: Arc<Family>,
    cx_protocol_error: Arc<Family>,
    rq_rx_reset: Arc<Family>,
    cx_rx_bytes: Arc<Family>,
    cx_tx_bytes: Arc<Family>,
    ssl_handshake: Arc<Family>,
    ssl_connection_error: Arc<Family>,
    membership_total: Arc<Family>,
    membership_healthy: Arc<Family>,
    update_attempt: Arc<Family>,
    update_success: Arc<Family>,
    update_no_rebuild: Arc<Family>,
    update_failure: Arc<Family>,
    outlier: Arc<OutlierFamilies>,
}

impl ClusterFamilies {
    fn register(r: &Registry) -> Self {
        let counter = |name, help| r.family(name, help, Kind::Counter);
        let gauge = |name, help| r.family(name, help, Kind::Gauge);
        ClusterFamilies {
            rq_total: counter(
                "envoy_cluster_upstream_rq_total",
                "Requests sent upstream, retries included.",
            ),
            rq: counter(
                "envoy_cluster_upstream_rq",
                "Upstream requests by response code and by response code class.",
            ),
            rq_time: r.histogram_family(
                "envoy_cluster_upstream_rq_time",
                "Upstream request time, request start to upstream response complete (ms).",
                ENVOY_DEFAULT_BUCKETS,
            ),
            rq_timeout: counter(
                "envoy_cluster_upstream_rq_timeout",
                "Upstream requests that timed out waiting for the response.",
            ),
            rq_retry: counter("envoy_cluster_upstream_rq_retry", "Upstream request retries."),
            rq_pending_overflow: counter(
                "envoy_cluster_upstream_rq_pending_overflow",
                "Requests dropped because too many were in flight (mirrored requests over the in-flight cap).",
            ),
            rq_retry_or_shadow_abandoned: counter(
                "envoy_cluster_upstream_rq_retry_or_shadow_abandoned",
                "Mirrors given up because the request body passed the buffer limit.",
            ),
            cx_total: counter("envoy_cluster_upstream_cx_total", "Upstream connections."),
            cx_active: gauge(
                "envoy_cluster_upstream_cx_active",
                "Upstream connections open.",
            ),
            cx_connect_fail: counter(
                "envoy_cluster_upstream_cx_connect_fail",
                "Upstream connection failures, timeouts included.",
            ),
            cx_connect_timeout: counter(
                "envoy_cluster_upstream_cx_connect_timeout",
                "Upstream connection attempts that timed out.",
            ),
            cx_destroy_remote_with_active_rq: counter(
                "envoy_cluster_upstream_cx_destroy_remote_with_active_rq",
                "Upstream connections closed or reset by the upstream with a request on them.",
            ),
            cx_destroy_local_with_active_rq: counter(
                "envoy_cluster_upstream_cx_destroy_local_with_active_rq",
                "Upstream connections closed by the gateway with a request on them (timeouts, protocol errors).",
            ),
            cx_protocol_error: counter(
                "envoy_cluster_upstream_cx_protocol_error",
                "Upstream responses that broke HTTP (invalid head or framing).",
            ),
            rq_rx_reset: counter(
                "envoy_cluster_upstream_rq_rx_reset",
                "Upstream requests whose stream the upstream reset (HTTP/2 RST_STREAM).",
            ),
            cx_rx_bytes: counter(
                "envoy_cluster_upstream_cx_rx_bytes_total",
                "Bytes received from upstream: response heads and bodies (HTTP/1.1 sizes, no chunk framing).",
            ),
            cx_tx_bytes: counter(
                "envoy_cluster_upstream_cx_tx_bytes_total",
                "Bytes sent upstream: request heads and bodies (HTTP/1.1 sizes, no chunk framing).",
            ),
            ssl_handshake: counter(
                "envoy_cluster_ssl_handshake",
                "Upstream TLS connections established.",
            ),
            ssl_connection_error: counter(
                "envoy_cluster_ssl_connection_error",
                "Upstream TLS handshakes that failed (certificate verification included).",
            ),
            membership_total: gauge(
                "envoy_cluster_membership_total",
                "Endpoints in the cluster.",
            ),
            membership_healthy: gauge(
                "envoy_cluster_membership_healthy",
                "Endpoints in the cluster considered healthy (not ejected).",
            ),
            update_attempt: counter(
                "envoy_cluster_update_attempt",
                "Endpoint refreshes tried (DNS resolutions of a dns registry).",
            ),
            update_success: counter(
                "envoy_cluster_update_success",
                "Endpoint refreshes answered.",
            ),
            update_no_rebuild: counter(
                "envoy_cluster_update_no_rebuild",
                "Endpoint refreshes answered with the endpoints the cluster had.",
            ),
            update_failure: counter(
                "envoy_cluster_update_failure",
                "Endpoint refreshes that failed (the last good endpoints are kept).",
            ),
            outlier: Arc::new(OutlierFamilies::register(r)),
        }
    }
}

impl ClusterStats {
    fn register(f: &ClusterFamilies, stat_name: &str, istio: IstioStats) -> Self {
        let l = [("cluster_name", stat_name)];
        ClusterStats {
            stat_name: stat_name.to_string(),
            rq_total: f.rq_total.counter(&l),
            // Class series exist from the start, at zero, so `rate()` sees a cluster's
            // first request; per-code series appear with their first response.
            rq_class: CLASSES.map(|c| f.rq.counter(&[("response_code_class", c), l[0]])),
            rq_code: CODES.map(|_| OnceLock::new()).collect(),
            rq_family: f.rq.clone(),
            rq_time: f.rq_time.histogram(&l),
            rq_timeout: f.rq_timeout.counter(&l),
            rq_retry: f.rq_retry.counter(&l),
            rq_pending_overflow: f.rq_pending_overflow.counter(&l),
            rq_retry_or_shadow_abandoned: f.rq_retry_or_shadow_abandoned.counter(&l),
            cx_total: f.cx_total.counter(&l),
            cx_active: f.cx_active.gauge(&l),
            cx_connect_fail: f.cx_connect_fail.counter(&l),
            cx_connect_timeout: f.cx_connect_timeout.counter(&l),
            cx_destroy_remote_with_active_rq: f.cx_destroy_remote_with_active_rq.counter(&l),
            cx_destroy_local_with_active_rq: f.cx_destroy_local_with_active_rq.counter(&l),
            cx_protocol_error: f.cx_protocol_error.counter(&l),
            rq_rx_reset: f.rq_rx_reset.counter(&l),
            cx_rx_bytes: f.cx_rx_bytes.counter(&l),
            cx_tx_bytes: f.cx_tx_bytes.counter(&l),
            ssl_handshake: f.ssl_handshake.counter(&l),
            ssl_connection_error: f.ssl_connection_error.counter(&l),
            membership_total: f.membership_total.gauge(&l),
            membership_healthy: f.membership_healthy.gauge(&l),
            update_attempt: f.update_attempt.counter(&l),
            update_success: f.update_success.counter(&l),
            update_no_rebuild: f.update_no_rebuild.counter(&l),
            update_failure: f.update_failure.counter(&l),
            istio,
            outlier: OnceLock::new(),
            outlier_families: f.outlier.clone(),
        }
    }

    /// The outlier detection stats, made (at zero) on first use.
    pub fn outlier(&self) -> &OutlierStats {
        self.outlier.get_or_init(|| {
            let f = &self.outlier_families;
            let l = [("cluster_name", self.stat_name.as_str())];
            OutlierStats {
                ejections_active: f.ejections_active.gauge(&l),
                ejections_enforced_total: f.ejections_enforced_total.counter(&l),
                ejections_overflow: f.ejections_overflow.counter(&l),
                ejections_enforced_consecutive_5xx: f
                    .ejections_enforced_consecutive_5xx
                    .counter(&l),
                ejections_detected_consecutive_5xx: f
                    .ejections_detected_consecutive_5xx
                    .counter(&l),
                ejections_enforced_consecutive_gateway_failure: f
                    .ejections_enforced_consecutive_gateway_failure
                    .counter(&l),
                ejections_detected_consecutive_gateway_failure: f
                    .ejections_detected_consecutive_gateway_failure
                    .counter(&l),
            }
        })
    }

    /// A response from this cluster (or the gateway's 503/504 on its behalf after an
    /// attempt) went downstream with `status`.
    pub fn response(&self, status: u16) {
        if let Some(i) = class_index(status) {
            self.rq_class[i].inc();
        }
        if let Some(slot) = self
            .rq_code
            .get(status.wrapping_sub(*CODES.start()) as usize)
        {
            slot.get_or_init(|| {
                let code = status.to_string();
                self.rq_family
                    .counter(&[("response_code", &code), ("cluster_name", &self.stat_name)])
            })
            .inc();
        }
    }

    /// Responses by class (`upstream_rq_<class>`), `1xx` first.
    pub fn class_counts(&self) -> [u64; 5] {
        self.rq_class.each_ref().map(Counter::get)
    }

    /// The upstream response completed `elapsed` after the request started.
    pub fn response_complete(&self, elapsed: Duration, trace_id: Option<&str>) {
        super::hcm::record_time(&self.rq_time, elapsed, trace_id);
    }
}

/// The stats of every cluster of the current snapshot, by stat name. The config loop
/// asks it for each cluster of a snapshot it builds, then forgets the ones the new
/// snapshot does not use; older snapshots keep theirs alive while requests finish, and
/// the registry exports a removed cluster's series for a grace period after that.
pub struct ClusterStatsCache {
    registry: Arc<Registry>,
    families: ClusterFamilies,
    istio: Arc<IstioFamilies>,
    namespace: String,
    pattern: StatNamePattern,
    by_name: HashMap<String, Arc<ClusterStats>>,
    roster: Roster<ClusterStats>,
}

impl ClusterStatsCache {
    pub fn new(registry: Arc<Registry>, namespace: &str) -> Self {
        ClusterStatsCache {
            families: ClusterFamilies::register(&registry),
            istio: IstioFamilies::register(&registry, namespace),
            registry,
            namespace: namespace.to_string(),
            pattern: StatNamePattern::default(),
            by_name: HashMap::new(),
            roster: Roster::default(),
        }
    }

    /// A cache on a registry of its own, for code that needs clusters but not their
    /// stats (unit tests, `gateway validate`).
    pub fn detached() -> Self {
        Self::new(
            Arc::new(Registry::new()),
            crate::resources::SYSTEM_NAMESPACE,
        )
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn istio_families(&self) -> &Arc<IstioFamilies> {
        &self.istio
    }

    /// Use `mesh.outboundClusterStatName` for clusters resolved from now on.
    pub fn set_pattern(&mut self, pattern: StatNamePattern) {
        self.pattern = pattern;
    }

    pub fn pattern(&self) -> &StatNamePattern {
        &self.pattern
    }

    /// The stats of a cluster, the same as last time when its stat name is the same.
    pub fn get(&mut self, id: &ClusterIdentity<'_>) -> Arc<ClusterStats> {
        let stat_name = self.pattern.apply(id);
        if let Some(s) = self.by_name.get(&stat_name) {
            return s.clone();
        }
        let dest = Destination::of_host(id.host, &self.namespace);
        let istio = IstioStats::new(self.istio.clone(), dest);
        let s = Arc::new(ClusterStats::register(&self.families, &stat_name, istio));
        self.by_name.insert(stat_name, s.clone());
        s
    }

    /// Forget clusters not in `keep` (stat names), and publish the rest to the roster.
    pub fn retain(&mut self, keep: &std::collections::HashSet<&str>) {
        self.by_name.retain(|name, _| keep.contains(name.as_str()));
        self.roster.publish(self.by_name.values().cloned());
    }

    /// The clusters' stats in use, as of the last [`ClusterStatsCache::retain`] (for
    /// the console's sampler).
    pub fn roster(&self) -> Roster<ClusterStats> {
        self.roster.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(host: &str) -> (String, String) {
        (format!("outbound|80||{host}"), host.to_string())
    }

    #[test]
    fn codes_and_classes_land_on_one_family() {
        let mut cache = ClusterStatsCache::detached();
        let (name, host) = id("a.static");
        let ident = ClusterIdentity {
            name: &name,
            host: &host,
            port: 80,
            target_port: 80,
            port_name: "http",
            subset: "",
        };
        let s = cache.get(&ident);
        for code in [200, 200, 404, 503, 999] {
            s.rq_total.inc();
            s.response(code);
        }
        let m = cache.registry().render();
        for line in [
            "envoy_cluster_upstream_rq{response_code=\"200\",cluster_name=\"outbound|80||a.static\"} 2",
            "envoy_cluster_upstream_rq{response_code=\"404\",cluster_name=\"outbound|80||a.static\"} 1",
            "envoy_cluster_upstream_rq{response_code_class=\"2xx\",cluster_name=\"outbound|80||a.static\"} 2",
            "envoy_cluster_upstream_rq{response_code_class=\"5xx\",cluster_name=\"outbound|80||a.static\"} 1",
            "envoy_cluster_upstream_rq{response_code_class=\"3xx\",cluster_name=\"outbound|80||a.static\"} 0",
            "envoy_cluster_upstream_rq_total{cluster_name=\"outbound|80||a.static\"} 5",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        assert!(!m.contains("response_code=\"999\""), "{m}");
    }

    #[test]
    fn same_stat_name_keeps_its_counts_and_pattern_renames() {
        let mut cache = ClusterStatsCache::detached();
        let (name, host) = id("a.static");
        let ident = ClusterIdentity {
            name: &name,
            host: &host,
            port: 80,
            target_port: 80,
            port_name: "http",
            subset: "",
        };
        cache.get(&ident).rq_total.add(3);
        let again = cache.get(&ident);
        assert_eq!(
            again.rq_total.get(),
            3,
            "a cluster that stays keeps its counts"
        );
        cache.set_pattern(StatNamePattern::new(
            "outbound_%SERVICE_PORT%_%SUBSET_NAME%_%SERVICE_FQDN%",
        ));
        let renamed = cache.get(&ident);
        assert_eq!(renamed.stat_name, "outbound_80__a.static");
        assert_eq!(renamed.rq_total.get(), 0);
        let keep = [renamed.stat_name.as_str()].into_iter().collect();
        cache.retain(&keep);
        assert_eq!(cache.by_name.len(), 1);
        let roster = cache.roster().load();
        assert_eq!(roster.entries.len(), 1, "published for the console");
        assert!(Arc::ptr_eq(&roster.entries[0].0, &renamed));
        assert_eq!(renamed.class_counts(), [0; 5]);
    }
}
