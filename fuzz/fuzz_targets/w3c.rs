//! Any `traceparent` + `tracestate` pair (split at the first newline): decoding never panics, and the context survives re-encoding.
//! The input format and the invariants: `gateway::fuzzing::w3c`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::w3c(data));
