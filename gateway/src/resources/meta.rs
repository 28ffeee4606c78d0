use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The part of Kubernetes `metadata` the gateway uses.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: String,
    pub annotations: crate::annotations::Annotations,
    pub labels: BTreeMap<String, String>,
    pub creation_timestamp: Option<String>,
    pub resource_version: Option<String>,
    /// Bumped by the API server on each spec change; what a status's
    /// `observedGeneration` reports.
    pub generation: Option<i64>,
}

impl ObjectMeta {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}
