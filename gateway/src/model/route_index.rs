//! The path index of one virtual host: which of its routes can match a path, found
//! without walking them all.
//!
//! Routes stay in match order (the first that matches wins); the index only narrows the
//! candidates and [`PathIndex::find`] returns the lowest-ordered candidate that fully
//! matches (path, then the caller's `accept` check of the non-path conditions). Every
//! key is a string that a matching path must start with, cut at a segment boundary
//! (a `/` of the path, or its end), so one pass over the path finds them all:
//!
//! - an `Exact` path is keyed by itself (checked at the path's end);
//! - a `Prefix` (element-wise, stored without its trailing `/`) by itself: it matches at
//!   the boundary where the path's prefix equals it;
//! - a `Regex` by its literal prefix (what every match must start with, read from the
//!   parsed pattern) cut at the literal's last `/`; the whole literal is then compared
//!   before the regex runs, so only regexes whose literal prefix starts the path run;
//! - anything else (`Prefix("/")`, a regex whose literal is shorter than `/x/`) is
//!   tried for every path.
//!
//! Ignore-case routes (and regexes whose literal letters are case-insensitive) are keyed
//! by their ASCII-lowercased key in a table of their own, looked up with the path's
//! lowercased hash. A regex's options must be in its pattern (`(?i)`), as
//! `translate/route_table.rs` writes them: the literal prefix is read from `as_str()`. Keys are 64-bit seeded hashes of the key string: a collision only
//! adds a candidate, which the full match then rejects.
//!
//! Hosts with few routes keep a plain scan, which is cheaper than hashing the path.
//! A lookup does not allocate.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::route::{PathMatch, Route};

/// Hosts with at most this many routes are scanned in order: there the scan costs fewer
/// instructions than hashing the path (`loadtest/route_lookup.sh`, 10 routes: about 1.04k
/// instructions per lookup scanned, 1.14k indexed, host lookup included).
pub const SCAN_MAX: usize = 12;

/// How a virtual host finds the routes that can match a path.
#[derive(Debug, Default)]
pub struct PathIndex {
    /// `None`: a plain scan.
    index: Option<Box<Index>>,
}

impl PathIndex {
    /// The index of `routes` (in match order).
    pub fn build(routes: &[Arc<Route>]) -> PathIndex {
        PathIndex {
            index: (routes.len() > SCAN_MAX).then(|| Box::new(Index::build(routes))),
        }
    }

    /// The first route of `routes` (the ones this index was built from) whose path
    /// matches `path` (query removed) and that `accept` accepts (the route's non-path
    /// conditions; it is called only for routes whose path matched, in match order).
    pub fn find<'r>(
        &self,
        routes: &'r [Arc<Route>],
        path: &str,
        mut accept: impl FnMut(&Route) -> bool,
    ) -> Option<&'r Arc<Route>> {
        match &self.index {
            None => routes
                .iter()
                .find(|r| r.path.matches(path, r.ignore_case) && accept(r)),
            Some(ix) => ix.find(routes, path, &mut accept).map(|i| &routes[i]),
        }
    }
}

/// A candidate route: its position in match order and, for a regex, its literal prefix
/// (an index into `Index::literals`, or `NO_LITERAL`).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    pos: u32,
    literal: u32,
}

const NO_LITERAL: u32 = u32::MAX;

/// A range of `Index::candidates`, ascending by position.
type Span = (u32, u32);

/// Maps an already-hashed key to its candidates: the hash is the key's own (seeded), so
/// the table's hasher only spreads its bits.
type Table = HashMap<u64, Span, BuildHasherDefault<Spread>>;

#[derive(Debug)]
struct Index {
    seed: u64,
    /// Keys compared as written.
    exact_case: Table,
    /// ASCII-lowercased keys, looked up with the lowercased path.
    folded: Table,
    /// Tried for every path.
    always: Span,
    /// The lengths keys have (bit `n` of word `n / 64`; 256 and longer in the last
    /// bit): a boundary of another length has nothing to look up.
    lengths: [u64; 4],
    candidates: Box<[Candidate]>,
    /// Regex literal prefixes: (bytes, lowercased ASCII letters compare either case).
    literals: Box<[(Box<[u8]>, bool)]>,
}

