//! Any `b3` value: decoding never panics, and what decodes re-encodes to a value
//! that decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry::trace::b3::{self, B3};

fuzz_target!(|value: &str| {
    let Ok(b) = b3::decode_single(value) else {
        return;
    };
    let again = match &b {
        B3::Context(c) => {
            b3::encode_single(&c.trace_id, c.span_id, c.sampled, c.debug, None).expect("hex id")
        }
        B3::SamplingOnly { debug: true, .. } => "d".to_owned(),
        B3::SamplingOnly { sampled, .. } => if *sampled { "1" } else { "0" }.to_owned(),
    };
    assert_eq!(b3::decode_single(&again), Ok(b));
});
