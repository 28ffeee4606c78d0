//! A small stat store: counters, gauges and histograms as shared atomics, grouped into
//! families that render as Prometheus text format 0.0.4.
//!
//! Handles ([`Counter`], [`Gauge`], [`Histogram`]) are resolved once (at start-up or snapshot build) and
//! then only incremented, so a request never formats a label or looks up a map.

mod family;
mod handle;
mod histogram;
mod registry;

pub use family::{Family, Kind, RenderOptions};
pub use handle::{Counter, Gauge};
pub use histogram::{format_value, Histogram, ENVOY_DEFAULT_BUCKETS};
pub use registry::Registry;
