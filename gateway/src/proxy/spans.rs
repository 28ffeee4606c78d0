//! The spans of one sampled request: a server (SkyWalking entry) span for the
//! downstream request and a client (exit) span per upstream attempt, the context the
//! upstream gets in the provider's format, and the finished [`RequestTrace`].
//!
//! Only sampled requests get one of these; the rest pay one sampling decision.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::HeaderMap;
use pingora_http::RequestHeader;
use telemetry::export::Provider;
use telemetry::trace::{AttrValue, RequestTrace, Span, SpanId, SpanKind, SwParent, TraceId};

use super::flags::ResponseFlags;
use super::propagation;
use crate::tracer::Tracer;

struct Attempt {
    id: SpanId,
    start: SystemTime,
    end: Option<SystemTime>,
    peer: SocketAddr,
    /// Ended without a response (connect failure, reset).
    failed: bool,
}

pub struct RequestSpans {
    tracer: Arc<Tracer>,
    trace_id: TraceId,
    /// `trace_id` as text, formatted once for the stats exemplars and the access log.
    trace_text: String,
    server_id: SpanId,
    /// The caller's span (W3C / B3), parent of the server span.
    parent_id: Option<SpanId>,
    sw_parent: Option<SwParent>,
    tracestate: Option<String>,
    /// SkyWalking segment id (empty for other providers).
    segment_id: String,
    /// W3C trace-flags bit 1: the trace id is random (ours always are).
    random_trace_id: bool,
    start: SystemTime,
    attempts: Vec<Attempt>,
}

/// What the finished server span reports.
pub struct Finish<'a> {
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub url: Arc<str>,
    pub protocol: &'static str,
    pub status: u16,
    pub flags: ResponseFlags,
    pub cluster: Option<&'a str>,
    /// The matched route's path (OpenTelemetry's `http.route`).
    pub route: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub peer: Option<SocketAddr>,
}

/// Failures of the upstream that mark the server span as an error too.
const UPSTREAM_FAILURE: u16 = ResponseFlags::CONNECT_FAILURE
    | ResponseFlags::CONNECTION_TERMINATION
    | ResponseFlags::UPSTREAM_TIMEOUT
    | ResponseFlags::NO_HEALTHY_UPSTREAM
    | ResponseFlags::RETRY_EXHAUSTED;

/// The sampling decision on a request.
pub enum Started {
    Sampled(Box<RequestSpans>),
    /// Not recorded. A new trace still tells the upstream so (B3 `x-b3-sampled: 0`,
    /// W3C flags `00`), so that apps with parent-based samplers follow the gateway's
    /// `sampling` instead of starting traces of their own. A request that came with a
    /// context keeps the caller's headers as they are.
    NotSampled(Option<Box<NotSampled>>),
}

/// The context an unsampled new trace passes upstream.
pub struct NotSampled {
    provider: Option<Provider>,
    trace_id: TraceId,
    span_id: SpanId,
}

impl NotSampled {
    pub fn inject(&self, req: &mut RequestHeader) {
        propagation::inject_not_sampled(self.provider, &self.trace_id, self.span_id, req);
    }
}

/// SkyWalking agents cut operation names at 150 characters (the Java agent's
/// `operation_name_threshold`, the OAP's endpoint name limit).
const SW_OPERATION_MAX: usize = 150;

