//! Access and limits: who may reach a route and how often.
//!
//! - **Source ranges** (Higress's `ip_access_control.go`; the `blacklist-` and `domain-`
//!   keys are from its first release, which read them under its own prefix only):
//!   `whitelist-source-range` (both prefixes) or, without it, `blacklist-source-range`
//!   on the route; `domain-whitelist-source-range` or, without it,
//!   `domain-blacklist-source-range` on every route of the Ingress's hosts. A comma list
//!   of IPv4/IPv6 addresses and CIDRs, matched against the downstream remote address.
//! - **Local rate limit** (Higress's `local_rate_limit.go`, `higress.io/` only):
//!   `route-limit-rpm` (wins) or `route-limit-rps` tokens per minute / second, a bucket
//!   of `limit * route-limit-burst-multiplier` (default 5) tokens.
//! - **Basic auth** (nginx-ingress's `auth/main.go`; Higress 2.x only logs it):
//!   `auth-type: basic`, `auth-secret` (`name` or `namespace/name`), `auth-secret-type`
//!   (`auth-file`, the default, or `auth-map`), `auth-realm`. The Secret itself is read
//!   when routes are built.
//!
//! Higress skips a value it cannot parse; here a bad value rejects the Ingress with the
//! annotation and the reason, so a typo never silently opens a route.

use std::time::Duration;

use super::{all, get, Annotations, Found, Prefixes};
use crate::error::FieldError;
use crate::model::cidr::Cidr;

/// The keys Higress reads under both prefixes.
pub const PREFIXES: Prefixes = Prefixes::Both;
pub const NAMES: &[&str] = &[
    WHITELIST,
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
];
/// The keys read under `higress.io/` only.
pub const HIGRESS_PREFIXES: Prefixes = Prefixes::HigressOnly;
pub const HIGRESS_NAMES: &[&str] = &[
    BLACKLIST,
    DOMAIN_WHITELIST,
    DOMAIN_BLACKLIST,
    LIMIT_RPM,
    LIMIT_RPS,
    LIMIT_BURST,
];

const WHITELIST: &str = "whitelist-source-range";
const BLACKLIST: &str = "blacklist-source-range";
const DOMAIN_WHITELIST: &str = "domain-whitelist-source-range";
const DOMAIN_BLACKLIST: &str = "domain-blacklist-source-range";
const LIMIT_RPM: &str = "route-limit-rpm";
const LIMIT_RPS: &str = "route-limit-rps";
const LIMIT_BURST: &str = "route-limit-burst-multiplier";

/// Higress's `defaultBurstMultiplier`.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;

/// An allow or deny list of address ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRange {
    /// `true`: only these ranges may pass (whitelist); `false`: these may not (blacklist).
    pub allow: bool,
    pub ranges: Vec<Cidr>,
}

/// A token bucket as Envoy's `TokenBucket` has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens the bucket holds at most (`limit * multiplier`); it starts full.
    pub max_tokens: u32,
    /// Tokens added per `fill_interval` (the limit).
    pub tokens_per_fill: u32,
    /// One second (`route-limit-rps`) or one minute (`route-limit-rpm`).
    pub fill_interval: Duration,
}

/// What the Secret of `auth-secret` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthSecretType {
    /// Its `auth` key is an htpasswd file (nginx-ingress's default).
    AuthFile,
    /// Each key is a user, its value that user's password hash.
    AuthMap,
}

/// `auth-type: basic` with its Secret and realm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// The Secret's namespace when `auth-secret` names one; else the Ingress's.
    pub secret_namespace: Option<String>,
    pub secret_name: String,
    /// The `auth-secret` key as written, for errors about the Secret.
    pub secret_key: String,
    pub secret_type: AuthSecretType,
    /// `auth-realm`; empty by default, as nginx-ingress sends `realm=""`.
    pub realm: String,
}