/// Where a route is filed.
enum Key {
    Case(Vec<u8>),
    Folded(Vec<u8>),
    Always,
}

impl Index {
    fn build(routes: &[Arc<Route>]) -> Index {
        let seed = seed();
        let mut case: HashMap<u64, Vec<Candidate>> = HashMap::new();
        let mut folded: HashMap<u64, Vec<Candidate>> = HashMap::new();
        let mut always = Vec::new();
        let mut literals = Vec::new();
        let mut lengths = [0u64; 4];
        for (pos, r) in routes.iter().enumerate() {
            let mut c = Candidate {
                pos: pos as u32,
                literal: NO_LITERAL,
            };
            let key = match &r.path {
                PathMatch::Exact(p) | PathMatch::Prefix(p) => {
                    if p.is_empty() && matches!(r.path, PathMatch::Prefix(_)) {
                        Key::Always
                    } else if r.ignore_case {
                        Key::Folded(p.as_bytes().to_ascii_lowercase())
                    } else {
                        Key::Case(p.as_bytes().to_vec())
                    }
                }
                PathMatch::Regex(re) => {
                    let (lit, fold) = literal_prefix(re.as_str());
                    // Cut at the last `/` (a boundary of every path the regex matches).
                    let cut = lit.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    if !lit.is_empty() {
                        c.literal = literals.len() as u32;
                        literals.push((lit[..].into(), fold));
                    }
                    match (cut, fold) {
                        (0, _) => Key::Always,
                        (_, true) => Key::Folded(lit[..cut].to_vec()),
                        (_, false) => Key::Case(lit[..cut].to_vec()),
                    }
                }
            };
            match key {
                Key::Always => always.push(c),
                Key::Case(k) => {
                    mark_length(&mut lengths, k.len());
                    case.entry(hash(seed, &k, false)).or_default().push(c)
                }
                Key::Folded(k) => {
                    mark_length(&mut lengths, k.len());
                    folded.entry(hash(seed, &k, true)).or_default().push(c)
                }
            }
        }
        let mut candidates = Vec::with_capacity(routes.len());
        let mut flatten = |m: HashMap<u64, Vec<Candidate>>| -> Table {
            m.into_iter()
                .map(|(h, v)| (h, push_span(&mut candidates, v)))
                .collect()
        };
        let exact_case = flatten(case);
        let folded = flatten(folded);
        let always = push_span(&mut candidates, always);
        Index {
            seed,
            exact_case,
            folded,
            always,
            lengths,
            candidates: candidates.into(),
            literals: literals.into(),
        }
    }

    fn find(
        &self,
        routes: &[Arc<Route>],
        path: &str,
        accept: &mut dyn FnMut(&Route) -> bool,
    ) -> Option<usize> {
        let mut best = u32::MAX;
        let mut try_span = |span: Span, best: &mut u32| {
            for c in &self.candidates[span.0 as usize..span.1 as usize] {
                if c.pos >= *best {
                    return;
                }
                if c.literal != NO_LITERAL && !self.literal_starts(c.literal, path) {
                    continue;
                }
                let r = &routes[c.pos as usize];
                if r.path.matches(path, r.ignore_case) && accept(r) {
                    *best = c.pos;
                    return;
                }
            }
        };
        let fold = !self.folded.is_empty();
        let case = !self.exact_case.is_empty();
        let lengths = &self.lengths;
        let wanted = |len: usize| {
            let bit = len.min(255);
            lengths[bit / 64] & (1 << (bit % 64)) != 0
        };
        for_each_boundary(self.seed, path.as_bytes(), fold, wanted, |h, hf| {
            if case {
                if let Some(&s) = self.exact_case.get(&h) {
                    try_span(s, &mut best);
                }
            }
            if fold {
                if let Some(&s) = self.folded.get(&hf) {
                    try_span(s, &mut best);
                }
            }
        });
        try_span(self.always, &mut best);
        (best != u32::MAX).then_some(best as usize)
    }

