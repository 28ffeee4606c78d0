use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use telemetry::stats::{Counter, Family, Gauge, Kind, Registry};

/// `gateway_config_*`: what the config loop applied or rejected; and Envoy's
/// `server.days_until_first_cert_expiring`, from the certificates it serves.
#[derive(Clone)]
pub struct ConfigStats {
    pub applied: Counter,
    pub rejected: Counter,
    pub version: Gauge,
    /// The earliest `notAfter` (Unix seconds) of the served certificates; 0: none.
    pub first_cert_expiry: Arc<AtomicI64>,
    pub registries: RegistryStats,
}

impl ConfigStats {
    pub fn register(r: &Registry) -> Self {
        let reloads = r.family(
            "gateway_config_reloads_total",
            "Config changes: applied (one per snapshot published) or rejected (one per rejected object change).",
            Kind::Counter,
        );
        let days = r
            .family(
                "envoy_server_days_until_first_cert_expiring",
                "Days until the first served certificate expires (0 when none is served, as Envoy).",
                Kind::Gauge,
            )
            .gauge(&[]);
        let first_cert_expiry = Arc::new(AtomicI64::new(0));
        let expiry = first_cert_expiry.clone();
        let held = days.clone();
        r.on_scrape(move || {
            held.set(days_until(expiry.load(Ordering::Relaxed), unix_now()));
        });
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
            first_cert_expiry,
            registries: RegistryStats::register(r),
        }
    }
}

/// `gateway_registry_*` stats.
#[derive(Clone)]
pub struct RegistryStats {
    pub updates: Arc<Family>,
    pub up: Arc<Family>,
    pub services: Arc<Family>,
}

impl RegistryStats {
    pub fn register(r: &Registry) -> Self {
        RegistryStats {
            updates: r.family(
                "gateway_registry_updates_total",
                "Reports of registry watchers by registry (`<type>/<name>`): result=success (a service set read) or failure (the registry could not be read; its last services stay in force).",
                Kind::Counter,
            ),
            up: r.family(
                "gateway_registry_up",
                "1 when the registry's last read succeeded, 0 while it fails (its last services are kept).",
                Kind::Gauge,
            ),
            services: r.family(
                "gateway_registry_services",
                "Services (clusters) the registry's last good read holds.",
                Kind::Gauge,
            ),
        }
    }
}


fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whole days from `now` to `expiry` (both Unix seconds); 0 when none or past.
fn days_until(expiry: i64, now: i64) -> i64 {
    if expiry == 0 {
        return 0;
    }
    ((expiry - now) / 86_400).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_count_down_and_stop_at_zero() {
        assert_eq!(days_until(0, 1000), 0);
        assert_eq!(days_until(1000 + 3 * 86_400 + 5, 1000), 3);
        assert_eq!(days_until(1000 + 86_399, 1000), 0);
        assert_eq!(days_until(500, 1000), 0);
        let r = Registry::new();
        let s = ConfigStats::register(&r);
        s.first_cert_expiry
            .store(unix_now() + 10 * 86_400 + 60, Ordering::Relaxed);
        let m = r.render();
        assert!(
            m.lines()
                .any(|l| l == "envoy_server_days_until_first_cert_expiring 10"),
            "{m}"
        );
    }
}
