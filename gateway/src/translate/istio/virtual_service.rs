//! VirtualServices bound to our Gateways into routes, as Istio's gateway translation
//! makes them:
//!
//! - a VirtualService binds to the Gateways of its `gateways` (`name` in its own
//!   namespace, or `ns/name`); a match's own `gateways` replace them for that match,
//!   and its `port` keeps only the servers of that port; `mesh` binds nothing here;
//! - its hosts (a name without dots is `<name>.<namespace>.svc.cluster.local`) meet each
//!   bound server's hosts at the more specific of the two (`*` is the catch-all);
//! - each `http[]` entry makes one route per match, in order (first match wins; the
//!   order is not changed); an entry without a match matches every request;
//! - `uri` exact / prefix (a literal string prefix, not element-wise) / regex (whole
//!   path), `ignoreUriCase`; `authority`, `headers`, `queryParams` and `method` are
//!   request matches (all of them must hold);
//! - destinations are weighted clusters `outbound|<port>||<host>`, each with its own
//!   header edits; the entry's `headers`, `rewrite`, `redirect`, `timeout` (none when
//!   absent, as Istio), `retries`, `mirror`, `corsPolicy` and `fault` are the route's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::gateway::{intersect, Listener, Servers};
use super::{Clusters, Output};
use crate::annotations::{Destination as Dest, UpstreamAnnotations};
use crate::filters::cors::{CorsConfig, CorsFilter, Origin};
use crate::filters::fault::{FaultConfig, FaultFilter};
use crate::model::header_control::{HeaderControl, HeaderOps};
use crate::model::matcher::{
    FullRegex, HeaderMatcher, HeaderSource, MethodSet, QueryMatcher, RequestMatch, StringMatch,
};
use crate::model::mirror::{MirrorPolicy, MILLION};
use crate::model::retry::RetryPolicy;
use crate::model::rewrite::{PathRewrite, Redirect, Rewrite, Substitution};
use crate::model::{cluster_name, PathMatch, Route, WeightedCluster};
use crate::resources::istio::virtual_service::{HeaderOperations, Headers, HttpMatch, HttpRoute};
use crate::resources::istio::{duration_of, MatchKind, StringMatch as IstioMatch};
use crate::resources::{FieldError, VirtualService};
use crate::translate::certificates::Secrets;
use crate::translate::destinations::{resolve, ClusterPorts};
use crate::translate::hosts::VirtualHosts;
use crate::translate::regex_cache;

/// A host name as Istio qualifies it: a name without dots is a Service of `namespace`.
pub fn qualify(host: &str, namespace: &str) -> String {
    let h = host.to_ascii_lowercase();
    if h == "*" || h.contains('.') {
        h
    } else {
        crate::resources::service::service_host(&h, namespace)
    }
}

/// A Gateway reference as (namespace, name); `None` for `mesh`.
fn gateway_ref(g: &str, namespace: &str) -> Option<(String, String)> {
    match g.split_once('/') {
        Some((ns, name)) => Some((ns.to_string(), name.to_string())),
        None if g == "mesh" => None,
        None => Some((namespace.to_string(), g.to_string())),
    }
}

/// What one VirtualService's translation reads besides the object.
pub(in crate::translate) struct Ctx<'a> {
    pub(in crate::translate) servers: &'a Servers,
    pub(in crate::translate) ports: &'a ClusterPorts<'a>,
    pub(in crate::translate) clusters: &'a Clusters,
    pub(in crate::translate) secrets: &'a Secrets,
}

