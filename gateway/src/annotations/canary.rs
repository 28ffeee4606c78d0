//! Canary Ingresses (Higress's `canary.go`, nginx-ingress's canary annotations, both
//! prefixes): `canary: "true"` marks an Ingress whose paths are merged into the main
//! (non-canary) Ingress with the same host and path, as `translate/canary.rs` does.
//!
//! - `canary-by-header` (+ `canary-by-header-value` or `canary-by-header-pattern`),
//! - `canary-by-cookie`,
//! - `canary-weight` out of `canary-weight-total` (default 100).
//!
//! Every value is checked whether or not `canary` is true, so a typo is an error naming
//! the annotation rather than a silently different split (Higress ignores bad values).

use http::HeaderName;

use super::{Annotations, Found, Prefixes};
use crate::error::FieldError;
use crate::model::matcher::FullRegex;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &[
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
];

/// nginx-ingress's and Higress's default `canary-weight-total`.
pub const DEFAULT_WEIGHT_TOTAL: u32 = 100;

/// The canary rules of an Ingress with `canary: "true"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Canary {
    /// `canary-by-header`: the header (lowercase) that chooses the canary.
    pub header: Option<HeaderName>,
    /// How that header's value chooses it.
    pub header_rule: HeaderRule,
    /// `canary-by-cookie`: the cookie whose value `always` / `never` decides.
    pub cookie: Option<String>,
    /// `canary-weight`: requests out of [`Canary::weight_total`] sent to the canary;
    /// `None` when absent (no weighted split).
    pub weight: Option<u32>,
    /// `canary-weight-total` (default 100, must be above 0).
    pub weight_total: u32,
}

/// How `canary-by-header`'s value chooses the canary.
#[derive(Clone, Debug, PartialEq)]
pub enum HeaderRule {
    /// `always` routes to the canary, `never` away from it (nginx-ingress).
    AlwaysNever,
    /// `canary-by-header-value`: this value (or `always`, as Higress's `always|<value>`).
    Value(String),
    /// `canary-by-header-pattern`: a regex found anywhere in the value (Higress's
    /// `.*<pattern>.*`); ignored when a value is given, as nginx-ingress does.
    Pattern(FullRegex),
}

/// The canary rules, `None` when `canary` is absent or false.
pub fn from_annotations(map: &Annotations) -> Result<Option<Canary>, FieldError> {
    let enabled = super::bool_value(map, "canary", PREFIXES)?.unwrap_or(false);
    let string = |name| super::get(map, name, PREFIXES).filter(|f| !f.value.trim().is_empty());
    let header = string("canary-by-header")
        .map(|f| {
            HeaderName::from_bytes(f.value.trim().to_ascii_lowercase().as_bytes())
                .map_err(|_| f.error(format!("{:?} is not a header name", f.value)))
        })
        .transpose()?;
    let value = string("canary-by-header-value").map(|f| f.value.trim().to_string());
    let pattern = string("canary-by-header-pattern")
        .map(|f| {
            let p = f.value.trim();
            FullRegex::new(&format!(".*(?:{p}).*"))
                .map_err(|e| f.error(format!("invalid regex {p:?}: {e}")))
        })
        .transpose()?;
    let header_rule = match (value, pattern) {
        (Some(v), _) => HeaderRule::Value(v),
        (None, Some(p)) => HeaderRule::Pattern(p),
        (None, None) => HeaderRule::AlwaysNever,
    };
    let cookie = string("canary-by-cookie").map(|f| f.value.trim().to_string());
    let weight = super::get(map, "canary-weight", PREFIXES)
        .map(|f| integer(f, 0))
        .transpose()?;
    let weight_total = super::get(map, "canary-weight-total", PREFIXES)
        .map(|f| integer(f, 1))
        .transpose()?
        .unwrap_or(DEFAULT_WEIGHT_TOTAL);
    Ok(enabled.then_some(Canary {
        header,
        header_rule,
        cookie,
        weight,
        weight_total,
    }))
}

/// A whole number of at least `min`.
fn integer(f: Found<'_>, min: u32) -> Result<u32, FieldError> {
    let v = f.value.trim();
    let n: i64 = v
        .parse()
        .map_err(|_| f.error(format!("{:?} is not an integer", f.value)))?;
    if n < i64::from(min) || n > i64::from(u32::MAX) {
        return Err(f.error(format!("{n} is out of range: at least {min}")));
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::annotations::tests::map;

    const N: &str = "nginx.ingress.kubernetes.io/";

    fn canary(pairs: &[(&str, &str)]) -> Result<Option<Canary>, FieldError> {
        let mut all = vec![(format!("{N}canary"), "true".to_string())];
        all.extend(
            pairs
                .iter()
                .map(|(k, v)| (format!("{N}{k}"), v.to_string())),
        );
        from_annotations(&all.into_iter().collect())
    }

    #[test]
    fn not_a_canary_without_canary_true() {
        assert_eq!(from_annotations(&map(&[])), Ok(None));
        let m = map(&[
            ("higress.io/canary", "false"),
            ("higress.io/canary-weight", "10"),
        ]);
        assert_eq!(from_annotations(&m), Ok(None));
        let m = map(&[
            ("higress.io/canary", "true"),
            ("higress.io/canary-weight", "10"),
        ]);
        let c = from_annotations(&m).unwrap().unwrap();
        assert_eq!((c.weight, c.weight_total), (Some(10), 100));
    }

    #[test]
    fn header_value_beats_pattern() {
        let c = canary(&[("canary-by-header", "X-Canary")])
            .unwrap()
            .unwrap();
        assert_eq!(c.header.as_ref().map(|h| h.as_str()), Some("x-canary"));
        assert_eq!(c.header_rule, HeaderRule::AlwaysNever);
        let c = canary(&[
            ("canary-by-header", "x"),
            ("canary-by-header-value", "blue"),
            ("canary-by-header-pattern", "gr[ae]y"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.header_rule, HeaderRule::Value("blue".into()));
        let c = canary(&[
            ("canary-by-header", "x"),
            ("canary-by-header-pattern", "gr[ae]y"),
        ])
        .unwrap()
        .unwrap();
        let HeaderRule::Pattern(p) = c.header_rule else {
            panic!("pattern expected")
        };
        assert!(p.is_match("a-grey-b") && !p.is_match("green"));
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let e = canary(&[("canary-weight", "abc")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata.annotations[\"nginx.ingress.kubernetes.io/canary-weight\"]: \"abc\" is not an integer"
        );
        assert!(canary(&[("canary-weight", "-1")]).is_err());
        assert!(canary(&[("canary-weight-total", "0")]).is_err());
        let e = canary(&[("canary-by-header-pattern", "a(")]).unwrap_err();
        assert!(e.message.starts_with("invalid regex \"a(\""), "{e}");
        assert!(canary(&[("canary-by-header", "bad header")]).is_err());
        // Checked even when the Ingress is not a canary.
        let m = map(&[("higress.io/canary-weight", "x")]);
        assert!(from_annotations(&m).is_err());
        let m = map(&[("higress.io/canary", "yes")]);
        assert!(from_annotations(&m).is_err());
    }

    #[test]
    fn cookie_and_weight_total() {
        let c = canary(&[
            ("canary-by-cookie", "use_canary"),
            ("canary-weight", "5"),
            ("canary-weight-total", "1000"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.cookie.as_deref(), Some("use_canary"));
        assert_eq!((c.weight, c.weight_total), (Some(5), 1000));
    }
}
