//! Ingress annotations, parsed once (when the Ingress is parsed) into one typed
//! [`IngressAnnotations`], one file per annotation group as Higress's
//! `pkg/ingress/kube/annotations` has them. Translation reads the typed value only.
//!
//! - **The prefix rule**: Higress reads most keys under both `nginx.ingress.kubernetes.io/`
//!   and `higress.io/`, the nginx spelling first; a few (`destination`, `timeout`) only
//!   under `higress.io/`. Each group says which with [`Prefixes`].
//! - **Booleans** are read one way, as Go's `strconv.ParseBool` (what Higress uses); a value
//!   it refuses is an error naming the annotation, and every spelling present is checked.
//! - Annotations under either prefix that no group reads are listed by
//!   [`not_enforced`]: accepted for compatibility, reported, never silently ignored.
//!
//! This module imports nothing of the gateway but [`crate::error`] and the runtime
//! [`crate::model::Protocol`], so `resources/` can parse annotations with the Ingress
//! without an import loop.

pub mod destination;
pub mod path;
pub mod redirect;
pub mod timeout;
pub mod upstream_tls;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::FieldError;

pub use destination::Destination;
pub use path::PathOptions;
pub use upstream_tls::UpstreamAnnotations;

/// The nginx-ingress prefix, read first where Higress reads both.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";
/// Higress's own prefix.
pub const HIGRESS_PREFIX: &str = "higress.io/";

/// An object's `metadata.annotations`.
pub type Annotations = BTreeMap<String, String>;

/// Under which prefixes Higress reads an annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefixes {
    /// `nginx.ingress.kubernetes.io/` first, then `higress.io/`.
    Both,
    /// `higress.io/` only.
    HigressOnly,
}

impl Prefixes {
    fn list(self) -> &'static [&'static str] {
        match self {
            Prefixes::Both => &[NGINX_PREFIX, HIGRESS_PREFIX],
            Prefixes::HigressOnly => &[HIGRESS_PREFIX],
        }
    }
}

/// One annotation present on the object: its key as written, and its value.
#[derive(Clone, Copy, Debug)]
pub struct Found<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

impl Found<'_> {
    /// An error about this annotation, with its field path.
    pub fn error(&self, message: impl Into<String>) -> FieldError {
        FieldError::new(field_path(self.key), message)
    }
}

/// The field path of annotation `key` in errors.
pub fn field_path(key: &str) -> String {
    format!("metadata.annotations[\"{key}\"]")
}

/// Every spelling of annotation `name` present, in the order Higress reads them.
pub fn all<'a>(
    map: &'a Annotations,
    name: &'a str,
    prefixes: Prefixes,
) -> impl Iterator<Item = Found<'a>> + 'a {
    prefixes.list().iter().filter_map(move |prefix| {
        let key = format!("{prefix}{name}");
        map.get_key_value(&key).map(|(k, v)| Found {
            key: k.as_str(),
            value: v.as_str(),
        })
    })
}

/// The spelling of annotation `name` that Higress reads.
pub fn get<'a>(map: &'a Annotations, name: &'a str, prefixes: Prefixes) -> Option<Found<'a>> {
    all(map, name, prefixes).next()
}

/// Go's `strconv.ParseBool`, which Higress reads boolean annotations with.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean annotation: every spelling present must parse; the one Higress reads wins.
pub fn bool_value(
    map: &Annotations,
    name: &str,
    prefixes: Prefixes,
) -> Result<Option<bool>, FieldError> {
    let mut value = None;
    for found in all(map, name, prefixes) {
        let b = parse_bool(found.value.trim())
            .ok_or_else(|| found.error(format!("expected true or false, got {:?}", found.value)))?;
        value.get_or_insert(b);
    }
    Ok(value)
}

/// The annotations of one Ingress this gateway acts on, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngressAnnotations {
    /// `higress.io/destination`: the route's weighted destinations; `None`: the
    /// backend's Service.
    pub destination: Option<Vec<Destination>>,
    /// `higress.io/timeout`; `None` falls back to `downstream.routeTimeout`.
    pub timeout: Option<Duration>,
    /// `ssl-redirect` / `force-ssl-redirect`: plain HTTP gets a 308 to `https://`.
    pub ssl_redirect: bool,
    /// `use-regex`, `ignore-path-case`.
    pub path: PathOptions,
    /// `backend-protocol` and `proxy-ssl-*`.
    pub upstream: UpstreamAnnotations,
}

impl IngressAnnotations {
    /// Read and check every annotation this gateway acts on; the first bad one is the
    /// error.
    pub fn parse(map: &Annotations) -> Result<IngressAnnotations, FieldError> {
        Ok(IngressAnnotations {
            destination: destination::from_annotations(map)?,
            timeout: timeout::from_annotations(map)?,
            ssl_redirect: redirect::from_annotations(map)?,
            path: path::from_annotations(map)?,
            upstream: upstream_tls::from_annotations(map)?,
        })
    }
}

/// Every group's (prefixes, names) this gateway reads.
const GROUPS: [(Prefixes, &[&str]); 5] = [
    (destination::PREFIXES, destination::NAMES),
    (timeout::PREFIXES, timeout::NAMES),
    (redirect::PREFIXES, redirect::NAMES),
    (path::PREFIXES, path::NAMES),
    (upstream_tls::PREFIXES, upstream_tls::NAMES),
];

/// Annotations under either prefix that no group reads: accepted, reported under
/// `not_enforced`. `ingress.class` under a prefix is not reported (the class is read from
/// `spec.ingressClassName` or `kubernetes.io/ingress.class`).
pub fn not_enforced(map: &Annotations) -> Vec<&str> {
    map.keys()
        .filter(|key| {
            let (prefix, name) = match key.strip_prefix(NGINX_PREFIX) {
                Some(name) => (NGINX_PREFIX, name),
                None => match key.strip_prefix(HIGRESS_PREFIX) {
                    Some(name) => (HIGRESS_PREFIX, name),
                    None => return false,
                },
            };
            name != "ingress.class"
                && !GROUPS.iter().any(|(prefixes, names)| {
                    prefixes.list().contains(&prefix) && names.contains(&name)
                })
        })
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nginx_spelling_is_read_first_and_every_spelling_is_checked() {
        let m = map(&[
            ("nginx.ingress.kubernetes.io/use-regex", "false"),
            ("higress.io/use-regex", "true"),
        ]);
        assert_eq!(bool_value(&m, "use-regex", Prefixes::Both), Ok(Some(false)));
        let m = map(&[
            ("nginx.ingress.kubernetes.io/use-regex", "true"),
            ("higress.io/use-regex", "yes"),
        ]);
        let e = bool_value(&m, "use-regex", Prefixes::Both).unwrap_err();
        assert_eq!(e.path, "metadata.annotations[\"higress.io/use-regex\"]");
        assert_eq!(bool_value(&m, "absent", Prefixes::Both), Ok(None));
        let m = map(&[("nginx.ingress.kubernetes.io/timeout", "1")]);
        assert!(get(&m, "timeout", Prefixes::HigressOnly).is_none());
    }

    #[test]
    fn not_enforced_lists_what_no_group_reads() {
        let m = map(&[
            ("higress.io/destination", "a.dns"),
            ("nginx.ingress.kubernetes.io/destination", "a.dns"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "true"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
            ("higress.io/ingress.class", "higress"),
            ("example.com/other", "x"),
        ]);
        assert_eq!(
            not_enforced(&m),
            vec![
                "nginx.ingress.kubernetes.io/destination",
                "nginx.ingress.kubernetes.io/rewrite-target"
            ]
        );
    }
}
