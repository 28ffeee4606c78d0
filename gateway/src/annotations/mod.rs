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

pub mod access;
pub mod canary;
pub mod cors;
pub mod destination;
pub mod fallback;
pub mod header_control;
pub mod load_balance;
mod map;
pub mod matching;
pub mod mirror;
pub mod path;
pub mod redirect;
pub mod retry;
pub mod rewrite;
pub mod timeout;
pub mod upstream_tls;

use std::time::Duration;

use crate::error::FieldError;

pub use crate::model::matcher::regex_error;
pub use access::AccessAnnotations;
pub use canary::Canary;
pub use cors::CorsAnnotations;
pub use destination::Destination;
pub use fallback::DefaultBackend;
pub use header_control::HeaderControlAnnotations;
pub use mirror::{MirrorAnnotations, MirrorTarget};
pub use path::PathOptions;
pub use redirect::RedirectAnnotations;
pub use rewrite::RewriteAnnotations;
pub use upstream_tls::UpstreamAnnotations;

/// The nginx-ingress prefix, read first where Higress reads both.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";
/// Higress's own prefix.
pub const HIGRESS_PREFIX: &str = "higress.io/";

pub use map::Annotations;

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

/// A group whose empty value is a constant, for [`Rare`].
pub trait Empty: PartialEq + 'static {
    /// What an Ingress without the group's annotations has.
    const EMPTY: &'static Self;
}

/// An annotation group most Ingresses leave empty, read as the group's value: boxed when
/// set, no allocation when empty (with 10,000 Ingresses each allocation per Ingress
/// shows in the resident memory).
#[derive(Clone)]
pub struct Rare<T: Empty>(Option<Box<T>>);

impl<T: Empty> Rare<T> {
    pub fn new(value: T) -> Rare<T> {
        Rare((value != *T::EMPTY).then(|| Box::new(value)))
    }
}

impl<T: Empty> Default for Rare<T> {
    fn default() -> Self {
        Rare(None)
    }
}

impl<T: Empty> std::ops::Deref for Rare<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::EMPTY)
    }
}

impl<T: Empty> PartialEq for Rare<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Empty + std::fmt::Debug> std::fmt::Debug for Rare<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
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
    pub upstream: Rare<UpstreamAnnotations>,
    /// `match-method`, `*-match-header-*`, `*-match-pseudo-header-*`, `*-match-query-*`
    /// (`higress.io/` only); `None`: the path alone decides. Boxed, as most Ingresses
    /// have none.
    pub matching: Option<Box<crate::model::matcher::RequestMatch>>,
    /// `canary: "true"` and its rules; `None`: a main Ingress.
    pub canary: Option<Box<Canary>>,
    /// `app-root`, `temporal-redirect`, `permanent-redirect(-code)` ([`Rare`], as the
    /// three below: rarely set).
    pub redirect: Rare<RedirectAnnotations>,
    /// `rewrite-target`, `higress.io/rewrite-path`, `upstream-vhost`.
    pub rewrite: Rare<RewriteAnnotations>,
    /// `request-header-control-*`, `response-header-control-*`.
    pub header_control: Rare<HeaderControlAnnotations>,
    /// Source ranges, local rate limit, basic auth.
    pub access: Rare<AccessAnnotations>,
    /// `enable-cors` and `cors-*`: `None` unless `enable-cors` is true (boxed: most
    /// Ingresses have none, and a parsed Ingress stays small).
    pub cors: Option<Box<CorsAnnotations>>,
    /// `mirror-*`: `None` without a mirror target (boxed, as `cors`).
    pub mirror: Option<Box<MirrorAnnotations>>,
    /// `load-balance`, `upstream-hash-by`, cookie `affinity` and `session-cookie-*`: the
    /// balancing of the backends' services; `None`: none of them.
    pub load_balance: Option<Box<crate::model::LbPolicy>>,
    /// `proxy-next-upstream*`; `None`: the gateway's default retries.
    pub retry: Option<Box<crate::model::retry::RetryPolicy>>,
    /// `default-backend` with `custom-http-errors`.
    pub default_backend: Option<Box<DefaultBackend>>,
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
            upstream: Rare::new(upstream_tls::from_annotations(map)?),
            matching: Some(matching::from_annotations(map)?)
                .filter(|m| !m.is_empty())
                .map(Box::new),
            canary: canary::from_annotations(map)?.map(Box::new),
            redirect: Rare::new(redirect::redirects(map)?),
            rewrite: Rare::new(rewrite::from_annotations(map)?),
            header_control: Rare::new(header_control::from_annotations(map)?),
            access: Rare::new(access::from_annotations(map)?),
            cors: cors::from_annotations(map)?.map(Box::new),
            mirror: mirror::from_annotations(map)?.map(Box::new),
            load_balance: load_balance::from_annotations(map)?.map(Box::new),
            retry: retry::from_annotations(map)?.map(Box::new),
            default_backend: fallback::from_annotations(map)?.map(Box::new),
        })
    }
}

