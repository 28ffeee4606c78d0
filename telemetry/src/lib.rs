//! Telemetry for the gateway: Envoy-compatible stats, and (later) trace context and
//! exporters. Nothing here knows about Pingora or the config format; the gateway crate
//! resolves handles once per snapshot and the hot path only touches atomics.

pub mod export;
pub mod stats;
pub mod trace;
