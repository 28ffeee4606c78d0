//! `proxy-next-upstream`, `proxy-next-upstream-tries`, `proxy-next-upstream-timeout`
//! (both prefixes): the route's retry policy, as Higress's `retry.go` converts them.
//!
//! - Any of the three present makes a policy with Higress's defaults: 3 retries on `5xx`,
//!   no per-try timeout. None present: the gateway's default retries stay.
//! - `-tries` is Envoy's `num_retries` as it is (Istio's `attempts` counts retries):
//!   `3` allows 4 attempts in all; `0` turns retries off.
//! - `proxy-next-upstream` is a comma list (or, without a comma, a space list) of
//!   nginx's conditions: `off` disables retries; `error`, `timeout`, `invalid_header` are
//!   Envoy's `5xx`; `http_<code>` adds a retriable status code; `non_idempotent` allows
//!   `POST`/`PATCH`/`LOCK` to be retried. A list with only status codes retries only
//!   those codes (not connect failures), as Envoy's `retriable-status-codes` does.
//! - `-timeout` is whole seconds, Envoy's `per_try_timeout`; 0 means none.
//!
//! Higress ignores a value it cannot parse; here it rejects the Ingress, naming the
//! annotation.

use std::time::Duration;

use super::{Annotations, Found, Prefixes};
use crate::error::FieldError;
use crate::model::retry::RetryPolicy;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &[TRIES, TIMEOUT, RETRY_ON];

const TRIES: &str = "proxy-next-upstream-tries";
const TIMEOUT: &str = "proxy-next-upstream-timeout";
const RETRY_ON: &str = "proxy-next-upstream";

/// Higress's `defaultRetryCount`.
pub const DEFAULT_RETRIES: u32 = 3;

/// The route's retry policy, when one of the annotations is there.
pub fn from_annotations(map: &Annotations) -> Result<Option<RetryPolicy>, FieldError> {
    let tries = checked(map, TRIES, parse_count)?;
    let timeout = checked(map, TIMEOUT, parse_count)?;
    let retry_on = checked(map, RETRY_ON, parse_conditions)?;
    if tries.is_none() && timeout.is_none() && retry_on.is_none() {
        return Ok(None);
    }
    let mut policy = RetryPolicy {
        num_retries: tries.unwrap_or(DEFAULT_RETRIES),
        per_try_timeout: timeout
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s))),
        on_5xx: true,
        status_codes: Vec::new(),
        non_idempotent: false,
    };
    match retry_on {
        // An empty list keeps the default `5xx`.
        None | Some(Conditions::Default) => {}
        Some(Conditions::Off) => policy.num_retries = 0,
        Some(Conditions::List {
            on_5xx,
            status_codes,
            non_idempotent,
        }) => {
            policy.on_5xx = on_5xx;
            policy.status_codes = status_codes;
            policy.non_idempotent = non_idempotent;
        }
    }
    Ok(Some(policy))
}

/// Every spelling of `name` present must parse; the one Higress reads wins.
fn checked<T>(
    map: &Annotations,
    name: &str,
    parse: impl Fn(&Found) -> Result<T, FieldError>,
) -> Result<Option<T>, FieldError> {
    let mut value = None;
    for found in super::all(map, name, PREFIXES) {
        let v = parse(&found)?;
        value.get_or_insert(v);
    }
    Ok(value)
}

/// A non-negative integer (Higress reads `-tries` and `-timeout` with `strconv`).
fn parse_count(found: &Found) -> Result<u32, FieldError> {
    found
        .value
        .trim()
        .parse::<u32>()
        .map_err(|_| found.error(format!("{:?} is not a non-negative integer", found.value)))
}

/// What `proxy-next-upstream` asks for.
#[derive(Debug, PartialEq)]
enum Conditions {
    /// No condition written: Higress keeps `5xx`.
    Default,
    Off,
    List {
        on_5xx: bool,
        status_codes: Vec<u16>,
        non_idempotent: bool,
    },
}