    fn literal_starts(&self, i: u32, path: &str) -> bool {
        let (lit, fold) = &self.literals[i as usize];
        let p = path.as_bytes();
        p.len() >= lit.len()
            && if *fold {
                p[..lit.len()].eq_ignore_ascii_case(lit)
            } else {
                p[..lit.len()] == lit[..]
            }
    }
}

fn mark_length(lengths: &mut [u64; 4], len: usize) {
    let bit = len.min(255);
    lengths[bit / 64] |= 1 << (bit % 64);
}

fn push_span(all: &mut Vec<Candidate>, mut v: Vec<Candidate>) -> Span {
    v.sort_by_key(|c| c.pos);
    let start = all.len() as u32;
    all.extend(v);
    (start, all.len() as u32)
}

/// The literal every match of `pattern` starts with (matches are anchored at the start
/// of the path), and whether its letters compare case-insensitively (then they are
/// lowercase). Conservative: stops at the first thing that is not one literal character
/// (an ASCII letter under `(?i)` counts as one; a letter with a non-ASCII case variant,
/// such as `k` (Kelvin sign) or `s` (long s), does not).
fn literal_prefix(pattern: &str) -> (Vec<u8>, bool) {
    // Parsing is most of an index build's cost with 1,000 regex routes, and a reload
    // sees the same patterns again: remembered on the building thread (the config
    // loop's), dropped wholesale when it grows past a bound.
    const REMEMBERED: usize = 50_000;
    thread_local! {
        static SEEN: std::cell::RefCell<HashMap<String, (Vec<u8>, bool)>> =
            std::cell::RefCell::default();
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(v) = seen.get(pattern) {
            return v.clone();
        }
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        let v = parse_literal_prefix(pattern);
        seen.insert(pattern.to_string(), v.clone());
        v
    })
}

fn parse_literal_prefix(pattern: &str) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut fold = false;
    if let Ok(hir) = regex_syntax::Parser::new().parse(pattern) {
        walk(&hir, &mut out, &mut fold);
    }
    if fold {
        out.make_ascii_lowercase();
    }
    (out, fold)
}

/// Append `hir`'s literal prefix to `out`; whether all of `hir` was literal (so what
/// follows it may extend the prefix).
fn walk(hir: &regex_syntax::hir::Hir, out: &mut Vec<u8>, fold: &mut bool) -> bool {
    use regex_syntax::hir::{Class, HirKind, Look};
    match hir.kind() {
        HirKind::Empty => true,
        HirKind::Literal(l) => {
            out.extend_from_slice(&l.0);
            true
        }
        HirKind::Class(Class::Unicode(c)) => {
            let r = c.ranges();
            let one = |i: usize| (r[i].start() == r[i].end()).then(|| r[i].start());
            match r.len() {
                1 => match one(0) {
                    Some(ch) => {
                        out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                        true
                    }
                    None => false,
                },
                2 => match (one(0), one(1)) {
                    (Some(u), Some(l)) if u.is_ascii_uppercase() && l == u.to_ascii_lowercase() => {
                        out.push(l as u8);
                        *fold = true;
                        true
                    }
                    _ => false,
                },
                _ => false,
            }
        }
        HirKind::Class(Class::Bytes(c)) => {
            let r = c.ranges();
            let one = |i: usize| (r[i].start() == r[i].end()).then(|| r[i].start());
            match (
                r.len(),
                r.first().and_then(|_| one(0)),
                r.get(1).and_then(|_| one(1)),
            ) {
                (1, Some(b), _) => {
                    out.push(b);
                    true
                }
                (2, Some(u), Some(l)) if u.is_ascii_uppercase() && l == u.to_ascii_lowercase() => {
                    out.push(l);
                    *fold = true;
                    true
                }
                _ => false,
            }
        }
        // `^` where nothing was matched yet: every match starts there anyway.
        HirKind::Look(Look::Start) if out.is_empty() => true,
        HirKind::Capture(c) => walk(&c.sub, out, fold),
        HirKind::Concat(items) => items.iter().all(|h| walk(h, out, fold)),
        _ => false,
    }
}

