//! `request-header-control-{add,update,remove}` and
//! `response-header-control-{add,update,remove}` (`higress.io/` only), parsed as
//! Higress's `header_control.go` parses them and translated as Istio turns them into
//! Envoy's route header edits:
//!
//! - `add` / `update`: one header per line; a line is split at its first run of
//!   whitespace into name and value, each trimmed and stripped of one pair of
//!   surrounding `"` or `'`; a later line for the same name replaces an earlier one
//!   (Higress keeps a map). `add` appends a value, `update` overwrites.
//! - `remove`: names separated by `,`.
//! - Names are lowercased. Pseudo-headers (`:name`) are dropped, as Istio drops them; a
//!   request `host` (or `:authority`) in `update` (else `add`) becomes the upstream host
//!   (Istio's authority rewrite), `upstream-vhost` winning over it; `host` is dropped
//!   from responses and removals.
//! - An empty value adds nothing (Envoy skips empty values). Values are literal: Envoy's
//!   `%COMMAND%` substitutions are not evaluated.

use std::collections::BTreeMap;

use http::header::{HeaderName, HeaderValue};

use super::{Annotations, Found, Prefixes};
use crate::error::FieldError;
use crate::model::header_control::{HeaderControl, HeaderOps};

pub(super) const PREFIXES: Prefixes = Prefixes::HigressOnly;
pub(super) const NAMES: &[&str] = &[
    "request-header-control-add",
    "request-header-control-update",
    "request-header-control-remove",
    "response-header-control-add",
    "response-header-control-update",
    "response-header-control-remove",
];

/// The header control of one Ingress, and the upstream host a request `host` line asks
/// for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderControlAnnotations {
    /// `None` when no annotation of the group is present or all are empty.
    pub control: Option<HeaderControl>,
    pub host: Option<HeaderValue>,
}

impl super::Empty for HeaderControlAnnotations {
    const EMPTY: &'static Self = &HeaderControlAnnotations {
        control: None,
        host: None,
    };
}

/// Higress's `trimQuotes`: one pair of matching `"` or `'` around the text.
fn trim_quotes(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case(":authority")
}

fn header_name(found: Found<'_>, name: &str) -> Result<HeaderName, FieldError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| found.error(format!("{name:?} is not a header name")))
}

/// `add` / `update`: (name, value) pairs in name order, and the `host` line's value.
type Pairs = (Vec<(HeaderName, HeaderValue)>, Option<HeaderValue>);

fn pairs(found: Found<'_>) -> Result<Pairs, FieldError> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (i, line) in found.value.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(|c: char| c.is_whitespace()) else {
            return Err(found.error(format!("line {}: {line:?} is not `<name> <value>`", i + 1)));
        };
        let name = trim_quotes(name.trim());
        let value = trim_quotes(value.trim());
        map.insert(name.to_ascii_lowercase(), value.to_string());
    }
    let mut out = Vec::new();
    let mut host = None;
    for (name, value) in map {
        let v = HeaderValue::from_str(&value)
            .map_err(|_| found.error(format!("{value:?} is not a header value")))?;
        if is_authority(&name) {
            host = Some(v).filter(|v| !v.is_empty());
            continue;
        }
        if name.starts_with(':') || value.is_empty() {
            continue;
        }
        out.push((header_name(found, &name)?, v));
    }
    Ok((out, host))
}

fn names(found: Found<'_>) -> Result<Vec<HeaderName>, FieldError> {
    found
        .value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with(':') && !n.eq_ignore_ascii_case("host"))
        .map(|n| header_name(found, n))
        .collect()
}

/// One direction (`names`: its add, update and remove annotations); the `host` its
/// `update` / `add` ask for.
fn ops(map: &Annotations, keys: &[&str]) -> Result<(HeaderOps, Option<HeaderValue>), FieldError> {
    let get = |i: usize| super::get(map, keys[i], PREFIXES);
    let mut ops = HeaderOps::default();
    let mut host = None;
    if let Some(f) = get(0) {
        (ops.add, host) = pairs(f)?;
    }
    if let Some(f) = get(1) {
        let set_host;
        (ops.set, set_host) = pairs(f)?;
        host = set_host.or(host);
    }
    if let Some(f) = get(2) {
        ops.remove = names(f)?;
    }
    Ok((ops, host))
}

/// The six annotations, checked.
pub fn from_annotations(map: &Annotations) -> Result<HeaderControlAnnotations, FieldError> {
    let (request, host) = ops(map, &NAMES[..3])?;
    let (response, _) = ops(map, &NAMES[3..])?;
    let control = HeaderControl { request, response };
    Ok(HeaderControlAnnotations {
        control: (!control.is_empty()).then_some(control),
        host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<HeaderControlAnnotations, FieldError> {
        let m = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_annotations(&m)
    }

    fn text(list: &[(HeaderName, HeaderValue)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn lines_split_at_the_first_whitespace() {
        let a = parse(&[
            (
                "higress.io/request-header-control-add",
                "X-First  one two \n\n\t'x-quoted' \"a b\"\nx-first again\n",
            ),
            (
                "higress.io/request-header-control-update",
                "host internal\nx-set\tv",
            ),
            (
                "higress.io/request-header-control-remove",
                " x-a, X-B ,, :path, host",
            ),
            ("higress.io/response-header-control-add", "x-r 1"),
        ])
        .unwrap();
        let c = a.control.unwrap();
        assert_eq!(
            text(&c.request.add),
            [
                ("x-first".into(), "again".into()),
                ("x-quoted".into(), "a b".into())
            ]
        );
        assert_eq!(text(&c.request.set), [("x-set".into(), "v".into())]);
        assert_eq!(c.request.remove, ["x-a", "x-b"]);
        assert_eq!(text(&c.response.add), [("x-r".into(), "1".into())]);
        assert_eq!(a.host.unwrap(), "internal");
    }

    #[test]
    fn only_the_higress_prefix_and_bad_lines_are_refused() {
        let a = parse(&[(
            "nginx.ingress.kubernetes.io/request-header-control-add",
            "x 1",
        )]);
        assert_eq!(a.unwrap(), HeaderControlAnnotations::default());
        let e = parse(&[(
            "higress.io/response-header-control-update",
            "x-ok 1\nlonely",
        )])
        .unwrap_err();
        assert_eq!(
            e.path,
            "metadata.annotations[\"higress.io/response-header-control-update\"]"
        );
        assert!(e.message.contains("line 2"), "{e}");
        let e = parse(&[("higress.io/request-header-control-remove", "bad name")]).unwrap_err();
        assert!(e.message.contains("not a header name"), "{e}");
        let e = parse(&[("higress.io/request-header-control-add", "x-a a\u{1}b")]).unwrap_err();
        assert!(e.message.contains("not a header value"), "{e}");
    }
}
