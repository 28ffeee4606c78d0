//! Trace context and spans: ids, the propagation codecs (`sw8`, B3, W3C), the sampler
//! and the span model the exporters take. Codecs are pure functions; nothing here does
//! I/O.

pub mod b3;
pub mod context;
pub mod ids;
pub mod sampler;
pub mod span;
pub mod sw8;
pub mod w3c;

pub use context::{SpanContext, SwParent};
pub use ids::{SpanId, TraceId};
pub use sampler::Sampler;
pub use span::{push_ipv4, socket_addr_text, AttrValue, RequestTrace, Span, SpanKind};
