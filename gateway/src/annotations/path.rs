//! How an Ingress's paths match: `use-regex` (ImplementationSpecific paths are regular
//! expressions, anchored at the start) and `ignore-path-case` (either prefix).

use super::{Annotations, Prefixes};
use crate::error::FieldError;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &["use-regex", "ignore-path-case"];

/// The path-matching options of one Ingress (both default false).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathOptions {
    /// `use-regex`: ImplementationSpecific paths are regular expressions.
    pub use_regex: bool,
    /// `ignore-path-case`: paths match case-insensitively.
    pub ignore_case: bool,
}

/// Both options, checked.
pub fn from_annotations(map: &Annotations) -> Result<PathOptions, FieldError> {
    Ok(PathOptions {
        use_regex: super::bool_value(map, "use-regex", PREFIXES)?.unwrap_or(false),
        ignore_case: super::bool_value(map, "ignore-path-case", PREFIXES)?.unwrap_or(false),
    })
}
