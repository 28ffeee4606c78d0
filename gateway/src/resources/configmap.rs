use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{from_yaml, FieldError, HigressConfig, ObjectMeta};

/// Name of the global config ConfigMap and its data key.
pub const HIGRESS_CONFIG_NAME: &str = "higress-config";
pub const HIGRESS_CONFIG_KEY: &str = "higress";

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
}

impl ConfigMap {
    /// Parse a ConfigMap named `name`; only `higress-config` has its `higress` key read.
    pub fn parse(bytes: &[u8], name: &str) -> Result<ConfigMap, FieldError> {
        let mut cm: ConfigMap = from_yaml(bytes)?;
        if name != HIGRESS_CONFIG_NAME {
            return Ok(cm);
        }
        if let Some(text) = cm.data.get(HIGRESS_CONFIG_KEY) {
            let cfg = HigressConfig::parse(text.as_bytes())
                .map_err(|e| e.under(&format!("data.{HIGRESS_CONFIG_KEY}")))?;
            cm.higress = Some(cfg);
        }
        Ok(cm)
    }
}
