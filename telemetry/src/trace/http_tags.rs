//! A request's facts, and the span names and tags each provider makes of them: Envoy's
//! vocabulary for SkyWalking (with its `url` and `status_code` renames) and Zipkin,
//! the stable HTTP semantic conventions for OpenTelemetry.
//!
//! The gateway records the facts once per sampled request (shared handles, no
//! formatting); the exporters call [`RequestTrace::span_name`] and
//! [`RequestTrace::for_each_tag`] on their own thread as they write the spans out, so
//! no tag list is built, copied or freed on the request path.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;

use http::{HeaderValue, Method};

use super::provider::Provider;
use super::span::{push_ipv4, socket_addr_text, RequestTrace, Span, SpanKind};

/// What a sampled request's spans are named and tagged from.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpFacts {
    /// Whose vocabulary the names and tags follow (`None`: the demo's tracer, named as
    /// OpenTelemetry names).
    pub provider: Option<Provider>,
    pub method: Method,
    /// `scheme://host/path?query`, as the request arrived.
    pub url: Arc<str>,
    /// Where the path (without the query) is within `url`.
    pub path: Range<usize>,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// The status sent downstream (0: none was).
    pub status: u16,
    /// Envoy's response flags as its access log prints them (`-` for none).
    pub flags: Cow<'static, str>,
    /// The upstream cluster (`None`: the request was not routed to one).
    pub cluster: Option<Arc<str>>,
    /// The matched route's path (OpenTelemetry's `http.route`; left out for the other
    /// providers, which do not tag it).
    pub route: Option<Arc<str>>,
    /// The matched route's name (the console's filter; no provider tags it).
    pub route_name: Option<Arc<str>>,
    pub request_id: Option<HeaderValue>,
    /// The downstream peer.
    pub peer: Option<SocketAddr>,
}

impl HttpFacts {
    /// The request path, without the query.
    pub fn path(&self) -> &str {
        self.url.get(self.path.clone()).unwrap_or("/")
    }
}

/// A tag value, borrowed from the trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tag<'a> {
    /// A literal of the gateway's own: plain text with nothing to escape in JSON.
    Lit(&'static str),
    /// Any other text.
    Text(&'a str),
    Int(i64),
    Bool(bool),
    /// An endpoint, as text `ip:port` (`[v6]:port`).
    Addr(SocketAddr),
    /// An address, as text.
    Ip(IpAddr),
}

impl Tag<'_> {
    /// The value as text (what SkyWalking's and Zipkin's string tags carry).
    pub fn text(&self) -> Cow<'_, str> {
        match *self {
            Tag::Lit(s) => Cow::Borrowed(s),
            Tag::Text(s) => Cow::Borrowed(s),
            Tag::Int(i) => Cow::Owned(itoa::Buffer::new().format(i).to_owned()),
            Tag::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            Tag::Addr(a) => Cow::Owned(socket_addr_text(&a)),
            Tag::Ip(IpAddr::V4(ip)) => {
                let mut s = String::with_capacity(15);
                push_ipv4(&mut s, ip);
                Cow::Owned(s)
            }
            Tag::Ip(ip) => Cow::Owned(ip.to_string()),
        }
    }
}

/// SkyWalking agents cut operation names at 150 characters (the Java agent's
/// `operation_name_threshold`, the OAP's endpoint name limit).
const SW_OPERATION_MAX: usize = 150;

