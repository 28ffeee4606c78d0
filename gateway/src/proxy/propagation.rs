//! Which trace headers a provider reads and writes (the table in docs/tracing.md): SkyWalking
//! reads `sw8` (then `traceparent`, `b3` ids as a fallback) and writes `sw8`; Zipkin
//! reads `b3` / `x-b3-*` (then `traceparent`) and writes `x-b3-*`; OpenTelemetry (and
//! the demo's tracer) reads `traceparent` + `tracestate` (then `b3`) and writes
//! `traceparent`, passing `tracestate` on. A malformed header is as good as none: the
//! request starts a new trace.

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use telemetry::export::Provider;
use telemetry::trace::{b3, sw8, w3c, SpanContext, SpanId, TraceId};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// What the request arrived with: a parent context, or (B3) a bare decision.
#[derive(Debug, Default)]
pub struct Incoming {
    pub context: Option<SpanContext>,
    /// A sampling decision sent without ids (`b3: 0|1|d`, a lone `x-b3-sampled`).
    pub decision: Option<bool>,
    /// W3C trace-flags bit 1 of the incoming `traceparent`: its trace id is random.
    /// Passed on unchanged with the trace id, as Trace Context Level 2 asks.
    pub random_trace_id: bool,
}

impl Incoming {
    fn context(c: SpanContext) -> Self {
        Incoming {
            context: Some(c),
            ..Incoming::default()
        }
    }
}

fn from_w3c(h: &HeaderMap) -> Option<Incoming> {
    let tp = header(h, "traceparent")?;
    // Several `tracestate` headers are one list, joined in order (W3C).
    let mut states = h
        .get_all("tracestate")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let first = states.next();
    let joined;
    let tracestate = match states.next() {
        None => first,
        Some(second) => {
            joined = [first.unwrap_or(""), second]
                .into_iter()
                .chain(states)
                .collect::<Vec<_>>()
                .join(",");
            Some(joined.as_str())
        }
    };
    let (c, flags) = w3c::decode_with_flags(tp, tracestate).ok()?;
    Some(Incoming {
        random_trace_id: flags & w3c::FLAG_RANDOM_TRACE_ID != 0,
        ..Incoming::context(c)
    })
}

fn from_b3(h: &HeaderMap) -> Option<Incoming> {
    match b3::decode(|name| header(h, name)) {
        Ok(Some(b3::B3::Context(c))) => Some(Incoming::context(c)),
        Ok(Some(b3::B3::SamplingOnly { sampled, debug })) => Some(Incoming {
            decision: Some(sampled || debug),
            ..Incoming::default()
        }),
        _ => None,
    }
}

/// Which trace-context formats a request carries at all.
#[derive(Default)]
struct Present {
    sw8: bool,
    w3c: bool,
    b3: bool,
}

impl Present {
    /// One pass over the header names: most requests carry none of the formats, and
    /// a miss by name costs a parse and a hash per header tried (six for B3 alone).
    fn scan(h: &HeaderMap) -> Self {
        let mut p = Present::default();
        for name in h.keys() {
            match name.as_str() {
                "sw8" => p.sw8 = true,
                "traceparent" => p.w3c = true,
                "b3" => p.b3 = true,
                n if n.starts_with("x-b3-") => p.b3 = true,
                _ => {}
            }
        }
        p
    }
}

/// The incoming context in the provider's format, or its fallbacks.
pub fn extract(provider: Option<Provider>, h: &HeaderMap) -> Incoming {
    let p = Present::scan(h);
    let w3c = || p.w3c.then(|| from_w3c(h)).flatten();
    let b3 = || p.b3.then(|| from_b3(h)).flatten();
    let found = match provider {
        Some(Provider::SkyWalking) => p
            .sw8
            .then(|| header(h, "sw8").and_then(|v| sw8::decode(v).ok()))
            .flatten()
            .map(Incoming::context)
            .or_else(w3c)
            .or_else(b3),
        Some(Provider::Zipkin) => b3().or_else(w3c),
        Some(Provider::OpenTelemetry) | None => w3c().or_else(b3),
    };
    found.unwrap_or_default()
}

/// The context an upstream attempt carries.
pub struct Outgoing<'a> {
    pub trace_id: &'a TraceId,
    /// The attempt's (client / exit) span.
    pub span_id: SpanId,
    /// The server span.
    pub parent_span_id: SpanId,
    pub tracestate: Option<&'a str>,
    /// SkyWalking: this request's segment and the exit span's index in it.
    pub segment_id: &'a str,
    pub sw_span_index: i32,
    pub service: &'a str,
    pub instance: &'a str,
    /// The entry span's operation (the path).
    pub endpoint: &'a str,
    /// The upstream address the attempt goes to.
    pub peer: SocketAddr,
    /// The gateway recorded this request; `false`: only its decision is passed on.
    pub sampled: bool,
    /// W3C trace-flags bit 1 (the trace id is random).
    pub random_trace_id: bool,
}

