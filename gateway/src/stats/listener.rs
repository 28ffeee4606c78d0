//! Envoy's per-listener TLS stats (`listener.<address>.ssl.*`), labelled
//! `envoy_listener_address="<ip>_<port>"` as Envoy's Prometheus output has them.

use telemetry::stats::{Counter, Kind, Registry};

#[derive(Clone)]
pub struct ListenerTlsStats {
    /// Handshakes completed.
    pub handshake: Counter,
    /// Handshakes that failed (a client that gave up or spoke no TLS included).
    pub connection_error: Counter,
    /// ClientHellos whose server name no certificate serves (Envoy finds no filter
    /// chain for them); their handshake fails.
    pub no_filter_chain_match: Counter,
}

impl ListenerTlsStats {
    pub fn register(r: &Registry, listen_addr: &str) -> Self {
        let address = listener_address(listen_addr);
        let labels = [("envoy_listener_address", address.as_str())];
        let counter = |name: &str, help: &str| r.family(name, help, Kind::Counter).counter(&labels);
        ListenerTlsStats {
            handshake: counter(
                "envoy_listener_ssl_handshake",
                "Downstream TLS handshakes completed.",
            ),
            connection_error: counter(
                "envoy_listener_ssl_connection_error",
                "Downstream TLS handshakes that failed.",
            ),
            no_filter_chain_match: counter(
                "envoy_listener_no_filter_chain_match",
                "Downstream TLS connections whose server name (SNI) no certificate serves.",
            ),
        }
    }
}

/// `<ip>_<port>` from a listen address such as `0.0.0.0:8443` or `[::]:8443`.
pub fn listener_address(listen_addr: &str) -> String {
    let (host, port) = listen_addr.rsplit_once(':').unwrap_or((listen_addr, ""));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    format!("{host}_{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_envoys() {
        assert_eq!(listener_address("0.0.0.0:8443"), "0.0.0.0_8443");
        assert_eq!(listener_address("[::]:443"), "::_443");
        let r = Registry::new();
        let s = ListenerTlsStats::register(&r, "0.0.0.0:8443");
        s.handshake.inc();
        let m = r.render();
        assert!(
            m.lines()
                .any(|l| l
                    == "envoy_listener_ssl_handshake{envoy_listener_address=\"0.0.0.0_8443\"} 1"),
            "{m}"
        );
        assert!(m.contains(
            "envoy_listener_no_filter_chain_match{envoy_listener_address=\"0.0.0.0_8443\"} 0"
        ));
    }
}
