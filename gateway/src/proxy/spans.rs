//! The spans of one sampled request: a server (SkyWalking entry) span for the
//! downstream request and a client (exit) span per upstream attempt, the context the
//! upstream gets in the provider's format, and the finished [`RequestTrace`].
//!
//! Only sampled requests get one of these; the rest pay one sampling decision.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderValue};
use smallvec::SmallVec;
use telemetry::export::Provider;
use telemetry::trace::{
    sw_operation, HttpFacts, Phase, RequestTrace, Span, SpanId, SpanKind, SwParent, TraceId,
};

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
    /// `trace_id` as text, formatted once for the stats exemplars and the access log,
    /// when one of them asks.
    trace_text: OnceLock<String>,
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
    /// Held inline: nearly every request makes one attempt.
    attempts: SmallVec<[Attempt; 1]>,
    /// The plugin chain's phases, timed (for the console's waterfall).
    phases: Vec<Phase>,
    /// `false`: sampled, and its context goes upstream as such, but the exporter had
    /// no room when it started (queue full, collector refusing): its spans are counted as dropped at the end
    /// instead of being built only to be dropped.
    record: bool,
}

/// What the finished server span reports: shared handles, nothing formatted (the
/// exporter makes names and tags of them).
pub struct Finish<'a> {
    pub method: http::Method,
    /// `scheme://host/path?query`.
    pub url: Arc<str>,
    /// Where the path (without the query) is within `url`.
    pub path: Range<usize>,
    pub protocol: &'static str,
    pub status: u16,
    pub flags: ResponseFlags,
    pub cluster: Option<Arc<str>>,
    /// The matched route's path (OpenTelemetry's `http.route`).
    pub route: Option<&'a str>,
    /// The matched route's name.
    pub route_name: Option<Arc<str>>,
    pub request_id: Option<HeaderValue>,
    pub peer: Option<SocketAddr>,
}

/// Failures of the upstream that mark the server span as an error too.
const UPSTREAM_FAILURE: u16 = ResponseFlags::CONNECT_FAILURE
    | ResponseFlags::CONNECTION_TERMINATION
    | ResponseFlags::UPSTREAM_REMOTE_RESET
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
    pub fn inject(&self, h: &mut HeaderMap) {
        propagation::inject_not_sampled(self.provider, &self.trace_id, self.span_id, h);
    }
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
        let record = tracer.has_room();
        Started::Sampled(Box::new(RequestSpans {
            tracer: tracer.clone(),
            trace_text: OnceLock::new(),
            trace_id,
            server_id: SpanId::random(),
            parent_id,
            sw_parent,
            tracestate,
            segment_id,
            random_trace_id,
            // An unrecorded request needs its ids (they go upstream), not its times.
            start: if record {
                SystemTime::now() - started.elapsed()
            } else {
                SystemTime::UNIX_EPOCH
            },
            attempts: SmallVec::new(),
            phases: Vec::new(),
            record,
        }))
    }

    /// Whether the spans will be built and submitted at the end (see `record`).
    pub fn records(&self) -> bool {
        self.record
    }

    /// A request that is not recorded ends: its spans count as dropped. Its trace id's
    /// text if `text` (for the access log).
    pub fn drop_unrecorded(mut self: Box<Self>, text: bool) -> Option<String> {
        self.tracer.dropped(1 + self.attempts.len() as u64);
        text.then(|| self.take_text())
    }

    /// The trace id as the access log and exemplars show it.
    pub fn trace_id(&self) -> &str {
        self.trace_text.get_or_init(|| self.trace_id.to_text())
    }

    fn take_text(&mut self) -> String {
        self.trace_text
            .take()
            .unwrap_or_else(|| self.trace_id.to_text())
    }

    /// An upstream attempt begins; one before it that did not finish has failed.
    pub fn begin_attempt(&mut self, peer: SocketAddr) {
        // An unrecorded request needs the attempt's id (it goes upstream), not its times.
        let now = if self.record {
            SystemTime::now()
        } else {
            SystemTime::UNIX_EPOCH
        };
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
    /// A step of the gateway's own that ran from `start` until now.
    pub fn phase(&mut self, name: &'static str, start: SystemTime) {
        if self.record {
            self.phases.push(Phase {
                name,
                start,
                end: SystemTime::now(),
            });
        }
    }

    pub fn attempt_done(&mut self) {
        if !self.record {
            return;
        }
        if let Some(a) = self.attempts.last_mut() {
            a.end.get_or_insert_with(SystemTime::now);
        }
    }

    /// Write the context the upstream gets (the current attempt's span as parent) into
    /// its headers `h`; `path` is its path (`sw8` carries it as the endpoint).
    pub fn inject(&self, h: &mut HeaderMap, path: &str) {
        let Some(a) = self.attempts.last() else {
            return;
        };
        let endpoint = if self.tracer.provider == Some(Provider::SkyWalking) {
            sw_operation(path)
        } else {
            ""
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
            endpoint,
            peer: a.peer,
            sampled: true,
            random_trace_id: self.random_trace_id,
        };
        propagation::inject(self.tracer.provider, &ctx, h);
    }

    /// End the spans and hand them to the tracer; returns the trace id's text.
    pub fn finish(mut self: Box<Self>, f: Finish<'_>) -> String {
        let end = SystemTime::now();
        let provider = self.tracer.provider;
        let failed_upstream = f.flags.has(UPSTREAM_FAILURE);
        let last = self.attempts.len().saturating_sub(1);
        let mut spans = Vec::with_capacity(1 + self.attempts.len());
        spans.push(Span {
            span_id: self.server_id,
            parent_span_id: self.parent_id,
            kind: SpanKind::Server,
            name: String::new(),
            start: self.start,
            end,
            attributes: Vec::new(),
            status: f.status,
            error: f.status >= 500 || f.status == 0 || failed_upstream,
            peer: f.peer,
        });
        for (i, a) in std::mem::take(&mut self.attempts).into_iter().enumerate() {
            // Only the last attempt saw the response that went downstream.
            let status = if i == last && !a.failed { f.status } else { 0 };
            spans.push(Span {
                span_id: a.id,
                parent_span_id: Some(self.server_id),
                kind: SpanKind::Client,
                name: String::new(),
                start: a.start,
                end: a.end.unwrap_or(end),
                attributes: Vec::new(),
                status,
                error: a.failed || status >= 500 || status == 0,
                peer: Some(a.peer),
            });
        }
        let otel_naming = matches!(provider, Some(Provider::OpenTelemetry) | None);
        let trace = RequestTrace {
            trace_id: self.trace_id.clone(),
            segment_id: std::mem::take(&mut self.segment_id),
            spans,
            sw_parent: self.sw_parent.take(),
            tracestate: self.tracestate.take(),
            phases: std::mem::take(&mut self.phases),
            http: Some(HttpFacts {
                provider,
                method: f.method,
                url: f.url,
                path: f.path,
                protocol: f.protocol,
                status: f.status,
                flags: f.flags.render(),
                cluster: f.cluster,
                // Only OpenTelemetry tags it.
                route: f.route.filter(|_| otel_naming).map(Arc::from),
                route_name: f.route_name,
                request_id: f.request_id,
                peer: f.peer,
            }),
        };
        self.tracer.submit(trace);
        self.take_text()
    }
}
