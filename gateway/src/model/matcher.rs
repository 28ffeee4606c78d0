//! What a route may require of a request besides its host and path, as Envoy's
//! `RouteMatch` has it: the method, headers (pseudo-headers included), query parameters
//! and cookies. All of them must match (AND). Built at translation time from the
//! `higress.io/*-match-*` annotations and canary rules; a route without any keeps `None`
//! and pays one pointer check per lookup.
//!
//! Semantics follow Envoy's: a header present several times is matched on its values
//! joined with `,`; a missing header or parameter never matches; a query parameter is
//! matched on its first occurrence, its raw (not percent-decoded) value, `?k` having the
//! value `""`; a regex must match the whole value (`safe_regex` is a full match).

use std::borrow::Cow;
use std::fmt;

use http::HeaderName;
use pingora_http::RequestHeader;

/// How one value is compared.
#[derive(Clone)]
pub enum StringMatch {
    /// The whole value, case-sensitive.
    Exact(String),
    /// The value starts with this (an empty prefix matches any value: presence).
    Prefix(String),
    /// The whole value matches the regex (Envoy's `safe_regex` full match).
    Regex(FullRegex),
}

impl StringMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(s) => value.starts_with(s.as_str()),
            StringMatch::Regex(r) => r.is_match(value),
        }
    }

    fn describe(&self) -> serde_json::Value {
        match self {
            StringMatch::Exact(s) => serde_json::json!({"exact": s}),
            StringMatch::Prefix(s) => serde_json::json!({"prefix": s}),
            StringMatch::Regex(r) => serde_json::json!({"regex": r.source()}),
        }
    }
}

impl PartialEq for StringMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StringMatch::Exact(a), StringMatch::Exact(b)) => a == b,
            (StringMatch::Prefix(a), StringMatch::Prefix(b)) => a == b,
            (StringMatch::Regex(a), StringMatch::Regex(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Debug for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatch::Exact(s) => write!(f, "Exact({s:?})"),
            StringMatch::Prefix(s) => write!(f, "Prefix({s:?})"),
            StringMatch::Regex(r) => write!(f, "Regex({:?})", r.source()),
        }
    }
}

/// A regex that must match a whole value: compiled as `^(?:<source>)$`, so alternations
/// in the source stay inside the anchors.
#[derive(Clone)]
pub struct FullRegex {
    regex: regex::Regex,
    source_len: usize,
}

impl PartialEq for FullRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source() == other.source()
    }
}

impl fmt::Debug for FullRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source())
    }
}

impl FullRegex {
    /// Compile `source`; the error is the regex crate's reason, on one line.
    pub fn new(source: &str) -> Result<FullRegex, String> {
        // The source alone first, so the error speaks of what the user wrote.
        regex::Regex::new(source).map_err(regex_error)?;
        let regex = regex::Regex::new(&format!("^(?:{source})$")).map_err(regex_error)?;
        Ok(FullRegex {
            regex,
            source_len: source.len(),
        })
    }

    /// The regex as written.
    pub fn source(&self) -> &str {
        let s = self.regex.as_str();
        &s[4..4 + self.source_len]
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

/// The regex crate's error on one line (its syntax errors draw the pattern over lines).
pub fn regex_error(e: regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or(s.clone(), |l| {
                l.trim().trim_start_matches("error: ").to_string()
            }),
        regex::Error::CompiledTooBig(n) => {
            format!("the compiled regex is over the size limit of {n} bytes")
        }
        other => other.to_string(),
    }
}

/// The methods Higress accepts in `match-method` (its `methodList`).
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A set of [`METHODS`], in the order they were written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MethodSet {
    bits: u16,
    order: Vec<u8>,
}

impl MethodSet {
    /// Add `method` (uppercase); `false` when it is not one of [`METHODS`].
    pub fn insert(&mut self, method: &str) -> bool {
        let Some(i) = METHODS.iter().position(|m| *m == method) else {
            return false;
        };
        if self.bits & (1 << i) == 0 {
            self.bits |= 1 << i;
            self.order.push(i as u8);
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    pub fn contains(&self, method: &http::Method) -> bool {
        METHODS
            .iter()
            .position(|m| *m == method.as_str())
            .is_some_and(|i| self.bits & (1 << i) != 0)
    }

    /// The methods as written.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.order.iter().map(|&i| METHODS[i as usize])
    }

    /// The length of the `GET|POST` regex Higress matches `:method` with: its route order
    /// puts shorter ones first.
    pub fn regex_len(&self) -> usize {
        let names: usize = self.names().map(str::len).sum();
        names + self.order.len().saturating_sub(1)
    }
}

/// What a header matcher reads: a header, or one of Envoy's pseudo-headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderSource {
    Header(HeaderName),
    /// `:authority`: the `Host` header, else the request target's authority.
    Authority,
    /// `:method`.
    Method,
    /// `:path`: the path with its query, as sent.
    Path,
}

impl HeaderSource {
    /// The name as Envoy spells it (`:authority`, `x-user`).
    pub fn name(&self) -> &str {
        match self {
            HeaderSource::Header(h) => h.as_str(),
            HeaderSource::Authority => ":authority",
            HeaderSource::Method => ":method",
            HeaderSource::Path => ":path",
        }
    }

