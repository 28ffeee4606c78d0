//! `status.loadBalancer` of the Ingresses the gateway serves (`--status-address`).

use std::time::Duration;

use ::kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};

use crate::resources::ingress::CLASS_ANNOTATION;

/// Writes the gateway's address into `status.loadBalancer` of the Ingresses it serves,
/// as Higress does.
pub(super) struct IngressStatus {
    pub(super) address: String,
    pub(super) resource: ApiResource,
    pub(super) class: String,
    pub(super) without_class: bool,
}

impl IngressStatus {
    fn ours(&self, obj: &DynamicObject) -> bool {
        let class = obj
            .data
            .pointer("/spec/ingressClassName")
            .and_then(|v| v.as_str())
            .or_else(|| {
                obj.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CLASS_ANNOTATION))
                    .map(String::as_str)
            });
        match class {
            Some(c) => c == self.class,
            None => self.without_class,
        }
    }

    pub(super) async fn ensure(&self, api: &Api<DynamicObject>, obj: &DynamicObject) {
        if !self.ours(obj) {
            return;
        }
        let entry = if self.address.parse::<std::net::IpAddr>().is_ok() {
            serde_json::json!({ "ip": self.address })
        } else {
            serde_json::json!({ "hostname": self.address })
        };
        let want = serde_json::json!([entry]);
        if obj.data.pointer("/status/loadBalancer/ingress") == Some(&want) {
            return;
        }
        let Some(name) = obj.metadata.name.as_deref() else {
            return;
        };
        let api = match obj.metadata.namespace.as_deref() {
            Some(ns) => {
                Api::<DynamicObject>::namespaced_with(api.clone().into_client(), ns, &self.resource)
            }
            None => api.clone(),
        };
        let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": want } } });
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await;
        match r {
            Ok(Ok(_)) => {
                tracing::info!(ingress = name, address = %self.address, "ingress status updated")
            }
            Ok(Err(e)) => {
                tracing::warn!(ingress = name, error = %e, "could not update the ingress status")
            }
            Err(_) => tracing::warn!(ingress = name, "updating the ingress status timed out"),
        }
    }
}
