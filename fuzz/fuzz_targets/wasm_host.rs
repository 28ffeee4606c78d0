//! Random Proxy-Wasm host call sequences (pointers and sizes out of bounds included) from a generated driver module against a real VM.
//! The input format and the invariants: `gateway::fuzzing::wasm_host`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::wasm_host(data));
