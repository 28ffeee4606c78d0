use super::*;

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

fn route(i: usize, path: PathMatch, ignore_case: bool) -> Arc<Route> {
    Arc::new(Route::new(
        format!("r{i}").into(),
        path,
        ignore_case,
        Vec::new(),
        None,
        false,
    ))
}

fn scan<'r>(
    routes: &'r [Arc<Route>],
    path: &str,
    mut accept: impl FnMut(&Route) -> bool,
) -> Option<&'r Arc<Route>> {
    routes
        .iter()
        .find(|r| r.path.matches(path, r.ignore_case) && accept(r))
}

const SEGMENTS: &[&str] = &[
    "",
    "a",
    "A",
    "api",
    "API",
    "Api",
    "v1",
    "V1",
    "users",
    "USERS",
    "k",
    "K",
    "s",
    "S",
    "\u{17f}",
    "\u{212a}",
    "x.y",
    "123",
    "4",
    "\u{e9}t\u{e9}",
    "items",
    "ab",
    "abc",
];

fn random_path(rng: &mut Rng) -> String {
    let mut p = String::new();
    for _ in 0..rng.below(5) {
        p.push('/');
        p.push_str(rng.pick(SEGMENTS));
    }
    match rng.below(8) {
        0 => p.push('/'),
        1 => p.push_str("//"),
        2 if p.is_empty() => p.push('/'),
        _ => {}
    }
    if p.is_empty() && rng.below(4) > 0 {
        p.push('/');
    }
    p
}

fn random_route(rng: &mut Rng, i: usize) -> Arc<Route> {
    let base = random_path(rng);
    let ignore_case = rng.below(3) == 0;
    let path = match rng.below(10) {
        0..=2 => PathMatch::Exact(base),
        3..=5 => PathMatch::Prefix(base.trim_end_matches('/').to_string()),
        _ => {
            let lit = regex::escape(&base);
            let tail = rng.pick(&[
                "", "[0-9]+", ".*", "(/x)?$", "/[a-z]+", "$", "s*", "(s|k)", "[Kk]", "/?",
            ]);
            let head = rng.pick(&["", "^", "(?i)", "(?i)^", "(?-u:)", "(?i-u)"]);
            let body = match rng.below(6) {
                0 => format!("({lit}){tail}"),
                1 => format!("{lit}|/a{tail}"),
                2 => format!("[/]{}{tail}", lit.get(1..).unwrap_or("")),
                _ => format!("{lit}{tail}"),
            };
            match crate::model::PathRegex::new(&format!("{head}{body}")) {
                Ok(re) => PathMatch::Regex(re),
                Err(_) => PathMatch::Prefix(String::new()),
            }
        }
    };
    route(i, path, ignore_case)
}

#[test]
fn index_agrees_with_a_linear_scan() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut lookups = 0;
    for round in 0..300 {
        let n = 1 + rng.below(if round % 10 == 0 { 400 } else { 40 });
        let routes: Vec<Arc<Route>> = (0..n).map(|i| random_route(&mut rng, i)).collect();
        let index = Index::build(&routes);
        // The index's own paths, their neighbours and random ones.
        let mut paths: Vec<String> = (0..200).map(|_| random_path(&mut rng)).collect();
        for r in &routes {
            if let PathMatch::Exact(p) | PathMatch::Prefix(p) = &r.path {
                paths.push(p.clone());
                paths.push(p.to_ascii_uppercase());
                paths.push(format!("{p}/"));
                paths.push(format!("{p}/x"));
                paths.push(format!("{p}x"));
            }
        }
        let odd = |r: &Route| r.name.len() % 2 == 1;
        for p in &paths {
            let want = scan(&routes, p, |_| true).map(|r| r.name.clone());
            let got = index
                .find(&routes, p, &mut |_| true)
                .map(|i| routes[i].name.clone());
            assert_eq!(got, want, "path {p:?} over {:?}", routes_of(&routes));
            // A non-path condition (as header matches will be) keeps the order too.
            let want = scan(&routes, p, odd).map(|r| r.name.clone());
            let got = index
                .find(&routes, p, &mut |r| odd(r))
                .map(|i| routes[i].name.clone());
            assert_eq!(
                got,
                want,
                "path {p:?} (odd names) over {:?}",
                routes_of(&routes)
            );
            lookups += 1;
        }
    }
    assert!(lookups > 60_000);
}

fn routes_of(routes: &[Arc<Route>]) -> Vec<String> {
    routes
        .iter()
        .map(|r| match &r.path {
            PathMatch::Exact(p) => format!("={p}{}", if r.ignore_case { " i" } else { "" }),
            PathMatch::Prefix(p) => format!("^{p}{}", if r.ignore_case { " i" } else { "" }),
            PathMatch::Regex(re) => format!("~{}", re.as_str()),
        })
        .collect()
}

