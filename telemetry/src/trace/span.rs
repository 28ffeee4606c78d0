//! Finished spans, as the exporters take them: one [`RequestTrace`] per sampled
//! request, holding its server span and a client span per upstream attempt.
//!
//! A request's spans carry raw facts (ids, times, the status, and the request's
//! [`HttpFacts`] once per trace); names and tags in the provider's vocabulary are
//! made from them only when an exporter writes the spans out, on its own thread
//! ([`RequestTrace::span_name`], [`RequestTrace::for_each_tag`]).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use super::context::SwParent;
use super::http_tags::{HttpFacts, Tag};
use super::ids::{SpanId, TraceId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// The downstream request (SkyWalking entry span).
    Server,
    /// One upstream attempt (SkyWalking exit span).
    Client,
}

/// A tag value. The variants beyond text and numbers keep the request path free of
/// formatting and copies: a sampled request's spans are built on the worker thread,
/// while the exporters write the values out on their own.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// Borrowed for the fixed values (`"proxy"`, `"HTTP/1.1"`): no allocation per span.
    /// A borrowed value (like every borrowed key) must be plain text with nothing to
    /// escape in JSON: exporters write it as it is.
    Str(Cow<'static, str>),
    /// Text several spans of a request carry (the URL, the cluster): one copy.
    Shared(Arc<str>),
    Int(i64),
    Bool(bool),
    /// An endpoint, as text `ip:port` (`[v6]:port`).
    Addr(SocketAddr),
    /// An address, as text.
    Ip(IpAddr),
}

impl AttrValue {
    /// The value as a [`Tag`], borrowed.
    pub fn as_tag(&self) -> Tag<'_> {
        match self {
            AttrValue::Str(Cow::Borrowed(s)) => Tag::Lit(s),
            AttrValue::Str(Cow::Owned(s)) => Tag::Text(s),
            AttrValue::Shared(s) => Tag::Text(s),
            AttrValue::Int(i) => Tag::Int(*i),
            AttrValue::Bool(b) => Tag::Bool(*b),
            AttrValue::Addr(a) => Tag::Addr(*a),
            AttrValue::Ip(ip) => Tag::Ip(*ip),
        }
    }

    /// The value as text (what SkyWalking's and Zipkin's string tags carry).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            AttrValue::Str(s) => Cow::Borrowed(s),
            AttrValue::Shared(s) => Cow::Borrowed(s),
            AttrValue::Int(i) => Cow::Owned(itoa::Buffer::new().format(*i).to_owned()),
            AttrValue::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            AttrValue::Addr(a) => Cow::Owned(socket_addr_text(a)),
            AttrValue::Ip(IpAddr::V4(ip)) => {
                let mut s = String::with_capacity(15);
                push_ipv4(&mut s, *ip);
                Cow::Owned(s)
            }
            AttrValue::Ip(ip) => Cow::Owned(ip.to_string()),
        }
    }
}

/// One finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub span_id: SpanId,
    /// The parent span: the caller's for the server span (absent for a new trace), the
    /// server span's for a client span.
    pub parent_span_id: Option<SpanId>,
    pub kind: SpanKind,
    /// The span's name (SkyWalking: the operation name) when the trace has no
    /// [`HttpFacts`] to name it from; empty otherwise.
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Tags beyond those made from the trace's [`HttpFacts`] (a borrowed key is plain
    /// text, as for [`AttrValue::Str`]). The gateway's spans have none.
    pub attributes: Vec<(Cow<'static, str>, AttrValue)>,
    /// The HTTP status this span saw (a client span: its attempt's response; 0 for
    /// none). The server span's is [`HttpFacts::status`].
    pub status: u16,
    /// Error flag (5xx, upstream failure).
    pub error: bool,
    /// The remote address of a client span (the upstream endpoint), or of the
    /// downstream peer for the server span.
    pub peer: Option<SocketAddr>,
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
    /// What the spans' names and tags are made from (`None`: `name` and `attributes`
    /// of each span say it all).
    pub http: Option<HttpFacts>,
    /// Time spent in the gateway's own steps (the plugin chain's phases), for the
    /// console's waterfall; no exporter sends them.
    pub phases: Vec<Phase>,
}

/// One step of the gateway's own work on a request, timed.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// What ran (`plugins: request headers`).
    pub name: &'static str,
    pub start: SystemTime,
    pub end: SystemTime,
}

/// An IPv4 address's dotted form, appended. `Ipv4Addr`'s `Display` goes through
/// `fmt` padding support and costs several times more; addresses are written for
/// every span, so the digits go into a stack buffer and the string grows once.
pub fn push_ipv4(out: &mut String, ip: Ipv4Addr) {
    out.push_str(ipv4_text(&mut [0; 15], ip));
}

/// An IPv4 address's dotted form, written into `buf` (for writers that are not a
/// `String`, like the OTLP encoder's byte buffer).
pub fn ipv4_text(buf: &mut [u8; 15], ip: Ipv4Addr) -> &str {
    let mut n = 0;
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    // Only ASCII digits and dots were written.
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

/// `ip:port` (`[v6]:port`), as `SocketAddr`'s `Display` writes it.
pub fn socket_addr_text(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => {
            let mut s = String::with_capacity(21);
            push_ipv4(&mut s, *v4.ip());
            s.push(':');
            s.push_str(itoa::Buffer::new().format(v4.port()));
            s
        }
        SocketAddr::V6(_) => a.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for a in [
            "0.0.0.0:0",
            "127.0.0.1:8080",
            "9.10.99.100:1",
            "100.200.250.199:443",
            "255.255.255.255:65535",
            "10.0.20.3:80",
            "[::1]:9000",
            "[fe80::1%2]:1",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(socket_addr_text(&addr), addr.to_string());
        }
    }
}