/// A seed per process, so which paths collide cannot be known in advance.
fn seed() -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::RandomState::default().hash_one(0x5eed_u64)
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const SLASHES: u64 = 0x2f2f_2f2f_2f2f_2f2f;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The hash of a string of `len` bytes: `state` over its whole 8-byte words, `tail` its
/// remaining bytes (little-endian, zero-padded).
#[inline]
fn finish(state: u64, tail: u64, len: usize) -> u64 {
    fold_mul(state ^ tail, K2 ^ len as u64)
}

#[inline]
fn step(state: u64, word: u64) -> u64 {
    fold_mul(state ^ word, K1)
}

/// `w` with ASCII `A-Z` lowercased (eight bytes at once).
#[inline]
fn lower(w: u64) -> u64 {
    let low = w & LOW7;
    // High bit of each byte: >= 'A', > 'Z', and below 0x80.
    let ge_a = low.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
    let gt_z = low.wrapping_add(0x2525_2525_2525_2525);
    let upper = (ge_a ^ gt_z) & !w & HIGH;
    w | (upper >> 2)
}

/// High bit set in each byte of `w` that is `/`.
#[inline]
fn slashes(w: u64) -> u64 {
    let x = w ^ SLASHES;
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

#[inline]
fn word_at(b: &[u8], at: usize) -> (u64, usize) {
    match b.get(at..at + 8) {
        Some(w) => (u64::from_le_bytes(w.try_into().unwrap_or([0; 8])), 8),
        None => {
            let mut buf = [0u8; 8];
            let n = b.len() - at;
            buf[..n].copy_from_slice(&b[at..]);
            (u64::from_le_bytes(buf), n)
        }
    }
}

/// The hash of `key` as [`for_each_boundary`] computes it for a path prefix equal to it
/// (`fold`: of its lowercased bytes).
fn hash(seed: u64, key: &[u8], fold: bool) -> u64 {
    let mut state = seed;
    let mut at = 0;
    loop {
        let (mut w, n) = word_at(key, at);
        if fold {
            w = lower(w);
        }
        if n < 8 {
            return finish(state, w, key.len());
        }
        state = step(state, w);
        at += 8;
    }
}

/// Call `visit(hash, folded_hash)` for every boundary of `path` whose length `wanted`
/// accepts: each `/` after the first byte (the prefix before it) and the end (the whole
/// path). `folded_hash` is 0 unless `fold`.
#[inline]
fn for_each_boundary(
    seed: u64,
    path: &[u8],
    fold: bool,
    wanted: impl Fn(usize) -> bool,
    mut visit: impl FnMut(u64, u64),
) {
    let (mut s, mut sf) = (seed, seed);
    let mut at = 0;
    loop {
        let (w, n) = word_at(path, at);
        let wf = if fold { lower(w) } else { 0 };
        let mut marks = slashes(w);
        if n < 8 {
            // Only the bytes of the path.
            marks &= (1u64 << (8 * n)) - 1;
        }
        while marks != 0 {
            let j = (marks.trailing_zeros() / 8) as usize;
            marks &= marks - 1;
            if at + j == 0 || !wanted(at + j) {
                continue;
            }
            let keep = (1u64 << (8 * j)) - 1;
            let hf = if fold {
                finish(sf, wf & keep, at + j)
            } else {
                0
            };
            visit(finish(s, w & keep, at + j), hf);
        }
        if n < 8 {
            if wanted(path.len()) {
                let hf = if fold { finish(sf, wf, path.len()) } else { 0 };
                visit(finish(s, w, path.len()), hf);
            }
            return;
        }
        s = step(s, w);
        if fold {
            sf = step(sf, wf);
        }
        at += 8;
    }
}

/// The table's hasher: the key already is a seeded, mixed hash, used as it is.
#[derive(Default)]
struct Spread(u64);

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = step(self.0, *b as u64);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = k;
    }
}

#[cfg(test)]
#[path = "route_index_tests.rs"]
mod tests;
