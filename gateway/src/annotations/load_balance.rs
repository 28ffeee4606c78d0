//! Upstream choice: `load-balance`, `upstream-hash-by`, cookie `affinity` with
//! `session-cookie-name`, `-path`, `-max-age`, `-expires` (either prefix, nginx's first),
//! read as Higress's `loadbalance.go` reads them:
//!
//! - cookie affinity (any of `affinity`, `session-cookie-name`, `session-cookie-path`
//!   present) wins over `upstream-hash-by`, which wins over `load-balance`;
//! - `load-balance` is upper-cased into Istio's simple LB enum: `ROUND_ROBIN`,
//!   `LEAST_CONN` (Envoy's `LEAST_REQUEST`), `LEAST_REQUEST`, `RANDOM`; nginx's `ewma`
//!   (unknown to the enum, so Istio's default simple LB, `LEAST_REQUEST`) is read as
//!   `LEAST_REQUEST`;
//! - `upstream-hash-by`: `$request_uri` hashes `:path`, `$host` `:authority`,
//!   `$remote_addr` the source IP, `$http_<name>` the header `<name>`, `$arg_<name>` the
//!   query parameter;
//! - the cookie: name `INGRESSCOOKIE`, path `/`, ttl `session-cookie-max-age`, else
//!   `session-cookie-expires`, else 0 (a session cookie); Envoy makes it when absent.
//!
//! Where Higress silently ignores a value it cannot use (an unknown `load-balance`, an
//! `upstream-hash-by` it does not map, a non-integer age) this gateway rejects the
//! Ingress, naming the annotation: the route would otherwise balance differently from
//! what the user wrote without telling them.

use std::time::Duration;

use super::{Annotations, Found, Prefixes};
use crate::error::FieldError;
use crate::model::{CookiePolicy, HashPolicy, LbPolicy};

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &[
    LOAD_BALANCE,
    UPSTREAM_HASH_BY,
    AFFINITY,
    SESSION_COOKIE_NAME,
    SESSION_COOKIE_PATH,
    SESSION_COOKIE_MAX_AGE,
    SESSION_COOKIE_EXPIRES,
];

const LOAD_BALANCE: &str = "load-balance";
const UPSTREAM_HASH_BY: &str = "upstream-hash-by";
const AFFINITY: &str = "affinity";
const SESSION_COOKIE_NAME: &str = "session-cookie-name";
const SESSION_COOKIE_PATH: &str = "session-cookie-path";
const SESSION_COOKIE_MAX_AGE: &str = "session-cookie-max-age";
const SESSION_COOKIE_EXPIRES: &str = "session-cookie-expires";

/// Higress's defaults for the affinity cookie.
pub const DEFAULT_COOKIE_NAME: &str = "INGRESSCOOKIE";
pub const DEFAULT_COOKIE_PATH: &str = "/";

fn get<'a>(map: &'a Annotations, name: &'a str) -> Option<Found<'a>> {
    super::get(map, name, PREFIXES)
}

/// The balancing the Ingress asks for its backends' services; `None` when it has none
/// of these annotations (the service keeps round robin, or another Ingress's policy).
pub fn from_annotations(map: &Annotations) -> Result<Option<LbPolicy>, FieldError> {
    // Every value present is checked, whichever one wins.
    let simple = get(map, LOAD_BALANCE).map(simple_lb).transpose()?;
    let hash = get(map, UPSTREAM_HASH_BY).map(hash_by).transpose()?;
    let cookie = cookie(map)?;
    Ok(match (cookie, hash, simple) {
        (Some(c), _, _) => Some(LbPolicy::RingHash(HashPolicy::Cookie(c))),
        (None, Some(h), _) => Some(LbPolicy::RingHash(h)),
        (None, None, s) => s,
    })
}

fn simple_lb(f: Found) -> Result<LbPolicy, FieldError> {
    match f.value.trim().to_ascii_uppercase().as_str() {
        "ROUND_ROBIN" => Ok(LbPolicy::RoundRobin),
        "LEAST_CONN" | "LEAST_REQUEST" | "EWMA" => Ok(LbPolicy::LeastRequest),
        "RANDOM" => Ok(LbPolicy::Random),
        _ => Err(f.error(format!(
            "expected round_robin, least_conn, least_request, random or ewma, got {:?}",
            f.value
        ))),
    }
}

