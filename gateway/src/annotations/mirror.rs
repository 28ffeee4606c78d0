//! Traffic mirroring: `mirror-target-service`, `mirror-target-fqdn`,
//! `mirror-target-fqdn-port` and `mirror-percentage` (both prefixes), read as Higress's
//! `pkg/ingress/kube/annotations/mirror.go` reads them:
//!
//! - `mirror-target-fqdn` wins when present: a registry host (`<name>.dns`,
//!   `<name>.static`, a Service FQDN ...) with `mirror-target-fqdn-port` (default 80);
//! - else `mirror-target-service`: `[<namespace>/]<name>[:<port>]`, the namespace
//!   defaulting to the Ingress's, the port to the Service's first;
//! - `mirror-percentage`: an integer percent of requests mirrored; 100 or more (or
//!   absent) mirrors every request.

use super::{Annotations, Found, Prefixes};
use crate::error::FieldError;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &[
    "mirror-target-service",
    "mirror-percentage",
    "mirror-target-fqdn",
    "mirror-target-fqdn-port",
];

/// Higress's default `mirror-target-fqdn-port`.
pub const DEFAULT_FQDN_PORT: u16 = 80;

/// Where mirrored requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorTarget {
    /// `mirror-target-fqdn` (lowercased) and its port.
    Fqdn { host: String, port: u16 },
    /// `mirror-target-service`: `None` namespace is the Ingress's; `None` port is the
    /// Service's first.
    Service {
        namespace: Option<String>,
        name: String,
        port: Option<u16>,
    },
}

/// The mirror of an Ingress's routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorAnnotations {
    pub target: MirrorTarget,
    /// Percent of requests mirrored, 0..=100 (default 100).
    pub percentage: u32,
}

/// The mirror, when `mirror-target-fqdn` or `mirror-target-service` is present.
pub fn from_annotations(map: &Annotations) -> Result<Option<MirrorAnnotations>, FieldError> {
    // Every spelling present must be valid, whichever is read.
    let mut percentage = None;
    for found in super::all(map, "mirror-percentage", PREFIXES) {
        let p = parse_percentage(&found)?;
        percentage.get_or_insert(p);
    }
    let mut fqdn_port = None;
    for found in super::all(map, "mirror-target-fqdn-port", PREFIXES) {
        let p = parse_port(&found, found.value.trim())?;
        fqdn_port.get_or_insert(p);
    }
    let mut service = None;
    for found in super::all(map, "mirror-target-service", PREFIXES) {
        let s = parse_service(&found)?;
        service.get_or_insert(s);
    }
    let mut fqdn = None;
    for found in super::all(map, "mirror-target-fqdn", PREFIXES) {
        let host = found.value.trim();
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
            return Err(found.error(format!("{:?} is not a host name", found.value)));
        }
        fqdn.get_or_insert(host.to_ascii_lowercase());
    }
    let target = match (fqdn, service) {
        (Some(host), _) => MirrorTarget::Fqdn {
            host,
            port: fqdn_port.unwrap_or(DEFAULT_FQDN_PORT),
        },
        (None, Some(s)) => s,
        (None, None) => return Ok(None),
    };
    Ok(Some(MirrorAnnotations {
        target,
        percentage: percentage.unwrap_or(100),
    }))
}

/// An integer percent; 100 and above mirror everything (Higress sets no fraction then).
fn parse_percentage(found: &Found<'_>) -> Result<u32, FieldError> {
    let v = found.value.trim();
    let p: i64 = v
        .parse()
        .map_err(|_| found.error(format!("{:?} is not an integer", found.value)))?;
    if p < 0 {
        return Err(found.error(format!("{p} is negative; expected a percent 0..100")));
    }
    Ok(p.min(100) as u32)
}

fn parse_port(found: &Found<'_>, v: &str) -> Result<u16, FieldError> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(found.error(format!("{v:?} is not a port (1..65535)"))),
    }
}

/// `[<namespace>/]<name>[:<port>]`.
fn parse_service(found: &Found<'_>) -> Result<MirrorTarget, FieldError> {
    let v = found.value.trim();
    let (nn, port) = match v.split_once(':') {
        Some((nn, p)) => (nn, Some(parse_port(found, p)?)),
        None => (v, None),
    };
    let (namespace, name) = match nn.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, nn),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    if !valid(name) || namespace.is_some_and(|ns| !valid(ns)) {
        return Err(found.error(format!(
            "{:?} is not [<namespace>/]<service>[:<port>]",
            found.value
        )));
    }
    Ok(MirrorTarget::Service {
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::annotations::tests::map;

    #[test]
    fn service_forms() {
        let m = |v: &str| {
            from_annotations(&map(&[(
                "nginx.ingress.kubernetes.io/mirror-target-service",
                v,
            )]))
        };
        assert_eq!(
            m("test/app").unwrap().unwrap(),
            MirrorAnnotations {
                target: MirrorTarget::Service {
                    namespace: Some("test".into()),
                    name: "app".into(),
                    port: None
                },
                percentage: 100
            }
        );
        assert_eq!(
            m("app:8080").unwrap().unwrap().target,
            MirrorTarget::Service {
                namespace: None,
                name: "app".into(),
                port: Some(8080)
            }
        );
        for bad in ["test/app:hi", "", "test/", "/app", "a/b/c", "app:0", "App"] {
            let e = m(bad).unwrap_err();
            assert_eq!(
                e.path,
                "metadata.annotations[\"nginx.ingress.kubernetes.io/mirror-target-service\"]",
                "{bad}"
            );
        }
    }

    #[test]
    fn fqdn_wins_with_port_default_80() {
        let a = from_annotations(&map(&[
            ("higress.io/mirror-target-fqdn", "Mirror.DNS"),
            ("higress.io/mirror-target-service", "test/app"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            a.target,
            MirrorTarget::Fqdn {
                host: "mirror.dns".into(),
                port: 80
            }
        );
        let a = from_annotations(&map(&[
            ("higress.io/mirror-target-fqdn", "192.168.252.112"),
            ("higress.io/mirror-target-fqdn-port", "8080"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            a.target,
            MirrorTarget::Fqdn {
                host: "192.168.252.112".into(),
                port: 8080
            }
        );
        assert!(from_annotations(&map(&[
            ("higress.io/mirror-target-fqdn", "a.dns"),
            ("higress.io/mirror-target-fqdn-port", "http"),
        ]))
        .is_err());
    }

    #[test]
    fn percentage() {
        let p = |v: &str| {
            from_annotations(&map(&[
                ("higress.io/mirror-target-fqdn", "a.dns"),
                ("nginx.ingress.kubernetes.io/mirror-percentage", v),
            ]))
            .map(|m| m.unwrap().percentage)
        };
        assert_eq!(p("30"), Ok(30));
        assert_eq!(p("0"), Ok(0));
        assert_eq!(p("150"), Ok(100));
        let e = p("abc").unwrap_err();
        assert!(e.message.contains("\"abc\" is not an integer"), "{e:?}");
        assert!(p("-1").is_err());
        assert!(p("12.5").is_err());
        // Without a target nothing is mirrored (and the percentage is still checked).
        assert_eq!(
            from_annotations(&map(&[("higress.io/mirror-percentage", "5")])),
            Ok(None)
        );
    }
}
