//! Istio's `VirtualService` (`networking/v1beta1/virtual_service.proto`): the HTTP
//! routes of some hosts, bound to Gateways (or the mesh).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    check_api_version, check_duration, check_header_name, check_host, check_port, from_yaml,
    FieldError, Percent, PortSelector, StringMatch,
};
use crate::resources::ObjectMeta;

/// An Istio `VirtualService`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VirtualService {
    pub metadata: ObjectMeta,
    pub spec: VirtualServiceSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualServiceSpec {
    /// The hosts routed: names (a name without dots is a Service of the
    /// VirtualService's namespace), `*.suffix`, or `*`.
    pub hosts: Vec<String>,
    /// Gateways bound (`name` in this namespace, or `ns/name`); `mesh` or empty: the
    /// sidecars only, which the gateway does not serve.
    pub gateways: Vec<String>,
    /// HTTP routes, in match order (first match wins).
    pub http: Vec<HttpRoute>,
    /// TCP and TLS routes: accepted, not served.
    pub tcp: Vec<serde_json::Value>,
    pub tls: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRoute {
    /// The route's name (for logs).
    pub name: String,
    /// Conditions, any of which selects the route (OR); empty: every request.
    #[serde(rename = "match")]
    pub matches: Vec<HttpMatch>,
    /// Weighted destinations.
    pub route: Vec<RouteDestination>,
    /// Answer with a redirect instead of routing.
    pub redirect: Option<HttpRedirect>,
    /// Answer with a fixed response instead of routing.
    pub direct_response: Option<DirectResponse>,
    /// Routes delegated to another VirtualService (not served).
    pub delegate: Option<serde_json::Value>,
    /// Rewrite the path and `Host` sent upstream.
    pub rewrite: Option<HttpRewrite>,
    /// Timeout of the whole request (a duration); absent: none.
    pub timeout: Option<String>,
    /// Retries; absent: the gateway's default retries.
    pub retries: Option<HttpRetry>,
    /// Fault injection (delays and aborts).
    pub fault: Option<HttpFault>,
    /// Mirror the requests to this destination.
    pub mirror: Option<Destination>,
    /// Percent of requests mirrored; absent: 100.
    pub mirror_percentage: Option<Percent>,
    /// Several mirrors (not served).
    pub mirrors: Vec<serde_json::Value>,
    /// CORS of the route.
    pub cors_policy: Option<CorsPolicy>,
    /// Header edits of the route, whatever destination is taken.
    pub headers: Option<Headers>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpMatch {
    /// A name for logs.
    pub name: String,
    /// The path (without query). `exact`, `prefix` (a literal string prefix) or `regex`.
    pub uri: Option<StringMatch>,
    /// `http` or `https` (not served).
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    /// The `Host` / `:authority` header.
    pub authority: Option<StringMatch>,
    /// Request headers by name (lowercase); `{}`: present.
    pub headers: BTreeMap<String, StringMatch>,
    /// Only on servers of this port; 0: any.
    pub port: u32,
    /// Sidecar source labels (not served: the gateway has no source workload).
    pub source_labels: BTreeMap<String, String>,
    /// Only on these Gateways (replaces the VirtualService's `gateways` for this match).
    pub gateways: Vec<String>,
    /// Query parameters by name (`exact`, `prefix` or `regex` of the raw value).
    pub query_params: BTreeMap<String, StringMatch>,
    /// Match `uri` case-insensitively (default false).
    pub ignore_uri_case: bool,
    /// Headers that must NOT match.
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Source namespace (not served).
    pub source_namespace: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteDestination {
    pub destination: Destination,
    /// Relative share (>= 0); absent with one destination: all of the traffic.
    pub weight: Option<i64>,
    /// Header edits made when this destination is taken.
    pub headers: Option<Headers>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Destination {
    /// A Service host (a name without dots: of the VirtualService's namespace) or a
    /// registry host (required).
    pub host: String,
    /// A DestinationRule subset; empty: none.
    pub subset: String,
    /// The Service port; absent: the host's only (first) port.
    pub port: Option<PortSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HeaderOperations {
    /// Set, replacing any value.
    pub set: BTreeMap<String, String>,
    /// Append a value.
    pub add: BTreeMap<String, String>,
    /// Remove.
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRewrite {
    /// Replaces the matched prefix (the whole path for an exact or regex match).
    pub uri: Option<String>,
    /// Replaces the `Host` sent upstream.
    pub authority: Option<String>,
    /// Replaces every match of `match` (RE2) in the path by `rewrite` (`\1` groups).
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RegexRewrite {
    #[serde(rename = "match")]
    pub pattern: String,
    pub rewrite: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRedirect {
    /// Replaces the path.
    pub uri: Option<String>,
    /// Replaces the host.
    pub authority: Option<String>,
    /// Replaces the port (with `authority`).
    pub port: Option<u32>,
    /// `FROM_PROTOCOL_DEFAULT` / `FROM_REQUEST_PORT` (not served).
    pub derive_port: Option<String>,
    /// Replaces the scheme.
    pub scheme: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    pub redirect_code: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct DirectResponse {
    /// The status (200..599).
    pub status: u32,
    pub body: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRetry {
    /// Retries after the first attempt (>= 0); 0 turns retries off.
    pub attempts: i64,
    /// Timeout of each attempt (a duration).
    pub per_try_timeout: Option<String>,
    /// Comma-separated Envoy retry conditions and status codes.
    pub retry_on: String,
    /// Not served.
    pub retry_remote_localities: Option<bool>,
}

/// The `retryOn` conditions Envoy knows (`x-envoy-retry-on`, `x-envoy-retry-grpc-on`).
pub const RETRY_ON: [&str; 16] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpFault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultDelay {
    /// How long to wait before forwarding (a duration, >= 1ms; required).
    pub fixed_delay: Option<String>,
    /// Share of requests delayed; absent: all.
    pub percentage: Option<Percent>,
    /// Deprecated integer percent.
    pub percent: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultAbort {
    /// The status answered (200..599).
    pub http_status: Option<i64>,
    /// gRPC status (not served).
    pub grpc_status: Option<String>,
    /// Share of requests aborted; absent: all.
    pub percentage: Option<Percent>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CorsPolicy {
    /// Origins allowed.
    pub allow_origins: Vec<StringMatch>,
    /// Deprecated exact origins.
    pub allow_origin: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    /// How long a preflight may be cached (a duration).
    pub max_age: Option<String>,
    /// `access-control-allow-credentials: true` (default false).
    pub allow_credentials: Option<bool>,
}

impl VirtualService {
    pub fn parse(bytes: &[u8]) -> Result<VirtualService, FieldError> {
        check_api_version(bytes)?;
        let v: VirtualService = from_yaml(bytes)?;
        v.validate()?;
        Ok(v)
    }

    fn validate(&self) -> Result<(), FieldError> {
        let spec = &self.spec;
        if spec.hosts.is_empty() && !spec.gateways.is_empty() {
            return Err(FieldError::new(
                "spec.hosts",
                "at least one host is required",
            ));
        }
        for (i, h) in spec.hosts.iter().enumerate() {
            check_host(h, &format!("spec.hosts[{i}]"))?;
        }
        for (i, g) in spec.gateways.iter().enumerate() {
            check_gateway_name(g, &format!("spec.gateways[{i}]"))?;
        }
        for (i, r) in spec.http.iter().enumerate() {
            r.validate(&format!("spec.http[{i}]"))?;
        }
        Ok(())
    }
}

fn check_gateway_name(g: &str, at: &str) -> Result<(), FieldError> {
    let name = g.split_once('/').map_or(g, |(_, n)| n);
    if name.is_empty() || g.matches('/').count() > 1 || g.contains(' ') {
        return Err(FieldError::new(
            at,
            format!("{g:?} is not a Gateway name (name or namespace/name)"),
        ));
    }
    Ok(())
}

/// RE2's substitution syntax: a backslash is followed by a digit or a backslash.
fn check_substitution(text: &str, at: &str) -> Result<(), FieldError> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && !chars
                .next()
                .is_some_and(|d| d.is_ascii_digit() || d == '\\')
        {
            return Err(FieldError::new(
                at,
                format!("{text:?}: a backslash must be followed by a digit or a backslash"),
            ));
        }
    }
    Ok(())
}

fn check_ops(ops: &Option<HeaderOperations>, at: &str) -> Result<(), FieldError> {
    let Some(ops) = ops else { return Ok(()) };
    for (what, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            let at = format!("{at}.{what}.{name}");
            check_header_name(name, &at)?;
            if http::HeaderValue::from_str(value).is_err() {
                return Err(FieldError::new(at, "not a valid header value"));
            }
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        check_header_name(name, &format!("{at}.remove[{i}]"))?;
    }
    Ok(())
}

impl Headers {
    fn validate(&self, at: &str) -> Result<(), FieldError> {
        check_ops(&self.request, &format!("{at}.request"))?;
        check_ops(&self.response, &format!("{at}.response"))
    }
}

impl HttpRoute {
    fn validate(&self, at: &str) -> Result<(), FieldError> {
        let actions = [
            !self.route.is_empty(),
            self.redirect.is_some(),
            self.direct_response.is_some(),
            self.delegate.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if actions == 0 {
            return Err(FieldError::new(
                at,
                "one of route, redirect, directResponse or delegate is required",
            ));
        }
        if actions > 1 {
            return Err(FieldError::new(
                at,
                "only one of route, redirect, directResponse and delegate may be set",
            ));
        }
        for (i, m) in self.matches.iter().enumerate() {
            m.validate(&format!("{at}.match[{i}]"))?;
        }
        let mut total = 0i64;
        for (i, d) in self.route.iter().enumerate() {
            let at = format!("{at}.route[{i}]");
            d.destination.validate(&format!("{at}.destination"))?;
            match d.weight {
                Some(w) if w < 0 => {
                    return Err(FieldError::new(
                        format!("{at}.weight"),
                        format!("{w} is negative"),
                    ))
                }
                Some(w) => total += w,
                None => {}
            }
            if let Some(h) = &d.headers {
                h.validate(&format!("{at}.headers"))?;
            }
        }
        if self.route.len() > 1 && total == 0 {
            return Err(FieldError::new(
                format!("{at}.route"),
                "the weights of several destinations add up to 0",
            ));
        }
        if let Some(h) = &self.headers {
            h.validate(&format!("{at}.headers"))?;
        }
        if let Some(r) = &self.rewrite {
            if let Some(a) = &r.authority {
                if http::HeaderValue::from_str(a).is_err() || a.is_empty() {
                    return Err(FieldError::new(
                        format!("{at}.rewrite.authority"),
                        "not a valid host",
                    ));
                }
            }
            if let Some(u) = &r.uri {
                if u.is_empty() || u.contains(char::is_whitespace) {
                    return Err(FieldError::new(
                        format!("{at}.rewrite.uri"),
                        format!("{u:?} is not a path"),
                    ));
                }
            }
            if let Some(rr) = &r.uri_regex_rewrite {
                if r.uri.is_some() {
                    return Err(FieldError::new(
                        format!("{at}.rewrite"),
                        "only one of uri and uriRegexRewrite may be set",
                    ));
                }
                regex::Regex::new(&rr.pattern).map_err(|e| {
                    FieldError::new(
                        format!("{at}.rewrite.uriRegexRewrite.match"),
                        format!("invalid regex: {}", crate::annotations::regex_error(e)),
                    )
                })?;
                check_substitution(
                    &rr.rewrite,
                    &format!("{at}.rewrite.uriRegexRewrite.rewrite"),
                )?;
            }
        }
        if let Some(r) = &self.redirect {
            if let Some(c) = r.redirect_code {
                if ![301, 302, 303, 307, 308].contains(&c) {
                    return Err(FieldError::new(
                        format!("{at}.redirect.redirectCode"),
                        format!("{c} is not a redirect code (301, 302, 303, 307, 308)"),
                    ));
                }
            }
            if let Some(p) = r.port {
                check_port(p, &format!("{at}.redirect.port"))?;
            }
            if let Some(s) = &r.scheme {
                if s.is_empty()
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                {
                    return Err(FieldError::new(
                        format!("{at}.redirect.scheme"),
                        format!("{s:?} is not a scheme"),
                    ));
                }
            }
            if let Some(a) = &r.authority {
                if a.is_empty() || a.contains(['/', ' ']) {
                    return Err(FieldError::new(
                        format!("{at}.redirect.authority"),
                        format!("{a:?} is not a host"),
                    ));
                }
            }
        }
        if let Some(d) = &self.direct_response {
            if !(200..=599).contains(&d.status) {
                return Err(FieldError::new(
                    format!("{at}.directResponse.status"),
                    format!("{} is not within 200..599", d.status),
                ));
            }
        }
        check_duration(&self.timeout, &format!("{at}.timeout"))?;
        if let Some(r) = &self.retries {
            if r.attempts < 0 {
                return Err(FieldError::new(
                    format!("{at}.retries.attempts"),
                    format!("{} is negative", r.attempts),
                ));
            }
            check_duration(&r.per_try_timeout, &format!("{at}.retries.perTryTimeout"))?;
            for token in r
                .retry_on
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
            {
                let code_ok = token.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
                if !code_ok && !RETRY_ON.contains(&token) {
                    return Err(FieldError::new(
                        format!("{at}.retries.retryOn"),
                        format!("{token:?} is neither a retry condition nor a status code"),
                    ));
                }
            }
        }
        if let Some(f) = &self.fault {
            if let Some(d) = &f.delay {
                let at = format!("{at}.fault.delay");
                let Some(fd) = &d.fixed_delay else {
                    return Err(FieldError::new(format!("{at}.fixedDelay"), "required"));
                };
                let dur = super::parse_duration(fd)
                    .map_err(|e| FieldError::new(format!("{at}.fixedDelay"), e))?;
                if dur < std::time::Duration::from_millis(1) {
                    return Err(FieldError::new(
                        format!("{at}.fixedDelay"),
                        "must be at least 1ms",
                    ));
                }
                if let Some(p) = &d.percentage {
                    p.validate(&format!("{at}.percentage"))?;
                }
                if let Some(p) = d.percent {
                    if !(0..=100).contains(&p) {
                        return Err(FieldError::new(
                            format!("{at}.percent"),
                            format!("{p} is not within 0..100"),
                        ));
                    }
                }
            }
            if let Some(a) = &f.abort {
                let at = format!("{at}.fault.abort");
                match a.http_status {
                    Some(s) if !(200..=599).contains(&s) => {
                        return Err(FieldError::new(
                            format!("{at}.httpStatus"),
                            format!("{s} is not within 200..599"),
                        ))
                    }
                    None if a.grpc_status.is_none() => {
                        return Err(FieldError::new(format!("{at}.httpStatus"), "required"))
                    }
                    _ => {}
                }
                if let Some(p) = &a.percentage {
                    p.validate(&format!("{at}.percentage"))?;
                }
            }
        }
        if let Some(m) = &self.mirror {
            m.validate(&format!("{at}.mirror"))?;
        }
        if let Some(p) = &self.mirror_percentage {
            p.validate(&format!("{at}.mirrorPercentage"))?;
        }
        if let Some(c) = &self.cors_policy {
            let at = format!("{at}.corsPolicy");
            for (i, o) in c.allow_origins.iter().enumerate() {
                o.validate(&format!("{at}.allowOrigins[{i}]"))?;
            }
            for (what, list) in [
                ("allowMethods", &c.allow_methods),
                ("allowHeaders", &c.allow_headers),
                ("exposeHeaders", &c.expose_headers),
            ] {
                for (i, v) in list.iter().enumerate() {
                    if http::HeaderValue::from_str(v).is_err() {
                        return Err(FieldError::new(
                            format!("{at}.{what}[{i}]"),
                            "not a valid header value",
                        ));
                    }
                }
            }
            check_duration(&c.max_age, &format!("{at}.maxAge"))?;
        }
        Ok(())
    }
}

impl HttpMatch {
    fn validate(&self, at: &str) -> Result<(), FieldError> {
        for (what, m) in [
            ("uri", &self.uri),
            ("scheme", &self.scheme),
            ("method", &self.method),
            ("authority", &self.authority),
        ] {
            if let Some(m) = m {
                m.validate(&format!("{at}.{what}"))?;
            }
        }
        if let Some(super::MatchKind::Exact(p) | super::MatchKind::Prefix(p)) =
            self.uri.as_ref().and_then(|u| u.kind())
        {
            if !p.starts_with('/') {
                return Err(FieldError::new(
                    format!("{at}.uri"),
                    format!("{p:?} does not start with /"),
                ));
            }
        }
        for (what, map) in [
            ("headers", &self.headers),
            ("withoutHeaders", &self.without_headers),
        ] {
            for (name, m) in map {
                let at = format!("{at}.{what}.{name}");
                check_header_name(name, &at)?;
                m.validate(&at)?;
            }
        }
        for (name, m) in &self.query_params {
            m.validate(&format!("{at}.queryParams.{name}"))?;
        }
        if self.port != 0 {
            check_port(self.port, &format!("{at}.port"))?;
        }
        for (i, g) in self.gateways.iter().enumerate() {
            check_gateway_name(g, &format!("{at}.gateways[{i}]"))?;
        }
        Ok(())
    }
}

impl Destination {
    fn validate(&self, at: &str) -> Result<(), FieldError> {
        if self.host.is_empty() {
            return Err(FieldError::new(format!("{at}.host"), "required"));
        }
        check_host(&self.host, &format!("{at}.host"))?;
        if let Some(p) = &self.port {
            check_port(p.number, &format!("{at}.port.number"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
