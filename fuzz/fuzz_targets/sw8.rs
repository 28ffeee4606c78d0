//! Any `sw8` value: decoding never panics, and what decodes re-encodes to the same context.
//! The input format and the invariants: `gateway::fuzzing::sw8`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::sw8(data));
