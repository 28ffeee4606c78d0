//! Any set of `x-b3-*` values (the input's lines, in header order; an empty line is
//! an absent header): decoding never panics, and a decoded context survives
//! `encode_multi`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry::trace::b3::{self, B3};
use telemetry::trace::SpanContext;

const NAMES: [&str; 5] = [
    b3::X_B3_TRACE_ID,
    b3::X_B3_SPAN_ID,
    b3::X_B3_PARENT_SPAN_ID,
    b3::X_B3_SAMPLED,
    b3::X_B3_FLAGS,
];

fuzz_target!(|input: &str| {
    let mut values = [None; 5];
    for (slot, line) in values.iter_mut().zip(input.split('\n')) {
        // "\r" alone stands for a present but empty header.
        *slot = match line {
            "" => None,
            "\r" => Some(""),
            v => Some(v),
        };
    }
    let get = |name: &str| {
        NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values[i])
    };
    let Ok(Some(B3::Context(c))) = b3::decode_multi(get) else {
        return;
    };
    let sampled = c.sampled.unwrap_or(false);
    let out = b3::encode_multi(&c.trace_id, c.span_id, None, sampled).expect("hex id");
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
    assert_eq!(b3::decode_multi(again), Ok(Some(B3::Context(expected))));
});
