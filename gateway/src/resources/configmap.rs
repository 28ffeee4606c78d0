use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::domain::{DomainConfig, DOMAIN_PREFIX};
use super::{from_yaml, FieldError, HigressConfig, ObjectMeta};

/// Name of the global config ConfigMap and its data key.
pub const HIGRESS_CONFIG_NAME: &str = "higress-config";
pub const HIGRESS_CONFIG_KEY: &str = "higress";
/// The Istio MeshConfig key of `higress-config`.
pub const MESH_KEY: &str = "mesh";

/// What the gateway reads of Istio's MeshConfig (`data.mesh`); the rest is pilot's.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MeshConfig {
    /// Istio pattern for the `cluster_name` stat label (`%SERVICE_FQDN%` ...).
    pub outbound_cluster_stat_name: Option<String>,
}

/// A `v1` ConfigMap. `higress-config` has its `data.higress` parsed and validated as a
/// [`HigressConfig`] when the object is read, so a broken global config is rejected with
/// the path inside that embedded document.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ConfigMap {
    pub metadata: ObjectMeta,
    pub data: BTreeMap<String, String>,
    #[serde(skip)]
    pub higress: Option<HigressConfig>,
    #[serde(skip)]
    pub mesh: Option<MeshConfig>,
    /// A console domain ConfigMap (`domain-*`), read and validated.
    #[serde(skip)]
    pub domain: Option<DomainConfig>,
}

impl ConfigMap {
    /// Parse a ConfigMap named `name`; only `higress-config` has its `higress` key read,
    /// and only `domain-*` ConfigMaps are read as domains.
    pub fn parse(bytes: &[u8], name: &str) -> Result<ConfigMap, FieldError> {
        let mut cm: ConfigMap = from_yaml(bytes)?;
        if name.starts_with(DOMAIN_PREFIX) {
            cm.domain = Some(DomainConfig::from_data(&cm.data)?);
            return Ok(cm);
        }
        if name != HIGRESS_CONFIG_NAME {
            return Ok(cm);
        }
        if let Some(text) = cm.data.get(HIGRESS_CONFIG_KEY) {
            let cfg = HigressConfig::parse(text.as_bytes())
                .map_err(|e| e.under(&format!("data.{HIGRESS_CONFIG_KEY}")))?;
            cm.higress = Some(cfg);
        }
        if let Some(text) = cm.data.get(MESH_KEY) {
            let mesh: MeshConfig =
                from_yaml(text.as_bytes()).map_err(|e| e.under(&format!("data.{MESH_KEY}")))?;
            cm.mesh = Some(mesh);
        }
        Ok(cm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_stat_name_is_read_and_bad_mesh_is_named() {
        let y = "metadata: {name: higress-config}\ndata:\n  mesh: |\n    accessLogFile: /dev/stdout\n    outboundClusterStatName: outbound_%SERVICE_PORT%_%SUBSET_NAME%_%SERVICE_FQDN%\n";
        let cm = ConfigMap::parse(y.as_bytes(), HIGRESS_CONFIG_NAME).unwrap();
        assert_eq!(
            cm.mesh.unwrap().outbound_cluster_stat_name.as_deref(),
            Some("outbound_%SERVICE_PORT%_%SUBSET_NAME%_%SERVICE_FQDN%")
        );
        let bad = "data:\n  mesh: |\n    outboundClusterStatName: [1, 2]\n";
        let e = ConfigMap::parse(bad.as_bytes(), HIGRESS_CONFIG_NAME).unwrap_err();
        assert!(
            e.to_string().contains("data.mesh.outboundClusterStatName"),
            "{e}"
        );
        // Other ConfigMaps' `mesh` keys are not ours.
        assert!(ConfigMap::parse(bad.as_bytes(), "other")
            .unwrap()
            .mesh
            .is_none());
    }
}
