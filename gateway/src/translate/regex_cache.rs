//! Route regexes compiled once and kept across snapshots: with 1,000 regex paths among
//! 10,000 Ingresses, compiling them all again made every reload slower by tens of
//! milliseconds. A path regex's clone shares its compiled program.
//!
//! The cache belongs to the thread that builds snapshots (the config loop's); each build
//! starts a generation and what the previous build used but this one does not is
//! dropped at the next, so the cache holds the regexes of at most two builds.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::model::route::PathRegex as Regex;

#[derive(Default)]
struct Cache {
    /// Used by the current build.
    now: HashMap<String, Regex>,
    /// Used by the previous build and not yet by this one.
    before: HashMap<String, Regex>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
}

/// Start a build: drop what the build before the last one used and the last did not.
pub fn new_generation() {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.before = std::mem::take(&mut c.now);
    });
}

/// `pattern` compiled, from the cache when a recent build compiled it.
pub fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(r) = c.now.get(pattern) {
            return Ok(r.clone());
        }
        let r = match c.before.remove(pattern) {
            Some(r) => r,
            None => Regex::new(pattern)?,
        };
        c.now.insert(pattern.to_string(), r.clone());
        Ok(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_for_one_build_without_use() {
        new_generation();
        let a = compile("/a/[0-9]+").unwrap();
        assert!(compile("(").is_err());
        new_generation();
        // Same program: the clone shares it.
        let again = compile("/a/[0-9]+").unwrap();
        assert_eq!(again.as_str(), a.as_str());
        CACHE.with(|c| assert!(c.borrow().now.contains_key("/a/[0-9]+")));
        new_generation();
        new_generation();
        CACHE.with(|c| {
            let c = c.borrow();
            assert!(c.now.is_empty() && c.before.is_empty());
        });
    }
}