/// Translate one VirtualService into `external` / `local`; `Err` leaves all of its
/// routes out. Fields not enforced are listed in `out.not_enforced`.
pub(in crate::translate) fn routes_of(
    vs: &VirtualService,
    cx: &Ctx,
    external: &mut VirtualHosts,
    local: &mut VirtualHosts,
    out: &mut Output,
) -> Result<(), FieldError> {
    let ns = &vs.metadata.namespace;
    let who = format!("virtualservice {ns}/{}", vs.metadata.name);
    let name: Arc<str> = format!("{ns}/{}", vs.metadata.name).into();
    let spec = &vs.spec;
    if !spec.tcp.is_empty() {
        out.not_enforced
            .push(format!("{who}: spec.tcp (TCP routes are not served)"));
    }
    if !spec.tls.is_empty() {
        out.not_enforced.push(format!(
            "{who}: spec.tls (TLS passthrough routes are not served)"
        ));
    }
    let vs_gateways: Vec<(String, String)> = spec
        .gateways
        .iter()
        .filter_map(|g| gateway_ref(g, ns))
        .collect();
    let any_match_gateway = spec
        .http
        .iter()
        .flat_map(|h| &h.matches)
        .flat_map(|m| &m.gateways)
        .any(|g| gateway_ref(g, ns).is_some());
    if vs_gateways.is_empty() && !any_match_gateway {
        out.not_enforced.push(format!(
            "{who}: spec.gateways (mesh only: no route on the gateway)"
        ));
        return Ok(());
    }
    let hosts: Vec<String> = spec.hosts.iter().map(|h| qualify(h, ns)).collect();
    for (i, http) in spec.http.iter().enumerate() {
        let at = format!("spec.http[{i}]");
        note_route(http, &who, &at, out);
        if http.direct_response.is_some() || http.delegate.is_some() {
            continue;
        }
        let matches: Vec<Option<&HttpMatch>> = if http.matches.is_empty() {
            vec![None]
        } else {
            http.matches.iter().map(Some).collect()
        };
        for (j, m) in matches.into_iter().enumerate() {
            let mat = format!("{at}.match[{j}]");
            if let Some(m) = m {
                note_match(m, &who, &mat, out);
            }
            let gateways: Vec<(String, String)> = match m {
                Some(m) if !m.gateways.is_empty() => m
                    .gateways
                    .iter()
                    .filter_map(|g| gateway_ref(g, ns))
                    .collect(),
                _ => vs_gateways.clone(),
            };
            let port = m.map_or(0, |m| m.port);
            // (listener, host, redirect, plain), in order, without repeats. The HTTP and
            // HTTPS listeners share one table: a host redirects when a plain-HTTP server
            // of it says `httpsRedirect` (the HTTPS listener never redirects), and is
            // served on plain HTTP only when some plain-HTTP server has it.
            let mut targets: Vec<(Listener, Option<String>, bool, bool)> = Vec::new();
            let mut seen: HashMap<(Listener, Option<String>), usize> = HashMap::new();
            for g in &gateways {
                let Some(servers) = cx.servers.get(g) else {
                    continue;
                };
                for s in servers.iter().filter(|s| port == 0 || s.port == port) {
                    for (allowed, server_host) in &s.hosts {
                        if allowed.as_ref().is_some_and(|a| a != ns) {
                            continue;
                        }
                        for h in &hosts {
                            let Some(host) = intersect(h, server_host) else {
                                continue;
                            };
                            let host = (host != "*").then_some(host);
                            match seen.get(&(s.listener, host.clone())) {
                                Some(&k) => {
                                    targets[k].2 |= s.ssl_redirect;
                                    targets[k].3 |= s.plain;
                                }
                                None => {
                                    seen.insert((s.listener, host.clone()), targets.len());
                                    targets.push((s.listener, host, s.ssl_redirect, s.plain));
                                }
                            }
                        }
                    }
                }
            }
            if targets.is_empty() {
                continue;
            }
            // By (redirect, TLS only).
            let mut built: [Option<Arc<Route>>; 4] = [None, None, None, None];
            for (listener, host, redirect, plain) in targets {
                let tls_only = !plain;
                let slot = &mut built[usize::from(redirect) * 2 + usize::from(tls_only)];
                if slot.is_none() {
                    let mut r = route_of(&name, ns, http, m, redirect, cx, &who, &at, out)?;
                    r.tls_only = tls_only;
                    *slot = Some(Arc::new(r));
                }
                let r = slot.clone().expect("built above");
                match listener {
                    Listener::External => external.push(host, r),
                    Listener::Local => local.push(host, r),
                }
            }
        }
    }
    Ok(())
}

