//! Upstream annotations: `backend-protocol`, `proxy-ssl-secret`, `proxy-ssl-verify`,
//! `proxy-ssl-name`, `proxy-ssl-server-name` (either prefix, nginx's first, as Higress
//! reads them; `on`/`off` values as nginx's). What they make of a destination's TLS is
//! decided in `translate/upstream_tls.rs`.

use super::{Annotations, Prefixes};
use crate::error::FieldError;
use crate::model::Protocol;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &[
    BACKEND_PROTOCOL,
    PROXY_SSL_SECRET,
    PROXY_SSL_VERIFY,
    PROXY_SSL_NAME,
    PROXY_SSL_SERVER_NAME,
];

const BACKEND_PROTOCOL: &str = "backend-protocol";
const PROXY_SSL_SECRET: &str = "proxy-ssl-secret";
const PROXY_SSL_VERIFY: &str = "proxy-ssl-verify";
const PROXY_SSL_NAME: &str = "proxy-ssl-name";
const PROXY_SSL_SERVER_NAME: &str = "proxy-ssl-server-name";

/// The upstream annotations of one Ingress, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpstreamAnnotations {
    /// `backend-protocol`; `None`: the registry's protocol.
    pub backend_protocol: Option<Protocol>,
    /// `proxy-ssl-secret` as (namespace if written, name); see [`Self::secret_in`].
    pub secret: Option<(Option<String>, String)>,
    /// `proxy-ssl-verify`; `None`: the registry's own verification.
    pub verify: Option<bool>,
    /// `proxy-ssl-name`, lowercase.
    pub ssl_name: Option<String>,
    /// `proxy-ssl-server-name`.
    pub server_name: Option<bool>,
}

impl super::Empty for UpstreamAnnotations {
    const EMPTY: &'static Self = &UpstreamAnnotations {
        backend_protocol: None,
        secret: None,
        verify: None,
        ssl_name: None,
        server_name: None,
    };
}

/// The spelling Higress reads, its value trimmed.
fn annotation<'a>(map: &'a Annotations, name: &'a str) -> Option<(&'a str, &'a str)> {
    super::get(map, name, PREFIXES).map(|f| (f.key, f.value.trim()))
}

fn on_off(map: &Annotations, name: &str) -> Result<Option<bool>, FieldError> {
    match annotation(map, name) {
        None => Ok(None),
        Some((_, "on")) => Ok(Some(true)),
        Some((_, "off")) => Ok(Some(false)),
        Some((k, v)) => Err(FieldError::new(
            super::field_path(k),
            format!("expected on or off, got {v:?}"),
        )),
    }
}

/// The upstream annotations, checked.
pub fn from_annotations(map: &Annotations) -> Result<UpstreamAnnotations, FieldError> {
    let backend_protocol = match annotation(map, BACKEND_PROTOCOL) {
        None => None,
        Some((k, v)) => Some(match v.to_ascii_uppercase().as_str() {
            "HTTP" => Protocol::Http,
            "HTTP2" => Protocol::Http2,
            "HTTPS" => Protocol::Https,
            "GRPC" => Protocol::Grpc,
            "GRPCS" => Protocol::Grpcs,
            _ => {
                return Err(FieldError::new(
                    super::field_path(k),
                    format!("expected HTTP, HTTP2, HTTPS, GRPC or GRPCS, got {v:?}"),
                ))
            }
        }),
    };
    let secret = match annotation(map, PROXY_SSL_SECRET) {
        None => None,
        Some((k, v)) => {
            let (ns, name) = match v.split_once('/') {
                Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
                None => (None, v.to_string()),
            };
            if name.is_empty() || name.contains('/') {
                return Err(FieldError::new(
                    super::field_path(k),
                    format!("expected <name> or <namespace>/<name>, got {v:?}"),
                ));
            }
            Some((ns, name))
        }
    };
    let ssl_name = annotation(map, PROXY_SSL_NAME)
        .map(|(_, v)| v.to_ascii_lowercase())
        .filter(|v| !v.is_empty());
    Ok(UpstreamAnnotations {
        backend_protocol,
        secret,
        verify: on_off(map, PROXY_SSL_VERIFY)?,
        ssl_name,
        server_name: on_off(map, PROXY_SSL_SERVER_NAME)?,
    })
}

impl UpstreamAnnotations {
    /// Whether none is set (the registry's own protocol and TLS apply).
    pub fn is_empty(&self) -> bool {
        *self == UpstreamAnnotations::default()
    }

    /// `proxy-ssl-secret` as (namespace, name), a bare name being in the Ingress's
    /// namespace `own`.
    pub fn secret_in(&self, own: &str) -> Option<(String, String)> {
        self.secret
            .as_ref()
            .map(|(ns, name)| (ns.clone().unwrap_or_else(|| own.to_string()), name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(map: &Annotations) -> Result<UpstreamAnnotations, FieldError> {
        from_annotations(map)
    }

    #[test]
    fn annotations_parse_with_either_prefix_and_bad_values_are_named() {
        let a = parse(&meta(&[
            ("higress.io/backend-protocol", "https"),
            ("nginx.ingress.kubernetes.io/proxy-ssl-secret", "certs"),
            ("higress.io/proxy-ssl-verify", "on"),
            ("higress.io/proxy-ssl-name", "Backend.Test"),
            ("higress.io/proxy-ssl-server-name", "off"),
        ]))
        .unwrap();
        assert_eq!(a.backend_protocol, Some(Protocol::Https));
        assert_eq!(a.secret_in("ns"), Some(("ns".into(), "certs".into())));
        assert_eq!(a.verify, Some(true));
        assert_eq!(a.ssl_name.as_deref(), Some("backend.test"));
        assert_eq!(a.server_name, Some(false));
        let e = parse(&meta(&[("higress.io/proxy-ssl-verify", "yes")])).unwrap_err();
        assert_eq!(
            e.path,
            "metadata.annotations[\"higress.io/proxy-ssl-verify\"]"
        );
        let e = parse(&meta(&[(
            "nginx.ingress.kubernetes.io/backend-protocol",
            "AJP",
        )]))
        .unwrap_err();
        assert!(e.path.contains("backend-protocol"), "{e}");
        let e = parse(&meta(&[("higress.io/proxy-ssl-secret", "a/b/c")])).unwrap_err();
        assert!(e.path.contains("proxy-ssl-secret"), "{e}");
        let a = parse(&meta(&[("higress.io/proxy-ssl-secret", "o/s")])).unwrap();
        assert_eq!(a.secret_in("ns"), Some(("o".into(), "s".into())));
    }
}
