//! What one export call reports back to the exporter task. A leaf of its own so the
//! exporters and the task that drives them (`worker.rs`) both import it without
//! importing each other.

/// The outcome of one export call, in `spans_sent` units and spans.
pub(crate) struct Sent {
    pub(crate) units: u64,
    /// Spans the collector said it rejected (OTLP partial success).
    pub(crate) rejected_spans: u64,
}