/// Fields of an `http[]` entry that are accepted but not served.
fn note_route(http: &HttpRoute, who: &str, at: &str, out: &mut Output) {
    let mut note = |what: String| out.not_enforced.push(format!("{who}: {at}.{what}"));
    if http.direct_response.is_some() {
        note("directResponse (route left out)".into());
    }
    if http.delegate.is_some() {
        note("delegate (route left out)".into());
    }
    if !http.mirrors.is_empty() {
        note("mirrors".into());
    }
    if let Some(r) = &http.redirect {
        if r.derive_port.is_some() {
            note("redirect.derivePort".into());
        }
        if r.port.is_some() && r.authority.is_none() {
            note("redirect.port (without authority)".into());
        }
    }
    if let Some(r) = &http.retries {
        if r.retry_remote_localities.is_some() {
            note("retries.retryRemoteLocalities".into());
        }
        for t in r.retry_on.split(',').map(str::trim) {
            if !matches!(t, "" | "5xx" | "gateway-error" | "retriable-status-codes")
                && t.parse::<u16>().is_err()
            {
                note(format!("retries.retryOn {t}"));
            }
        }
    }
    if let Some(a) = http.fault.as_ref().and_then(|f| f.abort.as_ref()) {
        if a.grpc_status.is_some() {
            note("fault.abort.grpcStatus".into());
        }
    }
    if http.mirror.as_ref().is_some_and(|m| !m.subset.is_empty()) {
        note("mirror.subset".into());
    }
}

/// Fields of a match that are accepted but not served.
fn note_match(m: &HttpMatch, who: &str, at: &str, out: &mut Output) {
    let mut note = |what: &str| out.not_enforced.push(format!("{who}: {at}.{what}"));
    if !m.without_headers.is_empty() {
        note("withoutHeaders");
    }
    if m.scheme.is_some() {
        note("scheme");
    }
    if !m.source_labels.is_empty() {
        note("sourceLabels");
    }
    if !m.source_namespace.is_empty() {
        note("sourceNamespace");
    }
}

fn string_match(m: &IstioMatch, at: &str) -> Result<StringMatch, FieldError> {
    Ok(match m.kind() {
        None => StringMatch::Prefix(String::new()),
        Some(MatchKind::Exact(s)) => StringMatch::Exact(s.to_string()),
        Some(MatchKind::Prefix(s)) => StringMatch::Prefix(s.to_string()),
        Some(MatchKind::Regex(r)) => StringMatch::Regex(
            FullRegex::new(r).map_err(|e| FieldError::new(format!("{at}.regex"), e))?,
        ),
    })
}

/// The path matcher of a match's `uri` (and whether it is a literal prefix, for
/// `rewrite.uri`).
fn path_match(
    m: Option<&HttpMatch>,
    at: &str,
) -> Result<(PathMatch, bool, Option<String>), FieldError> {
    let ci = m.is_some_and(|m| m.ignore_uri_case);
    let flag = if ci { "(?i)" } else { "" };
    let compile = |re: String| {
        regex_cache::compile(&re).map_err(|e| {
            FieldError::new(
                format!("{at}.uri"),
                format!("invalid regex: {}", crate::model::matcher::regex_error(e)),
            )
        })
    };
    let Some(kind) = m.and_then(|m| m.uri.as_ref()).and_then(|u| u.kind()) else {
        return Ok((PathMatch::Prefix(String::new()), ci, Some("/".into())));
    };
    Ok(match kind {
        MatchKind::Exact(p) => (PathMatch::Exact(p.to_string()), ci, None),
        MatchKind::Prefix("/") => (PathMatch::Prefix(String::new()), ci, Some("/".into())),
        // A literal prefix: an anchored regex of the escaped text.
        MatchKind::Prefix(p) => (
            PathMatch::Regex(compile(format!("{flag}{}", regex::escape(p)))?),
            ci,
            Some(p.to_string()),
        ),
        MatchKind::Regex(r) => (
            PathMatch::Regex(compile(format!("{flag}(?:{r})$"))?),
            ci,
            None,
        ),
    })
}

