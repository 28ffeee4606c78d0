//! A route's path regex (`use-regex`, `full-path-regex`), matched from the start of the
//! path.
//!
//! Path regexes are mostly a literal and a class or two (`/api/v1/items/[0-9]+`). The
//! `regex` crate's engines (NFA, full and lazy DFA, one-pass, backtracker, their caches)
//! take about 19 KiB for such a pattern, so 1,000 of them cost more memory than the
//! rest of 10,000 routes together. A sparse DFA of the same pattern takes about 1.2 KiB
//! (0.7 of them its fixed fields, the rest its transitions), needs no per-thread cache and decides a match in one pass over the path. A pattern
//! whose DFA would grow past [`DFA_LIMIT`], or that a DFA cannot run (a Unicode word
//! boundary), is matched by the `regex` crate as before.
//!
//! Syntax and errors are the `regex` crate's either way (the same parser and defaults).

use std::fmt;
use std::sync::Arc;

use regex_automata::dfa::{dense, sparse, Automaton, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::{Anchored, Input};

/// The most the DFA of one pattern may take while it is built, in bytes; past it the
/// pattern is matched by the `regex` crate.
pub const DFA_LIMIT: usize = 64 << 10;

/// The `regex` crate's default limit on a compiled program, in bytes: a pattern it
/// rejects as too big is rejected here too.
const NFA_LIMIT: usize = 10 << 20;

/// A path regex as written, matched from the start of the path. Clones share the
/// compiled form.
#[derive(Clone)]
pub struct PathRegex(Arc<Compiled>);

struct Compiled {
    pattern: Box<str>,
    engine: Engine,
}

enum Engine {
    /// Boxed: the DFA's own fields take about 0.7 KiB beside its transitions.
    Dfa(Box<sparse::DFA<Vec<u8>>>),
    Regex(regex::Regex),
}

impl PathRegex {
    /// Compile `pattern`, anchored at the start of the path: a match is decided from the
    /// path's first byte and stops at the first match.
    pub fn new(pattern: &str) -> Result<PathRegex, regex::Error> {
        let engine = match dfa(pattern) {
            Some(d) => Engine::Dfa(Box::new(d)),
            // The regex crate decides whether the pattern is valid, and says why not.
            None => Engine::Regex(regex::Regex::new(&format!("^(?:{pattern})"))?),
        };
        Ok(PathRegex(Arc::new(Compiled {
            pattern: pattern.into(),
            engine,
        })))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0.pattern
    }

    /// Whether a prefix of `path` (or all of it) matches.
    #[inline]
    pub fn is_match(&self, path: &str) -> bool {
        match &self.0.engine {
            Engine::Dfa(d) => {
                let input = Input::new(path).anchored(Anchored::Yes).earliest(true);
                // No quit bytes are configured, so the search cannot fail.
                matches!(d.try_search_fwd(&input), Ok(Some(_)))
            }
            Engine::Regex(r) => r.is_match(path),
        }
    }

    /// Whether the pattern runs as a DFA (tests and diagnostics).
    pub fn is_dfa(&self) -> bool {
        matches!(self.0.engine, Engine::Dfa(_))
    }

    /// Heap bytes of the compiled form when it is a DFA.
    pub fn dfa_bytes(&self) -> Option<usize> {
        match &self.0.engine {
            Engine::Dfa(d) => Some(d.memory_usage()),
            Engine::Regex(_) => None,
        }
    }
}

/// The anchored sparse DFA of `pattern`, when it can be built within the limits.
fn dfa(pattern: &str) -> Option<sparse::DFA<Vec<u8>>> {
    let dense = dense::Builder::new()
        .thompson(thompson::Config::new().nfa_size_limit(Some(NFA_LIMIT)))
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .minimize(false)
                .dfa_size_limit(Some(DFA_LIMIT))
                .determinize_size_limit(Some(DFA_LIMIT)),
        )
        .build(pattern)
        .ok()?;
    dense.to_sparse().ok()
}

impl fmt::Debug for PathRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PathRegex").field(&self.as_str()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DFA and the `regex` crate agree on whether a prefix of the path matches.
    #[test]
    fn dfa_matches_as_the_regex_crate() {
        let patterns = [
            "/api/v1/items/[0-9]+",
            "/a|/ab",
            "/(foo|bar)/.*",
            "/x$",
            "/x/?$",
            "/caf\u{e9}/[^/]+",
            "/[A-Z]{2,3}/(\\d+)",
            "(?i)/Shop/.+",
            "",
            ".*",
        ];
        let paths = [
            "/",
            "/a",
            "/ab",
            "/api/v1/items/42",
            "/api/v1/items/",
            "/api/v1/items/42/more",
            "/foo/",
            "/bar/baz",
            "/x",
            "/x/",
            "/x/y",
            "/caf\u{e9}/menu",
            "/AB/12",
            "/ABCD/12",
            "/shop/cart",
            "/SHOP/",
        ];
        for p in patterns {
            let ours = PathRegex::new(p).unwrap();
            assert!(ours.is_dfa(), "{p} should run as a DFA");
            let theirs = regex::Regex::new(&format!("^(?:{p})")).unwrap();
            for path in paths {
                assert_eq!(ours.is_match(path), theirs.is_match(path), "{p} on {path}");
            }
            assert_eq!(ours.as_str(), p);
        }
    }

    #[test]
    fn literal_patterns_are_small() {
        let r = PathRegex::new("/api/v2/svc-1234/items/[0-9]+").unwrap();
        let bytes = r.dfa_bytes().expect("a DFA");
        assert!(bytes < 2048, "{bytes} bytes");
    }

    /// A Unicode word boundary has no DFA; a pattern whose DFA would be too big is left to
    /// the `regex` crate. Both still match.
    #[test]
    fn falls_back_to_the_regex_crate() {
        let r = PathRegex::new(r"/\bword\b").unwrap();
        assert!(!r.is_dfa());
        assert!(r.is_match("/word"));
        assert!(!r.is_match("/words"));
        let big = PathRegex::new(r"/\w{50}[0-9]").unwrap();
        assert!(!big.is_dfa());
        assert!(big.is_match(&format!("/{}1", "\u{e9}".repeat(50))));
    }

    #[test]
    fn errors_are_the_regex_crate_s() {
        let e = PathRegex::new("/a(").unwrap_err();
        assert!(e.to_string().contains("unclosed group"), "{e}");
    }
}
