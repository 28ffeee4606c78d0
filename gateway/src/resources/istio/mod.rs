//! Istio's networking API as input (`networking.istio.io` `v1`, `v1beta1`, `v1alpha3`):
//! `Gateway`, `VirtualService` and `DestinationRule`, the objects net-istio writes for
//! Knative and users write by hand. What the gateway makes of them is in
//! `translate/istio/`.

use serde::{Deserialize, Serialize};

use super::{from_yaml, FieldError, ObjectMeta};

/// The API group of Istio's networking kinds.
pub const GROUP: &str = "networking.istio.io";

/// The versions read (net-istio writes `v1beta1`).
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// Check `apiVersion` names Istio's networking group at a version read here. A
/// Gateway API object (`gateway.networking.k8s.io`) in `gateways/` is told apart here.
pub fn check_api_version(bytes: &[u8]) -> Result<(), FieldError> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default, rename = "apiVersion")]
        api_version: Option<String>,
    }
    let head: Head = from_yaml(bytes)?;
    let Some(v) = head.api_version else {
        return Err(FieldError::new(
            "apiVersion",
            "required (networking.istio.io/v1, v1beta1 or v1alpha3)",
        ));
    };
    match v.split_once('/') {
        Some((GROUP, version)) if VERSIONS.contains(&version) => Ok(()),
        Some(("gateway.networking.k8s.io", _)) => Err(FieldError::new(
            "apiVersion",
            format!("{v} is a Gateway API object; this folder holds Istio Gateways (networking.istio.io), and the Gateway API is not read"),
        )),
        _ => Err(FieldError::new(
            "apiVersion",
            format!("{v} is not read; networking.istio.io/v1, v1beta1 or v1alpha3"),
        )),
    }
}

/// An Istio `Gateway`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Gateway {
    pub metadata: ObjectMeta,
    pub spec: serde_json::Value,
}

/// An Istio `VirtualService`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VirtualService {
    pub metadata: ObjectMeta,
    pub spec: serde_json::Value,
}

/// An Istio `DestinationRule`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct DestinationRule {
    pub metadata: ObjectMeta,
    pub spec: serde_json::Value,
}

impl Gateway {
    pub fn parse(bytes: &[u8]) -> Result<Gateway, FieldError> {
        check_api_version(bytes)?;
        from_yaml(bytes)
    }
}

impl VirtualService {
    pub fn parse(bytes: &[u8]) -> Result<VirtualService, FieldError> {
        check_api_version(bytes)?;
        from_yaml(bytes)
    }
}

impl DestinationRule {
    pub fn parse(bytes: &[u8]) -> Result<DestinationRule, FieldError> {
        check_api_version(bytes)?;
        from_yaml(bytes)
    }
}