    fn value<'a>(&self, req: &'a RequestHeader) -> Option<Cow<'a, str>> {
        match self {
            HeaderSource::Header(name) => header_value(req, name),
            HeaderSource::Authority => header_value(req, &http::header::HOST)
                .or_else(|| req.uri.authority().map(|a| Cow::Borrowed(a.as_str()))),
            HeaderSource::Method => Some(Cow::Borrowed(req.method.as_str())),
            HeaderSource::Path => Some(Cow::Borrowed(
                req.uri
                    .path_and_query()
                    .map_or(req.uri.path(), |p| p.as_str()),
            )),
        }
    }
}

/// A header's value; several are joined with `,` as Envoy's header matcher does (the
/// only case that allocates). Bytes that are not UTF-8 never match.
fn header_value<'a>(req: &'a RequestHeader, name: &HeaderName) -> Option<Cow<'a, str>> {
    let mut values = req.headers.get_all(name).iter();
    let first = std::str::from_utf8(values.next()?.as_bytes()).ok()?;
    let Some(second) = values.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut joined = String::from(first);
    for v in std::iter::once(second).chain(values) {
        joined.push(',');
        joined.push_str(std::str::from_utf8(v.as_bytes()).ok()?);
    }
    Some(Cow::Owned(joined))
}

/// A header must be present and its value match.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderMatcher {
    pub source: HeaderSource,
    pub value: StringMatch,
}

impl HeaderMatcher {
    pub fn matches(&self, req: &RequestHeader) -> bool {
        self.source
            .value(req)
            .is_some_and(|v| self.value.matches(&v))
    }
}

/// A query parameter must be present (its first occurrence) and its raw value match.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryMatcher {
    pub name: String,
    pub value: StringMatch,
}

impl QueryMatcher {
    pub fn matches(&self, query: Option<&str>) -> bool {
        query
            .and_then(|q| first_param(q, &self.name))
            .is_some_and(|v| self.value.matches(v))
    }
}

/// The first value of parameter `name` in `query` (`k` alone has the value `""`).
fn first_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

/// A cookie must be present with exactly this value (what Higress's
/// `^(.*?;\s*)?(<name>=<value>)(;.*)?$` regex on the `cookie` header checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieMatcher {
    pub name: String,
    pub value: String,
}

impl CookieMatcher {
    pub fn matches(&self, req: &RequestHeader) -> bool {
        super::cookie::cookie(&req.headers, &self.name) == Some(self.value.as_str())
    }
}

/// Everything a route requires of a request besides host and path.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestMatch {
    /// `match-method`; `None`: any method.
    pub methods: Option<MethodSet>,
    /// Header and pseudo-header matches, in annotation-key order.
    pub headers: Vec<HeaderMatcher>,
    pub query: Vec<QueryMatcher>,
    /// Canary cookies (`canary-by-cookie`).
    pub cookies: Vec<CookieMatcher>,
}

impl RequestMatch {
    /// Whether nothing is required (the route then carries no matcher at all).
    pub fn is_empty(&self) -> bool {
        self.methods.is_none()
            && self.headers.is_empty()
            && self.query.is_empty()
            && self.cookies.is_empty()
    }

    /// Whether `req` satisfies every requirement.
    pub fn matches(&self, req: &RequestHeader) -> bool {
        if let Some(m) = &self.methods {
            if !m.contains(&req.method) {
                return false;
            }
        }
        if !self.headers.iter().all(|h| h.matches(req)) {
            return false;
        }
        if !self.query.is_empty() {
            let q = req.uri.query();
            if !self.query.iter().all(|m| m.matches(q)) {
                return false;
            }
        }
        self.cookies.iter().all(|c| c.matches(req))
    }

    /// Header matches as Higress counts them for route order (a cookie is a match on the
    /// `cookie` header there).
    pub fn header_count(&self) -> usize {
        self.headers.len() + self.cookies.len()
    }

