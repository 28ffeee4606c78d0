//! `higress.io/timeout`: the route timeout in seconds (Higress-only key).

use std::time::Duration;

use super::{Annotations, Prefixes};
use crate::error::FieldError;

/// The full key, as users write it.
pub const TIMEOUT_ANNOTATION: &str = "higress.io/timeout";
pub(super) const PREFIXES: Prefixes = Prefixes::HigressOnly;
pub(super) const NAMES: &[&str] = &["timeout"];

/// The route timeout, when the annotation is there.
pub fn from_annotations(map: &Annotations) -> Result<Option<Duration>, FieldError> {
    super::get(map, "timeout", PREFIXES)
        .map(|found| parse_timeout(found.value))
        .transpose()
}

/// Non-negative seconds, fractions allowed, an `s` suffix tolerated.
pub fn parse_timeout(t: &str) -> Result<Duration, FieldError> {
    let err = || {
        FieldError::new(
            super::field_path(TIMEOUT_ANNOTATION),
            format!("expected non-negative seconds, got {t:?}"),
        )
    };
    let secs: f64 = t.trim().trim_end_matches('s').parse().map_err(|_| err())?;
    if !(secs >= 0.0 && secs.is_finite()) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}
