//! `/stats/prometheus` query (`?filter=`, `usedonly`) and `Accept` header.
//! The input format and the invariants: `gateway::fuzzing::stats_filter`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::stats_filter(data));
