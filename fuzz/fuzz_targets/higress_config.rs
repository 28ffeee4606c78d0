//! `data.higress` of `higress-config` through ConfigmapMgr's validation and update.
//! The input format and the invariants: `gateway::fuzzing::higress_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::higress_config(data));
