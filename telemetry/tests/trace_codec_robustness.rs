//! Fuzz-style robustness of the propagation codecs: a corpus of broken values and a
//! fixed number of deterministic pseudo-random mutations of valid headers. Each case
//! must decode without panicking, and every value that decodes must re-encode to
//! something that decodes to the same context. (The `fuzz/` targets at the workspace
//! root check the same properties under libFuzzer.)

use telemetry::trace::b3::{self, B3};
use telemetry::trace::{sw8, w3c, SpanContext};

/// Mutations per codec: enough to reach every branch many times, well under a
/// second each in the dev profile.
const MUTATIONS: usize = 100_000;

/// SplitMix64: a fixed seed makes every failure reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that matter to these grammars, and some that should never pass.
const INTERESTING: &[u8] = b"-=01dfF+/ \t,.x_@Aa9Z\xc3\xa9\xff\x00";

fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        let pick = |rng: &mut Rng| {
            if rng.below(4) == 0 {
                rng.next() as u8
            } else {
                INTERESTING[rng.below(INTERESTING.len())]
            }
        };
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = pick(rng);
            }
            1 => {
                let i = rng.below(len + 1);
                let b = pick(rng);
                v.insert(i, b);
            }
            2 if len > 0 => {
                v.remove(rng.below(len));
            }
            3 => v.truncate(rng.below(len + 1)),
            4 if len > 0 => {
                // Duplicate a slice in place (extra fields, longer ids).
                let a = rng.below(len);
                let b = a + rng.below(len - a) + 1;
                let slice = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, slice);
            }
            5 if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                v.swap(a, b);
            }
            6 => {
                // Drop or add a separator: wrong field counts.
                match v.iter().position(|&c| c == b'-') {
                    Some(i) if rng.below(2) == 0 => {
                        v.remove(i);
                    }
                    _ => v.insert(rng.below(len + 1), b'-'),
                }
            }
            _ if len > 0 => {
                // Flip a letter's case: upper-case hex, BASE64 changes.
                let i = rng.below(len);
                if v[i].is_ascii_alphabetic() {
                    v[i] ^= 0x20;
                }
            }
            _ => v.push(pick(rng)),
        }
    }
    v
}

/// Run `check` on the corpus and the mutations of `seeds` (lossily converted when a
/// mutation is not UTF-8: header values reach us as `&str` only when they are).
fn exercise(seeds: &[&str], corpus: &[String], seed: u64, mut check: impl FnMut(&str) -> bool) {
    let mut decoded = 0usize;
    for c in corpus {
        check(c);
    }
    let mut rng = Rng(seed);
    for i in 0..MUTATIONS {
        let base = seeds[i % seeds.len()].as_bytes();
        let m = mutate(base, &mut rng);
        let s = String::from_utf8_lossy(&m);
        if check(&s) {
            decoded += 1;
        }
    }
    // Some mutations (case flips in BASE64, equivalent padding...) must still decode,
    // or the mutator is not reaching the interesting paths.
    assert!(decoded > 0, "no mutation decoded");
}