#[test]
fn small_hosts_scan_large_hosts_index() {
    let routes: Vec<Arc<Route>> = (0..20)
        .map(|i| route(i, PathMatch::Prefix(format!("/p{i}")), false))
        .collect();
    assert!(PathIndex::build(&routes[..SCAN_MAX]).index.is_none());
    let ix = PathIndex::build(&routes);
    assert!(ix.index.is_some());
    assert_eq!(&*ix.find(&routes, "/p13/x", |_| true).unwrap().name, "r13");
    assert!(ix.find(&routes, "/p13x", |_| true).is_none());
    assert!(ix.find(&routes, "/p13", |r| &*r.name != "r13").is_none());
}

#[test]
fn first_in_order_wins_among_candidates() {
    // A prefix listed before a longer exact path, and a catch-all before both.
    let routes = vec![
        route(0, PathMatch::Prefix("/a".into()), false),
        route(1, PathMatch::Exact("/a/b".into()), false),
        route(2, PathMatch::Prefix(String::new()), false),
        route(
            3,
            PathMatch::Regex(crate::model::PathRegex::new("/a/b/[0-9]+").unwrap()),
            false,
        ),
    ];
    let ix = Index::build(&routes);
    let name = |p: &str, skip: &[&str]| {
        ix.find(&routes, p, &mut |r| !skip.contains(&&*r.name))
            .map(|i| routes[i].name.to_string())
    };
    assert_eq!(name("/a/b", &[]).as_deref(), Some("r0"));
    assert_eq!(name("/a/b", &["r0"]).as_deref(), Some("r1"));
    assert_eq!(name("/a/b/1", &["r0"]).as_deref(), Some("r2"));
    assert_eq!(name("/a/b/1", &["r0", "r2"]).as_deref(), Some("r3"));
    assert_eq!(name("/z", &["r2"]), None);
}

#[test]
fn regex_literal_prefixes() {
    let lit = |p: &str| {
        let (l, f) = literal_prefix(p);
        (String::from_utf8(l).unwrap(), f)
    };
    assert_eq!(lit("/api/v1/[0-9]+"), ("/api/v1/".into(), false));
    assert_eq!(lit("^/api/x"), ("/api/x".into(), false));
    assert_eq!(lit("(/abc)/d+"), ("/abc/".into(), false));
    assert_eq!(lit("/ab*"), ("/a".into(), false));
    assert_eq!(lit("/a|/b"), ("".into(), false));
    assert_eq!(lit("(?i)/Api/X"), ("/api/x".into(), true));
    // `k` and `s` have non-ASCII case variants under (?i): the literal stops there.
    assert_eq!(lit("(?i)/ok/x"), ("/o".into(), true));
    assert_eq!(lit("(?i)/1s"), ("/1".into(), false));
    assert_eq!(lit("(?i-u)/ok"), ("/ok".into(), true));
    assert_eq!(lit("[/]x"), ("/x".into(), false));
    assert_eq!(lit("/x^"), ("/x".into(), false));
    assert_eq!(lit("(("), ("".into(), false));
}

#[test]
fn boundary_hashes_are_the_hashes_of_the_prefixes() {
    let seed = 0x1234_5678;
    for path in [
        "",
        "/",
        "/a",
        "/abcdefg",
        "/abcdefgh",
        "/abcdefg/",
        "/abcdefgh/ij//KLmnopqrstu/vwx",
        "/Ümlaut/ÉTÉ/x",
        "abc/def",
    ] {
        let b = path.as_bytes();
        let mut want = Vec::new();
        for (i, &c) in b.iter().enumerate() {
            if c == b'/' && i > 0 {
                want.push((hash(seed, &b[..i], false), hash(seed, &b[..i], true)));
            }
        }
        want.push((hash(seed, b, false), hash(seed, b, true)));
        let mut got = Vec::new();
        for_each_boundary(seed, b, true, |_| true, |h, f| got.push((h, f)));
        assert_eq!(got, want, "{path:?}");
        let lowered = path.to_ascii_lowercase();
        assert_eq!(hash(seed, lowered.as_bytes(), false), hash(seed, b, true));
    }
}

#[test]
fn word_helpers_match_bytewise() {
    for v in 0..=255u8 {
        for pos in 0..8 {
            let mut bytes = [b'q'; 8];
            bytes[pos] = v;
            let w = u64::from_le_bytes(bytes);
            let mut low = bytes;
            low.make_ascii_lowercase();
            assert_eq!(lower(w), u64::from_le_bytes(low), "byte {v:#x}");
            let marks = slashes(w);
            let want = if v == b'/' { 0x80u64 << (8 * pos) } else { 0 };
            assert_eq!(marks, want, "byte {v:#x}");
        }
    }
}
