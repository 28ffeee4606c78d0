//! Trace context and spans: ids, the propagation codecs (`sw8`, B3, W3C), the sampler
//! and the span model the exporters take. Codecs are pure functions; nothing here does
//! I/O.

pub mod context;
pub mod ids;
pub mod span;

pub use context::{SpanContext, SwParent};
pub use ids::{SpanId, TraceId};
pub use span::{AttrValue, RequestTrace, Span, SpanKind};
