//! What a route does to the request's target instead of, or before, sending it upstream:
//! Envoy's route `redirect` (`temporal-redirect`, `permanent-redirect`, `app-root`) and
//! its `prefix_rewrite` / `regex_rewrite` / `host_rewrite_literal` (`rewrite-target`,
//! `higress.io/rewrite-path`, `upstream-vhost`). Built once at translation; the data
//! plane only applies them.

use http::HeaderValue;

/// A substitution with capture-group references, as Envoy's `regex_rewrite` takes it
/// (RE2's `\1`; nginx's `$1` is read the same): literal pieces and group numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Substitution {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// `\0`..`\9` (0 is the whole match).
    Group(usize),
}

impl Substitution {
    /// Parse `text`: `$<digit>` and `\<digit>` reference a group, `\\` is a backslash,
    /// any other `$` is literal. Another `\<char>` is refused, as RE2 refuses it.
    pub fn parse(text: &str) -> Result<Substitution, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let group = match (c, chars.peek().copied()) {
                ('$' | '\\', Some(d)) if d.is_ascii_digit() => Some(d as usize - '0' as usize),
                ('\\', Some('\\')) => {
                    chars.next();
                    lit.push('\\');
                    continue;
                }
                ('\\', other) => {
                    return Err(format!(
                        "{:?}: a backslash must be followed by a digit or a backslash, got {}",
                        text,
                        other.map_or("the end".to_string(), |o| format!("{o:?}"))
                    ))
                }
                _ => None,
            };
            match group {
                Some(g) => {
                    chars.next();
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Group(g));
                }
                None => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Substitution { pieces })
    }

    /// The highest group referenced (0 when none is).
    pub fn max_group(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Group(g) => *g,
                Piece::Literal(_) => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// Whether it references a capture group.
    pub fn has_groups(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Group(_)))
    }

    /// The text with the groups of `caps` put in (a group that did not take part is
    /// empty, as in RE2).
    fn expand(&self, caps: &regex::Captures<'_>, out: &mut String) {
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Group(g) => out.push_str(caps.get(*g).map_or("", |m| m.as_str())),
            }
        }
    }
}

/// How the path sent upstream is made from the request's (the query is kept as it came).
#[derive(Debug)]
pub enum PathRewrite {
    /// `higress.io/rewrite-path` (Envoy `prefix_rewrite`, or the `^<prefix>(/.*)?`
    /// regex Higress uses when the value has no trailing `/`): on a prefix route the
    /// matched prefix is replaced, on an exact or regex route the whole path.
    Prefix(String),
    /// `rewrite-target` (Envoy `regex_rewrite`): every match of `pattern` in the path is
    /// replaced by the substitution, as RE2's `GlobalReplace` does.
    Regex {
        pattern: regex::Regex,
        substitution: Substitution,
    },
}

impl PathRewrite {
    /// The new path for `path` (no query) on a route that matched `prefix` (`Some` for a
    /// prefix route, stored without its trailing `/`); `None` when nothing changes.
    pub fn apply(&self, path: &str, prefix: Option<&str>) -> Option<String> {
        match self {
            PathRewrite::Prefix(with) => {
                let rest = match prefix {
                    Some(p) if path.len() >= p.len() && path.is_char_boundary(p.len()) => {
                        &path[p.len()..]
                    }
                    _ => "",
                };
                let rest = if with.ends_with('/') {
                    rest.strip_prefix('/').unwrap_or(rest)
                } else {
                    rest
                };
                Some([with.as_str(), rest].concat())
            }
            PathRewrite::Regex {
                pattern,
                substitution,
            } => {
                let mut out = String::new();
                let mut last = 0;
                let mut any = false;
                for caps in pattern.captures_iter(path) {
                    let Some(m) = caps.get(0) else { continue };
                    any = true;
                    out.push_str(&path[last..m.start()]);
                    substitution.expand(&caps, &mut out);
                    last = m.end();
                }
                if !any {
                    return None;
                }
                out.push_str(&path[last..]);
                Some(out)
            }
        }
    }
}

/// The route's rewrite of what goes upstream.
#[derive(Debug, Default)]
pub struct Rewrite {
    pub path: Option<PathRewrite>,
    /// `upstream-vhost` (or a `host` set by `request-header-control-*`): the upstream
    /// request's `Host` / `:authority` (Envoy `host_rewrite_literal`).
    pub host: Option<HeaderValue>,
}

/// A redirect the route answers with instead of going upstream (Envoy's route
/// `redirect`): each part left `None` is the request's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `scheme_redirect`.
    pub scheme: Option<String>,
    /// `host_redirect` (with a port when the URL has one).
    pub authority: Option<String>,
    /// `path_redirect`: replaces the path; the request's query is kept unless this has
    /// its own.
    pub path: Option<String>,
    /// 301, 302, 303, 307 or 308.
    pub code: u16,
}

