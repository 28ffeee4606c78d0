//! The route table: Ingress rules compiled into virtual hosts and ordered routes, with
//! a lookup that does not allocate.
//!
//! Host: exact beats `*.suffix` (longest suffix first); rules without host match last.
//! Within a host: Exact before Prefix/regex, then longer path first, then older Ingress
//! first (file mode: file name order), then rule order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::certificates::Secrets;
use super::clusters::{cluster_name, Cluster};
use super::destination::{self, Destination};
use super::upstream_tls::{self, UpstreamAnnotations, UpstreamTls};
use crate::resources::ingress::{self, IngressBackend, PathType};
use crate::resources::mcpbridge::RegistryProtocol;
use crate::resources::{FieldError, Ingress, SYSTEM_NAMESPACE};

#[derive(Debug)]
pub enum PathMatch {
    Exact(String),
    /// Element-wise prefix, stored without a trailing `/` (empty for `/`).
    Prefix(String),
    /// Anchored at the start of the path, as Higress turns `use-regex` paths into
    /// `<regex>.*` full matches.
    Regex(regex::Regex),
}

impl PathMatch {
    fn matches(&self, path: &str, ignore_case: bool) -> bool {
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
            PathMatch::Regex(r) => r.find(path).is_some_and(|m| m.start() == 0),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            PathMatch::Exact(_) => 0,
            _ => 1,
        }
    }
}

/// A destination of a route, resolved against the clusters of the snapshot.
#[derive(Debug)]
pub struct WeightedCluster {
    /// Shared, so Wasm plugins read it without a copy per request.
    pub name: Arc<str>,
    /// `None` when no registry defines the host (503 until it appears).
    pub cluster: Option<Arc<Cluster>>,
    pub weight: u32,
    /// The protocol spoken to it: `backend-protocol`, else the registry's.
    pub protocol: RegistryProtocol,
    /// TLS towards it (annotations, else the registry's); `None`: plain text.
    pub tls: Option<Arc<UpstreamTls>>,
}

#[derive(Debug)]
pub struct Route {
    /// What `route_name`, `_match_route_` and the access log see (shared, so Wasm plugins
    /// read it without a copy per request).
    pub name: Arc<str>,
    pub path: PathMatch,
    path_len: usize,
    pub ignore_case: bool,
    pub destinations: Vec<WeightedCluster>,
    total_weight: u32,
    /// `higress.io/timeout`; `None` falls back to `downstream.routeTimeout`.
    pub timeout: Option<Duration>,
    /// Plain-HTTP requests get a 308 to `https://` (`ssl-redirect`, `force-ssl-redirect`,
    /// or a domain with `enableHttps: force`).
    pub ssl_redirect: bool,
}

impl Route {
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
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Hosts are client input: a seeded hash, but not SipHash's cost on every request.
    exact: HashMap<String, usize, foldhash::fast::RandomState>,
    /// (suffix including the leading dot, vhost), longest suffix first.
    wildcard: Vec<(String, usize)>,
    any: Option<usize>,
    vhosts: Vec<VirtualHost>,
}

/// A problem found while translating one Ingress; the rest still translates.
#[derive(Debug, Clone)]
pub struct TranslateWarning {
    pub ingress: String,
    pub error: FieldError,
}

