//! One object (`<folder>/<name>` line, then YAML) through its kind's parser: Ingress (annotations included), McpBridge, WasmPlugin, domain ConfigMaps and the rest.
//! The input format and the invariants: `gateway::fuzzing::resource`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::resource(data));