    /// For `/debug/configz`.
    pub fn describe(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        if let Some(m) = &self.methods {
            out.insert("methods".into(), m.names().collect::<Vec<_>>().into());
        }
        if !self.headers.is_empty() {
            let h: Vec<_> = self
                .headers
                .iter()
                .map(|h| serde_json::json!({"name": h.source.name(), "match": h.value.describe()}))
                .collect();
            out.insert("headers".into(), h.into());
        }
        if !self.query.is_empty() {
            let q: Vec<_> = self
                .query
                .iter()
                .map(|q| serde_json::json!({"name": q.name, "match": q.value.describe()}))
                .collect();
            out.insert("query_parameters".into(), q.into());
        }
        if !self.cookies.is_empty() {
            let c: Vec<_> = self
                .cookies
                .iter()
                .map(|c| serde_json::json!({"name": c.name, "exact": c.value}))
                .collect();
            out.insert("cookies".into(), c.into());
        }
        serde_json::Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn regex(s: &str) -> StringMatch {
        StringMatch::Regex(FullRegex::new(s).unwrap())
    }

    #[test]
    fn string_matches_are_whole_value_prefix_and_full_regex() {
        assert!(StringMatch::Exact("a".into()).matches("a"));
        assert!(!StringMatch::Exact("a".into()).matches("ab"));
        assert!(StringMatch::Prefix("a".into()).matches("ab"));
        assert!(StringMatch::Prefix(String::new()).matches(""));
        assert!(regex("v[0-9]").matches("v1"));
        assert!(
            !regex("v[0-9]").matches("v12"),
            "a regex matches the whole value"
        );
        assert!(!regex("v[0-9]").matches("xv1"));
        // The alternation stays inside the anchors.
        assert!(!regex("a|b").matches("ab"));
        assert!(regex("a|b").matches("b"));
        assert_eq!(FullRegex::new("a|b").unwrap().source(), "a|b");
        assert!(FullRegex::new("a(").is_err());
    }

    #[test]
    fn methods_are_a_set_of_higress_methods() {
        let mut m = MethodSet::default();
        assert!(m.insert("GET") && m.insert("POST") && m.insert("GET"));
        assert!(!m.insert("FETCH"));
        assert_eq!(m.names().collect::<Vec<_>>(), ["GET", "POST"]);
        assert_eq!(m.regex_len(), "GET|POST".len());
        assert!(m.contains(&http::Method::POST));
        assert!(!m.contains(&http::Method::PUT));
    }

    #[test]
    fn headers_pseudo_headers_and_repeated_values() {
        let r = req(
            "GET",
            "/p?x=1",
            &[("host", "a.com"), ("x-v", "1"), ("x-v", "2")],
        );
        let h = |source, value| HeaderMatcher { source, value };
        let name = |n: &str| HeaderSource::Header(HeaderName::from_bytes(n.as_bytes()).unwrap());
        assert!(h(name("x-v"), StringMatch::Exact("1,2".into())).matches(&r));
        assert!(!h(name("x-v"), StringMatch::Exact("1".into())).matches(&r));
        assert!(!h(name("absent"), StringMatch::Prefix(String::new())).matches(&r));
        assert!(h(HeaderSource::Authority, StringMatch::Exact("a.com".into())).matches(&r));
        assert!(h(HeaderSource::Method, StringMatch::Exact("GET".into())).matches(&r));
        assert!(h(HeaderSource::Path, StringMatch::Exact("/p?x=1".into())).matches(&r));
    }

    #[test]
    fn query_uses_the_first_raw_value() {
        let q = |name: &str, value| QueryMatcher {
            name: name.into(),
            value,
        };
        let query = Some("a=1&b=x%20y&a=2&flag&c=");
        assert!(q("a", StringMatch::Exact("1".into())).matches(query));
        assert!(!q("a", StringMatch::Exact("2".into())).matches(query));
        assert!(q("b", StringMatch::Exact("x%20y".into())).matches(query));
        assert!(q("flag", StringMatch::Exact(String::new())).matches(query));
        assert!(q("c", StringMatch::Prefix(String::new())).matches(query));
        assert!(!q("d", StringMatch::Prefix(String::new())).matches(query));
        assert!(!q("a", StringMatch::Exact("1".into())).matches(None));
    }

    #[test]
    fn cookies_match_by_name_and_exact_value() {
        let c = CookieMatcher {
            name: "canary".into(),
            value: "always".into(),
        };
        assert!(c.matches(&req("GET", "/", &[("cookie", "a=1; canary=always")])));
        assert!(c.matches(&req("GET", "/", &[("cookie", "canary=always;b=2")])));
        assert!(c.matches(&req(
            "GET",
            "/",
            &[("cookie", "a=1"), ("cookie", "canary=always")]
        )));
        assert!(!c.matches(&req("GET", "/", &[("cookie", "xcanary=always")])));
        assert!(!c.matches(&req("GET", "/", &[("cookie", "canary=alwaysx")])));
        assert!(!c.matches(&req("GET", "/", &[])));
    }

    #[test]
    fn a_request_match_needs_everything() {
        let mut methods = MethodSet::default();
        methods.insert("POST");
        let m = RequestMatch {
            methods: Some(methods),
            headers: vec![HeaderMatcher {
                source: HeaderSource::Header(HeaderName::from_static("x-env")),
                value: regex("dev|test"),
            }],
            query: vec![QueryMatcher {
                name: "v".into(),
                value: StringMatch::Prefix("2".into()),
            }],
            cookies: vec![],
        };
        assert!(m.matches(&req("POST", "/?v=2.1", &[("x-env", "dev")])));
        assert!(!m.matches(&req("GET", "/?v=2.1", &[("x-env", "dev")])));
        assert!(!m.matches(&req("POST", "/?v=1", &[("x-env", "dev")])));
        assert!(!m.matches(&req("POST", "/?v=2", &[("x-env", "prod")])));
        assert!(RequestMatch::default().is_empty());
        assert_eq!(m.header_count(), 1);
        assert_eq!(m.describe()["methods"], serde_json::json!(["POST"]));
    }
}