impl BasicAuth {
    /// The Secret's (namespace, name) for an Ingress in `namespace`.
    pub fn secret_in(&self, namespace: &str) -> (String, String) {
        (
            self.secret_namespace
                .clone()
                .unwrap_or_else(|| namespace.to_string()),
            self.secret_name.clone(),
        )
    }
}

/// The access group of one Ingress; the default does nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccessAnnotations {
    /// The route's own list (`whitelist-source-range` or `blacklist-source-range`).
    pub source_range: Option<SourceRange>,
    /// The list for every route of the Ingress's hosts (`domain-*-source-range`); a
    /// route's own list replaces it, as Envoy's most specific per-route config does.
    pub domain_source_range: Option<SourceRange>,
    pub rate_limit: Option<RateLimit>,
    pub basic_auth: Option<BasicAuth>,
}

impl super::Empty for AccessAnnotations {
    const EMPTY: &'static Self = &AccessAnnotations {
        source_range: None,
        domain_source_range: None,
        rate_limit: None,
        basic_auth: None,
    };
}

impl AccessAnnotations {
    pub fn is_empty(&self) -> bool {
        self == &AccessAnnotations::default()
    }
}

pub fn from_annotations(map: &Annotations) -> Result<AccessAnnotations, FieldError> {
    Ok(AccessAnnotations {
        source_range: ranges(map, WHITELIST, PREFIXES, BLACKLIST)?,
        domain_source_range: ranges(map, DOMAIN_WHITELIST, HIGRESS_PREFIXES, DOMAIN_BLACKLIST)?,
        rate_limit: rate_limit(map)?,
        basic_auth: basic_auth(map)?,
    })
}

/// The allow list `white` if present, else the deny list `black`. Every spelling present
/// is checked.
fn ranges(
    map: &Annotations,
    white: &str,
    white_prefixes: Prefixes,
    black: &str,
) -> Result<Option<SourceRange>, FieldError> {
    let mut out = None;
    for (name, prefixes, allow) in [
        (white, white_prefixes, true),
        (black, HIGRESS_PREFIXES, false),
    ] {
        for found in all(map, name, prefixes) {
            let list = cidr_list(found)?;
            if out.is_none() {
                out = Some(SourceRange {
                    allow,
                    ranges: list,
                });
            }
        }
    }
    Ok(out)
}

/// A comma list of addresses and CIDRs; blanks around items and empty items are
/// skipped, as Higress trims them.
fn cidr_list(found: Found<'_>) -> Result<Vec<Cidr>, FieldError> {
    let mut list = Vec::new();
    for item in found.value.split(',').map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let c = Cidr::parse(item)
            .ok_or_else(|| found.error(format!("{item:?} is not an IP address or CIDR range")))?;
        list.push(c);
    }
    if list.is_empty() {
        return Err(found.error("no address or CIDR range"));
    }
    Ok(list)
}

/// A positive integer (Go's `strconv.Atoi` then a `uint32`, which Envoy needs above 0).
fn positive(found: Found<'_>) -> Result<u32, FieldError> {
    let v = found.value.trim();
    match v.parse::<i64>() {
        Ok(n) if n > 0 && n <= i64::from(u32::MAX) => Ok(n as u32),
        Ok(_) => Err(found.error(format!("{v:?} must be between 1 and {}", u32::MAX))),
        Err(_) => Err(found.error(format!("{v:?} is not an integer"))),
    }
}

fn rate_limit(map: &Annotations) -> Result<Option<RateLimit>, FieldError> {
    let hp = HIGRESS_PREFIXES;
    let multiplier = match get(map, LIMIT_BURST, hp) {
        Some(f) => positive(f)?,
        None => DEFAULT_BURST_MULTIPLIER,
    };
    let rpm = get(map, LIMIT_RPM, hp).map(positive).transpose()?;
    let rps = get(map, LIMIT_RPS, hp).map(positive).transpose()?;
    let (limit, fill_interval, found) = match (rpm, rps) {
        (Some(n), _) => (n, Duration::from_secs(60), get(map, LIMIT_RPM, hp)),
        (None, Some(n)) => (n, Duration::from_secs(1), get(map, LIMIT_RPS, hp)),
        (None, None) => return Ok(None),
    };
    let max_tokens = limit.checked_mul(multiplier).ok_or_else(|| {
        found.expect("the limit was read from it").error(format!(
            "{limit} * burst multiplier {multiplier} passes {}",
            u32::MAX
        ))
    })?;
    Ok(Some(RateLimit {
        max_tokens,
        tokens_per_fill: limit,
        fill_interval,
    }))
}