/// Broken values every codec must refuse without panicking.
fn common_corpus(valid: &str) -> Vec<String> {
    let mut c: Vec<String> = [
        "",
        " ",
        "-",
        "--------",
        "\u{0}",
        "\u{e9}\u{e9}\u{e9}",
        "\u{1F600}-\u{1F600}",
        "0",
        "1",
        "d",
        "=",
        "==",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..valid.len() {
        if valid.is_char_boundary(i) {
            c.push(valid[..i].to_string());
            c.push(valid[i..].to_string());
        }
    }
    c.push(format!("{valid}-"));
    c.push(format!("-{valid}"));
    c.push(valid.replace('-', "--"));
    c.push(valid.replace('-', "\u{2010}"));
    c.push(valid.repeat(1000));
    c.push("a".repeat(1 << 20));
    c.push("-".repeat(1 << 20));
    c.push("1-".repeat(1 << 19));
    c
}

const SW8_SEEDS: &[&str] = &[
    "1-YTRlYzZmYzhjY2FiNGJiNGI2ODIwNjQ2OThjYzk3ZTYuNzQuMTYyMTgzODExMDQ1NTAwMDk=-YTRlYzZmYzhjY2FiNGJiNGI2ODIwNjQ2OThjYzk3ZTYuNzQuMTYyMTgzODExMDQ1NTAwMDg=-2-b25lbW9yZS1h-ZTFkMmZiYjYzYmJhNDMwNDk5YWY4OTVjMDQwZTMyZmVAMTkyLjE2OC4xLjEwMQ==-L29uZW1vcmUtYS9nZXQ=-MTkyLjE2OC4xLjEwMjo4MA==",
    "0-dA-cw-0-YQ-Yg-Yw-ZA",
    "1-MQ==-Mg==-2147483647----",
];

fn sw8_round_trip(s: &str) -> bool {
    let Ok(c) = sw8::decode(s) else {
        return false;
    };
    let p = c.sw.as_ref().expect("sw8 always has a parent");
    assert!(matches!(&c.trace_id, telemetry::trace::TraceId::Text(t) if !t.is_empty()));
    assert!(!p.segment_id.is_empty() && p.span_id >= 0 && c.span_id.0 != 0);
    let again = sw8::encode(
        &c.trace_id,
        &p.segment_id,
        p.span_id,
        &p.service,
        &p.instance,
        &p.endpoint,
        &p.address,
        c.sampled.expect("sw8 always has a flag"),
    );
    // Re-encoding adds padding and drops leading zeros, so a value right at the
    // length limit may not fit again; anything shorter must round-trip, an empty
    // field coming back as "-" (what the encoder sends instead).
    if again.len() <= sw8::MAX_LEN {
        let mut want = c.clone();
        let w = want.sw.as_mut().unwrap();
        for f in [
            &mut w.service,
            &mut w.instance,
            &mut w.endpoint,
            &mut w.address,
        ] {
            if f.is_empty() {
                *f = "-".into();
            }
        }
        assert_eq!(sw8::decode(&again), Ok(want), "{s:?} -> {again:?}");
    }
    true
}

#[test]
fn sw8_never_panics_and_round_trips() {
    let mut corpus = common_corpus(SW8_SEEDS[0]);
    corpus.extend(
        [
            "1-dA-cw--1-YQ-Yg-Yw-ZA",
            "1-dA-cw-4294967296-YQ-Yg-Yw-ZA",
            "1-dA-cw-99999999999999999999999-YQ-Yg-Yw-ZA",
            "1-dA-cw-0x10-YQ-Yg-Yw-ZA",
            "1-dA-cw-0-Y-Yg-Yw-ZA",
            "1-dA-cw-0-!!!!-Yg-Yw-ZA",
            "1-dA-cw-0-YQ====-Yg-Yw-ZA",
            "1-\u{e9}-cw-0-YQ-Yg-Yw-ZA",
            "1-dA-cw-0-YQ-Yg-Yw-ZA-",
            "1-dA-cw-0-YQ-Yg-Yw",
            "1--------",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    corpus.push(format!("1-{}-cw-0----", "QUFB".repeat(2000)));
    for c in &corpus[..12] {
        assert!(sw8::decode(c).is_err(), "{c:?}");
    }
    exercise(SW8_SEEDS, &corpus, 0x5738, sw8_round_trip);
}

const TRACEPARENT_SEEDS: &[&str] = &[
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    "cc-12345678901234567890123456789012-1234567890123456-03-what-the-future-will-be-like",
];
const TRACESTATE_SEEDS: &[&str] = &[
    "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    "foo=1 \t , \t bar=2,,baz@qux= 3",
];

fn w3c_round_trip(tp: &str, ts: Option<&str>) -> bool {
    let Ok((c, flags)) = w3c::decode_with_flags(tp, ts) else {
        return false;
    };
    assert!(c.sw.is_none() && !c.debug && c.sampled.is_some());
    if let Some(kept) = &c.tracestate {
        assert!(w3c::valid_tracestate(kept), "{kept:?}");
    }
    let again = w3c::encode_with_flags(&c.trace_id, c.span_id, flags).expect("hex id");
    assert_eq!(again.len(), 55);
    assert_eq!(
        w3c::decode_with_flags(&again, c.tracestate.as_deref()),
        Ok((c.clone(), flags)),
        "{tp:?} -> {again:?}"
    );
    let plain = w3c::encode(&c.trace_id, c.span_id, c.sampled == Some(true)).unwrap();
    assert_eq!(w3c::decode(&plain, c.tracestate.as_deref()), Ok(c));
    true
}

#[test]
fn traceparent_never_panics_and_round_trips() {
    let mut corpus = common_corpus(TRACEPARENT_SEEDS[0]);
    corpus.push(TRACEPARENT_SEEDS[0].to_uppercase());
    corpus.push(TRACEPARENT_SEEDS[0].replacen("00", "ff", 1));
    exercise(TRACEPARENT_SEEDS, &corpus, 0x3c, |s| {
        w3c_round_trip(s, None)
    });
}

#[test]
fn tracestate_never_panics_and_is_kept_only_when_valid() {
    let mut corpus = common_corpus(TRACESTATE_SEEDS[0]);
    corpus.push(",".repeat(10_000));
    corpus.push("a=b,".repeat(40));
    corpus.push(format!("{}=1", "k".repeat(300)));
    let tp = TRACEPARENT_SEEDS[0];
    let mut kept = 0;
    exercise(TRACESTATE_SEEDS, &corpus, 0x75, |ts| {
        let c = w3c::decode(tp, Some(ts)).expect("a bad tracestate never fails traceparent");
        let Some(k) = &c.tracestate else {
            return false;
        };
        // Kept as received (less the surrounding whitespace), valid, and stable.
        kept += 1;
        assert_eq!(k, ts.trim_matches([' ', '\t']));
        assert!(w3c::valid_tracestate(k) && k.len() <= 512);
        assert_eq!(
            w3c::decode(tp, Some(k)).unwrap().tracestate.as_ref(),
            Some(k)
        );
        true
    });
    assert!(kept > 0);
    // Not the traceparent's business: a tracestate this broken still leaves a context.
    assert!(w3c_round_trip(tp, Some(&"k=v,".repeat(33))));
}

const B3_SEEDS: &[&str] = &[
    "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
    "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d",
    "64fe8b2a57d3eff7-e457b5a2e4d86bd1",
    "0",
];

fn b3_single_round_trip(s: &str) -> bool {
    let Ok(b) = b3::decode_single(s) else {
        return false;
    };
    let again = match &b {
        B3::Context(c) => {
            assert!(c.tracestate.is_none() && c.sw.is_none());
            assert!(!c.debug || c.sampled == Some(true), "debug implies accept");
            b3::encode_single(&c.trace_id, c.span_id, c.sampled, c.debug, None).unwrap()
        }
        B3::SamplingOnly { sampled, debug } => {
            assert!(!debug || *sampled);
            match (debug, sampled) {
                (true, _) => "d",
                (false, true) => "1",
                (false, false) => "0",
            }
            .to_owned()
        }
    };
    assert_eq!(b3::decode_single(&again), Ok(b), "{s:?} -> {again:?}");
    true
}

#[test]
fn b3_single_never_panics_and_round_trips() {
    let mut corpus = common_corpus(B3_SEEDS[0]);
    corpus.push(B3_SEEDS[0].replace('-', "-0"));
    corpus.push(format!("{}-1", B3_SEEDS[0]));
    exercise(B3_SEEDS, &corpus, 0xb3, b3_single_round_trip);
}

const MULTI_SEED: [(&str, &str); 5] = [
    (b3::X_B3_TRACE_ID, "463ac35c9f6413ad48485a3953bb6124"),
    (b3::X_B3_SPAN_ID, "a2fb4a1d1a96d312"),
    (b3::X_B3_PARENT_SPAN_ID, "0020000000000001"),
    (b3::X_B3_SAMPLED, "1"),
    (b3::X_B3_FLAGS, "1"),
];

fn b3_multi_round_trip(headers: &[(&str, Option<String>)]) -> bool {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    };
    let Ok(Some(b)) = b3::decode_multi(get) else {
        return false;
    };
    let B3::Context(c) = b else {
        return true;
    };
    let sampled = c.sampled.unwrap_or(false);
    let out = b3::encode_multi(&c.trace_id, c.span_id, None, sampled).unwrap();
    let again = |name: &str| {
        out.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    };
    let expected = SpanContext {
        sampled: Some(sampled),
        debug: false,
        ..c
    };
    assert_eq!(
        b3::decode_multi(again),
        Ok(Some(B3::Context(expected))),
        "{headers:?} -> {out:?}"
    );
    true
}

#[test]
fn b3_multi_never_panics_and_round_trips() {
    let mut rng = Rng(0x3b3);
    let mut decoded = 0;
    for _ in 0..MUTATIONS {
        let mut headers: Vec<(&str, Option<String>)> = MULTI_SEED
            .iter()
            .map(|(n, v)| (*n, Some(v.to_string())))
            .collect();
        for _ in 0..1 + rng.below(2) {
            let i = rng.below(headers.len());
            headers[i].1 = match rng.below(6) {
                0 => None,
                1 => Some(String::new()),
                _ => {
                    let base = headers[i].1.clone().unwrap_or_default();
                    Some(String::from_utf8_lossy(&mutate(base.as_bytes(), &mut rng)).into_owned())
                }
            };
        }
        decoded += usize::from(b3_multi_round_trip(&headers));
    }
    assert!(decoded > 0);
    for huge in [
        "a".repeat(1 << 20),
        "0".repeat(1 << 20),
        "-".repeat(1 << 16),
    ] {
        let headers: Vec<(&str, Option<String>)> = MULTI_SEED
            .iter()
            .map(|(n, _)| (*n, Some(huge.clone())))
            .collect();
        assert!(!b3_multi_round_trip(&headers));
    }
}