const SW8: HeaderName = HeaderName::from_static("sw8");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const B3: HeaderName = HeaderName::from_static("b3");
const X_B3_TRACE_ID: HeaderName = HeaderName::from_static(b3::X_B3_TRACE_ID);
const X_B3_SPAN_ID: HeaderName = HeaderName::from_static(b3::X_B3_SPAN_ID);
const X_B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static(b3::X_B3_PARENT_SPAN_ID);
const X_B3_SAMPLED: HeaderName = HeaderName::from_static(b3::X_B3_SAMPLED);

/// The most headers [`inject`] adds (B3's four).
pub const MAX_HEADERS: usize = 4;

/// A header value from text the encoders made (hex digits, base64, dashes): the
/// `String`'s buffer becomes the value's, no copy.
fn value(s: String) -> Option<HeaderValue> {
    HeaderValue::try_from(s).ok()
}

/// Write the provider's headers on the upstream request's header map, replacing
/// incoming ones. Names are constants and the map is edited directly: Pingora's
/// `insert_header` would parse each name and keep its case map in step.
pub fn inject(provider: Option<Provider>, o: &Outgoing<'_>, h: &mut HeaderMap) {
    match provider {
        Some(Provider::SkyWalking) => {
            let sw = sw8::encode(
                o.trace_id,
                o.segment_id,
                o.sw_span_index,
                o.service,
                o.instance,
                o.endpoint,
                &telemetry::trace::socket_addr_text(&o.peer),
                o.sampled,
            );
            if let Some(v) = value(sw) {
                h.insert(SW8, v);
            }
        }
        Some(Provider::Zipkin) => {
            set_b3(h, o.trace_id, o.span_id, Some(o.parent_span_id), o.sampled);
        }
        Some(Provider::OpenTelemetry) | None => {
            set_traceparent(h, o.trace_id, o.span_id, o.sampled, o.random_trace_id);
            if let Some(v) = o.tracestate.and_then(|ts| HeaderValue::from_str(ts).ok()) {
                h.insert(TRACESTATE, v);
            }
        }
    }
}

/// Pass an unsampled new trace's decision upstream (B3 / W3C; see
/// `spans::Started::NotSampled`).
pub fn inject_not_sampled(
    provider: Option<Provider>,
    trace_id: &TraceId,
    span_id: SpanId,
    h: &mut HeaderMap,
) {
    match provider {
        Some(Provider::SkyWalking) => {}
        Some(Provider::Zipkin) => set_b3(h, trace_id, span_id, None, false),
        // Our ids are random.
        Some(Provider::OpenTelemetry) | None => {
            set_traceparent(h, trace_id, span_id, false, true);
        }
    }
}

/// The `x-b3-*` headers, replacing any single `b3` (it would contradict them).
fn set_b3(
    h: &mut HeaderMap,
    trace_id: &TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    sampled: bool,
) {
    let Some(ids) = b3::encode_ids(trace_id, span_id, parent) else {
        return;
    };
    let (trace, span, parent) = ids.values();
    h.insert(X_B3_TRACE_ID, trace);
    h.insert(X_B3_SPAN_ID, span);
    match parent {
        Some(v) => {
            h.insert(X_B3_PARENT_SPAN_ID, v);
        }
        None => {
            h.remove(X_B3_PARENT_SPAN_ID);
        }
    }
    h.insert(
        X_B3_SAMPLED,
        HeaderValue::from_static(if sampled { "1" } else { "0" }),
    );
    if h.contains_key(B3) {
        h.remove(B3);
    }
}

fn set_traceparent(
    h: &mut HeaderMap,
    trace_id: &TraceId,
    span_id: SpanId,
    sampled: bool,
    random_trace_id: bool,
) {
    let mut flags = 0;
    if sampled {
        flags |= w3c::FLAG_SAMPLED;
    }
    if random_trace_id {
        flags |= w3c::FLAG_RANDOM_TRACE_ID;
    }
    if let Some(v) = w3c::encode_with_flags(trace_id, span_id, flags).and_then(value) {
        h.insert(TRACEPARENT, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracestate_headers_join_in_order() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        h.append("tracestate", "a=1".parse().unwrap());
        h.append("tracestate", "b=2,c=3".parse().unwrap());
        let c = extract(Some(Provider::OpenTelemetry), &h).context.unwrap();
        assert_eq!(c.tracestate.as_deref(), Some("a=1,b=2,c=3"));
        assert_eq!(c.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn providers_fall_back_to_other_formats() {
        let mut h = HeaderMap::new();
        h.insert(
            "b3",
            "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"
                .parse()
                .unwrap(),
        );
        for p in [
            Some(Provider::SkyWalking),
            Some(Provider::Zipkin),
            Some(Provider::OpenTelemetry),
        ] {
            let c = extract(p, &h).context.unwrap();
            assert_eq!(c.trace_id.to_string(), "463ac35c9f6413ad48485a3953bb6124");
        }
        h.insert("sw8", "garbage".parse().unwrap());
        assert!(extract(Some(Provider::SkyWalking), &h)
            .context
            .unwrap()
            .sw
            .is_none());
    }
}
