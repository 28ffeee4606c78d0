//! What a request arrived with: the parent's trace context, decoded from one of the
//! propagation formats.

use super::ids::{SpanId, TraceId};

/// An incoming (or outgoing) span context.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    /// The parent's span id (W3C `parent-id`, B3 `SpanId`). For `sw8` this is not
    /// meaningful; the SkyWalking parent is in `sw`.
    pub span_id: SpanId,
    /// The caller's sampling decision; `None` when it left it to us (B3 without a
    /// sampling state).
    pub sampled: Option<bool>,
    /// B3 debug flag (`d`): sample, whatever the rate.
    pub debug: bool,
    /// W3C `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
    /// The SkyWalking parent, when it came in `sw8`.
    pub sw: Option<SwParent>,
}

/// The fields of `sw8` that describe the parent segment and span (SkyWalking's
/// cross-process reference).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwParent {
    pub segment_id: String,
    pub span_id: i32,
    pub service: String,
    pub instance: String,
    pub endpoint: String,
    /// The address the caller used to reach us.
    pub address: String,
}
