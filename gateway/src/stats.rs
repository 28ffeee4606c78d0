//! The gateway's own stat families (`gateway_*`), resolved once at start-up.
//! The Envoy-compatible families come with the stats work in `telemetry`.

use std::sync::Arc;

use telemetry::stats::{Counter, Gauge, Kind, Registry};

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
