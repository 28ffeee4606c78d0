//! Request matching beyond the path (Higress's `match.go`, `higress.io/` only):
//!
//! - `match-method`: methods separated by spaces (Higress) or commas, case-insensitive,
//!   each one of GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH.
//! - `{exact,prefix,regex}-match-header-<name>`: header `<name>` (lowercased).
//! - `{exact,prefix,regex}-match-pseudo-header-<name>`: `:authority`, `:method`, `:path`.
//! - `{exact,prefix,regex}-match-query-<name>`: query parameter `<name>` (case-sensitive).
//!
//! Regexes use the `regex` crate and must match the whole value, as Envoy's
//! `safe_regex` does (docs/annotations.md lists where the syntax differs from RE2).
//! Higress logs and skips a value it cannot use; here it is an error naming the
//! annotation, so the Ingress is rejected and its last good version stays.

use http::HeaderName;

use super::{Annotations, Prefixes, HIGRESS_PREFIX};
use crate::error::FieldError;
use crate::model::matcher::{
    FullRegex, HeaderMatcher, HeaderSource, MethodSet, QueryMatcher, RequestMatch, StringMatch,
};

pub(super) const PREFIXES: Prefixes = Prefixes::HigressOnly;
/// A trailing `*` stands for the header or parameter name.
pub(super) const NAMES: &[&str] = &[
    "match-method",
    "exact-match-header-*",
    "prefix-match-header-*",
    "regex-match-header-*",
    "exact-match-pseudo-header-*",
    "prefix-match-pseudo-header-*",
    "regex-match-pseudo-header-*",
    "exact-match-query-*",
    "prefix-match-query-*",
    "regex-match-query-*",
];

/// The route matches of one Ingress (empty when none is annotated).
pub fn from_annotations(map: &Annotations) -> Result<RequestMatch, FieldError> {
    let mut out = RequestMatch::default();
    if let Some(found) = super::get(map, "match-method", PREFIXES) {
        let mut set = MethodSet::default();
        for m in found
            .value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|m| !m.is_empty())
        {
            if !set.insert(&m.to_ascii_uppercase()) {
                return Err(found.error(format!(
                    "{m:?} is not a method Higress matches (GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH)"
                )));
            }
        }
        if set.is_empty() {
            return Err(found.error("no method given"));
        }
        out.methods = Some(set);
    }
    for (key, value) in map.iter_from(HIGRESS_PREFIX) {
        let Some(name) = key.strip_prefix(HIGRESS_PREFIX) else {
            break;
        };
        let Some((kind, target, rest)) = split_key(name) else {
            continue;
        };
        let err = |m: String| FieldError::new(super::field_path(key), m);
        if rest.is_empty() {
            return Err(err(format!(
                "no {target} name after \"{kind}-match-{target}-\""
            )));
        }
        let value = string_match(kind, value).map_err(err)?;
        match target {
            "header" => {
                let header = HeaderName::from_bytes(rest.to_ascii_lowercase().as_bytes())
                    .map_err(|_| err(format!("{rest:?} is not a header name")))?;
                out.headers.push(HeaderMatcher {
                    source: HeaderSource::Header(header),
                    value,
                });
            }
            "pseudo-header" => {
                let source = match rest.to_ascii_lowercase().as_str() {
                    "authority" => HeaderSource::Authority,
                    "method" => HeaderSource::Method,
                    "path" => HeaderSource::Path,
                    _ => {
                        return Err(err(format!(
                            "pseudo-header \":{rest}\" is not supported (authority, method, path)"
                        )))
                    }
                };
                out.headers.push(HeaderMatcher { source, value });
            }
            _ => out.query.push(QueryMatcher {
                name: rest.to_string(),
                value,
            }),
        }
    }
    Ok(out)
}