impl RouteTable {
    /// Find the route for `host` (may carry `:port`) and `path` (query already removed).
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        let vh = self.vhost_for(strip_port(host))?;
        self.vhosts[vh]
            .routes
            .iter()
            .find(|r| r.path.matches(path, r.ignore_case))
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
                        serde_json::json!({
                            "name": &*r.name,
                            "match": {kind: path},
                            "ignore_case": r.ignore_case,
                            "timeout_seconds": r.timeout.map(|t| t.as_secs_f64()),
                            "ssl_redirect": r.ssl_redirect,
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

    /// Compile the routes of `ingresses` (already filtered to our class, in age order).
    /// `secrets` serve `proxy-ssl-secret`; routes of the hosts in `force_https` redirect
    /// plain HTTP.
    pub fn build(
        ingresses: &[&Ingress],
        clusters: &BTreeMap<String, Arc<Cluster>>,
        secrets: &Secrets,
        force_https: &HashSet<String>,
        warnings: &mut Vec<TranslateWarning>,
    ) -> RouteTable {
        let mut by_host: Vec<(Option<String>, Vec<Arc<Route>>)> = Vec::new();
        let mut push = |host: Option<String>, route: Arc<Route>| match by_host
            .iter_mut()
            .find(|(h, _)| *h == host)
        {
            Some((_, v)) => v.push(route),
            None => by_host.push((host, vec![route])),
        };
        for ing in ingresses {
            let mut notes = Vec::new();
            let built = routes_of(ing, clusters, secrets, force_https, &mut notes);
            warnings.extend(notes.into_iter().map(|n| TranslateWarning {
                ingress: route_name(ing),
                error: FieldError::new("metadata.annotations", n),
            }));
            match built {
                Ok(routes) => {
                    for (host, r) in routes {
                        push(host, r);
                    }
                }
                Err(error) => warnings.push(TranslateWarning {
                    ingress: route_name(ing),
                    error,
                }),
            }
        }
        let mut table = RouteTable::default();
        for (host, mut routes) in by_host {
            // Stable: ties keep Ingress age order, then rule order.
            routes.sort_by(|a, b| {
                a.path
                    .rank()
                    .cmp(&b.path.rank())
                    .then(b.path_len.cmp(&a.path_len))
            });
            let idx = table.vhosts.len();
            table.vhosts.push(VirtualHost { routes });
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
}

/// `<name>` in the gateway namespace, else `<namespace>/<name>` (Higress's
/// GenerateUniqueRouteName).
pub fn route_name(ing: &Ingress) -> String {
    let m = &ing.metadata;
    if m.namespace == SYSTEM_NAMESPACE || m.namespace.is_empty() {
        m.name.clone()
    } else {
        format!("{}/{}", m.namespace, m.name)
    }
}

/// `host` without its `:port` (`[v6]:port` keeps the brackets).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

type HostRoutes = Vec<(Option<String>, Arc<Route>)>;

fn routes_of(
    ing: &Ingress,
    clusters: &BTreeMap<String, Arc<Cluster>>,
    secrets: &Secrets,
    force_https: &HashSet<String>,
    notes: &mut Vec<String>,
) -> Result<HostRoutes, FieldError> {
    let meta = &ing.metadata;
    let name: Arc<str> = route_name(ing).into();
    let upstream = UpstreamAnnotations::parse(meta)?;
    let ssl_redirect = ing.ssl_redirect();
    let ignore_case = meta.nginx_or_higress("ignore-path-case") == Some("true");
    let regex = ing.use_regex();
    let timeout = match meta.annotation(ingress::TIMEOUT_ANNOTATION) {
        None => None,
        Some(t) => Some(ingress::parse_timeout(t)?),
    };
    let annotated = match meta.annotation(destination::ANNOTATION) {
        Some(v) => Some(destination::parse(v)?),
        None => None,
    };
    let mut dests = |backend: &IngressBackend| -> Vec<WeightedCluster> {
        let list: Vec<Destination> = match (&backend.service, &annotated) {
            (Some(svc), _) => {
                let host = crate::resources::service::service_host(&svc.name, &meta.namespace);
                // A port by name is the Service port of that name.
                let port = svc.port.number.or_else(|| {
                    let by_name = svc.port.name.as_deref()?;
                    clusters
                        .values()
                        .find(|c| c.host == host && c.service_port.as_deref() == Some(by_name))
                        .map(|c| c.port)
                });
                vec![Destination {
                    weight: 100,
                    host,
                    port,
                    subset: String::new(),
                }]
            }
            (None, Some(list)) => list.clone(),
            (None, None) => Vec::new(),
        };
        list.into_iter()
            .map(|d| resolve(d, clusters, &upstream, secrets, notes))
            .collect()
    };
    let mut out = Vec::new();
    for rule in &ing.spec.rules {
        let Some(http) = &rule.http else { continue };
        let host = rule.host.as_ref().map(|h| h.to_ascii_lowercase());
        for p in &http.paths {
            let raw = p.path.clone().unwrap_or_else(|| "/".into());
            let path = match p.path_type {
                PathType::Exact => PathMatch::Exact(raw.clone()),
                PathType::ImplementationSpecific if regex => {
                    let pat = if ignore_case {
                        format!("(?i){raw}")
                    } else {
                        raw.clone()
                    };
                    PathMatch::Regex(regex::Regex::new(&pat).map_err(|e| {
                        FieldError::new("spec.rules.http.paths.path", format!("invalid regex: {e}"))
                    })?)
                }
                _ => PathMatch::Prefix(raw.trim_end_matches('/').to_string()),
            };
            let destinations = dests(&p.backend);
            let total_weight = destinations.iter().map(|d| d.weight).sum();
            out.push((
                host.clone(),
                Arc::new(Route {
                    name: name.clone(),
                    path,
                    path_len: raw.len(),
                    ignore_case,
                    destinations,
                    total_weight,
                    timeout,
                    ssl_redirect: ssl_redirect
                        || force_https.contains(host.as_deref().unwrap_or("*")),
                }),
            ));
        }
    }
    if let Some(b) = &ing.spec.default_backend {
        let destinations = dests(b);
        let total_weight = destinations.iter().map(|d| d.weight).sum();
        out.push((
            None,
            Arc::new(Route {
                name: format!("{name}-default").into(),
                path: PathMatch::Prefix(String::new()),
                path_len: 0,
                ignore_case: false,
                destinations,
                total_weight,
                timeout,
                ssl_redirect: ssl_redirect || force_https.contains("*"),
            }),
        ));
    }
    Ok(out)
}

/// A destination's cluster: `outbound|<port>|<subset>|<host>`, the port defaulting to the
/// registry's. An unknown host stays unresolved (503 `no healthy upstream`). The
/// Ingress's upstream annotations decide its protocol and TLS.
fn resolve(
    d: Destination,
    clusters: &BTreeMap<String, Arc<Cluster>>,
    upstream: &UpstreamAnnotations,
    secrets: &Secrets,
    notes: &mut Vec<String>,
) -> WeightedCluster {
    let port = d
        .port
        .or_else(|| clusters.values().find(|c| c.host == d.host).map(|c| c.port));
    let name = match port {
        Some(p) => cluster_name(p, &d.subset, &d.host),
        None => format!("outbound|||{}", d.host),
    };
    let cluster = clusters.get(&name).cloned();
    if cluster.is_none() {
        tracing::warn!(cluster = %name, "destination names a host no registry defines yet; 503 until it appears");
    }
    let registry = match &cluster {
        Some(c) => (c.protocol, c.tls.as_ref(), c.sni.as_deref()),
        None => (RegistryProtocol::Http, None, None),
    };
    let (protocol, tls) = upstream_tls::resolve(upstream, registry, secrets, notes);
    WeightedCluster {
        name: name.into(),
        cluster,
        weight: d.weight,
        protocol,
        tls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::mcpbridge::RegistryProtocol;

    fn ingress(name: &str, annotations: &str, rules: &str) -> Ingress {
        let y = format!(
            "metadata:\n  name: {name}\n  namespace: higress-system\n  annotations:\n    higress.io/destination: a.static\n{annotations}spec:\n  rules:\n{rules}"
        );
        let mut i = Ingress::parse(y.as_bytes()).unwrap();
        i.metadata.namespace = SYSTEM_NAMESPACE.into();
        i
    }

    fn rule(host: Option<&str>, paths: &[(&str, &str)]) -> String {
        let mut s = String::new();
        match host {
            Some(h) => s.push_str(&format!("  - host: \"{h}\"\n    http:\n      paths:\n")),
            None => s.push_str("  - http:\n      paths:\n"),
        }
        for (t, p) in paths {
            s.push_str(&format!(
                "      - path: \"{p}\"\n        pathType: {t}\n        backend:\n          resource: {{kind: McpBridge, name: default}}\n"
            ));
        }
        s
    }

    fn clusters() -> BTreeMap<String, Arc<Cluster>> {
        let c = Cluster::new(
            "a.static",
            80,
            RegistryProtocol::Http,
            vec!["127.0.0.1:1".parse().unwrap()],
            &mut crate::stats::ClusterStatsCache::detached(),
        );
        [(c.name.clone(), Arc::new(c))].into_iter().collect()
    }

    fn table(ings: &[Ingress]) -> RouteTable {
        let refs: Vec<&Ingress> = ings.iter().collect();
        let mut w = vec![];
        let t = RouteTable::build(&refs, &clusters(), &Secrets::new(), &HashSet::new(), &mut w);
        assert!(w.is_empty(), "{w:?}");
        t
    }

    fn hit(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.find(host, path).map(|r| match &r.path {
            PathMatch::Exact(p) => format!("={p}"),
            PathMatch::Prefix(p) => format!("^{p}"),
            PathMatch::Regex(r) => format!("~{}", r.as_str()),
        })
    }

    #[test]
    fn prefix_is_element_wise() {
        let t = table(&[ingress(
            "r",
            "",
            &rule(Some("a.com"), &[("Prefix", "/foo/")]),
        )]);
        assert_eq!(hit(&t, "a.com", "/foo").as_deref(), Some("^/foo"));
        assert_eq!(hit(&t, "a.com", "/foo/"), Some("^/foo".into()));
        assert_eq!(hit(&t, "a.com", "/foo/bar"), Some("^/foo".into()));
        assert_eq!(hit(&t, "a.com", "/foobar"), None);
    }

    #[test]
    fn exact_before_prefix_then_longer_first() {
        let t = table(&[ingress(
            "r",
            "",
            &rule(
                Some("a.com"),
                &[("Prefix", "/"), ("Prefix", "/api"), ("Exact", "/api")],
            ),
        )]);
        assert_eq!(hit(&t, "a.com", "/api").as_deref(), Some("=/api"));
        assert_eq!(hit(&t, "a.com", "/api/x").as_deref(), Some("^/api"));
        assert_eq!(hit(&t, "a.com", "/other").as_deref(), Some("^"));
    }

    #[test]
    fn hosts_exact_then_wildcard_then_any() {
        let t = table(&[
            ingress("any", "", &rule(None, &[("Exact", "/any")])),
            ingress("wild", "", &rule(Some("*.a.com"), &[("Exact", "/wild")])),
            ingress("deep", "", &rule(Some("*.b.a.com"), &[("Exact", "/deep")])),
            ingress("exact", "", &rule(Some("x.a.com"), &[("Exact", "/exact")])),
        ]);
        let name = |h: &str, p: &str| t.find(h, p).map(|r| r.name.clone());
        assert_eq!(name("X.A.com:8080", "/exact").as_deref(), Some("exact"));
        assert_eq!(
            name("x.a.com", "/wild"),
            None,
            "exact host wins, no fallback"
        );
        assert_eq!(name("y.a.com", "/wild").as_deref(), Some("wild"));
        assert_eq!(name("c.y.a.com", "/wild").as_deref(), Some("wild"));
        assert_eq!(name("c.b.a.com", "/deep").as_deref(), Some("deep"));
        assert_eq!(
            name("a.com", "/any").as_deref(),
            Some("any"),
            "*.a.com does not match a.com"
        );
        assert_eq!(name("other", "/any").as_deref(), Some("any"));
    }

    #[test]
    fn ties_keep_ingress_order() {
        let t = table(&[
            ingress("first", "", &rule(Some("a.com"), &[("Prefix", "/x")])),
            ingress("second", "", &rule(Some("a.com"), &[("Prefix", "/x")])),
        ]);
        assert_eq!(&*t.find("a.com", "/x").unwrap().name, "first");
    }

    #[test]
    fn ignore_case_and_regex() {
        let t = table(&[ingress(
            "r",
            "    higress.io/ignore-path-case: \"true\"\n    higress.io/use-regex: \"true\"\n",
            &rule(
                Some("a.com"),
                &[
                    ("Exact", "/Exact"),
                    ("Prefix", "/Pre"),
                    ("ImplementationSpecific", "/re/[0-9]+$"),
                ],
            ),
        )]);
        assert!(t.find("a.com", "/exact").is_some());
        assert_eq!(hit(&t, "a.com", "/PRE/x").as_deref(), Some("^/Pre"));
        assert!(t.find("a.com", "/RE/123").is_some());
        assert!(t.find("a.com", "/re/12a").is_none());
        assert!(
            t.find("a.com", "/x/re/1").is_none(),
            "regex is anchored at the start"
        );
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let ing = ingress("w", "", &rule(Some("a.com"), &[("Prefix", "/")]));
        let mut ing = ing;
        ing.metadata.annotations.insert(
            "higress.io/destination".into(),
            "20% a.static\n80% b.static:81".into(),
        );
        let t = table(&[ing]);
        let r = t.find("a.com", "/").unwrap();
        assert_eq!(&*r.destinations[1].name, "outbound|81||b.static");
        assert!(r.destinations[1].cluster.is_none());
        let mut counts = [0u32; 2];
        for i in 0..1000u64 {
            // Midpoints of 1000 equal slices of the roll range.
            let roll = ((2 * i + 1) * (1u64 << 32) / 2000) as u32;
            let (_, d) = r.pick(roll).unwrap();
            counts[usize::from(d.name.contains("b.static"))] += 1;
        }
        assert_eq!(counts, [200, 800]);
    }

    #[test]
    fn default_backend_is_a_catch_all_route() {
        let mut ing = ingress("d", "", "    []\n");
        ing.spec.default_backend = Some(IngressBackend {
            service: None,
            resource: Some(Default::default()),
        });
        let t = table(&[ing]);
        assert_eq!(&*t.find("any.host", "/whatever").unwrap().name, "d-default");
    }

    #[test]
    fn strip_port_handles_v6() {
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
    }
}
