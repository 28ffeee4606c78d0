//! The route table the data plane looks requests up in: virtual hosts by host (exact,
//! then `*.suffix` longest first, then the catch-all) holding routes in match order, and
//! how a route picks its weighted destination. Lookups do not allocate.
//!
//! The order of routes within a host is decided by `translate/route_table.rs`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pingora_http::RequestHeader;

use super::cluster::Cluster;
use super::header_control::HeaderControl;
use super::host::strip_port;
use super::matcher::RequestMatch;
pub use super::path_regex::PathRegex;
use super::protocol::Protocol;
use super::route_index::PathIndex;
use super::route_policy::RoutePolicy;
use super::upstream_tls::UpstreamTls;
use crate::stats::RouteStats;

#[derive(Debug)]
pub enum PathMatch {
    Exact(String),
    /// Element-wise prefix, stored without a trailing `/` (empty for `/`).
    Prefix(String),
    /// Anchored at the start of the path, as Higress turns `use-regex` paths into
    /// `<regex>.*` full matches.
    Regex(PathRegex),
}

impl PathMatch {
    /// Whether `path` (query removed) matches.
    pub fn matches(&self, path: &str, ignore_case: bool) -> bool {
        let eq = |a: &str, b: &str| {
            if ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self {
            PathMatch::Exact(p) => eq(path, p),
            PathMatch::Prefix(p) => {
                if p.is_empty() {
                    return true;
                }
                path.len() >= p.len()
                    && path.is_char_boundary(p.len())
                    && eq(&path[..p.len()], p)
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
            PathMatch::Regex(r) => r.is_match(path),
        }
    }

    /// Exact paths rank before the others (0 before 1).
    pub fn rank(&self) -> u8 {
        match self {
            PathMatch::Exact(_) => 0,
            _ => 1,
        }
    }
}

/// A destination of a route, resolved against the clusters of the snapshot.
#[derive(Clone, Debug)]
pub struct WeightedCluster {
    /// Shared, so Wasm plugins read it without a copy per request.
    pub name: Arc<str>,
    /// `None` when no registry defines the host (503 until it appears).
    pub cluster: Option<Arc<Cluster>>,
    pub weight: u32,
    /// The protocol spoken to it: `backend-protocol`, else the registry's.
    pub protocol: Protocol,
    /// TLS towards it (annotations, else the registry's); `None`: plain text.
    pub tls: Option<Arc<UpstreamTls>>,
    /// Header edits made only when this destination is taken (a KIngress split's
    /// `appendHeaders`, an Istio destination's `headers`), after the route's own;
    /// `None` (the common case) costs one check.
    pub headers: Option<Arc<HeaderControl>>,
}

#[derive(Debug)]
pub struct Route {
    /// What `route_name`, `_match_route_` and the access log see (shared, so Wasm plugins
    /// read it without a copy per request).
    pub name: Arc<str>,
    pub path: PathMatch,
    pub ignore_case: bool,
    pub destinations: Vec<WeightedCluster>,
    total_weight: u32,
    /// `higress.io/timeout`; `None` falls back to `downstream.routeTimeout`.
    pub timeout: Option<Duration>,
    /// Plain-HTTP requests get a 308 to `https://` (`ssl-redirect`, `force-ssl-redirect`,
    /// or a domain with `enableHttps: force`).
    pub ssl_redirect: bool,
    /// The status of that redirect: 308 for Ingresses and domains (Higress's), 301 for
    /// a KIngress's `Redirected` and an Istio server's `httpsRedirect` (Envoy's
    /// `require_tls`).
    pub ssl_redirect_code: u16,
    /// Served on the HTTPS listener only (a host only TLS servers of Istio Gateways
    /// have): plain HTTP gets 404, as Envoy has no route for it on that port.
    pub tls_only: bool,
    /// What the route's annotations do besides choosing the destination.
    pub policy: RoutePolicy,
    /// What the request must carry besides host and path (`match-method`, header, query
    /// and canary matches); `None` (the common case) costs one check.
    pub request_match: Option<Box<RequestMatch>>,
    /// `gateway_route_*` of the route's name, set by the config loop once the route
    /// table is built (routes are shared before that); unset in tables built elsewhere
    /// (tests, `gateway validate`), whose requests then record no route stats.
    pub stats: OnceLock<Arc<RouteStats>>,
}

impl Route {
    /// A route over `destinations`; their weights add up to its total.
    pub fn new(
        name: Arc<str>,
        path: PathMatch,
        ignore_case: bool,
        mut destinations: Vec<WeightedCluster>,
        timeout: Option<Duration>,
        ssl_redirect: bool,
    ) -> Route {
        // Often collected in place from larger items, keeping their room.
        destinations.shrink_to_fit();
        let total_weight = destinations.iter().map(|d| d.weight).sum();
        Route {
            name,
            path,
            ignore_case,
            destinations,
            total_weight,
            timeout,
            ssl_redirect,
            ssl_redirect_code: 308,
            tls_only: false,
            policy: RoutePolicy::default(),
            request_match: None,
            stats: OnceLock::new(),
        }
    }

    /// Set what the request must carry besides host and path; an empty match is none.
    pub fn with_request_match(mut self, m: RequestMatch) -> Route {
        self.request_match = (!m.is_empty()).then(|| Box::new(m));
        self
    }

    /// Whether `req` meets the route's non-path requirements (method, headers, query,
    /// cookies). Path and host are checked by the caller.
    #[inline]
    pub fn matches_request(&self, req: &RequestHeader) -> bool {
        match &self.request_match {
            None => true,
            Some(m) => m.matches(req),
        }
    }

    /// Pick a destination by weight; `roll` is uniform in `0..u32::MAX`.
    pub fn pick(&self, roll: u32) -> Option<(usize, &WeightedCluster)> {
        if self.destinations.len() == 1 || self.total_weight == 0 {
            return self.destinations.first().map(|d| (0, d));
        }
        let mut x = ((roll as u64 * self.total_weight as u64) >> 32) as u32;
        for (i, d) in self.destinations.iter().enumerate() {
            if x < d.weight {
                return Some((i, d));
            }
            x -= d.weight;
        }
        self.destinations
            .len()
            .checked_sub(1)
            .map(|i| (i, &self.destinations[i]))
    }
}

#[derive(Debug, Default)]
struct VirtualHost {
    routes: Vec<Arc<Route>>,
    /// Finds the candidates of a path among `routes` (`model/route_index.rs`).
    index: PathIndex,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Hosts are client input: a seeded hash, but not SipHash's cost on every request.
    exact: HashMap<String, usize, foldhash::fast::RandomState>,
    /// (suffix including the leading dot, vhost), longest suffix first.
    wildcard: Vec<(String, usize)>,
    any: Option<usize>,
    vhosts: Vec<VirtualHost>,
    /// Some route matches on the method, headers or query: see [`RouteTable::reads_requests`].
    reads_requests: bool,
}

impl RouteTable {
    /// A table of `hosts`, each `None` (the catch-all), `*.suffix` or an exact host, with
    /// its routes already in match order.
    pub fn new(hosts: Vec<(Option<String>, Vec<Arc<Route>>)>) -> RouteTable {
        let mut table = RouteTable::default();
        for (host, mut routes) in hosts {
            // Built by pushing (and collected in place from larger items): the spare
            // capacity would stay for the table's life, about 90 bytes per route.
            routes.shrink_to_fit();
            table.reads_requests |= routes.iter().any(|r| r.request_match.is_some());
            let idx = table.vhosts.len();
            let index = PathIndex::build(&routes);
            table.vhosts.push(VirtualHost { routes, index });
            match host {
                None => table.any = Some(idx),
                Some(h) => match h.strip_prefix('*') {
                    Some(suffix) => table.wildcard.push((suffix.to_string(), idx)),
                    None => {
                        table.exact.insert(h, idx);
                    }
                },
            }
        }
        table.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        table
    }

    /// Whether a route looks at more of a request than its host and path: if none does,
    /// a request whose other headers changed finds the route it found before.
    pub fn reads_requests(&self) -> bool {
        self.reads_requests
    }

    /// Find the route for `host` (may carry `:port`) and `path` (query already removed);
    /// `req` is read only by routes with method, header or query matches.
    pub fn find(&self, host: &str, path: &str, req: &RequestHeader) -> Option<&Arc<Route>> {
        self.find_with(host, path, |r| r.matches_request(req))
    }

    /// The first route of `host` in match order whose path matches and that `accept`
    /// accepts (its non-path conditions; called only for routes whose path matched).
    pub fn find_with(
        &self,
        host: &str,
        path: &str,
        accept: impl FnMut(&Route) -> bool,
    ) -> Option<&Arc<Route>> {
        let vh = &self.vhosts[self.vhost_for(strip_port(host))?];
        vh.index.find(&vh.routes, path, accept)
    }

    fn vhost_for(&self, host: &str) -> Option<usize> {
        let mut buf = [0u8; 256];
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) && host.len() <= buf.len() {
            let b = &mut buf[..host.len()];
            b.copy_from_slice(host.as_bytes());
            b.make_ascii_lowercase();
            // Lowercasing ASCII keeps UTF-8 valid.
            std::str::from_utf8(b).unwrap_or(host)
        } else {
            host
        };
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|&(_, i)| i)
            .or(self.any)
    }