fn request_match(m: Option<&HttpMatch>, at: &str) -> Result<RequestMatch, FieldError> {
    let mut rm = RequestMatch::default();
    let Some(m) = m else { return Ok(rm) };
    if let Some(a) = &m.authority {
        rm.headers.push(HeaderMatcher {
            source: HeaderSource::Authority,
            value: string_match(a, &format!("{at}.authority"))?,
        });
    }
    if let Some(method) = &m.method {
        match method.kind() {
            Some(MatchKind::Exact(x)) => {
                let mut set = MethodSet::default();
                if set.insert(x) {
                    rm.methods = Some(set);
                } else {
                    rm.headers.push(HeaderMatcher {
                        source: HeaderSource::Method,
                        value: StringMatch::Exact(x.to_string()),
                    });
                }
            }
            _ => rm.headers.push(HeaderMatcher {
                source: HeaderSource::Method,
                value: string_match(method, &format!("{at}.method"))?,
            }),
        }
    }
    for (h, v) in &m.headers {
        let name = HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
            .map_err(|_| FieldError::new(format!("{at}.headers.{h}"), "not a valid header name"))?;
        rm.headers.push(HeaderMatcher {
            source: HeaderSource::Header(name),
            value: string_match(v, &format!("{at}.headers.{h}"))?,
        });
    }
    for (q, v) in &m.query_params {
        rm.query.push(QueryMatcher {
            name: q.clone(),
            value: string_match(v, &format!("{at}.queryParams.{q}"))?,
        });
    }
    Ok(rm)
}

fn ops(o: &Option<HeaderOperations>, at: &str) -> Result<HeaderOps, FieldError> {
    let mut ops = HeaderOps::default();
    let Some(o) = o else { return Ok(ops) };
    let name = |n: &str, at: &str| {
        HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
            .map_err(|_| FieldError::new(format!("{at}.{n}"), "not a valid header name"))
    };
    let value = |v: &str, n: &str, at: &str| {
        HeaderValue::from_str(v)
            .map_err(|_| FieldError::new(format!("{at}.{n}"), "not a valid header value"))
    };
    for (n, v) in &o.set {
        let at = format!("{at}.set");
        ops.set.push((name(n, &at)?, value(v, n, &at)?));
    }
    for (n, v) in &o.add {
        let at = format!("{at}.add");
        ops.add.push((name(n, &at)?, value(v, n, &at)?));
    }
    for n in &o.remove {
        ops.remove.push(name(n, &format!("{at}.remove"))?);
    }
    Ok(ops)
}

fn header_control(h: &Option<Headers>, at: &str) -> Result<Option<Arc<HeaderControl>>, FieldError> {
    let Some(h) = h else { return Ok(None) };
    let c = HeaderControl {
        request: ops(&h.request, &format!("{at}.request"))?,
        response: ops(&h.response, &format!("{at}.response"))?,
    };
    Ok((!c.is_empty()).then(|| Arc::new(c)))
}

fn percent_per_million(value: Option<f64>) -> u32 {
    match value {
        None => MILLION,
        Some(v) => (v.clamp(0.0, 100.0) * f64::from(MILLION / 100)).round() as u32,
    }
}

