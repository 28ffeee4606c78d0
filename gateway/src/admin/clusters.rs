//! `/clusters`: every cluster of the live snapshot and its endpoints, in Envoy admin's
//! text format (`<cluster>::<field>::<value>`, `<cluster>::<ip:port>::<field>::<value>`),
//! so scripts written against Envoy's output read it.

use std::fmt::Write;

use crate::snapshot::Snapshot;

/// No circuit breaker is enforced: Istio's "unlimited" value, as Higress's clusters show.
const UNLIMITED: u32 = u32::MAX;

pub fn render(snap: &Snapshot) -> String {
    let mut out = String::new();
    for (name, cluster) in &snap.clusters {
        let _ = writeln!(
            out,
            "{name}::observability_name::{}",
            cluster.stats.stat_name
        );
        for priority in ["default_priority", "high_priority"] {
            for field in [
                "max_connections",
                "max_pending_requests",
                "max_requests",
                "max_retries",
            ] {
                let _ = writeln!(out, "{name}::{priority}::{field}::{UNLIMITED}");
            }
        }
        let _ = writeln!(out, "{name}::added_via_api::true");
        for (i, ep) in cluster.endpoints.iter().enumerate() {
            let host = format!("{name}::{ep}");
            let _ = writeln!(out, "{host}::hostname::{}", cluster.host);
            // Envoy's flag for a host its outlier detector ejected.
            let ejected = cluster.outlier.as_ref().is_some_and(|o| o.is_ejected(i));
            let health = if ejected {
                "/failed_outlier_check"
            } else {
                "healthy"
            };
            let _ = writeln!(out, "{host}::health_flags::{health}");
            let _ = writeln!(out, "{host}::weight::1");
            for (field, value) in [
                ("region", ""),
                ("zone", ""),
                ("sub_zone", ""),
                ("canary", "false"),
                ("priority", "0"),
                ("success_rate", "-1"),
                ("local_origin_success_rate", "-1"),
            ] {
                let _ = writeln!(out, "{host}::{field}::{value}");
            }
        }
    }
    out
}