    /// Every route of every host (a route shared by hosts once per host).
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.vhosts.iter().flat_map(|v| v.routes.iter())
    }

    /// Routes in match order, for `/debug/configz`.
    pub fn describe(&self) -> serde_json::Value {
        let mut hosts: Vec<(String, usize)> =
            self.exact.iter().map(|(h, &i)| (h.clone(), i)).collect();
        hosts.sort();
        hosts.extend(self.wildcard.iter().map(|(s, i)| (format!("*{s}"), *i)));
        if let Some(i) = self.any {
            hosts.push(("*".into(), i));
        }
        let vhosts: Vec<serde_json::Value> = hosts
            .into_iter()
            .map(|(host, i)| {
                let routes: Vec<serde_json::Value> = self.vhosts[i]
                    .routes
                    .iter()
                    .map(|r| {
                        let (kind, path) = match &r.path {
                            PathMatch::Exact(p) => ("exact", p.clone()),
                            PathMatch::Prefix(p) => {
                                ("prefix", if p.is_empty() { "/".into() } else { p.clone() })
                            }
                            PathMatch::Regex(re) => ("regex", re.as_str().to_string()),
                        };
                        let mut m = r
                            .request_match
                            .as_ref()
                            .map_or_else(|| serde_json::json!({}), |m| m.describe());
                        m[kind] = path.into();
                        serde_json::json!({
                            "name": &*r.name,
                            "match": m,
                            "ignore_case": r.ignore_case,
                            "timeout_seconds": r.timeout.map(|t| t.as_secs_f64()),
                            "filters": r.policy.filters.iter().map(|f| f.name()).collect::<Vec<_>>(),
                            "ssl_redirect": r.ssl_redirect,
                            "mirror": r.policy.mirror.as_ref().map(|m| serde_json::json!({
                                "cluster": &*m.cluster_name,
                                "known": m.cluster.is_some(),
                                "percent": f64::from(m.per_million) / 10_000.0,
                            })),
                            "destinations": r.destinations.iter().map(|d| serde_json::json!({
                                "cluster": &*d.name,
                                "weight": d.weight,
                                "known": d.cluster.is_some(),
                                "protocol": format!("{:?}", d.protocol).to_lowercase(),
                                "tls": d.tls.as_ref().map(|t| &t.describe),
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                serde_json::json!({"host": host, "routes": routes})
            })
            .collect();
        serde_json::Value::Array(vhosts)
    }
}
