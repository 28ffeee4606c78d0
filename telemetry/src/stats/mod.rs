//! A small stat store: counters, gauges and histograms as shared atomics, grouped into
//! families that render as Prometheus text format 0.0.4 or, for scrapers that ask for
//! it, OpenMetrics 1.0.0 with exemplars.
//!
//! Handles ([`Counter`], [`Gauge`], [`Histogram`]) are resolved once (at start-up or snapshot build) and
//! then only incremented, so a request never formats a label or looks up a map. A series
//! whose handles are all dropped is still exported for the registry's retention, then
//! forgotten.

mod exemplar;
mod family;
mod format;
mod handle;
mod histogram;
mod registry;

pub use exemplar::{Exemplar, MAX_TRACE_ID_LEN};
pub use family::{Family, Kind, RenderOptions};
pub use format::{negotiate, Format};
pub use handle::{Counter, Gauge};
pub use histogram::{format_value, Histogram, ENVOY_DEFAULT_BUCKETS};
pub use registry::{KindMismatch, Registry, DEFAULT_RETENTION};
