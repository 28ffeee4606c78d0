//! A `higress.io/destination` annotation value.
//! The input format and the invariants: `gateway::fuzzing::destination`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::destination(data));
