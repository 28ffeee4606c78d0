//! Any `b3` value: decoding never panics, and what decodes re-encodes to the same thing.
//! The input format and the invariants: `gateway::fuzzing::b3_single`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::b3_single(data));
