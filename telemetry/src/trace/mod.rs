//! Trace context and spans: ids, the propagation codecs (`sw8`, B3, W3C), the sampler
//! and the span model the exporters take (with the names and tags each provider gives a
//! request's facts). Codecs are pure functions; nothing here does I/O.

pub mod b3;
pub mod context;
pub(crate) mod http_tags;
pub mod ids;
pub mod provider;
pub mod sampler;
pub mod span;
pub mod sw8;
pub mod w3c;

pub use context::{SpanContext, SwParent};
pub use http_tags::{sw_operation, HttpFacts, Tag};
pub use ids::{SpanId, TraceId};
pub use provider::Provider;
pub use sampler::Sampler;
pub use span::{
    ipv4_text, push_ipv4, socket_addr_text, AttrValue, Phase, RequestTrace, Span, SpanKind,
};
