//! `rewrite-target` and `upstream-vhost` (either prefix, nginx's first) and
//! `higress.io/rewrite-path` (Higress only), read as Higress's `rewrite.go` reads them:
//!
//! - `rewrite-path` wins over `rewrite-target`; an empty value is no value.
//! - `rewrite-target` turns the Ingress's paths into regexes (Higress's
//!   `NeedRegexMatch`) when it references a group (`$1`, `\1`, or holds any `$` or `\`),
//!   or when the path itself holds a regex character; `$n` is read as RE2's `\n`.
//! - `upstream-vhost` is the upstream `Host` / `:authority`.

use http::HeaderValue;

use super::{Annotations, Found, Prefixes};
use crate::error::FieldError;
use crate::model::rewrite::Substitution;

pub(super) const PREFIXES: Prefixes = Prefixes::Both;
pub(super) const NAMES: &[&str] = &["rewrite-target", "upstream-vhost"];
pub(super) const HIGRESS_PREFIXES: Prefixes = Prefixes::HigressOnly;
pub(super) const HIGRESS_NAMES: &[&str] = &["rewrite-path"];

/// Characters that make a path a regex when `rewrite-target` is set (Higress's list).
const REGEX_CHARS: &[char] = &[
    '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
];

/// The rewrite annotations of one Ingress (all absent by default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RewriteAnnotations {
    /// `rewrite-target`: the annotation key as written, its raw value and its parsed
    /// substitution.
    pub target: Option<Target>,
    /// `higress.io/rewrite-path`: the new prefix (or whole path on exact and regex
    /// routes).
    pub path: Option<String>,
    /// `upstream-vhost`: the upstream `Host`.
    pub host: Option<HeaderValue>,
}

impl super::Empty for RewriteAnnotations {
    const EMPTY: &'static Self = &RewriteAnnotations {
        target: None,
        path: None,
        host: None,
    };
}

/// `rewrite-target`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub key: String,
    pub raw: String,
    pub substitution: Substitution,
}

impl RewriteAnnotations {
    /// Whether Higress matches `path` as a regex (`<path>.*`) because of
    /// `rewrite-target`.
    pub fn forces_regex(&self, path: &str) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| t.raw.contains(['$', '\\']) || path.contains(REGEX_CHARS))
    }

    /// Check `rewrite-target` against one path of the Ingress: as a regex route the
    /// path must compile and hold every group the target references.
    pub fn check_path(&self, path: &str, regex: bool) -> Result<(), FieldError> {
        let Some(t) = self.target.as_ref().filter(|_| self.path.is_none()) else {
            return Ok(());
        };
        let error = |m: String| FieldError::new(super::field_path(&t.key), m);
        let groups = if regex {
            let re = regex::Regex::new(&format!("{path}.*"))
                .map_err(|e| error(format!("the path {path:?} is not a valid regex: {e}")))?;
            re.captures_len() - 1
        } else {
            0
        };
        let wanted = t.substitution.max_group();
        if wanted > groups {
            return Err(error(format!(
                "{:?} references group {wanted} but the path {path:?} has {groups}",
                t.raw
            )));
        }
        Ok(())
    }
}

/// A non-empty value usable in a request target: printable ASCII without spaces.
fn uri_text(found: Found<'_>) -> Result<Option<String>, FieldError> {
    let v = found.value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(found.error(format!(
            "{v:?} is not a path (printable ASCII without spaces)"
        )));
    }
    Ok(Some(v.to_string()))
}

/// The three annotations, checked.
pub fn from_annotations(map: &Annotations) -> Result<RewriteAnnotations, FieldError> {
    let mut out = RewriteAnnotations::default();
    if let Some(found) = super::get(map, "rewrite-target", PREFIXES) {
        if let Some(raw) = uri_text(found)? {
            let substitution = Substitution::parse(&raw).map_err(|m| found.error(m))?;
            out.target = Some(Target {
                key: found.key.to_string(),
                raw,
                substitution,
            });
        }
    }
    if let Some(found) = super::get(map, "rewrite-path", HIGRESS_PREFIXES) {
        out.path = uri_text(found)?;
    }
    if let Some(found) = super::get(map, "upstream-vhost", PREFIXES) {
        let v = found.value.trim();
        if !v.is_empty() {
            let host = HeaderValue::from_str(v)
                .ok()
                .filter(|_| !v.contains([' ', '/', '?', '#', '@']))
                .ok_or_else(|| found.error(format!("{v:?} is not a host name")))?;
            out.host = Some(host);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<RewriteAnnotations, FieldError> {
        let m = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_annotations(&m)
    }

    #[test]
    fn reads_both_prefixes_and_higress_only_rewrite_path() {
        let r = parse(&[
            ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
            ("higress.io/rewrite-target", "/ignored"),
            ("higress.io/upstream-vhost", "internal.svc"),
            ("nginx.ingress.kubernetes.io/rewrite-path", "/not-read"),
        ])
        .unwrap();
        let t = r.target.as_ref().unwrap();
        assert_eq!(t.raw, "/$2");
        assert_eq!(t.key, "nginx.ingress.kubernetes.io/rewrite-target");
        assert_eq!(r.host.as_ref().unwrap(), "internal.svc");
        assert_eq!(r.path, None);
        let r = parse(&[("higress.io/rewrite-path", "/v2/")]).unwrap();
        assert_eq!(r.path.as_deref(), Some("/v2/"));
        assert_eq!(
            parse(&[("higress.io/rewrite-target", "")]).unwrap(),
            Default::default()
        );
    }

    #[test]
    fn regex_is_forced_as_higress_decides() {
        let r = parse(&[("higress.io/rewrite-target", "/")]).unwrap();
        assert!(!r.forces_regex("/foo"));
        assert!(r.forces_regex("/foo(/|$)(.*)"));
        assert!(r.forces_regex("/v1.0"));
        let r = parse(&[("higress.io/rewrite-target", "/$1")]).unwrap();
        assert!(r.forces_regex("/foo"));
        assert!(!RewriteAnnotations::default().forces_regex("/a.b"));
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let e = parse(&[("nginx.ingress.kubernetes.io/rewrite-target", "/a b")]).unwrap_err();
        assert_eq!(
            e.path,
            "metadata.annotations[\"nginx.ingress.kubernetes.io/rewrite-target\"]"
        );
        assert!(parse(&[("higress.io/rewrite-target", "/\\q")]).is_err());
        let e = parse(&[("higress.io/upstream-vhost", "a.com/x")]).unwrap_err();
        assert!(e.message.contains("not a host name"), "{e}");
        assert!(parse(&[("higress.io/rewrite-path", "/\u{e9}")]).is_err());
    }

    #[test]
    fn groups_are_checked_against_the_path() {
        let r = parse(&[("higress.io/rewrite-target", "/$2")]).unwrap();
        assert!(r.check_path("/something(/|$)(.*)", true).is_ok());
        let e = r.check_path("/svc/(.*)", true).unwrap_err();
        assert!(e.message.contains("references group 2"), "{e}");
        assert!(r.check_path("/bad(", true).is_err());
        // rewrite-path wins: the target is not used.
        let r = parse(&[
            ("higress.io/rewrite-target", "/$2"),
            ("higress.io/rewrite-path", "/x"),
        ])
        .unwrap();
        assert!(r.check_path("/svc", false).is_ok());
    }
}
