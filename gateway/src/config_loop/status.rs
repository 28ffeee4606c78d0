//! What `/debug/configz` and `/config_dump` show, rebuilt after every batch.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::json;

use super::ConfigLoop;
use crate::resources::Resource;

/// What `/debug/configz` and `/config_dump` show, republished on every event.
pub type StatusCell = Arc<ArcSwap<ConfigStatus>>;

#[derive(Default)]
pub struct ConfigStatus {
    /// Everything but the raw objects (`/debug/configz`).
    pub configz: serde_json::Value,
    /// Raw objects as last applied, secrets redacted (for `/config_dump`).
    pub resources: serde_json::Value,
}

impl ConfigLoop {
    /// Republish `/debug/configz` (also after a rejection, which builds no snapshot).
    pub fn refresh_status(&self) {
        let snap = self.snapshot.load();
        let clusters: Vec<serde_json::Value> = snap
            .clusters
            .values()
            .map(|c| {
                json!({
                    "name": c.name,
                    "protocol": format!("{:?}", c.protocol).to_lowercase(),
                    "endpoints": c.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let rejected: Vec<serde_json::Value> = self
            .rejected
            .iter()
            .map(|(k, r)| {
                json!({
                    "object": k.to_string(),
                    "file": r.origin,
                    "error": r.error,
                    "at": crate::clock::rfc3339(r.at),
                })
            })
            .collect();
        let configz = json!({
            "version": snap.version,
            "routes": snap.routes.describe(),
            "tls": snap.certs.describe(),
            "clusters": clusters,
            "plugins": self.plugins.describe(),
            "items": self.cmgr.describe(),
            "not_enforced": self.not_enforced,
            "warnings": self.warnings,
            "rejected": rejected,
            "dns": self.dns.iter().map(|(k, v)| (k.clone(), json!(v.iter().map(|i| i.to_string()).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
        });
        let resources: Vec<serde_json::Value> = self
            .objects
            .iter()
            .map(|(k, (origin, r))| json!({"object": k.to_string(), "file": origin, "resource": describe_resource(r)}))
            .collect();
        self.status.store(Arc::new(ConfigStatus {
            configz,
            resources: json!(resources),
        }));
    }
}

fn describe_resource(r: &Resource) -> serde_json::Value {
    // A Secret serializes redacted (key names and certificate facts only).
    serde_json::to_value(r).unwrap_or(serde_json::Value::Null)
}
