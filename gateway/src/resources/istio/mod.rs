//! Istio's networking API as input (`networking.istio.io` `v1`, `v1beta1`, `v1alpha3`):
//! `Gateway`, `VirtualService` and `DestinationRule`, the objects net-istio writes for
//! Knative and users write by hand. What the gateway makes of them is in
//! `translate/istio/`.
//!
//! Field names follow Istio's `networking/v1beta1/*.proto` (JSON names, camelCase).
//! Fields the gateway does not read are accepted and ignored (Istio has many); the
//! fields it reads are checked here, each error naming its field path
//! (`spec.http[0].route[1].weight`), so one bad object is rejected alone.

pub mod destination_rule;
pub mod gateway;
pub mod virtual_service;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{from_yaml, FieldError};

pub use destination_rule::DestinationRule;
pub use gateway::Gateway;
pub use virtual_service::VirtualService;

/// The API group of Istio's networking kinds.
pub const GROUP: &str = "networking.istio.io";

/// The versions read (net-istio writes `v1beta1`).
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// Check `apiVersion` names Istio's networking group at a version read here. A
/// Gateway API object (`gateway.networking.k8s.io`) in `gateways/` is told apart here.
pub fn check_api_version(bytes: &[u8]) -> Result<(), FieldError> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default, rename = "apiVersion")]
        api_version: Option<String>,
    }
    let head: Head = from_yaml(bytes)?;
    let Some(v) = head.api_version else {
        return Err(FieldError::new(
            "apiVersion",
            "required (networking.istio.io/v1, v1beta1 or v1alpha3)",
        ));
    };
    match v.split_once('/') {
        Some((GROUP, version)) if VERSIONS.contains(&version) => Ok(()),
        Some(("gateway.networking.k8s.io", _)) => Err(FieldError::new(
            "apiVersion",
            format!("{v} is a Gateway API object; this folder holds Istio Gateways (networking.istio.io), and the Gateway API is not read"),
        )),
        _ => Err(FieldError::new(
            "apiVersion",
            format!("{v} is not read; networking.istio.io/v1, v1beta1 or v1alpha3"),
        )),
    }
}

/// Istio's `StringMatch`: one of `exact`, `prefix` or `regex` (RE2, whole value).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct StringMatch {
    /// The whole value, case-sensitive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The whole value matches this regex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Which kind a [`StringMatch`] is, with its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
}

impl StringMatch {
    /// Its kind; `None` for an empty match (`{}`), which Istio reads as "present".
    pub fn kind(&self) -> Option<MatchKind<'_>> {
        if let Some(s) = &self.exact {
            Some(MatchKind::Exact(s))
        } else if let Some(s) = &self.prefix {
            Some(MatchKind::Prefix(s))
        } else {
            self.regex.as_deref().map(MatchKind::Regex)
        }
    }

    /// At most one kind, and a regex that compiles.
    pub fn validate(&self, at: &str) -> Result<(), FieldError> {
        let set = [&self.exact, &self.prefix, &self.regex]
            .iter()
            .filter(|o| o.is_some())
            .count();
        if set > 1 {
            return Err(FieldError::new(
                at,
                "only one of exact, prefix and regex may be set",
            ));
        }
        if let Some(re) = &self.regex {
            regex::Regex::new(re).map_err(|e| {
                FieldError::new(
                    format!("{at}.regex"),
                    format!("invalid regex: {}", crate::annotations::regex_error(e)),
                )
            })?;
        }
        Ok(())
    }
}

/// Istio's `Percent`: a share of requests, `0.0..=100.0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Percent {
    /// Percent of requests (may have decimals); default 0.
    pub value: f64,
}

impl Percent {
    pub fn validate(&self, at: &str) -> Result<(), FieldError> {
        if !(0.0..=100.0).contains(&self.value) {
            return Err(FieldError::new(
                format!("{at}.value"),
                format!("{} is not within 0..100", self.value),
            ));
        }
        Ok(())
    }
}

/// Istio's `PortSelector`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct PortSelector {
    /// The port number; 0: not set.
    pub number: u32,
}

/// Check a port number: 1..=65535.
pub(crate) fn check_port(n: u32, at: &str) -> Result<(), FieldError> {
    if !(1..=65535).contains(&n) {
        return Err(FieldError::new(at, format!("{n} is not a port (1..65535)")));
    }
    Ok(())
}

/// Parse a protobuf `Duration` as Istio takes it: `1.5s`, `0.300s`, or with the Go
/// units Istio's tooling also writes (`300ms`, `1m`, `1h`, `1m30s`, `10us`, `5ns`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 1.5s, 300ms, 1m)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    if !total.is_finite() || total > 315_576_000_000.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Check an optional duration field.
pub(crate) fn check_duration(d: &Option<String>, at: &str) -> Result<(), FieldError> {
    if let Some(s) = d {
        parse_duration(s).map_err(|e| FieldError::new(at, e))?;
    }
    Ok(())
}

/// The duration of a field already checked; `None` when absent.
pub fn duration_of(d: &Option<String>) -> Option<Duration> {
    d.as_deref().and_then(|s| parse_duration(s).ok())
}

/// Check a header name.
pub(crate) fn check_header_name(name: &str, at: &str) -> Result<(), FieldError> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(FieldError::new(
            at,
            format!("{name:?} is not a valid header name"),
        ));
    }
    Ok(())
}

/// A host as Istio writes it: `*`, `*.suffix` or a DNS name (`ns/` prefixes are the
/// caller's). Checked loosely: no spaces, slashes or empty labels.
pub(crate) fn check_host(host: &str, at: &str) -> Result<(), FieldError> {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let ok = host == "*"
        || (!bare.is_empty()
            && !bare.contains('*')
            && !bare.split('.').any(str::is_empty)
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    if !ok {
        return Err(FieldError::new(at, format!("{host:?} is not a host name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_protobuf_and_go_forms() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            parse_duration("0.300s").unwrap(),
            Duration::from_millis(300)
        );
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["5x", "", "s", "5", "-1s", "1.2.3s", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn string_matches_are_one_kind_with_valid_regexes() {
        let m = StringMatch {
            exact: Some("a".into()),
            prefix: Some("b".into()),
            regex: None,
        };
        assert_eq!(
            m.validate("x").unwrap_err().to_string(),
            "x: only one of exact, prefix and regex may be set"
        );
        let m = StringMatch {
            regex: Some("(".into()),
            ..Default::default()
        };
        assert!(m
            .validate("x")
            .unwrap_err()
            .to_string()
            .starts_with("x.regex: invalid regex"));
        assert_eq!(StringMatch::default().kind(), None);
    }

    #[test]
    fn api_versions() {
        assert!(check_api_version(b"apiVersion: networking.istio.io/v1beta1\n").is_ok());
        assert!(check_api_version(b"apiVersion: networking.istio.io/v2\n").is_err());
        assert!(check_api_version(b"kind: Gateway\n").is_err());
    }
}
