//! How an Ingress's paths match: `use-regex` (every path is a regular expression that
//! must match a prefix of the request path, Higress's `<path>.*`), `full-path-regex`
//! (`higress.io/` only: the regex must match the whole path, Higress's `<path>$`; it wins
//! over `use-regex`) and `ignore-path-case` (either prefix).

use super::{Annotations, Prefixes};
use crate::error::FieldError;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &["use-regex", "ignore-path-case"];
/// Read under `higress.io/` only, as Higress's `rewrite.go` does.
pub(super) const HIGRESS_ONLY_NAMES: &[&str] = &["full-path-regex"];

/// The path-matching options of one Ingress (both default false).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathOptions {
    /// `use-regex`: ImplementationSpecific paths are regular expressions.
    pub use_regex: bool,
    /// `ignore-path-case`: paths match case-insensitively.
    pub ignore_case: bool,
    /// `higress.io/full-path-regex`: paths are regular expressions of the whole path.
    pub full_path_regex: bool,
}

impl PathOptions {
    /// Whether the Ingress's paths are regular expressions (either annotation).
    pub fn regex(&self) -> bool {
        self.use_regex || self.full_path_regex
    }
}

/// Both options, checked.
pub fn from_annotations(map: &Annotations) -> Result<PathOptions, FieldError> {
    Ok(PathOptions {
        use_regex: super::bool_value(map, "use-regex", PREFIXES)?.unwrap_or(false),
        ignore_case: super::bool_value(map, "ignore-path-case", PREFIXES)?.unwrap_or(false),
        full_path_regex: super::bool_value(map, "full-path-regex", Prefixes::HigressOnly)?
            .unwrap_or(false),
    })
}
