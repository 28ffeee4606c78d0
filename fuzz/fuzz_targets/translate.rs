//! A config directory in one file (`--- <folder>/<name>` before each object) through the config loop's translation to a snapshot, and requests routed on it.
//! The input format and the invariants: `gateway::fuzzing::translate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::translate(data));
