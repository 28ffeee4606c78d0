use telemetry::stats::{Counter, Gauge, Kind, Registry};

/// `gateway_config_*`: what the config loop applied or rejected.
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
