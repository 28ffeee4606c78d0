//! Config sources. A source only turns files (or API objects) into typed resources and
//! sends them to the config loop; it never touches the data plane.

pub mod file;
pub mod kube;
pub mod nacos;

use crate::resources::{FieldError, Resource, ResourceKey};

/// One observed change to one object.
// Changes are rare and short-lived: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Change {
    /// The object was added or changed; `Err` when it failed to parse or validate.
    Upsert {
        key: ResourceKey,
        origin: String,
        result: Result<Resource, FieldError>,
    },
    Delete {
        key: ResourceKey,
        origin: String,
    },
}