fn hash_by(f: Found) -> Result<HashPolicy, FieldError> {
    let v = f.value.trim();
    let bad = |why: &str| {
        f.error(format!(
            "{why}: expected $request_uri, $host, $remote_addr, $http_<header> or $arg_<parameter>, got {:?}",
            f.value
        ))
    };
    Ok(match v {
        "$request_uri" => HashPolicy::Path,
        "$host" => HashPolicy::Authority,
        "$remote_addr" => HashPolicy::SourceIp,
        _ => {
            if let Some(h) = v.strip_prefix("$http_") {
                let lower = h.to_ascii_lowercase();
                let name = http::HeaderName::from_bytes(lower.as_bytes())
                    .ok()
                    .filter(|_| !h.is_empty())
                    .ok_or_else(|| bad("not a header name"))?;
                // Higress hashes the header named as written (`x_user`); nginx's
                // `$http_x_user` is the header `x-user`, read when the first is absent.
                let dashed = lower.replace('_', "-");
                let alt = (dashed != lower)
                    .then(|| http::HeaderName::from_bytes(dashed.as_bytes()).ok())
                    .flatten();
                HashPolicy::Header { name, alt }
            } else if let Some(q) = v.strip_prefix("$arg_") {
                if q.is_empty() || q.contains(['&', '=', ' ']) {
                    return Err(bad("not a query parameter name"));
                }
                HashPolicy::QueryParameter(q.to_string())
            } else {
                return Err(bad("not supported"));
            }
        }
    })
}

/// A cookie name is an HTTP token (RFC 6265).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

fn seconds(f: Found) -> Result<Duration, FieldError> {
    f.value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| {
            f.error(format!(
                "{:?} is not a whole number of seconds (0 or more)",
                f.value
            ))
        })
}

