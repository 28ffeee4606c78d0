//! `default-backend` and `custom-http-errors` (both prefixes), as Higress's
//! `default_backend.go` reads them.
//!
//! - `default-backend` names a Service: `<name>` (in the Ingress's namespace) or
//!   `<namespace>/<name>`, no port (its first port is used, as nginx-ingress does).
//! - `custom-http-errors` is a comma list of status codes; it acts only with a
//!   `default-backend` (Higress ignores it alone).
//!
//! Higress logs and skips a bad code or an empty name; here they reject the Ingress.

use super::{Annotations, Prefixes};
use crate::error::FieldError;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &[DEFAULT_BACKEND, CUSTOM_HTTP_ERRORS];

const DEFAULT_BACKEND: &str = "default-backend";
const CUSTOM_HTTP_ERRORS: &str = "custom-http-errors";

/// The route's default backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultBackend {
    /// `None`: the Ingress's namespace.
    pub namespace: Option<String>,
    pub name: String,
    /// `custom-http-errors`, in the order written; empty: only the no-endpoint
    /// fallback.
    pub codes: Vec<u16>,
}

/// The default backend, when `default-backend` is there.
pub fn from_annotations(map: &Annotations) -> Result<Option<DefaultBackend>, FieldError> {
    let mut codes = None;
    for found in super::all(map, CUSTOM_HTTP_ERRORS, PREFIXES) {
        let mut list = Vec::new();
        for raw in found
            .value
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            let code = raw
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| found.error(format!("{raw:?} is not an HTTP status code")))?;
            if !list.contains(&code) {
                list.push(code);
            }
        }
        codes.get_or_insert(list);
    }
    let mut backend = None;
    for found in super::all(map, DEFAULT_BACKEND, PREFIXES) {
        let v = found.value.trim();
        let (namespace, name) = match v.split('/').collect::<Vec<_>>()[..] {
            [name] => (None, name),
            [ns, name] if !ns.is_empty() => (Some(ns.to_string()), name),
            _ => {
                return Err(found.error(format!(
                    "{:?} is not <service> or <namespace>/<service>",
                    found.value
                )))
            }
        };
        if name.is_empty() {
            return Err(found.error(format!("{:?} names no Service", found.value)));
        }
        backend.get_or_insert(DefaultBackend {
            namespace,
            name: name.to_string(),
            codes: Vec::new(),
        });
    }
    Ok(backend.map(|b| DefaultBackend {
        codes: codes.unwrap_or_default(),
        ..b
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::annotations::tests::map;

    /// The cases of Higress's `default_backend_test.go` that do not need a Service.
    #[test]
    fn names_with_and_without_namespace() {
        let b = from_annotations(&map(&[(
            "nginx.ingress.kubernetes.io/default-backend",
            "test/app",
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(b.namespace.as_deref(), Some("test"));
        assert_eq!(b.name, "app");
        let b = from_annotations(&map(&[("higress.io/default-backend", "app")]))
            .unwrap()
            .unwrap();
        assert_eq!((b.namespace, b.name.as_str()), (None, "app"));
        let b = from_annotations(&map(&[
            ("higress.io/default-backend", "test/app"),
            (
                "nginx.ingress.kubernetes.io/custom-http-errors",
                "404, 503,404",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(b.codes, vec![404, 503]);
    }

    #[test]
    fn codes_alone_do_nothing() {
        let m = map(&[("nginx.ingress.kubernetes.io/custom-http-errors", "404")]);
        assert_eq!(from_annotations(&m), Ok(None));
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let e = from_annotations(&map(&[
            ("higress.io/default-backend", "test/app"),
            ("nginx.ingress.kubernetes.io/custom-http-errors", "404,5ac"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.path,
            "metadata.annotations[\"nginx.ingress.kubernetes.io/custom-http-errors\"]"
        );
        assert!(e.message.contains("\"5ac\" is not an HTTP status code"));
        for bad in ["", "a/b/c", "/app", "ns/"] {
            assert!(
                from_annotations(&map(&[("higress.io/default-backend", bad)])).is_err(),
                "{bad:?}"
            );
        }
    }
}
