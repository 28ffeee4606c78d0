//! Which trace headers a provider reads and writes (the table in docs/tracing.md): SkyWalking
//! reads `sw8` (then `traceparent`, `b3` ids as a fallback) and writes `sw8`; Zipkin
//! reads `b3` / `x-b3-*` (then `traceparent`) and writes `x-b3-*`; OpenTelemetry (and
//! the demo's tracer) reads `traceparent` + `tracestate` (then `b3`) and writes
//! `traceparent`, passing `tracestate` on. A malformed header is as good as none: the
//! request starts a new trace.

use std::borrow::Cow;
use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue};
use pingora_http::RequestHeader;
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

/// Write the provider's headers on the upstream request, replacing incoming ones.
pub fn inject(provider: Option<Provider>, o: &Outgoing<'_>, req: &mut RequestHeader) {
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
            let _ = req.insert_header("sw8", sw);
        }
        Some(Provider::Zipkin) => {
            set_b3(
                req,
                o.trace_id,
                o.span_id,
                Some(o.parent_span_id),
                o.sampled,
            );
        }
        Some(Provider::OpenTelemetry) | None => {
            set_traceparent(req, o.trace_id, o.span_id, o.sampled, o.random_trace_id);
            if let Some(ts) = o.tracestate {
                let _ = req.insert_header("tracestate", ts.to_string());
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
    req: &mut RequestHeader,
) {
    match provider {
        Some(Provider::SkyWalking) => {}
        Some(Provider::Zipkin) => set_b3(req, trace_id, span_id, None, false),
        // Our ids are random.
        Some(Provider::OpenTelemetry) | None => {
            set_traceparent(req, trace_id, span_id, false, true);
        }
    }
}

/// The `x-b3-*` headers, replacing any single `b3` (it would contradict them).
fn set_b3(
    req: &mut RequestHeader,
    trace_id: &TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    sampled: bool,
) {
    for (name, value) in b3::encode_multi(trace_id, span_id, parent, sampled)
        .into_iter()
        .flatten()
    {
        let _ = match value {
            // `x-b3-sampled`: a literal, no copy.
            Cow::Borrowed(v) => req.insert_header(name, HeaderValue::from_static(v)),
            Cow::Owned(v) => req.insert_header(name, v),
        };
    }
    let _ = req.remove_header("b3");
}

fn set_traceparent(
    req: &mut RequestHeader,
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
    if let Some(tp) = w3c::encode_with_flags(trace_id, span_id, flags) {
        let _ = req.insert_header("traceparent", tp);
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
