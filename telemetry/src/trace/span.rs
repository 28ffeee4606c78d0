//! Finished spans, as the exporters take them: one [`RequestTrace`] per sampled
//! request, holding its server span and a client span per upstream attempt.

use std::borrow::Cow;
use std::time::SystemTime;

use super::context::SwParent;
use super::ids::{SpanId, TraceId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// The downstream request (SkyWalking entry span).
    Server,
    /// One upstream attempt (SkyWalking exit span).
    Client,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// One finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub span_id: SpanId,
    /// The parent span: the caller's for the server span (absent for a new trace), the
    /// server span's for a client span.
    pub parent_span_id: Option<SpanId>,
    pub kind: SpanKind,
    /// The provider's span name (SkyWalking: the operation name).
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Tags / attributes, in the provider's vocabulary (the gateway picks the keys).
    pub attributes: Vec<(Cow<'static, str>, AttrValue)>,
    /// Error flag (5xx, upstream failure).
    pub error: bool,
    /// The remote address of a client span (`ip:port` of the upstream endpoint), or of
    /// the downstream peer for the server span.
    pub peer: Option<String>,
}

/// The spans of one sampled request, exported together (a SkyWalking segment).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestTrace {
    pub trace_id: TraceId,
    /// SkyWalking segment id of this request's segment (unique per request).
    pub segment_id: String,
    /// The server span first, then one client span per upstream attempt in order.
    pub spans: Vec<Span>,
    /// The SkyWalking parent the request arrived with (the entry span's ref).
    pub sw_parent: Option<SwParent>,
    /// W3C `tracestate` as received.
    pub tracestate: Option<String>,
}
