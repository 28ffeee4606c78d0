//! The gateway's own stat families (`gateway_*`), resolved once at start-up.
//! The Envoy-compatible families come with the stats work in `telemetry`.

use std::sync::Arc;

use std::time::Duration;

use telemetry::stats::{Counter, Gauge, Histogram, Kind, Registry, ENVOY_DEFAULT_BUCKETS};

#[derive(Clone)]
pub struct ConfigStats {
    pub applied: Counter,
    pub rejected: Counter,
    pub version: Gauge,
}

impl ConfigStats {
    pub fn register(r: &Registry) -> Self {
        let reloads = r.family(
            "gateway_config_reloads_total",
            "Config changes: applied (one per snapshot published) or rejected (one per rejected object change).",
            Kind::Counter,
        );
        ConfigStats {
            applied: reloads.counter(&[("result", "applied")]),
            rejected: reloads.counter(&[("result", "rejected")]),
            version: r
                .family(
                    "gateway_config_snapshot_version",
                    "Version of the config snapshot being served (0 before the first).",
                    Kind::Gauge,
                )
                .gauge(&[]),
        }
    }
}

/// Envoy's HTTP connection manager stats for one listener, labelled
/// `http_conn_manager_prefix="outbound_<bind ip>_<port>"` as Higress's gateway has them.
#[derive(Clone)]
pub struct HcmStats {
    pub rq_total: Counter,
    /// `response_code_class` 1xx..5xx.
    rq_class: [Counter; 5],
    pub rq_time: Histogram,
    pub cx_total: Counter,
    pub cx_active: Gauge,
}

impl HcmStats {
    pub fn register(r: &Registry, listen_addr: &str) -> Self {
        let prefix = hcm_prefix(listen_addr);
        let labels = [("http_conn_manager_prefix", prefix.as_str())];
        let rq = r.family(
            "envoy_http_downstream_rq",
            "Downstream requests by response code class.",
            Kind::Counter,
        );
        let rq_class = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .map(|class| rq.counter(&[("response_code_class", class), labels[0]]));
        HcmStats {
            rq_total: r
                .family(
                    "envoy_http_downstream_rq_total",
                    "Downstream requests.",
                    Kind::Counter,
                )
                .counter(&labels),
            rq_class,
            rq_time: r
                .histogram_family(
                    "envoy_http_downstream_rq_time",
                    "Downstream request time, first byte in to last byte out (ms).",
                    ENVOY_DEFAULT_BUCKETS,
                )
                .histogram(&labels),
            cx_total: r
                .family(
                    "envoy_http_downstream_cx_total",
                    "Downstream connections.",
                    Kind::Counter,
                )
                .counter(&labels),
            cx_active: r
                .family(
                    "envoy_http_downstream_cx_active",
                    "Downstream connections open.",
                    Kind::Gauge,
                )
                .gauge(&labels),
        }
    }

    /// A request has ended with `status` (0: no response was sent) after `elapsed`.
    pub fn request_done(&self, status: u16, elapsed: Duration) {
        if let Some(c) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.rq_class.get(i as usize))
        {
            c.inc();
        }
        self.rq_time.record_ms(elapsed);
    }
}

/// `outbound_<ip>_<port>` from a listen address such as `0.0.0.0:8080` or `[::]:8080`.
pub fn hcm_prefix(listen_addr: &str) -> String {
    let (host, port) = listen_addr.rsplit_once(':').unwrap_or((listen_addr, ""));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    format!("outbound_{host}_{port}")
}

/// Stats of the process, registered at start-up.
pub struct ServerStats {
    pub registry: Arc<Registry>,
    pub config: ConfigStats,
    /// Access log lines dropped because the writer could not keep up.
    pub access_log_dropped: Counter,
}

impl ServerStats {
    pub fn new() -> Self {
        let registry = Arc::new(Registry::new());
        let config = ConfigStats::register(&registry);
        let live = registry
            .family(
                "envoy_server_live",
                "1 when the server is live.",
                Kind::Gauge,
            )
            .gauge(&[]);
        live.set(1);
        let access_log_dropped = registry
            .family(
                "gateway_access_log_dropped_total",
                "Access log lines dropped because the log writer could not keep up.",
                Kind::Counter,
            )
            .counter(&[]);
        ServerStats {
            registry,
            config,
            access_log_dropped,
        }
    }
}

impl Default for ServerStats {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcm_prefix_is_istio_shaped() {
        assert_eq!(hcm_prefix("0.0.0.0:8080"), "outbound_0.0.0.0_8080");
        assert_eq!(hcm_prefix("[::]:80"), "outbound_::_80");
    }

    #[test]
    fn requests_count_by_class_and_time() {
        let r = Registry::new();
        let h = HcmStats::register(&r, "0.0.0.0:8080");
        for status in [200, 204, 404, 503, 0, 101, 302] {
            h.rq_total.inc();
            h.request_done(status, Duration::from_millis(3));
        }
        let m = r.render();
        for line in [
            "envoy_http_downstream_rq_total{http_conn_manager_prefix=\"outbound_0.0.0.0_8080\"} 7",
            "envoy_http_downstream_rq{response_code_class=\"2xx\",http_conn_manager_prefix=\"outbound_0.0.0.0_8080\"} 2",
            "envoy_http_downstream_rq{response_code_class=\"1xx\",http_conn_manager_prefix=\"outbound_0.0.0.0_8080\"} 1",
            "envoy_http_downstream_rq{response_code_class=\"3xx\",http_conn_manager_prefix=\"outbound_0.0.0.0_8080\"} 1",
            "envoy_http_downstream_rq{response_code_class=\"4xx\",http_conn_manager_prefix=\"outbound_0.0.0.0_8080\"} 1",
            "envoy_http_downstream_rq{response_code_class=\"5xx\",http_conn_manager_prefix=\"outbound_0.0.0.0_8080\"} 1",
            "envoy_http_downstream_rq_time_bucket{http_conn_manager_prefix=\"outbound_0.0.0.0_8080\",le=\"5\"} 7",
            "envoy_http_downstream_rq_time_count{http_conn_manager_prefix=\"outbound_0.0.0.0_8080\"} 7",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
    }
}