/// `exact-match-header-x-user` -> (`exact`, `header`, `x-user`).
fn split_key(name: &str) -> Option<(&'static str, &'static str, &str)> {
    for kind in ["exact", "prefix", "regex"] {
        let Some(rest) = name
            .strip_prefix(kind)
            .and_then(|r| r.strip_prefix("-match-"))
        else {
            continue;
        };
        // `pseudo-header` before `header`: neither is a prefix of the other, but keep the
        // longer first anyway.
        for target in ["pseudo-header", "header", "query"] {
            if let Some(n) = rest.strip_prefix(target) {
                if let Some(n) = n.strip_prefix('-') {
                    return Some((kind, target, n));
                }
                if n.is_empty() {
                    return Some((kind, target, ""));
                }
            }
        }
    }
    None
}

fn string_match(kind: &str, value: &str) -> Result<StringMatch, String> {
    Ok(match kind {
        "exact" => StringMatch::Exact(value.to_string()),
        "prefix" => StringMatch::Prefix(value.to_string()),
        _ => StringMatch::Regex(
            FullRegex::new(value).map_err(|e| format!("invalid regex {value:?}: {e}"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::annotations::tests::map;

    #[test]
    fn methods_split_on_spaces_and_commas() {
        let m = from_annotations(&map(&[("higress.io/match-method", "get POST, put")])).unwrap();
        let names: Vec<_> = m.methods.unwrap().names().collect();
        assert_eq!(names, ["GET", "POST", "PUT"]);
        let e = from_annotations(&map(&[("higress.io/match-method", "GET FETCH")])).unwrap_err();
        assert_eq!(e.path, "metadata.annotations[\"higress.io/match-method\"]");
        assert!(e.message.contains("\"FETCH\""), "{e}");
        assert!(from_annotations(&map(&[("higress.io/match-method", " , ")])).is_err());
        // Higress reads it under its own prefix only.
        let m = from_annotations(&map(&[("nginx.ingress.kubernetes.io/match-method", "GET")]));
        assert!(m.unwrap().is_empty());
    }

    #[test]
    fn header_query_and_pseudo_header_matches() {
        let m = from_annotations(&map(&[
            ("higress.io/exact-match-header-X-User", "alice"),
            ("higress.io/prefix-match-query-version", "v2"),
            (
                "higress.io/regex-match-pseudo-header-authority",
                ".*\\.example\\.com",
            ),
            ("higress.io/regex-match-header-x-env", "dev|test"),
            (
                "nginx.ingress.kubernetes.io/exact-match-header-ignored",
                "x",
            ),
            ("higress.io/destination", "a.dns"),
        ]))
        .unwrap();
        assert_eq!(m.headers.len(), 3);
        assert_eq!(
            m.headers[0].source,
            HeaderSource::Header(HeaderName::from_static("x-user"))
        );
        assert_eq!(m.headers[0].value, StringMatch::Exact("alice".into()));
        // In key order.
        assert_eq!(m.headers[1].source.name(), "x-env");
        assert_eq!(m.headers[2].source, HeaderSource::Authority);
        assert_eq!(m.query.len(), 1);
        assert_eq!(m.query[0].name, "version");
        assert_eq!(m.query[0].value, StringMatch::Prefix("v2".into()));
    }

    #[test]
    fn bad_names_and_regexes_name_the_annotation() {
        let e = from_annotations(&map(&[("higress.io/regex-match-header-x", "a(")])).unwrap_err();
        assert_eq!(
            e.path,
            "metadata.annotations[\"higress.io/regex-match-header-x\"]"
        );
        assert!(e.message.starts_with("invalid regex \"a(\""), "{e}");
        let e = from_annotations(&map(&[("higress.io/exact-match-header-", "a")])).unwrap_err();
        assert!(e.message.contains("no header name"), "{e}");
        let e = from_annotations(&map(&[("higress.io/exact-match-header", "a")])).unwrap_err();
        assert!(e.message.contains("no header name"), "{e}");
        let e = from_annotations(&map(&[(
            "higress.io/exact-match-pseudo-header-scheme",
            "https",
        )]))
        .unwrap_err();
        assert!(e.message.contains(":scheme"), "{e}");
    }
}