/// The request path as a SkyWalking operation name (also `sw8`'s endpoint).
pub fn sw_operation(path: &str) -> &str {
    if path.len() <= SW_OPERATION_MAX {
        return path;
    }
    let mut end = SW_OPERATION_MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

impl RequestTrace {
    /// Span `s`'s name in the provider's vocabulary.
    pub fn span_name<'a>(&'a self, s: &'a Span) -> Cow<'a, str> {
        match self.span_name_parts(s) {
            [one, "", ""] => Cow::Borrowed(one),
            parts => Cow::Owned(parts.concat()),
        }
    }

    /// [`Self::span_name`] as the pieces it is made of, for an encoder that writes them
    /// one after the other instead of allocating the name.
    pub fn span_name_parts<'a>(&'a self, s: &'a Span) -> [&'a str; 3] {
        let Some(f) = &self.http else {
            return [&s.name, "", ""];
        };
        let method = f.method.as_str();
        match (f.provider, s.kind) {
            // SkyWalking's endpoint list: the path, without the query (low cardinality).
            (Some(Provider::SkyWalking), _) => [sw_operation(f.path()), "", ""],
            (Some(Provider::Zipkin), SpanKind::Server) => [method, " ", f.path()],
            (Some(Provider::Zipkin), SpanKind::Client) => {
                ["router ", f.cluster.as_deref().unwrap_or("-"), " egress"]
            }
            // OpenTelemetry HTTP server spans: `{method} {http.route}`.
            (_, SpanKind::Server) => match &f.route {
                Some(r) => [method, " ", r],
                None => [method, "", ""],
            },
            (_, SpanKind::Client) => [method, "", ""],
        }
    }

    /// Every tag of span `s`, in order: its own (`attributes`, then what only this
    /// span of the trace has), then those every span of the trace shares.
    pub fn for_each_tag<'a>(&'a self, s: &'a Span, mut tag: impl FnMut(&'a str, Tag<'a>)) {
        self.for_each_own_tag(s, &mut tag);
        self.for_each_shared_tag(tag);
    }

    /// The tags of span `s` that the trace's other spans do not share: its
    /// `attributes`, then its status and peer.
    pub fn for_each_own_tag<'a>(&'a self, s: &'a Span, mut tag: impl FnMut(&'a str, Tag<'a>)) {
        for (k, v) in &s.attributes {
            tag(k, v.as_tag());
        }
        if let Some(f) = &self.http {
            own_tags(f, s, tag);
        }
    }

    /// The tags every span of the trace carries alike (the request's method, URL,
    /// cluster, ...): an exporter may write them once per trace and copy them.
    pub fn for_each_shared_tag<'a>(&'a self, tag: impl FnMut(&'a str, Tag<'a>)) {
        if let Some(f) = &self.http {
            shared_tags(f, tag);
        }
    }
}

fn own_tags<'a>(f: &'a HttpFacts, s: &'a Span, mut tag: impl FnMut(&'a str, Tag<'a>)) {
    let client = s.kind == SpanKind::Client;
    let status = if client { s.status } else { f.status };
    match f.provider {
        Some(p @ (Provider::SkyWalking | Provider::Zipkin)) => {
            let sw = p == Provider::SkyWalking;
            // Text in both vocabularies; the exporters write the number as a string.
            tag(
                if sw {
                    "status_code"
                } else {
                    "http.status_code"
                },
                Tag::Int(status.into()),
            );
            if let (true, Some(peer)) = (client, s.peer) {
                if !sw {
                    tag("peer.address", Tag::Addr(peer));
                }
                tag("upstream_address", Tag::Addr(peer));
            }
        }
        Some(Provider::OpenTelemetry) | None => {
            if status != 0 {
                tag("http.response.status_code", Tag::Int(status.into()));
            }
            if client {
                if let Some(peer) = s.peer {
                    tag("server.address", Tag::Ip(peer.ip()));
                    tag("server.port", Tag::Int(peer.port().into()));
                }
            } else {
                if let Some(r) = &f.route {
                    tag("http.route", Tag::Text(r));
                }
                if let Some(p) = f.peer {
                    tag("client.address", Tag::Ip(p.ip()));
                }
            }
        }
    }
}

