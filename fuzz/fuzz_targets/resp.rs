//! Any bytes as a Redis reply stream: the RESP2 parser never panics, and measuring and parsing agree.
//! The input format and the invariants: `gateway::fuzzing::resp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::resp(data));