fn cookie(map: &Annotations) -> Result<Option<CookiePolicy>, FieldError> {
    let affinity = get(map, AFFINITY);
    let name = get(map, SESSION_COOKIE_NAME);
    let path = get(map, SESSION_COOKIE_PATH);
    let max_age = get(map, SESSION_COOKIE_MAX_AGE).map(seconds).transpose()?;
    let expires = get(map, SESSION_COOKIE_EXPIRES).map(seconds).transpose()?;
    if let Some(a) = affinity {
        if !a.value.trim().eq_ignore_ascii_case("cookie") {
            return Err(a.error(format!(
                "expected cookie (the only affinity type), got {:?}",
                a.value
            )));
        }
    }
    if affinity.is_none() && name.is_none() && path.is_none() {
        return Ok(None);
    }
    let name = match name {
        Some(f) if !is_token(f.value.trim()) => {
            return Err(f.error(format!("{:?} is not a cookie name", f.value)))
        }
        Some(f) => f.value.trim().to_string(),
        None => DEFAULT_COOKIE_NAME.to_string(),
    };
    let path = match path {
        Some(f) if f.value.contains(|c: char| c == ';' || c.is_control()) => {
            return Err(f.error(format!("{:?} is not a cookie path", f.value)))
        }
        Some(f) => f.value.trim().to_string(),
        None => DEFAULT_COOKIE_PATH.to_string(),
    };
    Ok(Some(CookiePolicy {
        name,
        path,
        ttl: max_age.or(expires).unwrap_or(Duration::ZERO),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Option<LbPolicy>, FieldError> {
        let map: Annotations = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_annotations(&map)
    }

    const N: &str = "nginx.ingress.kubernetes.io/";
    const H: &str = "higress.io/";

    fn one(prefix: &str, name: &str, value: &str) -> Result<Option<LbPolicy>, FieldError> {
        parse(&[(&format!("{prefix}{name}"), value)])
    }

    #[test]
    fn load_balance_is_upper_cased_into_istio_names() {
        assert_eq!(parse(&[]), Ok(None));
        for (v, p) in [
            ("round_robin", LbPolicy::RoundRobin),
            ("least_conn", LbPolicy::LeastRequest),
            ("LEAST_REQUEST", LbPolicy::LeastRequest),
            ("Random", LbPolicy::Random),
            ("ewma", LbPolicy::LeastRequest),
        ] {
            assert_eq!(one(N, "load-balance", v), Ok(Some(p.clone())), "{v}");
            assert_eq!(one(H, "load-balance", v), Ok(Some(p)), "{v}");
        }
        let e = one(H, "load-balance", "fastest").unwrap_err();
        assert_eq!(e.path, "metadata.annotations[\"higress.io/load-balance\"]");
        assert!(e.message.contains("\"fastest\""), "{e}");
        assert!(one(N, "load-balance", "passthrough").is_err());
    }

    #[test]
    fn upstream_hash_by_maps_as_higress() {
        let h = |v: &str| match one(N, "upstream-hash-by", v) {
            Ok(Some(LbPolicy::RingHash(h))) => h,
            other => panic!("{v}: {other:?}"),
        };
        assert_eq!(h("$request_uri"), HashPolicy::Path);
        assert_eq!(h("$host"), HashPolicy::Authority);
        assert_eq!(h("$remote_addr"), HashPolicy::SourceIp);
        assert_eq!(h("$arg_user"), HashPolicy::QueryParameter("user".into()));
        assert_eq!(
            h("$http_X_User"),
            HashPolicy::Header {
                name: http::HeaderName::from_static("x_user"),
                alt: Some(http::HeaderName::from_static("x-user")),
            }
        );
        assert_eq!(
            h("$http_token"),
            HashPolicy::Header {
                name: http::HeaderName::from_static("token"),
                alt: None
            }
        );
        for bad in [
            "$binary_remote_addr",
            "request_uri",
            "$http_",
            "$arg_",
            "$http_a b",
        ] {
            let e = one(N, "upstream-hash-by", bad).unwrap_err();
            assert!(e.path.contains("upstream-hash-by"), "{bad}: {e}");
        }
        // upstream-hash-by wins over load-balance.
        assert_eq!(
            parse(&[
                ("higress.io/load-balance", "random"),
                ("higress.io/upstream-hash-by", "$host")
            ]),
            Ok(Some(LbPolicy::RingHash(HashPolicy::Authority)))
        );
    }

    #[test]
    fn cookie_affinity_defaults_and_ages() {
        let c = |pairs: &[(&str, &str)]| match parse(pairs) {
            Ok(Some(LbPolicy::RingHash(HashPolicy::Cookie(c)))) => c,
            other => panic!("{other:?}"),
        };
        let d = c(&[("nginx.ingress.kubernetes.io/affinity", "cookie")]);
        assert_eq!(
            d,
            CookiePolicy {
                name: "INGRESSCOOKIE".into(),
                path: "/".into(),
                ttl: Duration::ZERO
            }
        );
        // Higress: session-cookie-name or -path alone turn affinity on.
        assert_eq!(c(&[("higress.io/session-cookie-name", "sid")]).name, "sid");
        assert_eq!(
            c(&[("higress.io/session-cookie-path", "/app")]).path,
            "/app"
        );
        // max-age wins over expires; expires alone is the ttl.
        let both = c(&[
            ("nginx.ingress.kubernetes.io/affinity", "cookie"),
            ("nginx.ingress.kubernetes.io/session-cookie-max-age", "100"),
            ("nginx.ingress.kubernetes.io/session-cookie-expires", "10"),
        ]);
        assert_eq!(both.ttl, Duration::from_secs(100));
        let exp = c(&[
            ("nginx.ingress.kubernetes.io/affinity", "cookie"),
            ("nginx.ingress.kubernetes.io/session-cookie-expires", "10"),
        ]);
        assert_eq!(exp.ttl, Duration::from_secs(10));
        // Cookie affinity wins over the rest.
        let p = parse(&[
            ("higress.io/affinity", "cookie"),
            ("higress.io/upstream-hash-by", "$host"),
            ("higress.io/load-balance", "random"),
        ])
        .unwrap();
        assert!(matches!(p, Some(LbPolicy::RingHash(HashPolicy::Cookie(_)))));
        // Bad values are named.
        for (k, v) in [
            ("affinity", "ip"),
            ("session-cookie-name", "a;b"),
            ("session-cookie-path", "/a;b"),
            ("session-cookie-max-age", "1h"),
            ("session-cookie-expires", "-1"),
        ] {
            let e =
                parse(&[("higress.io/affinity", "cookie"), (&format!("{N}{k}"), v)]).unwrap_err();
            assert!(e.path.contains(k), "{k}: {e}");
        }
    }
}
