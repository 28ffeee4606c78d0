//! What `/debug/configz` and `/config_dump` show, refreshed after every batch. The
//! large parts (every route, every object) are rendered only when asked: with 10,000
//! Ingresses they are megabytes of JSON that no one reads on most reloads.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::json;

use super::{ConfigLoop, Objects};
use crate::resources::Resource;
use crate::snapshot::Snapshot;

/// What `/debug/configz` and `/config_dump` show, republished on every event.
pub type StatusCell = Arc<ArcSwap<ConfigStatus>>;

#[derive(Default)]
pub struct ConfigStatus {
    /// `/debug/configz` but its routes.
    summary: serde_json::Value,
    /// The snapshot whose routes `/debug/configz` shows.
    snapshot: Option<Arc<Snapshot>>,
    /// The objects as last applied.
    objects: Arc<Objects>,
}

impl ConfigStatus {
    /// `/debug/configz`: everything but the raw objects.
    pub fn configz(&self) -> serde_json::Value {
        let mut z = self.summary.clone();
        if let Some(map) = z.as_object_mut() {
            if let Some(snap) = &self.snapshot {
                map.insert("routes".into(), snap.routes.describe());
                map.insert("local_routes".into(), snap.local_routes.describe());
            }
            map.insert("ingresses".into(), ingresses(&self.objects));
        }
        z
    }

    /// Raw objects as last applied, secrets redacted (for `/config_dump`).
    pub fn resources(&self) -> serde_json::Value {
        self.objects
            .iter()
            .map(|(k, (file, r))| json!({"object": k.to_string(), "file": file, "resource": describe_resource(r)}))
            .collect()
    }
}

impl ConfigLoop {
    /// Republish `/debug/configz` (also after a rejection, which builds no snapshot).
    pub fn refresh_status(&self) {
        let snap = self.snapshot.load_full();
        let clusters: Vec<serde_json::Value> = snap
            .clusters
            .values()
            .map(|c| {
                json!({
                    "name": c.name,
                    "protocol": format!("{:?}", c.protocol).to_lowercase(),
                    "endpoints": c.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                    "weights": c.weights.as_deref(),
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
            "applied_at": crate::clock::rfc3339(self.applied_at),
            "tls": snap.certs.describe(),
            "clusters": clusters,
            "plugins": self.plugins.describe(),
            "items": self.cmgr.describe(),
            "not_enforced": self.not_enforced,
            "warnings": self.warnings,
            "rejected": rejected,
            "registries": self.registries.status_json(),
            "dns": self.dns.iter().map(|(k, v)| (k.clone(), json!(v.iter().map(|i| i.to_string()).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
        });
        self.status.store(Arc::new(ConfigStatus {
            summary: configz,
            snapshot: Some(snap.clone()),
            // A copy of its own (made once the snapshot serves): were the map shared,
            // the loop's next change would copy it before building the next snapshot.
            objects: Arc::new((*self.objects).clone()),
        }));
    }
}

/// Per Ingress, which of its annotations act and which are accepted but ignored.
fn ingresses(objects: &Objects) -> serde_json::Value {
    objects
        .iter()
        .filter_map(|(k, (_, r))| match &**r {
            Resource::Ingress(ing) => Some(json!({
                "object": k.to_string(),
                "annotations": {
                    "enforced": crate::annotations::enforced(&ing.metadata.annotations),
                    "not_enforced": ing.unsupported_annotations(),
                },
            })),
            _ => None,
        })
        .collect()
}

fn describe_resource(r: &Resource) -> serde_json::Value {
    // A Secret serializes redacted (key names and certificate facts only); credentials
    // elsewhere (plugin configs, registries, ConfigMap documents) are redacted here.
    let mut v = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
    crate::resources::redact::redact(&mut v);
    if let Resource::ConfigMap(_) = r {
        if let Some(data) = v.pointer_mut("/data").and_then(|d| d.as_object_mut()) {
            for value in data.values_mut() {
                let redacted = value
                    .as_str()
                    .and_then(crate::resources::redact::redact_document);
                if let Some(text) = redacted {
                    *value = serde_json::Value::String(text);
                }
            }
        }
    }
    v
}