#[allow(clippy::too_many_arguments)]
fn route_of(
    name: &Arc<str>,
    ns: &str,
    http: &HttpRoute,
    m: Option<&HttpMatch>,
    ssl_redirect: bool,
    cx: &Ctx,
    who: &str,
    at: &str,
    out: &mut Output,
) -> Result<Route, FieldError> {
    let mat = match (m, &http.matches) {
        (Some(m), all) => {
            let j = all.iter().position(|x| std::ptr::eq(x, m)).unwrap_or(0);
            format!("{at}.match[{j}]")
        }
        (None, _) => at.to_string(),
    };
    let (path, ignore_case, literal_prefix) = path_match(m, &mat)?;
    let mut destinations = Vec::with_capacity(http.route.len());
    let mut notes = Vec::new();
    let lone = http.route.len() == 1;
    for (k, d) in http.route.iter().enumerate() {
        let dat = format!("{at}.route[{k}]");
        let weight = if lone {
            100
        } else {
            d.weight.unwrap_or(0).clamp(0, i64::from(u32::MAX / 1024)) as u32
        };
        let mut dest = Dest {
            weight,
            host: qualify(&d.destination.host, ns),
            port: d
                .destination
                .port
                .and_then(|p| u16::try_from(p.number).ok()),
            subset: d.destination.subset.clone(),
        };
        let mut wc: WeightedCluster = resolve(
            &dest,
            cx.ports,
            &UpstreamAnnotations::default(),
            ns,
            cx.secrets,
            &mut notes,
        );
        if wc.cluster.is_none() && !dest.subset.is_empty() {
            out.not_enforced.push(format!(
                "{who}: {dat}.destination.subset {} (subsets are not built: every endpoint of the host)",
                dest.subset
            ));
            dest.subset.clear();
            wc = resolve(
                &dest,
                cx.ports,
                &UpstreamAnnotations::default(),
                ns,
                cx.secrets,
                &mut notes,
            );
        }
        wc.headers = header_control(&d.headers, &format!("{dat}.headers"))?;
        destinations.push(wc);
    }
    for n in notes {
        out.warnings.push(format!("{who}: {at}: {n}"));
    }
    // Istio's default: no timeout.
    let timeout = Some(duration_of(&http.timeout).unwrap_or(Duration::ZERO));
    let mut route = Route::new(
        name.clone(),
        path,
        ignore_case,
        destinations,
        timeout,
        ssl_redirect,
    )
    .with_request_match(request_match(m, &mat)?);
    route.policy.header_control = header_control(&http.headers, &format!("{at}.headers"))?;
    if let Some(rw) = &http.rewrite {
        let host = match &rw.authority {
            Some(a) => Some(HeaderValue::from_str(a).map_err(|_| {
                FieldError::new(format!("{at}.rewrite.authority"), "not a valid host")
            })?),
            None => None,
        };
        let path = if let Some(uri) = &rw.uri {
            Some(match &literal_prefix {
                // Replace the matched prefix, once (Envoy's prefix_rewrite).
                Some(p) => {
                    let flag = if ignore_case { "(?i)" } else { "" };
                    let pattern = regex::Regex::new(&format!("{flag}^{}", regex::escape(p)))
                        .map_err(|e| FieldError::new(format!("{at}.rewrite.uri"), e.to_string()))?;
                    // The replacement is literal: backslashes doubled.
                    let substitution = Substitution::parse(&uri.replace('\\', "\\\\"))
                        .map_err(|e| FieldError::new(format!("{at}.rewrite.uri"), e))?;
                    if substitution.has_groups() {
                        return Err(FieldError::new(
                            format!("{at}.rewrite.uri"),
                            "a `$` followed by a digit is not supported in a prefix rewrite",
                        ));
                    }
                    PathRewrite::Regex {
                        pattern,
                        substitution,
                    }
                }
                // An exact or regex match: the whole path.
                None => PathRewrite::Prefix(uri.clone()),
            })
        } else if let Some(rr) = &rw.uri_regex_rewrite {
            let pattern = regex::Regex::new(&rr.pattern).map_err(|e| {
                FieldError::new(format!("{at}.rewrite.uriRegexRewrite.match"), e.to_string())
            })?;
            let substitution = Substitution::parse(&rr.rewrite)
                .map_err(|e| FieldError::new(format!("{at}.rewrite.uriRegexRewrite.rewrite"), e))?;
            Some(PathRewrite::Regex {
                pattern,
                substitution,
            })
        } else {
            None
        };
        if host.is_some() || path.is_some() {
            route.policy.rewrite = Some(Box::new(Rewrite { path, host }));
        }
    }
    if let Some(r) = &http.redirect {
        let authority = match (&r.authority, r.port) {
            (Some(a), Some(p)) => Some(format!("{a}:{p}")),
            (Some(a), None) => Some(a.clone()),
            (None, _) => None,
        };
        route.policy.redirect = Some(Box::new(Redirect {
            scheme: r.scheme.clone(),
            authority,
            path: r.uri.clone(),
            code: r.redirect_code.unwrap_or(301) as u16,
        }));
    }
    if let Some(r) = &http.retries {
        let mut p = RetryPolicy {
            num_retries: u32::try_from(r.attempts).unwrap_or(0),
            per_try_timeout: duration_of(&r.per_try_timeout).filter(|d| !d.is_zero()),
            ..Default::default()
        };
        for t in r.retry_on.split(',').map(str::trim) {
            match t {
                "5xx" => p.on_5xx = true,
                "gateway-error" => p.status_codes.extend([502, 503, 504]),
                _ => {
                    if let Ok(c) = t.parse::<u16>() {
                        p.status_codes.push(c);
                    }
                }
            }
        }
        p.status_codes.sort_unstable();
        p.status_codes.dedup();
        route.policy.retry = Some(Box::new(p));
    }
    if let Some(mirror) = &http.mirror {
        let host = qualify(&mirror.host, ns);
        let port = mirror
            .port
            .and_then(|p| u16::try_from(p.number).ok())
            .or_else(|| cx.ports.first.get(host.as_str()).copied());
        let cname = match port {
            Some(p) => cluster_name(p, "", &host),
            None => format!("outbound|||{host}"),
        };
        let cluster = cx.clusters.get(&cname).cloned();
        let mut policy = MirrorPolicy::new(cname.into(), cluster, 100);
        policy.per_million = percent_per_million(http.mirror_percentage.map(|p| p.value));
        route.policy.mirror = Some(Arc::new(policy));
    }
    // Envoy runs the fault filter before CORS.
    if let Some(f) = &http.fault {
        let config = FaultConfig {
            delay: f.delay.as_ref().and_then(|d| {
                let per_million = match (&d.percentage, d.percent) {
                    (Some(p), _) => percent_per_million(Some(p.value)),
                    (None, Some(p)) => percent_per_million(Some(p as f64)),
                    (None, None) => MILLION,
                };
                Some((duration_of(&d.fixed_delay)?, per_million))
            }),
            abort: f.abort.as_ref().and_then(|a| {
                Some((
                    u16::try_from(a.http_status?).ok()?,
                    percent_per_million(a.percentage.map(|p| p.value)),
                ))
            }),
        };
        if !config.is_empty() {
            route
                .policy
                .filters
                .push(Arc::new(FaultFilter::new(config)));
        }
    }
    if let Some(c) = &http.cors_policy {
        let cat = format!("{at}.corsPolicy");
        let mut origins = Vec::new();
        for (i, o) in c.allow_origins.iter().enumerate() {
            let oat = format!("{cat}.allowOrigins[{i}]");
            let re = |r: String| {
                Origin::regex(&r).map_err(|e| FieldError::new(oat.clone(), e.to_string()))
            };
            origins.push(match o.kind() {
                Some(MatchKind::Exact(s)) => Origin::Exact(s.to_string()),
                Some(MatchKind::Prefix(s)) => re(format!("{}.*", regex::escape(s)))?,
                Some(MatchKind::Regex(r)) => re(r.to_string())?,
                None => re(".*".into())?,
            });
        }
        origins.extend(c.allow_origin.iter().map(|o| Origin::Exact(o.clone())));
        let config = CorsConfig::new(
            origins,
            &c.allow_methods,
            &c.allow_headers,
            &c.expose_headers,
            c.allow_credentials.unwrap_or(false),
            duration_of(&c.max_age).map(|d| d.as_secs()),
        )
        .map_err(|e| FieldError::new(cat, e.to_string()))?;
        route.policy.filters.push(Arc::new(CorsFilter::new(config)));
    }
    Ok(route)
}