fn shared_tags<'a>(f: &'a HttpFacts, mut tag: impl FnMut(&'a str, Tag<'a>)) {
    let method = Tag::Text(f.method.as_str());
    let url = Tag::Text(&f.url);
    match f.provider {
        Some(p @ (Provider::SkyWalking | Provider::Zipkin)) => {
            let sw = p == Provider::SkyWalking;
            tag("http.method", method);
            tag(if sw { "url" } else { "http.url" }, url);
            tag("http.protocol", Tag::Lit(f.protocol));
            tag("component", Tag::Lit("proxy"));
        }
        Some(Provider::OpenTelemetry) | None => {
            tag("http.request.method", method);
            tag("url.full", url);
            tag("url.path", Tag::Text(f.path()));
            tag("network.protocol.name", Tag::Lit("http"));
        }
    }
    tag(
        "upstream_cluster",
        match &f.cluster {
            Some(c) => Tag::Text(c),
            None => Tag::Lit("-"),
        },
    );
    tag(
        "response_flags",
        match &f.flags {
            Cow::Borrowed(b) => Tag::Lit(b),
            Cow::Owned(o) => Tag::Text(o),
        },
    );
    if let Some(id) = f.request_id.as_ref().and_then(|v| v.to_str().ok()) {
        tag("guid:x-request-id", Tag::Text(id));
    }
}

