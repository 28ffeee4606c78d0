//! Schema helpers shared by the CRD types of `mcpbridge.rs` and `wasmplugin.rs` (a leaf,
//! so that `crds.rs`, which lists those types, forms no import loop with them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Schema of free-form JSON kept as given (protobuf `Struct`).
pub(super) fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Drops the `default` schemars takes from serde's: an empty string or list is how the
/// parser reads a missing field, not a value the API server should store.
pub(super) fn no_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

/// Sets the `default` of a field parsed as `Option<T>` (whose own default is `null`) to
/// `T`'s default, which the parser applies to a missing value.
pub(super) fn default_of<T: Default + Serialize>(schema: &mut schemars::Schema) {
    let v = serde_json::to_value(T::default()).expect("a default serializes");
    schema.insert("default".into(), v);
}

/// Whatever a controller writes; the gateway writes none.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(schema_with = "any_object")]
pub struct AnyStatus(pub Value);