fn parse_conditions(found: &Found) -> Result<Conditions, FieldError> {
    let v = found.value;
    let tokens: Vec<&str> = if v.contains(',') {
        v.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect()
    } else {
        v.split_whitespace().collect()
    };
    if tokens.is_empty() {
        return Ok(Conditions::Default);
    }
    let mut on_5xx = false;
    let mut status_codes = Vec::new();
    let mut non_idempotent = false;
    let mut off = false;
    for t in tokens {
        match t {
            "off" => off = true,
            "error" | "timeout" | "invalid_header" => on_5xx = true,
            "non_idempotent" => non_idempotent = true,
            _ => {
                let code = t
                    .strip_prefix("http_")
                    .and_then(|c| c.parse::<u16>().ok())
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| {
                        found.error(format!(
                            "{t:?} is not one of error, timeout, invalid_header, http_<code>, non_idempotent, off"
                        ))
                    })?;
                if !status_codes.contains(&code) {
                    status_codes.push(code);
                }
            }
        }
    }
    if off {
        return Ok(Conditions::Off);
    }
    Ok(Conditions::List {
        on_5xx,
        status_codes,
        non_idempotent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect()
    }

    fn policy(pairs: &[(&str, &str)]) -> Option<RetryPolicy> {
        from_annotations(&map(pairs)).unwrap()
    }

    #[test]
    fn absent_annotations_keep_the_default() {
        assert_eq!(policy(&[]), None);
    }

    /// The cases of Higress's `retry_test.go`, as policies.
    #[test]
    fn higress_defaults_and_conversions() {
        let five_xx = |n: u32| RetryPolicy {
            num_retries: n,
            on_5xx: true,
            ..RetryPolicy::default()
        };
        assert_eq!(policy(&[(TRIES, "1")]), Some(five_xx(1)));
        assert_eq!(
            policy(&[(TIMEOUT, "10")]),
            Some(RetryPolicy {
                per_try_timeout: Some(Duration::from_secs(10)),
                ..five_xx(3)
            })
        );
        assert_eq!(policy(&[(TIMEOUT, "0")]), Some(five_xx(3)));
        assert_eq!(
            policy(&[(TRIES, "2"), (RETRY_ON, "off")])
                .unwrap()
                .num_retries,
            0
        );
        assert_eq!(
            policy(&[(TRIES, "2"), (RETRY_ON, "error,timeout")]),
            Some(five_xx(2))
        );
        assert_eq!(
            policy(&[(TRIES, "2"), (RETRY_ON, "error  timeout")]),
            Some(five_xx(2))
        );
        let with_post = RetryPolicy {
            non_idempotent: true,
            ..five_xx(3)
        };
        assert_eq!(
            policy(&[(RETRY_ON, "timeout,non_idempotent")]),
            Some(with_post.clone())
        );
        assert_eq!(
            policy(&[(RETRY_ON, "timeout non_idempotent")]),
            Some(with_post)
        );
        let codes = RetryPolicy {
            status_codes: vec![503, 502, 404],
            ..five_xx(3)
        };
        assert_eq!(
            policy(&[(RETRY_ON, "timeout,http_503,http_502,http_404")]),
            Some(codes.clone())
        );
        assert_eq!(
            policy(&[(RETRY_ON, "timeout http_503  http_502 http_404")]),
            Some(codes)
        );
    }

    #[test]
    fn status_codes_alone_do_not_retry_other_failures() {
        let p = policy(&[(RETRY_ON, "http_503")]).unwrap();
        assert!(!p.on_5xx);
        assert_eq!(p.status_codes, vec![503]);
        // Nothing Envoy knows: a policy that retries nothing.
        let p = policy(&[(RETRY_ON, "non_idempotent")]).unwrap();
        assert!(!p.on_5xx && p.status_codes.is_empty());
        // An empty value keeps `5xx`.
        assert!(policy(&[(RETRY_ON, " ")]).unwrap().on_5xx);
    }

    #[test]
    fn higress_prefix_is_read_too_and_nginx_wins() {
        let m: Annotations = [
            ("higress.io/proxy-next-upstream-tries", "5"),
            ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(from_annotations(&m).unwrap().unwrap().num_retries, 2);
        let m: Annotations = [("higress.io/proxy-next-upstream", "off")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(from_annotations(&m).unwrap().unwrap().num_retries, 0);
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let e = from_annotations(&map(&[(TRIES, "abc")])).unwrap_err();
        assert_eq!(
            e.path,
            "metadata.annotations[\"nginx.ingress.kubernetes.io/proxy-next-upstream-tries\"]"
        );
        assert!(
            e.message.contains("\"abc\" is not a non-negative integer"),
            "{e}"
        );
        let e = from_annotations(&map(&[(TIMEOUT, "10s")])).unwrap_err();
        assert!(e.message.contains("\"10s\""), "{e}");
        let e = from_annotations(&map(&[(RETRY_ON, "error,http_5xx")])).unwrap_err();
        assert!(e.message.contains("\"http_5xx\""), "{e}");
        assert!(from_annotations(&map(&[(RETRY_ON, "sometimes")])).is_err());
        assert!(from_annotations(&map(&[(TRIES, "-1")])).is_err());
    }
}
