//! The interface of a native HTTP filter, as the data plane calls it: a plugin of the
//! chain (`filters/`) or a filter an Ingress annotation puts on one route (CORS, IP
//! access, local rate limit, basic auth). It lives in `model/` because routes hold
//! filters; the filters themselves live in `filters/<name>/`.

use std::fmt;
use std::net::IpAddr;

use pingora_http::{RequestHeader, ResponseHeader};

/// The request header naming the authenticated consumer (Higress's `X-Mse-Consumer`),
/// set by key-auth and read by limits, ai-statistics and the access log.
pub const CONSUMER_HEADER: &str = "x-mse-consumer";

/// A response as filters edit it: status, version and a plain `http` header map.
pub type ResponseParts = http::response::Parts;

/// What a request is matched on, and what a filter may read of it besides its headers.
#[derive(Clone, Copy, Debug, Default)]
pub struct MatchInput<'a> {
    /// `route_name`: the route the request took.
    pub route: Option<&'a str>,
    /// `:authority` / `Host`, port included as sent.
    pub authority: &'a str,
    /// `cluster_name`: `outbound|<port>|<subset>|<fqdn>`.
    pub cluster: Option<&'a str>,
    /// The downstream peer's address (the TCP connection's), when known.
    pub peer: Option<IpAddr>,
}

/// A reply a filter gives instead of the upstream's response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// Headers added to the reply (`content-type` and `content-length` are set from the
    /// body when absent).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Envoy response flags the reply puts in the access log and Istio's
    /// `response_flags` (a rate-limited request is `RL`).
    pub flags: ReplyFlags,
}

/// The response flags a filter's reply may carry; the proxy maps them onto its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyFlags(u8);

impl ReplyFlags {
    /// Envoy's `RL`: the request was rate limited locally.
    pub const RATE_LIMITED: ReplyFlags = ReplyFlags(1);

    pub fn contains(self, other: ReplyFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

/// What a callback decided.
#[derive(Debug, PartialEq, Eq)]
pub enum FilterStatus {
    /// Go on with the next filter.
    Continue,
    /// Answer the request now; the filters after this one do not run.
    Reply(LocalReply),
    /// Decide once `Pending` is done (a Redis round trip, an HTTP call): the request
    /// waits, its thread does not. Only from [`HttpFilter::on_request_headers`].
    Wait(Pending),
}

/// What a filter decides after waiting.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// `Some`: answer the request with it.
    pub reply: Option<LocalReply>,
    /// Headers set (replacing) on the upstream's response to this request
    /// (cluster-key-rate-limit's quota headers).
    pub response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// A decision still to come: a future the chain awaits.
pub struct Pending(pub std::pin::Pin<Box<dyn std::future::Future<Output = Decision> + Send>>);

impl Pending {
    pub fn new(f: impl std::future::Future<Output = Decision> + Send + 'static) -> Pending {
        Pending(Box::pin(f))
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

/// Two pending decisions are never known to be equal.
impl PartialEq for Pending {
    fn eq(&self, _: &Pending) -> bool {
        false
    }
}
impl Eq for Pending {}

/// The per-request side of a native filter. Callbacks are synchronous and see what
/// they may edit; a filter that has nothing to do in a phase keeps the default.
pub trait HttpFilter: Send + Sync + fmt::Debug + std::any::Any {
    /// The Envoy filter this one stands for (`envoy.filters.http.cors`), as the console
    /// and `/debug/configz` list a route's filters.
    fn name(&self) -> &'static str {
        "filter"
    }

    /// Whether [`HttpFilter::on_request_headers`] may act on a request with `method`
    /// (CORS answers `OPTIONS` only). `false` lets the proxy skip building the filter's
    /// input and edit the request once for the route (see `proxy/rewrite.rs`).
    fn acts_on_request(&self, _method: &http::Method) -> bool {
        true
    }

    /// The request headers, after routing and before any upstream is chosen.
    fn on_request_headers(
        &self,
        _req: &mut RequestHeader,
        _input: &MatchInput<'_>,
    ) -> FilterStatus {
        FilterStatus::Continue
    }

    /// Whether the filter reads the request body ([`HttpFilter::on_request_body`]); the
    /// chain then holds the body (up to its buffer limit) before it goes upstream.
    fn wants_request_body(&self) -> bool {
        false
    }

    /// The whole request body, held, after every filter's request header callback up
    /// to the one that asked for it. A reply here answers the request instead.
    fn on_request_body(&self, _req: &RequestHeader, _body: &[u8]) -> FilterStatus {
        FilterStatus::Continue
    }

    /// Whether [`HttpFilter::on_response_headers`] may change a response; `false` lets
    /// the chain skip converting the response for it.
    fn acts_on_response(&self) -> bool {
        true
    }

    /// The response headers, from the upstream or a local reply, before they are sent;
    /// filters see them in reverse chain order. `req` is the request as it went on. The
    /// response comes as plain parts so that the proxy converts it once for every edit
    /// it makes (see [`edit_parts`]).
    fn on_response_headers(&self, _req: &RequestHeader, _resp: &mut ResponseParts) -> FilterStatus {
        FilterStatus::Continue
    }
}

/// Run `f` on `resp` as plain `http` parts. Pingora keeps a case-preserving name map
/// beside the header map and parses every name it is given; the parts are one map with
/// names parsed once, at translation. Names then go out lowercase, as Envoy sends them,
/// and the reason phrase becomes the status's standard one.
pub fn edit_parts<R>(resp: &mut ResponseHeader, f: impl FnOnce(&mut ResponseParts) -> R) -> R {
    let blank = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = ResponseParts::from(std::mem::replace(resp, blank));
    let r = f(&mut parts);
    *resp = ResponseHeader::from(parts);
    r
}
