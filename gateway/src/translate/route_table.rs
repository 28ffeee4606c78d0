//! Ingress rules compiled into the route table of `model/route.rs`: virtual hosts and
//! their routes in match order, canary Ingresses merged in (`canary.rs`).
//!
//! Host: exact beats `*.suffix` (longest suffix first); rules without host match last.
//!
//! Within a host, Higress's order (`SortHTTPRoutes`), a stable sort:
//! 1. `spec.defaultBackend` last, and just before it a Prefix `/` with no method, header
//!    or query match (the catch-all);
//! 2. by path type: Exact, then Prefix, then regex (`use-regex` and `full-path-regex`
//!    together);
//! 3. within a type, the longer path first (a Prefix path counted without its trailing
//!    `/`, a regex as written);
//! 4. then a route with `match-method` before one without, fewer methods first (the
//!    shorter `GET|POST` regex);
//! 5. then more header matches first (a canary's header or cookie counts), then more
//!    query matches first;
//! 6. ties keep their order: older Ingress first (file mode: file name order), then rule
//!    and path order; a canary's routes just before its main route.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::access::{AccessInputs, IngressAccess};
use super::canary::{self, Attached, Condition, Extra, Pairing, PathKey, PathKind};
use super::certificates::Secrets;
use super::cors::cors_filter;
use super::destinations::{resolve, ClusterPorts};
use super::hosts::VirtualHosts;
use super::mirror::mirror_policy;
use super::{regex_cache, route_name};
use crate::annotations::Destination;
use crate::filters::local_rate_limit::LocalRateLimitStats;
use crate::model::matcher::RequestMatch;
use crate::model::{Cluster, PathMatch, Route, WeightedCluster};
use crate::resources::ingress::IngressBackend;
use crate::resources::{FieldError, Ingress};

/// A problem found while translating one Ingress; the rest still translates.
#[derive(Debug, Clone)]
pub struct TranslateWarning {
    pub ingress: String,
    pub error: FieldError,
}

/// What one translation reads besides the Ingresses.
struct Ctx<'a> {
    clusters: &'a BTreeMap<String, Arc<Cluster>>,
    ports: ClusterPorts<'a>,
    secrets: &'a Secrets,
    force_https: &'a HashSet<String>,
    access: AccessInputs<'a>,
}

/// Compile the routes of `ingresses` (already filtered to our class, in age order) into
/// virtual hosts, for other translators to add theirs to. `secrets` serve
/// `proxy-ssl-secret` and `auth-secret`; routes of the hosts in `force_https` redirect
/// plain HTTP; local rate limits count into `rate_limit_stats`. The caller starts the
/// regex cache's generation ([`regex_cache::new_generation`]) once per snapshot.
pub fn build_hosts(
    ingresses: &[&Ingress],
    clusters: &BTreeMap<String, Arc<Cluster>>,
    secrets: &Secrets,
    force_https: &HashSet<String>,
    rate_limit_stats: &LocalRateLimitStats,
    warnings: &mut Vec<TranslateWarning>,
) -> VirtualHosts {
    let ctx = Ctx {
        clusters,
        ports: ClusterPorts::new(clusters),
        secrets,
        force_https,
        access: AccessInputs::new(ingresses, secrets, rate_limit_stats),
    };
    // `app-root` per host: the newest Ingress's (Higress records the latest).
    let mut app_roots: Vec<(Option<String>, String, String)> = Vec::new();
    for ing in ingresses {
        if let Some(root) = &ing.annotations.redirect.app_root {
            for rule in &ing.spec.rules {
                let host = rule.host.as_ref().map(|h| h.to_ascii_lowercase());
                app_roots.retain(|(h, _, _)| *h != host);
                app_roots.push((host, route_name(ing), root.clone()));
            }
        }
    }
    let pairing = canary::pair(ingresses);
    warnings.extend(pairing.unpaired.iter().map(|u| TranslateWarning {
        ingress: route_name(u.ingress),
        error: u.error.clone(),
    }));
    let mut by_host: Vec<(Option<String>, Vec<Ranked>)> = Vec::new();
    // Hosts in the order they first appear, found by hash (not a scan per route).
    let mut host_at: HashMap<Option<String>, usize> = HashMap::new();
    let mut push = |host: Option<String>, route: Ranked| match host_at.get(&host) {
        Some(&i) => by_host[i].1.push(route),
        None => {
            host_at.insert(host.clone(), by_host.len());
            by_host.push((host, vec![route]));
        }
    };
    for (i, ing) in ingresses.iter().enumerate() {
        // A canary's paths act through its main Ingress's routes.
        if ing.annotations.canary.is_some() {
            continue;
        }
        let mut notes = Vec::new();
        let built = routes_of(i, ing, &pairing, &ctx, &mut notes);
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
    let hosts = by_host
        .into_iter()
        .map(|(host, mut routes)| {
            routes.sort_by(|a, b| a.order.cmp_higress(&b.order));
            let mut routes: Vec<Arc<Route>> = routes.into_iter().map(|r| r.route).collect();
            // Higress puts the app-root redirect (an exact `/`) first on its host.
            if let Some((_, name, root)) = app_roots.iter().find(|(h, _, _)| *h == host) {
                let https = force_https.contains(host.as_deref().unwrap_or("*"));
                let route = super::rewrite::app_root_route(name, root, https);
                routes.insert(0, Arc::new(route));
            }
            (host, routes)
        })
        .collect();
    VirtualHosts::from_list(hosts)
}

/// What Higress's route order looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RouteOrder {
    default_backend: bool,
    /// A Prefix `/` without method, header or query match.
    catch_all: bool,
    /// Exact 0, Prefix 1, regex 2.
    kind: u8,
    /// The path's length as Higress keeps it.
    path_len: usize,
    /// The length of the method regex; `None`: any method.
    methods: Option<usize>,
    headers: usize,
    query: usize,
}