impl Redirect {
    /// The `location`, as Envoy's `newUri` makes it: `scheme` is the request's
    /// (`http`/`https`), `host` as sent, `path_and_query` the request's target.
    pub fn location(&self, scheme: &str, host: &str, path_and_query: &str) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(scheme);
        let host = self.authority.as_deref().unwrap_or(host);
        let mut path = match self.path.as_deref() {
            Some(p) if p.contains('?') => p.to_string(),
            Some(p) => match path_and_query.find('?') {
                Some(q) => [p, &path_and_query[q..]].concat(),
                None => p.to_string(),
            },
            None => path_and_query.to_string(),
        };
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        format!("{scheme}://{host}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(pattern: &str, sub: &str) -> PathRewrite {
        PathRewrite::Regex {
            pattern: regex::Regex::new(pattern).unwrap(),
            substitution: Substitution::parse(sub).unwrap(),
        }
    }

    #[test]
    fn substitution_reads_nginx_and_re2_groups() {
        let s = Substitution::parse("/$2/x\\1$a\\\\").unwrap();
        assert_eq!(s.max_group(), 2);
        assert!(s.has_groups());
        assert!(!Substitution::parse("/").unwrap().has_groups());
        assert!(Substitution::parse("/\\a").is_err());
        assert!(Substitution::parse("/x\\").is_err());
        // `$10` is group 1 then `0`, as in RE2 and nginx.
        let r = regex("^/(a)(b)?.*", "/$10$2\\\\$x");
        assert_eq!(r.apply("/a", None).as_deref(), Some("/a0\\$x"));
    }

    #[test]
    fn regex_rewrite_replaces_every_match_and_keeps_the_rest() {
        // ingress-nginx's rewrite example, as Higress compiles it.
        let r = regex("/something(/|$)(.*).*", "/$2");
        assert_eq!(r.apply("/something", None).as_deref(), Some("/"));
        assert_eq!(r.apply("/something/", None).as_deref(), Some("/"));
        assert_eq!(r.apply("/something/new", None).as_deref(), Some("/new"));
        // A prefix route's rewrite-target without groups: the exact path as the pattern,
        // replaced wherever it occurs (RE2 GlobalReplace).
        let r = regex("/foo", "/");
        assert_eq!(r.apply("/foo", None).as_deref(), Some("/"));
        assert_eq!(r.apply("/foo/bar", None).as_deref(), Some("//bar"));
        assert_eq!(r.apply("/bar", None), None);
    }

    #[test]
    fn prefix_rewrite_as_higress_builds_it() {
        let slash = PathRewrite::Prefix("/bar/".into());
        let bare = PathRewrite::Prefix("/bar".into());
        for (rw, path, want) in [
            (&slash, "/foo", "/bar/"),
            (&slash, "/foo/x", "/bar/x"),
            (&bare, "/foo", "/bar"),
            (&bare, "/foo/", "/bar/"),
            (&bare, "/foo/x", "/bar/x"),
        ] {
            assert_eq!(
                rw.apply(path, Some("/foo")).as_deref(),
                Some(want),
                "{path}"
            );
        }
        assert_eq!(bare.apply("/x", Some("")).as_deref(), Some("/bar/x"));
        assert_eq!(slash.apply("/x", Some("")).as_deref(), Some("/bar/x"));
        assert_eq!(bare.apply("/exact", None).as_deref(), Some("/bar"));
    }

    #[test]
    fn redirect_locations_follow_envoy() {
        let r = Redirect {
            scheme: Some("http".into()),
            authority: Some("bar.com".into()),
            path: None,
            code: 301,
        };
        assert_eq!(
            r.location("https", "foo.com", "/foo?a=1"),
            "http://bar.com/foo?a=1"
        );
        let root = Redirect {
            scheme: None,
            authority: None,
            path: Some("/app".into()),
            code: 302,
        };
        assert_eq!(
            root.location("http", "a.com:8080", "/?x=1"),
            "http://a.com:8080/app?x=1"
        );
        assert_eq!(root.location("https", "a.com", "/"), "https://a.com/app");
        let own_query = Redirect {
            path: Some("/app?y=2".into()),
            ..root.clone()
        };
        assert_eq!(
            own_query.location("http", "a.com", "/?x=1"),
            "http://a.com/app?y=2"
        );
        let relative = Redirect {
            path: Some("app".into()),
            ..root
        };
        assert_eq!(relative.location("http", "a.com", "/"), "http://a.com/app");
    }
}
