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
use telemetry::trace::{AttrValue, RequestTrace, Span, SpanId, SpanKind, SwParent, TraceId};

use super::flags::ResponseFlags;
use super::propagation;
use crate::controllers::ProviderKind;
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
    server_id: SpanId,
    /// The caller's span (W3C / B3), parent of the server span.
    parent_id: Option<SpanId>,
    sw_parent: Option<SwParent>,
    tracestate: Option<String>,
    /// SkyWalking segment id (empty for other providers).
    segment_id: String,
    start: SystemTime,
    attempts: Vec<Attempt>,
}

/// What the finished server span reports.
pub struct Finish<'a> {
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub url: String,
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

impl RequestSpans {
    /// Read the incoming context in the provider's format and decide; `None` when the
    /// request is not sampled. `started` is when the request began.
    pub fn start(tracer: &Arc<Tracer>, headers: &HeaderMap, started: Instant) -> Option<Box<Self>> {
        let incoming = propagation::extract(tracer.provider, headers);
        let sampled = match &incoming.context {
            Some(c) => tracer.sampler.decide(Some(c)),
            None => tracer.sampler.decide_new(incoming.decision),
        };
        if !sampled {
            return None;
        }
        let (trace_id, parent_id, sw_parent, tracestate) = match incoming.context {
            Some(p) => {
                // An sw8 parent has no 64-bit span id of ours to point at.
                let parent_id = p.sw.is_none().then_some(p.span_id);
                (p.trace_id, parent_id, p.sw, p.tracestate)
            }
            None => (TraceId::random(), None, None, None),
        };
        let segment_id = if tracer.provider == Some(ProviderKind::SkyWalking) {
            format!("{}", TraceId::random())
        } else {
            String::new()
        };
        Some(Box::new(RequestSpans {
            tracer: tracer.clone(),
            trace_id,
            server_id: SpanId::random(),
            parent_id,
            sw_parent,
            tracestate,
            segment_id,
            start: SystemTime::now() - started.elapsed(),
            attempts: Vec::new(),
        }))
    }

    /// The trace id as the access log and exemplars show it.
    pub fn trace_id(&self) -> String {
        self.trace_id.to_string()
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
        let path = req.uri.path().to_string();
        let ctx = propagation::Outgoing {
            trace_id: &self.trace_id,
            span_id: a.id,
            parent_span_id: self.server_id,
            tracestate: self.tracestate.as_deref(),
            segment_id: &self.segment_id,
            sw_span_index: self.attempts.len() as i32,
            service: &self.tracer.service,
            instance: &self.tracer.instance,
            endpoint: &path,
            peer: a.peer,
        };
        propagation::inject(self.tracer.provider, &ctx, req);
    }

    /// End the spans and hand them to the tracer.
    pub fn finish(mut self: Box<Self>, f: &Finish<'_>) {
        let end = SystemTime::now();
        let provider = self.tracer.provider;
        let failed_upstream = f.flags.has(UPSTREAM_FAILURE);
        let last = self.attempts.len().saturating_sub(1);
        let mut spans = Vec::with_capacity(1 + self.attempts.len());
        spans.push(Span {
            span_id: self.server_id,
            parent_span_id: self.parent_id,
            kind: SpanKind::Server,
            name: server_name(provider, f),
            start: self.start,
            end,
            attributes: attributes(provider, f, None),
            error: f.status >= 500 || f.status == 0 || failed_upstream,
            peer: f.peer.map(|p| p.to_string()),
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
                attributes: attributes(provider, f, Some((a.peer, status))),
                error,
                peer: Some(a.peer.to_string()),
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
    }
}

fn server_name(provider: Option<ProviderKind>, f: &Finish<'_>) -> String {
    match provider {
        // SkyWalking's endpoint list: the path, without the query (low cardinality).
        Some(ProviderKind::SkyWalking) => f.path.to_string(),
        Some(ProviderKind::Zipkin) => format!("{} {}", f.method, f.path),
        // OpenTelemetry HTTP server spans: `{method} {http.route}`.
        Some(ProviderKind::OpenTelemetry) | None => match f.route {
            Some(r) => format!("{} {r}", f.method),
            None => f.method.to_string(),
        },
    }
}

fn client_name(provider: Option<ProviderKind>, f: &Finish<'_>) -> String {
    match provider {
        Some(ProviderKind::SkyWalking) => f.path.to_string(),
        Some(ProviderKind::Zipkin) => format!("router {} egress", f.cluster.unwrap_or("-")),
        Some(ProviderKind::OpenTelemetry) | None => f.method.to_string(),
    }
}

type Attrs = Vec<(Cow<'static, str>, AttrValue)>;

/// Tags in the provider's vocabulary: Envoy's for SkyWalking (with its `url` and
/// `status_code` renames) and Zipkin, the stable HTTP semantic conventions for OTLP.
/// `upstream` is a client span's peer and the status it saw.
fn attributes(
    provider: Option<ProviderKind>,
    f: &Finish<'_>,
    upstream: Option<(SocketAddr, Option<u16>)>,
) -> Attrs {
    let s = |v: &str| AttrValue::Str(v.to_string());
    let status = match upstream {
        Some((_, st)) => st.unwrap_or(0),
        None => f.status,
    };
    let otel = matches!(provider, Some(ProviderKind::OpenTelemetry) | None);
    let mut a: Attrs = Vec::with_capacity(10);
    if otel {
        a.push(("http.request.method".into(), s(f.method)));
        a.push(("url.full".into(), s(&f.url)));
        a.push(("url.path".into(), s(f.path)));
        if status != 0 {
            a.push((
                "http.response.status_code".into(),
                AttrValue::Int(status.into()),
            ));
        }
        a.push(("network.protocol.name".into(), s("http")));
        if let Some(r) = f.route.filter(|_| upstream.is_none()) {
            a.push(("http.route".into(), s(r)));
        }
        if let Some((peer, _)) = upstream {
            a.push(("server.address".into(), s(&peer.ip().to_string())));
            a.push(("server.port".into(), AttrValue::Int(peer.port().into())));
        } else if let Some(p) = f.peer {
            a.push(("client.address".into(), s(&p.ip().to_string())));
        }
    } else {
        let sw = provider == Some(ProviderKind::SkyWalking);
        a.push(("http.method".into(), s(f.method)));
        a.push((if sw { "url" } else { "http.url" }.into(), s(&f.url)));
        a.push((
            if sw {
                "status_code"
            } else {
                "http.status_code"
            }
            .into(),
            s(&status.to_string()),
        ));
        a.push(("http.protocol".into(), s(f.protocol)));
        a.push(("component".into(), s("proxy")));
        if let Some((peer, _)) = upstream {
            a.push(("upstream_address".into(), s(&peer.to_string())));
            if !sw {
                a.push(("peer.address".into(), s(&peer.to_string())));
            }
        }
    }
    a.push(("upstream_cluster".into(), s(f.cluster.unwrap_or("-"))));
    a.push(("response_flags".into(), s(&f.flags.render())));
    if let Some(id) = f.request_id {
        a.push(("guid:x-request-id".into(), s(id)));
    }
    a
}