/// The facts the tests of the tags and of the exporters' encodings share: a POST whose
/// URL has a query, a cluster, a route, flags and a request id.
#[cfg(test)]
pub(crate) fn sample_facts(provider: Option<Provider>) -> HttpFacts {
    HttpFacts {
        provider,
        method: Method::POST,
        path: 19..27,
        url: "http://shop.example/items/7?color=red".into(),
        protocol: "HTTP/1.1",
        status: 503,
        flags: Cow::Borrowed("UF"),
        cluster: Some("outbound|80||shop.default.svc.cluster.local".into()),
        route: Some("/items".into()),
        route_name: None,
        request_id: Some(HeaderValue::from_static("req-1")),
        peer: Some("10.1.2.3:5000".parse().unwrap()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::trace::{SpanId, TraceId};

    #[test]
    fn sw_operation_is_cut_at_150_bytes_on_a_char_boundary() {
        assert_eq!(sw_operation("/a/b"), "/a/b");
        let long = format!("/{}", "x".repeat(200));
        assert_eq!(sw_operation(&long).len(), 150);
        // "é" is two bytes: 149 ASCII bytes then "é" straddles the limit.
        let straddle = format!("/{}é/rest", "y".repeat(148));
        assert_eq!(sw_operation(&straddle), format!("/{}", "y".repeat(148)));
    }

    fn trace(provider: Option<Provider>) -> RequestTrace {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let server = SpanId(1);
        let span = |kind, id, status, peer: &str| Span {
            span_id: SpanId(id),
            parent_span_id: (kind == SpanKind::Client).then_some(server),
            kind,
            name: String::new(),
            start: t0,
            end: t0 + Duration::from_millis(3),
            attributes: Vec::new(),
            status,
            error: false,
            peer: Some(peer.parse().unwrap()),
        };
        RequestTrace {
            trace_id: TraceId::Hex(7),
            segment_id: String::new(),
            spans: vec![
                span(SpanKind::Server, 1, 0, "10.1.2.3:5000"),
                span(SpanKind::Client, 2, 502, "10.0.0.9:8080"),
            ],
            sw_parent: None,
            tracestate: None,
            http: Some(sample_facts(provider)),
            phases: Vec::new(),
        }
    }

    fn tags(t: &RequestTrace, i: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        t.for_each_tag(&t.spans[i], |k, v| {
            out.push((k.to_string(), v.text().into_owned()))
        });
        out
    }

    fn has(tags: &[(String, String)], k: &str, v: &str) -> bool {
        tags.iter().any(|(a, b)| a == k && b == v)
    }

    #[test]
    fn zipkin_names_and_tags_as_envoy() {
        let t = trace(Some(Provider::Zipkin));
        assert_eq!(t.http.as_ref().unwrap().path(), "/items/7");
        assert_eq!(t.span_name(&t.spans[0]), "POST /items/7");
        assert_eq!(
            t.span_name(&t.spans[1]),
            "router outbound|80||shop.default.svc.cluster.local egress"
        );
        let server = tags(&t, 0);
        for (k, v) in [
            ("http.method", "POST"),
            ("http.url", "http://shop.example/items/7?color=red"),
            ("http.status_code", "503"),
            ("http.protocol", "HTTP/1.1"),
            ("component", "proxy"),
            (
                "upstream_cluster",
                "outbound|80||shop.default.svc.cluster.local",
            ),
            ("response_flags", "UF"),
            ("guid:x-request-id", "req-1"),
        ] {
            assert!(has(&server, k, v), "{k}={v} in {server:?}");
        }
        assert!(!server.iter().any(|(k, _)| k == "peer.address"));
        let client = tags(&t, 1);
        assert!(has(&client, "http.status_code", "502"), "{client:?}");
        assert!(has(&client, "peer.address", "10.0.0.9:8080"));
        assert!(has(&client, "upstream_address", "10.0.0.9:8080"));
    }

    #[test]
    fn skywalking_renames_url_and_status_and_names_by_path() {
        let t = trace(Some(Provider::SkyWalking));
        assert_eq!(t.span_name(&t.spans[0]), "/items/7");
        assert_eq!(t.span_name(&t.spans[1]), "/items/7");
        let client = tags(&t, 1);
        assert!(has(&client, "url", "http://shop.example/items/7?color=red"));
        assert!(has(&client, "status_code", "502"));
        assert!(has(&client, "upstream_address", "10.0.0.9:8080"));
        assert!(!client
            .iter()
            .any(|(k, _)| k == "peer.address" || k == "http.url"));
    }

    #[test]
    fn opentelemetry_follows_the_http_semantic_conventions() {
        for p in [Some(Provider::OpenTelemetry), None] {
            let t = trace(p);
            assert_eq!(t.span_name(&t.spans[0]), "POST /items");
            assert_eq!(t.span_name(&t.spans[1]), "POST");
            let server = tags(&t, 0);
            for (k, v) in [
                ("http.request.method", "POST"),
                ("url.full", "http://shop.example/items/7?color=red"),
                ("url.path", "/items/7"),
                ("http.response.status_code", "503"),
                ("network.protocol.name", "http"),
                ("http.route", "/items"),
                ("client.address", "10.1.2.3"),
            ] {
                assert!(has(&server, k, v), "{k}={v} in {server:?}");
            }
            let client = tags(&t, 1);
            assert!(has(&client, "server.address", "10.0.0.9"));
            assert!(has(&client, "server.port", "8080"));
            assert!(has(&client, "http.response.status_code", "502"));
            assert!(!client.iter().any(|(k, _)| k == "http.route"));
        }
    }

    #[test]
    fn a_client_span_without_a_response_has_no_otel_status_and_zipkin_status_0() {
        let mut t = trace(Some(Provider::OpenTelemetry));
        t.spans[1].status = 0;
        assert!(!tags(&t, 1)
            .iter()
            .any(|(k, _)| k == "http.response.status_code"));
        t.http.as_mut().unwrap().provider = Some(Provider::Zipkin);
        assert!(has(&tags(&t, 1), "http.status_code", "0"));
    }

    #[test]
    fn own_attributes_come_first_and_spans_without_facts_keep_their_name() {
        let mut t = trace(Some(Provider::Zipkin));
        t.spans[0]
            .attributes
            .push((Cow::Borrowed("custom"), super::super::AttrValue::Bool(true)));
        assert_eq!(tags(&t, 0)[0], ("custom".into(), "true".into()));
        t.http = None;
        t.spans[0].name = "kept".into();
        assert_eq!(t.span_name(&t.spans[0]), "kept");
        assert_eq!(tags(&t, 0).len(), 1);
    }
}