impl RouteOrder {
    fn of(key: &PathKey, m: &RequestMatch) -> RouteOrder {
        RouteOrder {
            default_backend: false,
            catch_all: key.kind == PathKind::Prefix && key.path == "/" && m.is_empty(),
            kind: match key.kind {
                PathKind::Exact => 0,
                PathKind::Prefix => 1,
                PathKind::PrefixRegex | PathKind::FullPathRegex => 2,
            },
            path_len: key.path.len(),
            methods: m.methods.as_ref().map(|m| m.regex_len()),
            headers: m.header_count(),
            query: m.query.len(),
        }
    }

    /// `Less` when `self` is tried first.
    fn cmp_higress(&self, other: &RouteOrder) -> Ordering {
        self.default_backend
            .cmp(&other.default_backend)
            .then(self.catch_all.cmp(&other.catch_all))
            .then(self.kind.cmp(&other.kind))
            .then(other.path_len.cmp(&self.path_len))
            .then(match (self.methods, other.methods) {
                (Some(a), Some(b)) => a.cmp(&b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
            .then(other.headers.cmp(&self.headers))
            .then(other.query.cmp(&self.query))
    }
}

/// A route with what orders it.
struct Ranked {
    order: RouteOrder,
    route: Arc<Route>,
}

type HostRoutes = Vec<(Option<String>, Ranked)>;

/// The destinations of `backend` of `ing`: its Service, else `higress.io/destination`,
/// resolved with `ing`'s upstream annotations.
fn backend_dests(
    ing: &Ingress,
    backend: &IngressBackend,
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Vec<WeightedCluster> {
    let meta = &ing.metadata;
    let one;
    let list: &[Destination] = match (&backend.service, &ing.annotations.destination) {
        (Some(svc), _) => {
            let host = crate::resources::service::service_host(&svc.name, &meta.namespace);
            // A port by name is the Service port of that name.
            let port = svc.port.number.or_else(|| {
                let by_name = svc.port.name.as_deref()?;
                ctx.ports.named.get(&(host.as_str(), by_name)).copied()
            });
            one = [Destination {
                weight: 100,
                host,
                port,
                subset: String::new(),
            }];
            &one
        }
        (None, Some(list)) => list,
        (None, None) => &[],
    };
    list.iter()
        .map(|d| {
            resolve(
                d,
                &ctx.ports,
                &ing.annotations.upstream,
                &meta.namespace,
                ctx.secrets,
                notes,
            )
        })
        .collect()
}

/// The path matcher of `key`.
fn path_match(key: &PathKey, ignore_case: bool) -> Result<PathMatch, FieldError> {
    let regex = |pattern: String| {
        let pattern = if ignore_case {
            format!("(?i){pattern}")
        } else {
            pattern
        };
        regex_cache::compile(&pattern)
            .map(PathMatch::Regex)
            .map_err(|e| {
                FieldError::new(
                    "spec.rules.http.paths.path",
                    format!("invalid regex: {}", crate::model::matcher::regex_error(e)),
                )
            })
    };
    match key.kind {
        PathKind::Exact => Ok(PathMatch::Exact(key.path.clone())),
        PathKind::Prefix => Ok(PathMatch::Prefix(
            key.path.trim_end_matches('/').to_string(),
        )),
        // Matched from the start of the path (PathMatch::matches); Higress's `<path>.*`.
        PathKind::PrefixRegex => regex(key.path.clone()),
        // Higress's `<path>$`, anchored at both ends.
        PathKind::FullPathRegex => regex(format!("^(?:{})$", key.path)),
    }
}

fn routes_of(
    index: usize,
    ing: &Ingress,
    pairing: &Pairing<'_>,
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Result<HostRoutes, FieldError> {
    let ann = &ing.annotations;
    let name: Arc<str> = route_name(ing).into();
    let ssl_redirect = ann.ssl_redirect;
    let ignore_case = ann.path.ignore_case;
    let timeout = ann.timeout;
    let fallback =
        super::retry::FallbackTarget::resolve(ann, &ing.metadata.namespace, ctx.clusters, notes);
    let policy = super::rewrite::IngressPolicy::new(ann);
    let access = IngressAccess::new(ing, &ctx.access, notes)?;
    // A URL redirect replaces the route's `ssl-redirect`, as in Higress.
    let ssl_redirect = ssl_redirect && !policy.redirects();
    // Built once per Ingress, shared by its routes. CORS is first among a route's filters
    // (as Envoy's CORS filter comes before the others), so its headers are on their
    // replies too.
    let cors = ann.cors.as_deref().map(cors_filter).transpose()?;
    let mirror = ann
        .mirror
        .as_ref()
        .map(|m| Arc::new(mirror_policy(m, &ing.metadata.namespace, ctx.clusters)));
    let with_cors_mirror = |route: &mut Route| {
        if let Some(f) = &cors {
            route.policy.filters.insert(0, f.clone());
        }
        route.policy.mirror = mirror.clone();
    };
    let mut out = Vec::new();
    for (ri, rule) in ing.spec.rules.iter().enumerate() {
        let Some(http) = &rule.http else { continue };
        let host = rule.host.as_ref().map(|h| h.to_ascii_lowercase());
        let redirect = ssl_redirect || ctx.force_https.contains(host.as_deref().unwrap_or("*"));
        for (pi, p) in http.paths.iter().enumerate() {
            let key = canary::path_key(ing, host.as_deref(), p);
            let raw = p.path.as_deref().unwrap_or("/");
            // Every route of this path: the main one and those a canary adds before it.
            // What the main Ingress's annotations put on a route goes here, so canary
            // routes inherit it.
            let route = |name: Arc<str>, dests, m: RequestMatch| -> Result<Ranked, FieldError> {
                let order = RouteOrder::of(&key, &m);
                let mut route = Route::new(
                    name,
                    path_match(&key, ignore_case)?,
                    ignore_case,
                    dests,
                    timeout,
                    redirect,
                )
                .with_request_match(m);
                route.policy.filters = access.route_filters(host.as_deref(), &ctx.access);
                with_cors_mirror(&mut route);
                super::retry::apply(&mut route, ann, fallback.as_ref());
                policy.apply(&mut route, raw)?;
                Ok(Ranked {
                    order,
                    route: Arc::new(route),
                })
            };
            let main_dests = backend_dests(ing, &p.backend, ctx, notes);
            let attached = pairing.of(index, ri, pi);
            for extra in canary::extras(attached) {
                let (name, dests, condition) = match extra {
                    Extra::Canary(a, c) => (
                        Arc::from(route_name(a.ingress)),
                        backend_dests(a.ingress, a.backend, ctx, notes),
                        c,
                    ),
                    Extra::Main(c) => (name.clone(), main_dests.clone(), c),
                };
                let mut m = ann.matching.as_deref().cloned().unwrap_or_default();
                match condition {
                    Condition::Header(h) => m.headers.push(h),
                    Condition::Cookie(c) => m.cookies.push(c),
                }
                out.push((host.clone(), route(name, dests, m)?));
            }
            let dests = weighted(main_dests, attached, ctx, notes);
            out.push((
                host.clone(),
                route(
                    name.clone(),
                    dests,
                    ann.matching.as_deref().cloned().unwrap_or_default(),
                )?,
            ));
        }
    }
    if let Some(b) = &ing.spec.default_backend {
        let mut route = Route::new(
            format!("{name}-default").into(),
            PathMatch::Prefix(String::new()),
            false,
            backend_dests(ing, b, ctx, notes),
            timeout,
            ssl_redirect || ctx.force_https.contains("*"),
        );
        route.policy.filters = access.route_filters(None, &ctx.access);
        with_cors_mirror(&mut route);
        super::retry::apply(&mut route, ann, fallback.as_ref());
        policy.apply(&mut route, "/")?;
        let order = RouteOrder {
            default_backend: true,
            ..RouteOrder::of(
                &PathKey {
                    host: None,
                    kind: PathKind::Prefix,
                    path: "/".into(),
                },
                &RequestMatch::default(),
            )
        };
        out.push((
            None,
            Ranked {
                order,
                route: Arc::new(route),
            },
        ));
    }
    Ok(out)
}

/// The main destinations sharing traffic with the canaries that have a `canary-weight`.
fn weighted(
    main: Vec<WeightedCluster>,
    attached: &[Attached<'_>],
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Vec<WeightedCluster> {
    let mut total = None;
    let canaries: Vec<(u32, Vec<WeightedCluster>)> = attached
        .iter()
        .filter_map(|a| {
            let w = a.canary.weight?;
            total.get_or_insert(a.canary.weight_total);
            Some((w, backend_dests(a.ingress, a.backend, ctx, notes)))
        })
        .collect();
    canary::split(
        main,
        canaries,
        total.unwrap_or(crate::annotations::canary::DEFAULT_WEIGHT_TOTAL),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RouteTable;

    /// The table of `ingresses` alone, in a new regex generation.
    fn build(
        ingresses: &[&Ingress],
        clusters: &BTreeMap<String, Arc<Cluster>>,
        secrets: &Secrets,
        force_https: &HashSet<String>,
        rate_limit_stats: &LocalRateLimitStats,
        warnings: &mut Vec<TranslateWarning>,
    ) -> RouteTable {
        regex_cache::new_generation();
        build_hosts(
            ingresses,
            clusters,
            secrets,
            force_https,
            rate_limit_stats,
            warnings,
        )
        .into_table()
    }
    use crate::model::Protocol;
    use crate::resources::SYSTEM_NAMESPACE;
    use pingora_http::RequestHeader;

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
            Protocol::Http,
            vec!["127.0.0.1:1".parse().unwrap()],
            &mut crate::stats::ClusterStatsCache::detached(),
        );
        [(c.name.clone(), Arc::new(c))].into_iter().collect()
    }

    fn test_stats() -> LocalRateLimitStats {
        LocalRateLimitStats::register(&telemetry::stats::Registry::new())
    }

    fn table(ings: &[Ingress]) -> RouteTable {
        let refs: Vec<&Ingress> = ings.iter().collect();
        let mut w = vec![];
        let stats = LocalRateLimitStats::register(&telemetry::stats::Registry::new());
        let t = build(
            &refs,
            &clusters(),
            &Secrets::new(),
            &HashSet::new(),
            &stats,
            &mut w,
        );
        assert!(w.is_empty(), "{w:?}");
        t
    }

    /// A GET of `target` (path and query).
    fn get(target: &str) -> RequestHeader {
        req("GET", target, &[])
    }

    fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn hit(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.find(host, path, &get(path)).map(|r| match &r.path {
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
        let name = |h: &str, p: &str| t.find(h, p, &get(p)).map(|r| r.name.clone());
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
        assert_eq!(&*t.find("a.com", "/x", &get("/x")).unwrap().name, "first");
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
        assert!(t.find("a.com", "/exact", &get("/exact")).is_some());
        // use-regex makes every path of the Ingress a regex, whatever its type (Higress).
        assert_eq!(hit(&t, "a.com", "/PRE/x").as_deref(), Some("~(?i)/Pre"));
        assert!(t.find("a.com", "/RE/123", &get("/RE/123")).is_some());
        assert!(t.find("a.com", "/re/12a", &get("/re/12a")).is_none());
        assert!(
            t.find("a.com", "/x/re/1", &get("/x/re/1")).is_none(),
            "regex is anchored at the start"
        );
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let mut ing = ingress("w", "", &rule(Some("a.com"), &[("Prefix", "/")]));
        ing.metadata.annotations.insert(
            "higress.io/destination".into(),
            "20% a.static\n80% b.static:81".into(),
        );
        // Annotations are parsed with the Ingress.
        ing.annotations =
            crate::annotations::IngressAnnotations::parse(&ing.metadata.annotations).unwrap();
        let t = table(&[ing]);
        let r = t.find("a.com", "/", &get("/")).unwrap();
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
    fn cors_and_mirror_go_on_every_route_of_the_ingress() {
        let ing = ingress(
            "p",
            "    nginx.ingress.kubernetes.io/enable-cors: \"true\"\n    higress.io/mirror-target-fqdn: a.static\n    higress.io/mirror-percentage: \"25\"\n",
            &rule(Some("a.com"), &[("Prefix", "/x"), ("Exact", "/y")]),
        );
        let t = table(&[ing]);
        for path in ["/x", "/y"] {
            let r = t.find("a.com", path, &get(path)).unwrap();
            assert_eq!(r.policy.filters.len(), 1);
            let m = r.policy.mirror.as_ref().unwrap();
            assert_eq!(&*m.cluster_name, "outbound|80||a.static");
            assert!(m.cluster.is_some());
            assert_eq!(m.per_million, 250_000);
        }
        // A Service target: `<name>.<namespace>.svc.cluster.local`, unknown here.
        let ing = ingress(
            "s",
            "    nginx.ingress.kubernetes.io/mirror-target-service: \"shop/app:8080\"\n",
            &rule(Some("b.com"), &[("Prefix", "/")]),
        );
        let t = table(&[ing]);
        let m = t
            .find("b.com", "/", &get("/"))
            .unwrap()
            .policy
            .mirror
            .as_ref()
            .unwrap();
        assert_eq!(
            &*m.cluster_name,
            "outbound|8080||app.shop.svc.cluster.local"
        );
        assert!(m.cluster.is_none());
        assert!(t
            .find("b.com", "/", &get("/"))
            .unwrap()
            .policy
            .filters
            .is_empty());
    }

    #[test]
    fn default_backend_is_a_catch_all_route() {
        let mut ing = ingress("d", "", "    []\n");
        ing.spec.default_backend = Some(IngressBackend {
            service: None,
            resource: Some(Default::default()),
        });
        let t = table(&[ing]);
        assert_eq!(
            &*t.find("any.host", "/whatever", &get("/whatever"))
                .unwrap()
                .name,
            "d-default"
        );
    }

    fn names(t: &RouteTable, host: &str, r: &RequestHeader) -> Option<String> {
        t.find(host, r.uri.path(), r).map(|r| r.name.to_string())
    }

    #[test]
    fn higress_order_type_length_methods_headers_query() {
        let m = |k: &str, v: &str| format!("    higress.io/{k}: \"{v}\"\n");
        let t = table(&[
            ingress("catch-all", "", &rule(Some("a.com"), &[("Prefix", "/")])),
            ingress(
                "regex",
                &m("use-regex", "true"),
                &rule(Some("a.com"), &[("ImplementationSpecific", "/api/v[0-9]+")]),
            ),
            ingress("prefix", "", &rule(Some("a.com"), &[("Prefix", "/api/")])),
            ingress(
                "get-post",
                &m("match-method", "GET POST"),
                &rule(Some("a.com"), &[("Prefix", "/api")]),
            ),
            ingress(
                "get",
                &m("match-method", "GET"),
                &rule(Some("a.com"), &[("Prefix", "/api")]),
            ),
            ingress(
                "header",
                &m("exact-match-header-x-env", "dev"),
                &rule(Some("a.com"), &[("Prefix", "/api")]),
            ),
            ingress(
                "query",
                &m("exact-match-query-v", "2"),
                &rule(Some("a.com"), &[("Prefix", "/api")]),
            ),
            ingress(
                "two-headers",
                &format!(
                    "{}{}",
                    m("exact-match-header-x-env", "dev"),
                    m("prefix-match-header-x-user", "a")
                ),
                &rule(Some("a.com"), &[("Prefix", "/api")]),
            ),
        ]);
        let n = |r: RequestHeader| names(&t, "a.com", &r);
        // Methods first (fewer first), then more headers, then queries, then the plain one.
        assert_eq!(n(get("/api/v1")).as_deref(), Some("get"));
        assert_eq!(n(req("POST", "/api/x", &[])).as_deref(), Some("get-post"));
        let both = [("x-env", "dev"), ("x-user", "ab")];
        assert_eq!(n(req("PUT", "/api", &both)).as_deref(), Some("two-headers"));
        assert_eq!(n(req("PUT", "/api", &both[..1])).as_deref(), Some("header"));
        assert_eq!(n(req("PUT", "/api?v=2", &[])).as_deref(), Some("query"));
        assert_eq!(n(req("PUT", "/api?v=3", &[])).as_deref(), Some("prefix"));
        // Prefix before regex even when the regex is longer; the catch-all after both.
        assert_eq!(n(req("PUT", "/api/v2", &[])).as_deref(), Some("prefix"));
        let t2 = table(&[
            ingress("catch-all", "", &rule(Some("a.com"), &[("Prefix", "/")])),
            ingress(
                "regex",
                &m("use-regex", "true"),
                &rule(Some("a.com"), &[("ImplementationSpecific", "/v[0-9]+")]),
            ),
        ]);
        assert_eq!(names(&t2, "a.com", &get("/v2/x")).as_deref(), Some("regex"));
        assert_eq!(
            names(&t2, "a.com", &get("/x")).as_deref(),
            Some("catch-all")
        );
    }

    #[test]
    fn full_path_regex_matches_the_whole_path() {
        let t = table(&[ingress(
            "full",
            "    higress.io/full-path-regex: \"true\"\n",
            &rule(
                Some("a.com"),
                &[("ImplementationSpecific", "/item/[0-9]+|/sku/[a-z]+")],
            ),
        )]);
        assert!(t.find("a.com", "/item/12", &get("/item/12")).is_some());
        assert!(t.find("a.com", "/sku/ab", &get("/sku/ab")).is_some());
        assert!(t.find("a.com", "/item/12/x", &get("/item/12/x")).is_none());
        assert!(t.find("a.com", "/x/item/1", &get("/x/item/1")).is_none());
    }

    fn canary_table(ings: &[Ingress]) -> (RouteTable, Vec<TranslateWarning>) {
        let refs: Vec<&Ingress> = ings.iter().collect();
        let mut w = vec![];
        let t = build(
            &refs,
            &clusters(),
            &Secrets::new(),
            &HashSet::new(),
            &test_stats(),
            &mut w,
        );
        (t, w)
    }

    #[test]
    fn canary_by_header_cookie_and_weight_in_nginx_precedence() {
        let n = "nginx.ingress.kubernetes.io";
        let main = ingress("main", "", &rule(Some("a.com"), &[("Prefix", "/app")]));
        let mut canary = ingress(
            "canary",
            &format!(
                "    {n}/canary: \"true\"\n    {n}/canary-by-header: x-canary\n    {n}/canary-by-cookie: c\n    {n}/canary-weight: \"30\"\n"
            ),
            &rule(Some("a.com"), &[("Prefix", "/app/")]),
        );
        canary
            .metadata
            .annotations
            .insert("higress.io/destination".into(), "b.static".into());
        canary.annotations =
            crate::annotations::IngressAnnotations::parse(&canary.metadata.annotations).unwrap();
        let (t, w) = canary_table(&[main, canary]);
        assert!(w.is_empty(), "{w:?}");
        let route = |headers: &[(&str, &str)]| {
            t.find("a.com", "/app", &req("GET", "/app", headers))
                .unwrap()
        };
        assert_eq!(&*route(&[("x-canary", "always")]).name, "canary");
        assert_eq!(
            &*route(&[("x-canary", "always"), ("cookie", "c=never")]).name,
            "canary"
        );
        let never = route(&[("x-canary", "never"), ("cookie", "c=always")]);
        assert_eq!(
            (&*never.name, never.destinations.len()),
            ("main", 1),
            "never beats the cookie and the weight"
        );
        assert_eq!(
            &*route(&[("x-canary", "other"), ("cookie", "c=always")]).name,
            "canary"
        );
        let never = route(&[("cookie", "a=1; c=never")]);
        assert_eq!((&*never.name, never.destinations.len()), ("main", 1));
        let split = route(&[]);
        assert_eq!(&*split.name, "main");
        let w: Vec<u32> = split.destinations.iter().map(|d| d.weight).collect();
        assert_eq!(w, [700_000, 300_000]);
        assert_eq!(&*split.destinations[1].name, "outbound|||b.static");
    }

    #[test]
    fn canary_without_main_names_both() {
        let n = "nginx.ingress.kubernetes.io";
        let main = ingress("main", "", &rule(Some("a.com"), &[("Prefix", "/app")]));
        let canary = ingress(
            "lost",
            &format!("    {n}/canary: \"true\"\n    {n}/canary-weight: \"10\"\n"),
            &rule(Some("a.com"), &[("Prefix", "/app"), ("Exact", "/app")]),
        );
        let (t, w) = canary_table(&[main, canary]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].ingress, "lost");
        assert_eq!(
            w[0].error.to_string(),
            "spec.rules[0].http.paths[1]: canary Ingress has no main (non-canary) Ingress with host \"a.com\", Exact path \"/app\""
        );
        // The paired path still splits; the main route is otherwise unchanged.
        assert_eq!(
            t.find("a.com", "/app", &get("/app"))
                .unwrap()
                .destinations
                .len(),
            2
        );
    }

    #[test]
    fn canary_pairs_only_with_the_same_match_annotations() {
        let n = "nginx.ingress.kubernetes.io";
        let main = ingress(
            "main",
            "    higress.io/match-method: GET\n",
            &rule(Some("a.com"), &[("Prefix", "/")]),
        );
        let canary = |name: &str, extra: &str| {
            ingress(
                name,
                &format!("    {n}/canary: \"true\"\n    {n}/canary-by-header: x\n{extra}"),
                &rule(Some("a.com"), &[("Prefix", "/")]),
            )
        };
        let (t, w) = canary_table(&[
            main,
            canary("with", "    higress.io/match-method: GET\n"),
            canary("without", ""),
        ]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].ingress, "without");
        let r = t
            .find("a.com", "/", &req("GET", "/", &[("x", "always")]))
            .unwrap();
        assert_eq!(&*r.name, "with");
        assert!(t
            .find("a.com", "/", &req("POST", "/", &[("x", "always")]))
            .is_none());
    }

    #[test]
    fn destination_without_port_takes_the_first_cluster_of_its_host() {
        let mut cs = clusters();
        for port in [81, 79] {
            let c = Cluster::new(
                "a.static",
                port,
                Protocol::Http,
                vec!["127.0.0.1:1".parse().unwrap()],
                &mut crate::stats::ClusterStatsCache::detached(),
            );
            cs.insert(c.name.clone(), Arc::new(c));
        }
        let ing = ingress("p", "", &rule(Some("a.com"), &[("Prefix", "/")]));
        let mut w = vec![];
        let t = build(
            &[&ing],
            &cs,
            &Secrets::new(),
            &HashSet::new(),
            &test_stats(),
            &mut w,
        );
        let d = &t.find("a.com", "/", &get("/")).unwrap().destinations[0];
        // By cluster name: outbound|79|| sorts before outbound|80|| and outbound|81||.
        assert_eq!(&*d.name, "outbound|79||a.static");
        assert!(d.cluster.is_some());
    }

    #[test]
    fn regexes_compile_once_across_builds() {
        let ing = ingress(
            "r",
            "    higress.io/use-regex: \"true\"\n",
            &rule(Some("a.com"), &[("ImplementationSpecific", "/re/[0-9]+")]),
        );
        let t1 = table(std::slice::from_ref(&ing));
        let t2 = table(&[ing]);
        let re = |t: &RouteTable| match &t.find("a.com", "/re/1", &get("/re/1")).unwrap().path {
            PathMatch::Regex(r) => r.clone(),
            _ => panic!("not a regex"),
        };
        assert_eq!(re(&t1).as_str(), re(&t2).as_str());
        assert!(t2.find("a.com", "/re/x", &get("/re/x")).is_none());
    }
}
