//! Telemetry for the gateway: Envoy-compatible stats (`stats`), trace context codecs,
//! spans and the sampler (`trace`), and the span exporters (`export`). Nothing here
//! knows about Pingora or the config format; the gateway crate resolves handles once per
//! snapshot and the hot path only touches atomics. Where this crate sits in the
//! gateway: `docs/architecture.md`.

pub mod export;
pub mod stats;
pub mod trace;
