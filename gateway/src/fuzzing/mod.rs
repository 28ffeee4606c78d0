//! Entry points of the fuzz targets (`fuzz/`, run by `scripts/fuzz.sh`), kept in the
//! gateway so the same functions replay the committed corpora as ordinary tests
//! (`gateway/tests/fuzz_corpus.rs`) without nightly or libFuzzer.
//!
//! Each entry takes the raw input, never panics on any input (a panic is a bug the
//! fuzzer reports), and asserts the invariants its target states. Inputs are text in
//! small line-based formats, so seeds are readable and the fuzzer's mutations stay near
//! real configurations; each function's doc gives its format. Not an API: hidden from
//! the docs, and nothing else in the gateway calls it.

mod codecs;
mod config;
mod wasm_host;

use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderValue};
use pingora_http::ResponseHeader;

use crate::annotations::{destination, IngressAnnotations};
use crate::controllers::ConfigmapMgr;
use crate::proxy::compressor;
use crate::stats::{CompressorStats, ServerStats};

pub use codecs::{b3_multi, b3_single, resp, sw8, w3c};
pub use config::{higress_config, resource, translate};
pub use wasm_host::{wasm_host, wasm_host_functions};

/// A target's entry function: the raw input, no result (a panic is a finding).
pub type Target = fn(&[u8]);

/// Every target by name: `fuzz/fuzz_targets/<name>.rs` calls the function, its seeds are
/// `fuzz/corpus/<name>/`, its crash inputs kept as `fuzz/regressions/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("sw8", sw8),
    ("w3c", w3c),
    ("b3_single", b3_single),
    ("b3_multi", b3_multi),
    ("resp", resp),
    ("higress_config", higress_config),
    ("resource", resource),
    ("translate", translate),
    ("destination", destination),
    ("accept_encoding", accept_encoding),
    ("stats_filter", stats_filter),
    ("wasm_host", wasm_host),
];

/// Input as text: a target whose parser takes `&str` sees invalid UTF-8 replaced, as
/// every such input would be rejected before the parser anyway.
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A `higress.io/destination` value (the whole input): parsing never panics, what parses
/// is within the annotation's bounds, and the Ingress annotation path agrees with the
/// parser.
pub fn destination(data: &[u8]) {
    let value = text(data);
    let parsed = destination::parse(&value);
    if let Ok(list) = &parsed {
        assert!(!list.is_empty());
        for d in list {
            assert!(d.weight <= 100, "weight {} over 100", d.weight);
            assert!(!d.host.is_empty(), "empty host from {value:?}");
        }
    }
    let map = [(destination::ANNOTATION.to_string(), value.to_string())]
        .into_iter()
        .collect();
    let via_map = destination::from_annotations(&map);
    assert_eq!(via_map.is_ok(), parsed.is_ok());
    if let (Ok(Some(a)), Ok(b)) = (&via_map, &parsed) {
        assert_eq!(a, b);
    }
    // The annotation among all of an Ingress's: only the outcome matters here.
    let _ = IngressAnnotations::parse(&map);
}

/// `Accept-Encoding` values, one per line, up to an empty line; then response header
/// lines (`name: value`) up to an empty line; the rest is the response body, sent in
/// pieces of at most 700 bytes. The choice does not depend on how the codings are split
/// over header lines, and a compressed body gunzips to the original.
pub fn accept_encoding(data: &[u8]) {
    let (accept, rest) = split_block(data);
    let (response, body) = split_block(rest);
    let mut request = HeaderMap::new();
    let mut joined = Vec::new();
    for line in accept.split(|&b| b == b'\n') {
        let Ok(v) = HeaderValue::from_bytes(line) else {
            continue;
        };
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(line);
        request.append(http::header::ACCEPT_ENCODING, v);
    }
    let choice = compressor::choose(&request);
    if let Ok(one) = HeaderValue::from_bytes(&joined) {
        if !request.is_empty() {
            let mut single = HeaderMap::new();
            single.insert(http::header::ACCEPT_ENCODING, one);
            assert_eq!(compressor::choose(&single), choice, "split over lines");
        }
    }
    let Ok(mut h) = ResponseHeader::build(200, None) else {
        return;
    };
    for line in response.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        let _ = h.append_header(name, value);
    }
    static SETUP: OnceLock<(
        Arc<crate::model::filter_settings::GzipSettings>,
        CompressorStats,
    )> = OnceLock::new();
    let (settings, stats) = SETUP.get_or_init(|| {
        let gzip = ConfigmapMgr::new()
            .settings()
            .gzip
            .expect("gzip is on by default");
        let registry = telemetry::stats::Registry::new();
        (gzip, CompressorStats::register(&registry, &[]))
    });
    let Some(mut gz) = compressor::on_response(settings, stats, &request, &mut h, false, true)
    else {
        return;
    };
    assert!(choice.allows_gzip(), "compressed for {choice:?}");
    let mut out = Vec::new();
    let mut pieces = body.chunks(700).peekable();
    if pieces.peek().is_none() {
        let mut piece = None;
        gz.body(&mut piece, true).expect("deflate");
        out.extend_from_slice(piece.as_deref().unwrap_or(&[]));
    }
    while let Some(p) = pieces.next() {
        let mut piece = Some(bytes::Bytes::copy_from_slice(p));
        gz.body(&mut piece, pieces.peek().is_none())
            .expect("deflate");
        out.extend_from_slice(piece.as_deref().unwrap_or(&[]));
    }
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut plain)
        .expect("the gzip stream decodes");
    assert_eq!(plain, body, "gunzipped body differs");
}

/// The bytes up to the first empty line (`\n\n`), and what follows it.
fn split_block(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[]),
    }
}

/// `/stats/prometheus`'s query string (first line) and `Accept` header (second line,
/// absent when missing) against the gateway's registry: a bad `?filter=` is a 400 whose
/// body says why, never a panic; what a filter or `usedonly` keeps is among the series
/// of the unfiltered scrape.
pub fn stats_filter(data: &[u8]) {
    static STATS: OnceLock<ServerStats> = OnceLock::new();
    let stats = STATS.get_or_init(|| ServerStats::new(2));
    let input = text(data);
    let mut lines = input.splitn(2, '\n');
    let query = lines.next().unwrap_or("");
    let accept = lines.next();
    let r = crate::admin::prometheus_stats(&stats.registry, Some(query), accept);
    let body = String::from_utf8(r.body().clone()).expect("stats are UTF-8");
    match r.status().as_u16() {
        200 => {
            let all = crate::admin::prometheus_stats(&stats.registry, None, accept);
            let all = String::from_utf8_lossy(all.body());
            let known: std::collections::HashSet<&str> = series(&all).collect();
            for s in series(&body) {
                assert!(known.contains(s), "{s:?} is not a series of the registry");
            }
        }
        400 => assert!(body.starts_with("filter: "), "{body:?}"),
        s => panic!("status {s} for {query:?}"),
    }
}

/// The series (`name{labels}`, without value or exemplar) of each sample line.
fn series(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| match l.find("} ") {
            Some(i) if l[..i].contains('{') => &l[..=i],
            _ => l.split(' ').next().unwrap_or(l),
        })
}