/// Every group's (prefixes, names) this gateway reads.
const GROUPS: &[(Prefixes, &[&str])] = &[
    (destination::PREFIXES, destination::NAMES),
    (timeout::PREFIXES, timeout::NAMES),
    (redirect::PREFIXES, redirect::NAMES),
    (path::PREFIXES, path::NAMES),
    (upstream_tls::PREFIXES, upstream_tls::NAMES),
    (Prefixes::HigressOnly, path::HIGRESS_ONLY_NAMES),
    (matching::PREFIXES, matching::NAMES),
    (canary::PREFIXES, canary::NAMES),
    (rewrite::PREFIXES, rewrite::NAMES),
    (rewrite::HIGRESS_PREFIXES, rewrite::HIGRESS_NAMES),
    (header_control::PREFIXES, header_control::NAMES),
    (access::PREFIXES, access::NAMES),
    (access::HIGRESS_PREFIXES, access::HIGRESS_NAMES),
    (cors::PREFIXES, cors::NAMES),
    (mirror::PREFIXES, mirror::NAMES),
    (load_balance::PREFIXES, load_balance::NAMES),
    (retry::PREFIXES, retry::NAMES),
    (fallback::PREFIXES, fallback::NAMES),
];

/// Whether `name` is one of `names`, where a name ending in `*` stands for any non-empty
/// suffix (`exact-match-header-*`).
fn named(names: &[&str], name: &str) -> bool {
    names.iter().any(|n| match n.strip_suffix('*') {
        Some(stem) => name.len() > stem.len() && name.starts_with(stem),
        None => *n == name,
    })
}

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
                    prefixes.list().contains(&prefix) && named(names, name)
                })
        })
        .map(String::as_str)
        .collect()
}

/// The groups a KIngress's routes do not act on: its splits are its destinations
/// (`destination`, `canary`, `default-backend`), and source ranges, rate limits, basic
/// auth and load balancing are not built for KIngress routes yet.
const NOT_ON_KINGRESS: &[(Prefixes, &[&str])] = &[
    (destination::PREFIXES, destination::NAMES),
    (canary::PREFIXES, canary::NAMES),
    (access::PREFIXES, access::NAMES),
    (access::HIGRESS_PREFIXES, access::HIGRESS_NAMES),
    (load_balance::PREFIXES, load_balance::NAMES),
    (fallback::PREFIXES, fallback::NAMES),
];

/// What a KIngress carries that its routes do not act on: [`not_enforced`], and the
/// groups of [`NOT_ON_KINGRESS`].
pub fn not_enforced_on_kingress(map: &Annotations) -> Vec<&str> {
    let mut out = not_enforced(map);
    out.extend(map.keys().map(String::as_str).filter(|key| {
        let (prefix, name) = match key.strip_prefix(NGINX_PREFIX) {
            Some(name) => (NGINX_PREFIX, name),
            None => match key.strip_prefix(HIGRESS_PREFIX) {
                Some(name) => (HIGRESS_PREFIX, name),
                None => return false,
            },
        };
        NOT_ON_KINGRESS
            .iter()
            .any(|(prefixes, names)| prefixes.list().contains(&prefix) && named(names, name))
    }));
    out.sort_unstable();
    out.dedup();
    out
}

/// Annotations under either prefix that a group reads and this gateway acts on (the
/// complement of [`not_enforced`]), for `/debug/configz`.
pub fn enforced(map: &Annotations) -> Vec<&str> {
    let not = not_enforced(map);
    map.keys()
        .map(String::as_str)
        .filter(|key| {
            (key.starts_with(NGINX_PREFIX) || key.starts_with(HIGRESS_PREFIX))
                && !key.ends_with("/ingress.class")
                && !not.contains(key)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Annotations from pairs (the tests of every group use it).
    pub(crate) fn map(pairs: &[(&str, &str)]) -> Annotations {
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
            ("nginx.ingress.kubernetes.io/rewrite-path", "/"),
            ("higress.io/ingress.class", "higress"),
            ("higress.io/exact-match-header-x-user", "a"),
            ("nginx.ingress.kubernetes.io/exact-match-header-x-user", "a"),
            ("example.com/other", "x"),
        ]);
        assert_eq!(
            not_enforced(&m),
            vec![
                "nginx.ingress.kubernetes.io/destination",
                "nginx.ingress.kubernetes.io/exact-match-header-x-user",
                "nginx.ingress.kubernetes.io/rewrite-path"
            ]
        );
        assert_eq!(
            enforced(&m),
            vec![
                "higress.io/destination",
                "higress.io/exact-match-header-x-user",
                "nginx.ingress.kubernetes.io/rewrite-target",
                "nginx.ingress.kubernetes.io/ssl-redirect"
            ]
        );
    }
}
