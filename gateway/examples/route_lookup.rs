//! Route lookup microbenchmark: one host with N paths (10 % regex, the rest prefix and
//! exact), lookups spread over every path, as `RouteTable::find` serves a request.
//!
//!   route_lookup N [LOOKUPS]
//!
//! The lookups run in `lookups`, which `loadtest/route_lookup.sh` counts instructions
//! of under callgrind (`--toggle-collect`): instructions, unlike time, repeat exactly.
//! Without callgrind it prints the wall time per lookup, for a quick look.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use gateway::model::{PathMatch, PathRegex, Route, RouteTable};
use pingora_http::RequestHeader;

const HOST: &str = "bench.local";

/// Route `i` of a host, and a request path it serves. Path shapes as services publish
/// them: `/api/v<k>/svc-<i>` prefixes, `.../health` exact paths and
/// `.../items/[0-9]+` regexes (every 10th route).
fn route(i: usize) -> (PathMatch, String) {
    let base = format!("/api/v{}/svc-{i}", i % 3 + 1);
    match i % 10 {
        9 => (
            PathMatch::Regex(PathRegex::new(&format!("{base}/items/[0-9]+")).unwrap()),
            format!("{base}/items/{}", 1000 + i),
        ),
        1 | 4 | 7 => (
            PathMatch::Exact(format!("{base}/health")),
            format!("{base}/health"),
        ),
        _ => (
            PathMatch::Prefix(base.clone()),
            format!("{base}/orders/{i}"),
        ),
    }
}

/// A table of one host with `n` routes, in the order `translate/route_table.rs` sorts
/// them (exact first, then longer paths first), and one request path per route in a
/// scrambled order.
fn table(n: usize) -> (RouteTable, Vec<String>) {
    let mut routes: Vec<(usize, PathMatch, String)> = (0..n)
        .map(|i| {
            let (m, req) = route(i);
            let len = match &m {
                PathMatch::Exact(p) | PathMatch::Prefix(p) => p.len(),
                PathMatch::Regex(r) => r.as_str().len(),
            };
            (len, m, req)
        })
        .collect();
    routes.sort_by(|a, b| a.1.rank().cmp(&b.1.rank()).then(b.0.cmp(&a.0)));
    let mut paths = Vec::with_capacity(n);
    let built = routes
        .into_iter()
        .enumerate()
        .map(|(i, (_, m, req))| {
            paths.push(req);
            Arc::new(Route::new(
                format!("r{i}").into(),
                m,
                false,
                Vec::new(),
                None,
                false,
            ))
        })
        .collect();
    // A fixed permutation (multiplicative step coprime to n) spreads the lookups.
    let step = (0..).map(|k| 7919 + k).find(|s| gcd(*s, n) == 1).unwrap();
    let spread = (0..n).map(|k| paths[(k * step) % n].clone()).collect();
    (RouteTable::new(vec![(Some(HOST.into()), built)]), spread)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The measured loop.
#[inline(never)]
fn lookups(table: &RouteTable, paths: &[(String, RequestHeader)], count: usize) -> usize {
    run(table, paths, count)
}

/// The same, not measured (first use of each regex, page faults).
#[inline(never)]
fn warm_up(table: &RouteTable, paths: &[(String, RequestHeader)], count: usize) -> usize {
    run(table, paths, count)
}

/// `count` lookups cycling over `paths`; how many hit.
#[inline(always)]
fn run(table: &RouteTable, paths: &[(String, RequestHeader)], count: usize) -> usize {
    let mut hits = 0;
    for k in 0..count {
        let (p, req) = &paths[k % paths.len()];
        hits += usize::from(table.find(black_box(HOST), black_box(p), req).is_some());
    }
    hits
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let (t, paths) = table(n);
    // The request each lookup matches against (method, headers), made beforehand: the
    // proxy has it already.
    let paths: Vec<(String, RequestHeader)> = paths
        .into_iter()
        .map(|p| {
            let req = RequestHeader::build("GET", p.as_bytes(), None).unwrap();
            (p, req)
        })
        .collect();
    warm_up(&t, &paths, paths.len());
    let start = Instant::now();
    let hits = lookups(&t, &paths, count);
    let took = start.elapsed();
    assert_eq!(hits, count, "every lookup must find its route");
    println!(
        "paths={n} lookups={count} ns/lookup={:.1} (wall time; instructions: loadtest/route_lookup.sh)",
        took.as_nanos() as f64 / count as f64
    );
}
