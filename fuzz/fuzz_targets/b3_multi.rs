//! Any set of `x-b3-*` values (one per line): decoding never panics, and a decoded context survives `encode_multi`.
//! The input format and the invariants: `gateway::fuzzing::b3_multi`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::b3_multi(data));
