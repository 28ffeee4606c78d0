//! `ssl-redirect` and `force-ssl-redirect` (either prefix; Higress treats both alike):
//! plain-HTTP requests to the Ingress's routes get a 308 to `https://`.

use super::{Annotations, Prefixes};
use crate::error::FieldError;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &["ssl-redirect", "force-ssl-redirect"];

/// Whether either annotation asks for the redirect.
pub fn from_annotations(map: &Annotations) -> Result<bool, FieldError> {
    let mut redirect = false;
    for name in NAMES {
        redirect |= super::bool_value(map, name, PREFIXES)? == Some(true);
    }
    Ok(redirect)
}
