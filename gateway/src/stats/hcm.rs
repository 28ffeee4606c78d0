use std::sync::Arc;
use std::time::Duration;

use telemetry::stats::{Counter, Gauge, Histogram, Kind, Registry, ENVOY_DEFAULT_BUCKETS};

use super::compressor::CompressorStats;
use super::istio::{Destination, IstioFamilies, IstioStats};
use super::{class_index, CLASSES};

/// Envoy's HTTP connection manager stats for one listener, labelled
/// `http_conn_manager_prefix="outbound_<bind ip>_<port>"` as Higress's gateway has them.
#[derive(Clone)]
pub struct HcmStats {
    pub rq_total: Counter,
    /// `response_code_class` 1xx..5xx.
    rq_class: [Counter; 5],
    pub rq_time: Histogram,
    pub cx_total: Counter,
    pub cx_http1_total: Counter,
    pub cx_http2_total: Counter,
    /// TLS connections (`downstream_cx_ssl_total`, `downstream_cx_ssl_active`).
    pub cx_ssl_total: Counter,
    pub cx_ssl_active: Gauge,
    pub cx_active: Gauge,
    pub cx_rx_bytes: Counter,
    pub cx_tx_bytes: Counter,
    /// Requests refused with 503 `envoy overloaded` (`--max-active-requests`,
    /// `--overload-max-heap`).
    pub rq_overload_close: Counter,
    /// HTTP/1 connections closed because a request head took longer than
    /// `--request-headers-timeout`.
    pub rq_header_timeout: Counter,
    /// Connections closed at accept because the listener had `--max-connections` open
    /// (Envoy's listener stat, labelled `envoy_listener_address`).
    pub cx_overflow: Counter,
    /// Istio metrics of requests that reached no service (no route, unknown host).
    pub no_destination: Arc<IstioStats>,
    /// The gzip compressor's.
    pub gzip: CompressorStats,
}

impl HcmStats {
    pub fn register(r: &Registry, listen_addr: &str, istio: &Arc<IstioFamilies>) -> Self {
        let prefix = hcm_prefix(listen_addr);
        let labels = [("http_conn_manager_prefix", prefix.as_str())];
        let counter = |name: &str, help: &str| r.family(name, help, Kind::Counter).counter(&labels);
        let rq = r.family(
            "envoy_http_downstream_rq",
            "Downstream requests by response code class.",
            Kind::Counter,
        );
        HcmStats {
            rq_total: counter("envoy_http_downstream_rq_total", "Downstream requests."),
            rq_class: CLASSES.map(|class| rq.counter(&[("response_code_class", class), labels[0]])),
            rq_time: r
                .histogram_family(
                    "envoy_http_downstream_rq_time",
                    "Downstream request time, request start to last byte out (ms).",
                    ENVOY_DEFAULT_BUCKETS,
                )
                .histogram(&labels),
            cx_total: counter("envoy_http_downstream_cx_total", "Downstream connections."),
            cx_http1_total: counter(
                "envoy_http_downstream_cx_http1_total",
                "Downstream HTTP/1 connections.",
            ),
            cx_http2_total: counter(
                "envoy_http_downstream_cx_http2_total",
                "Downstream HTTP/2 connections.",
            ),
            cx_ssl_total: counter(
                "envoy_http_downstream_cx_ssl_total",
                "Downstream TLS connections.",
            ),
            cx_ssl_active: r
                .family(
                    "envoy_http_downstream_cx_ssl_active",
                    "Downstream TLS connections open.",
                    Kind::Gauge,
                )
                .gauge(&labels),
            cx_active: r
                .family(
                    "envoy_http_downstream_cx_active",
                    "Downstream connections open.",
                    Kind::Gauge,
                )
                .gauge(&labels),
            cx_rx_bytes: counter(
                "envoy_http_downstream_cx_rx_bytes_total",
                "Bytes received from downstream connections.",
            ),
            cx_tx_bytes: counter(
                "envoy_http_downstream_cx_tx_bytes_total",
                "Bytes sent on downstream connections.",
            ),
            rq_overload_close: counter(
                "envoy_http_downstream_rq_overload_close",
                "Requests refused with 503 because the gateway is overloaded.",
            ),
            rq_header_timeout: counter(
                "envoy_http_downstream_rq_header_timeout",
                "Connections closed because a request's headers did not arrive within the request headers timeout.",
            ),
            cx_overflow: r
                .family(
                    "envoy_listener_downstream_cx_overflow",
                    "Connections closed at accept because the listener's connection limit was reached.",
                    Kind::Counter,
                )
                .counter(&[(
                    "envoy_listener_address",
                    super::listener::listener_address(listen_addr).as_str(),
                )]),
            gzip: CompressorStats::register(r, &labels),
            no_destination: Arc::new(IstioStats::new(istio.clone(), Destination::unknown())),
        }
    }

    /// A request has ended with `status` (0: no response was sent) after `elapsed`;
    /// a sampled request's trace id becomes the latency bucket's exemplar.
    pub fn request_done(&self, status: u16, elapsed: Duration, trace_id: Option<&str>) {
        if let Some(i) = class_index(status) {
            self.rq_class[i].inc();
        }
        record_time(&self.rq_time, elapsed, trace_id);
    }
}

/// A time in ms, with the trace id as exemplar when there is one.
pub(super) fn record_time(h: &Histogram, elapsed: Duration, trace_id: Option<&str>) {
    match trace_id {
        Some(id) => h.record_with_exemplar(elapsed.as_secs_f64() * 1000.0, id),
        None => h.record_ms(elapsed),
    }
}

/// `outbound_<ip>_<port>` from a listen address such as `0.0.0.0:8080` or `[::]:8080`.
pub fn hcm_prefix(listen_addr: &str) -> String {
    format!(
        "outbound_{}",
        super::listener::listener_address(listen_addr)
    )
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
        let istio = IstioFamilies::register(&r, "higress-system");
        let h = HcmStats::register(&r, "0.0.0.0:8080", &istio);
        for status in [200, 204, 404, 503, 0, 101, 302] {
            h.rq_total.inc();
            h.request_done(status, Duration::from_millis(3), None);
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
