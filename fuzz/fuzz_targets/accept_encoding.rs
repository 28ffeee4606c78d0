//! `Accept-Encoding` values (q-values), response headers and a body through the gzip compressor.
//! The input format and the invariants: `gateway::fuzzing::accept_encoding`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::accept_encoding(data));