/// The request path as a SkyWalking operation name.
fn sw_operation(path: &str) -> &str {
    if path.len() <= SW_OPERATION_MAX {
        return path;
    }
    let mut end = SW_OPERATION_MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

impl RequestSpans {
    /// Read the incoming context in the provider's format and decide. `started` is
    /// when the request began.
    pub fn start(tracer: &Arc<Tracer>, headers: &HeaderMap, started: Instant) -> Started {
        let incoming = propagation::extract(tracer.provider, headers);
        let sampled = match &incoming.context {
            Some(c) => tracer.sampler.decide(Some(c)),
            None => tracer.sampler.decide_new(incoming.decision),
        };
        if !sampled {
            // SkyWalking has no "not sampled" carrier worth sending: an `sw8` names a
            // parent segment, and this one is never reported.
            let tell = incoming.context.is_none() && tracer.provider != Some(Provider::SkyWalking);
            return Started::NotSampled(tell.then(|| {
                Box::new(NotSampled {
                    provider: tracer.provider,
                    trace_id: TraceId::random(),
                    span_id: SpanId::random(),
                })
            }));
        }
        // A trace we start has a random id; a W3C parent says whether its id is.
        let random_trace_id = incoming.context.is_none() || incoming.random_trace_id;
        let (trace_id, parent_id, sw_parent, tracestate) = match incoming.context {
            Some(p) => {
                // An sw8 parent has no 64-bit span id of ours to point at.
                let parent_id = p.sw.is_none().then_some(p.span_id);
                (p.trace_id, parent_id, p.sw, p.tracestate)
            }
            None => (TraceId::random(), None, None, None),
        };
        let segment_id = if tracer.provider == Some(Provider::SkyWalking) {
            TraceId::random().to_text()
        } else {
            String::new()
        };
        Started::Sampled(Box::new(RequestSpans {
            tracer: tracer.clone(),
            trace_text: trace_id.to_text(),
            trace_id,
            server_id: SpanId::random(),
            parent_id,
            sw_parent,
            tracestate,
            segment_id,
            random_trace_id,
            start: SystemTime::now() - started.elapsed(),
            attempts: Vec::new(),
        }))
    }

    /// The trace id as the access log and exemplars show it.
    pub fn trace_id(&self) -> &str {
        &self.trace_text
    }

    /// An upstream attempt begins; one before it that did not finish has failed.
    pub fn begin_attempt(&mut self, peer: SocketAddr) {
        let now = SystemTime::now();
        if let Some(prev) = self.attempts.last_mut() {
            if prev.end.is_none() {
                prev.end = Some(now);
                prev.failed = true;
            }
        }
        self.attempts.push(Attempt {
            id: SpanId::random(),
            start: now,
            end: None,
            peer,
            failed: false,
        });
    }

    /// The current attempt's response is complete.
    pub fn attempt_done(&mut self) {
        if let Some(a) = self.attempts.last_mut() {
            a.end.get_or_insert_with(SystemTime::now);
        }
    }

    /// Write the context the upstream gets (the current attempt's span as parent).
    pub fn inject(&self, req: &mut RequestHeader) {
        let Some(a) = self.attempts.last() else {
            return;
        };
        // Only `sw8` carries the endpoint (copied: `req` is written below).
        let endpoint = if self.tracer.provider == Some(Provider::SkyWalking) {
            sw_operation(req.uri.path()).to_string()
        } else {
            String::new()
        };
        let ctx = propagation::Outgoing {
            trace_id: &self.trace_id,
            span_id: a.id,
            parent_span_id: self.server_id,
            tracestate: self.tracestate.as_deref(),
            segment_id: &self.segment_id,
            sw_span_index: self.attempts.len() as i32,
            service: &self.tracer.service,
            instance: &self.tracer.instance,
            endpoint: &endpoint,
            peer: a.peer,
            sampled: true,
            random_trace_id: self.random_trace_id,
        };
        propagation::inject(self.tracer.provider, &ctx, req);
    }

    /// End the spans and hand them to the tracer; returns the trace id's text.
    pub fn finish(mut self: Box<Self>, f: &Finish<'_>) -> String {
        let end = SystemTime::now();
        let provider = self.tracer.provider;
        let failed_upstream = f.flags.has(UPSTREAM_FAILURE);
        let last = self.attempts.len().saturating_sub(1);
        let common = Common::new(f);
        let mut spans = Vec::with_capacity(1 + self.attempts.len());
        spans.push(Span {
            span_id: self.server_id,
            parent_span_id: self.parent_id,
            kind: SpanKind::Server,
            name: server_name(provider, f),
            start: self.start,
            end,
            attributes: attributes(provider, f, &common, None),
            error: f.status >= 500 || f.status == 0 || failed_upstream,
            peer: f.peer,
        });
        for (i, a) in std::mem::take(&mut self.attempts).into_iter().enumerate() {
            // Only the last attempt saw the response that went downstream.
            let status = if i == last && !a.failed {
                Some(f.status)
            } else {
                None
            };
            let error = a.failed || status.is_none_or(|s| s >= 500 || s == 0);
            spans.push(Span {
                span_id: a.id,
                parent_span_id: Some(self.server_id),
                kind: SpanKind::Client,
                name: client_name(provider, f),
                start: a.start,
                end: a.end.unwrap_or(end),
                attributes: attributes(provider, f, &common, Some((a.peer, status))),
                error,
                peer: Some(a.peer),
            });
        }
        let trace = RequestTrace {
            trace_id: self.trace_id.clone(),
            segment_id: std::mem::take(&mut self.segment_id),
            spans,
            sw_parent: self.sw_parent.take(),
            tracestate: self.tracestate.take(),
        };
        self.tracer.submit(trace);
        std::mem::take(&mut self.trace_text)
    }
}

fn server_name(provider: Option<Provider>, f: &Finish<'_>) -> String {
    match provider {
        // SkyWalking's endpoint list: the path, without the query (low cardinality).
        Some(Provider::SkyWalking) => sw_operation(f.path).to_string(),
        Some(Provider::Zipkin) => [f.method, " ", f.path].concat(),
        // OpenTelemetry HTTP server spans: `{method} {http.route}`.
        Some(Provider::OpenTelemetry) | None => match f.route {
            Some(r) => [f.method, " ", r].concat(),
            None => f.method.to_string(),
        },
    }
}

fn client_name(provider: Option<Provider>, f: &Finish<'_>) -> String {
    match provider {
        Some(Provider::SkyWalking) => sw_operation(f.path).to_string(),
        Some(Provider::Zipkin) => ["router ", f.cluster.unwrap_or("-"), " egress"].concat(),
        Some(Provider::OpenTelemetry) | None => f.method.to_string(),
    }
}

type Attrs = Vec<(Cow<'static, str>, AttrValue)>;

/// Values shared by a request's spans, made once per request.
struct Common {
    method: AttrValue,
    cluster: AttrValue,
    flags: AttrValue,
    request_id: Option<AttrValue>,
}

impl Common {
    fn new(f: &Finish<'_>) -> Self {
        Common {
            method: match known_method(f.method) {
                Some(m) => AttrValue::Str(Cow::Borrowed(m)),
                None => AttrValue::Shared(f.method.into()),
            },
            cluster: match f.cluster {
                Some(c) => AttrValue::Shared(c.into()),
                None => AttrValue::Str(Cow::Borrowed("-")),
            },
            flags: match f.flags.render() {
                Cow::Borrowed(b) => AttrValue::Str(Cow::Borrowed(b)),
                Cow::Owned(o) => AttrValue::Shared(o.into()),
            },
            request_id: f.request_id.map(|id| AttrValue::Shared(id.into())),
        }
    }
}

/// The usual methods, as literals (no allocation).
fn known_method(m: &str) -> Option<&'static str> {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];
    KNOWN.iter().find(|k| **k == m).copied()
}

/// Tags in the provider's vocabulary: Envoy's for SkyWalking (with its `url` and
/// `status_code` renames) and Zipkin, the stable HTTP semantic conventions for OTLP.
/// `upstream` is a client span's peer and the status it saw.
fn attributes(
    provider: Option<Provider>,
    f: &Finish<'_>,
    c: &Common,
    upstream: Option<(SocketAddr, Option<u16>)>,
) -> Attrs {
    let fixed = |v: &'static str| AttrValue::Str(Cow::Borrowed(v));
    let url = || AttrValue::Shared(f.url.clone());
    let status = match upstream {
        Some((_, st)) => st.unwrap_or(0),
        None => f.status,
    };
    let otel = matches!(provider, Some(Provider::OpenTelemetry) | None);
    let mut a: Attrs = Vec::with_capacity(10);
    a.push((
        if otel {
            "http.request.method"
        } else {
            "http.method"
        }
        .into(),
        c.method.clone(),
    ));
    if otel {
        a.push(("url.full".into(), url()));
        a.push((
            "url.path".into(),
            AttrValue::Str(Cow::Owned(f.path.to_string())),
        ));
        if status != 0 {
            a.push((
                "http.response.status_code".into(),
                AttrValue::Int(status.into()),
            ));
        }
        a.push(("network.protocol.name".into(), fixed("http")));
        if let Some(r) = f.route.filter(|_| upstream.is_none()) {
            a.push((
                "http.route".into(),
                AttrValue::Str(Cow::Owned(r.to_string())),
            ));
        }
        if let Some((peer, _)) = upstream {
            a.push(("server.address".into(), AttrValue::Ip(peer.ip())));
            a.push(("server.port".into(), AttrValue::Int(peer.port().into())));
        } else if let Some(p) = f.peer {
            a.push(("client.address".into(), AttrValue::Ip(p.ip())));
        }
    } else {
        let sw = provider == Some(Provider::SkyWalking);
        a.push((if sw { "url" } else { "http.url" }.into(), url()));
        // Text in both vocabularies; the exporters write the number as a string.
        a.push((
            if sw {
                "status_code"
            } else {
                "http.status_code"
            }
            .into(),
            AttrValue::Int(status.into()),
        ));
        a.push(("http.protocol".into(), fixed(f.protocol)));
        a.push(("component".into(), fixed("proxy")));
        if let Some((peer, _)) = upstream {
            if !sw {
                a.push(("peer.address".into(), AttrValue::Addr(peer)));
            }
            a.push(("upstream_address".into(), AttrValue::Addr(peer)));
        }
    }
    a.push(("upstream_cluster".into(), c.cluster.clone()));
    a.push(("response_flags".into(), c.flags.clone()));
    if let Some(id) = &c.request_id {
        a.push(("guid:x-request-id".into(), id.clone()));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sw_operation_is_cut_at_150_bytes_on_a_char_boundary() {
        assert_eq!(sw_operation("/a/b"), "/a/b");
        let long = format!("/{}", "x".repeat(200));
        assert_eq!(sw_operation(&long).len(), 150);
        // "é" is two bytes: 149 ASCII bytes then "é" straddles the limit.
        let straddle = format!("/{}é/rest", "y".repeat(148));
        assert_eq!(sw_operation(&straddle), format!("/{}", "y".repeat(148)));
    }
}