fn basic_auth(map: &Annotations) -> Result<Option<BasicAuth>, FieldError> {
    let p = PREFIXES;
    let Some(kind) = get(map, "auth-type", p) else {
        return Ok(None);
    };
    match kind.value.trim() {
        "basic" => {}
        "digest" => return Err(kind.error("\"digest\" is not supported (only \"basic\")")),
        other => return Err(kind.error(format!("{other:?} is not \"basic\""))),
    }
    let secret = get(map, "auth-secret", p)
        .ok_or_else(|| kind.error("auth-type basic needs an auth-secret annotation"))?;
    let (secret_namespace, secret_name) = match secret.value.trim().split_once('/') {
        Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
        None => (None, secret.value.trim().to_string()),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !valid(&secret_name) || secret_namespace.as_deref().is_some_and(|ns| !valid(ns)) {
        return Err(secret.error(format!(
            "{:?} is not a Secret name or namespace/name",
            secret.value
        )));
    }
    let secret_type = match get(map, "auth-secret-type", p) {
        None => AuthSecretType::AuthFile,
        Some(f) => match f.value.trim() {
            "auth-file" => AuthSecretType::AuthFile,
            "auth-map" => AuthSecretType::AuthMap,
            other => return Err(f.error(format!("{other:?} is not \"auth-file\" or \"auth-map\""))),
        },
    };
    let realm = match get(map, "auth-realm", p) {
        None => String::new(),
        Some(f) => {
            // It goes between quotes in a header: nothing that would end them.
            if f.value
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
            {
                return Err(
                    f.error("a realm may not hold quotes, backslashes or control characters")
                );
            }
            f.value.to_string()
        }
    };
    Ok(Some(BasicAuth {
        secret_namespace,
        secret_name,
        secret_key: secret.key.to_string(),
        secret_type,
        realm,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::annotations::tests::map;

    fn parse(pairs: &[(&str, &str)]) -> Result<AccessAnnotations, FieldError> {
        from_annotations(&map(pairs))
    }

    #[test]
    fn whitelist_wins_over_blacklist_and_reads_both_prefixes() {
        let a = parse(&[
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8, ::1,",
            ),
            ("higress.io/blacklist-source-range", "1.2.3.4"),
        ])
        .unwrap();
        let r = a.source_range.unwrap();
        assert!(r.allow);
        assert_eq!(r.ranges.len(), 2);
        let a = parse(&[("higress.io/blacklist-source-range", "1.2.3.4,2001:db8::/32")]).unwrap();
        assert!(!a.source_range.unwrap().allow);
        // The blacklist and domain lists are read under higress.io/ only.
        let a = parse(&[(
            "nginx.ingress.kubernetes.io/blacklist-source-range",
            "1.2.3.4",
        )])
        .unwrap();
        assert!(a.is_empty());
        let a = parse(&[("higress.io/domain-blacklist-source-range", "1.2.3.4")]).unwrap();
        assert!(!a.domain_source_range.unwrap().allow);
        assert!(a.source_range.is_none());
    }

    #[test]
    fn bad_ranges_name_the_annotation() {
        let e = parse(&[(
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "10.0.0.0/8,abc",
        )])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata.annotations[\"nginx.ingress.kubernetes.io/whitelist-source-range\"]: \"abc\" is not an IP address or CIDR range"
        );
        assert!(parse(&[("higress.io/whitelist-source-range", " , ")]).is_err());
        assert!(parse(&[("higress.io/domain-whitelist-source-range", "10.0.0.0/40")]).is_err());
    }

    #[test]
    fn rate_limit_as_higress_computes_it() {
        let a = parse(&[("higress.io/route-limit-rps", "10")]).unwrap();
        assert_eq!(
            a.rate_limit,
            Some(RateLimit {
                max_tokens: 50,
                tokens_per_fill: 10,
                fill_interval: Duration::from_secs(1)
            })
        );
        let a = parse(&[
            ("higress.io/route-limit-rps", "10"),
            ("higress.io/route-limit-rpm", "100"),
            ("higress.io/route-limit-burst-multiplier", "2"),
        ])
        .unwrap();
        assert_eq!(
            a.rate_limit,
            Some(RateLimit {
                max_tokens: 200,
                tokens_per_fill: 100,
                fill_interval: Duration::from_secs(60)
            })
        );
        // Higress-only keys.
        assert!(
            parse(&[("nginx.ingress.kubernetes.io/route-limit-rps", "1")])
                .unwrap()
                .is_empty()
        );
        let e = parse(&[("higress.io/route-limit-rps", "abc")]).unwrap_err();
        assert_eq!(e.message, "\"abc\" is not an integer");
        assert!(parse(&[("higress.io/route-limit-rps", "0")]).is_err());
        assert!(parse(&[("higress.io/route-limit-rpm", "-3")]).is_err());
        assert!(parse(&[
            ("higress.io/route-limit-rps", "1"),
            ("higress.io/route-limit-burst-multiplier", "x")
        ])
        .is_err());
        assert!(parse(&[
            ("higress.io/route-limit-rps", "4294967295"),
            ("higress.io/route-limit-burst-multiplier", "2")
        ])
        .is_err());
    }

    #[test]
    fn basic_auth_as_nginx_ingress_reads_it() {
        let a = parse(&[
            ("nginx.ingress.kubernetes.io/auth-type", "basic"),
            ("nginx.ingress.kubernetes.io/auth-secret", "basic-auth"),
            (
                "nginx.ingress.kubernetes.io/auth-realm",
                "Authentication Required - foo",
            ),
        ])
        .unwrap();
        let b = a.basic_auth.unwrap();
        assert_eq!(b.secret_in("ns"), ("ns".into(), "basic-auth".into()));
        assert_eq!(b.secret_type, AuthSecretType::AuthFile);
        assert_eq!(b.realm, "Authentication Required - foo");
        assert_eq!(b.secret_key, "nginx.ingress.kubernetes.io/auth-secret");
        let a = parse(&[
            ("higress.io/auth-type", "basic"),
            ("higress.io/auth-secret", "other/users"),
            ("higress.io/auth-secret-type", "auth-map"),
        ])
        .unwrap();
        let b = a.basic_auth.unwrap();
        assert_eq!(b.secret_in("ns"), ("other".into(), "users".into()));
        assert_eq!(b.secret_type, AuthSecretType::AuthMap);
        assert_eq!(b.realm, "");
        // Without auth-type nothing acts.
        assert!(parse(&[("higress.io/auth-secret", "x")])
            .unwrap()
            .is_empty());
        for bad in [
            vec![
                ("higress.io/auth-type", "digest"),
                ("higress.io/auth-secret", "x"),
            ],
            vec![("higress.io/auth-type", "basic")],
            vec![
                ("higress.io/auth-type", "basic"),
                ("higress.io/auth-secret", "a/b/c"),
            ],
            vec![
                ("higress.io/auth-type", "basic"),
                ("higress.io/auth-secret", "x"),
                ("higress.io/auth-secret-type", "file"),
            ],
            vec![
                ("higress.io/auth-type", "basic"),
                ("higress.io/auth-secret", "x"),
                ("higress.io/auth-realm", "say \"hi\""),
            ],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }
}
