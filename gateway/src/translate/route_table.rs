//! Ingress rules compiled into the route table of `model/route.rs`: virtual hosts and
//! their routes in match order.
//!
//! Host: exact beats `*.suffix` (longest suffix first); rules without host match last.
//! Within a host: Exact before Prefix/regex, then longer path first, then older Ingress
//! first (file mode: file name order), then rule order.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::certificates::Secrets;
use super::{route_name, upstream_tls};
use crate::annotations::{Destination, UpstreamAnnotations};
use crate::model::{
    cluster_name, Cluster, PathMatch, Protocol, Route, RouteTable, WeightedCluster,
};
use crate::resources::ingress::{IngressBackend, PathType};
use crate::resources::{FieldError, Ingress};

/// A problem found while translating one Ingress; the rest still translates.
#[derive(Debug, Clone)]
pub struct TranslateWarning {
    pub ingress: String,
    pub error: FieldError,
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
    // Each route with the length of its path as written (longer sorts first).
    let mut by_host: Vec<(Option<String>, Vec<SizedRoute>)> = Vec::new();
    let mut push = |host: Option<String>, route: (usize, Arc<Route>)| match by_host
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
    let hosts = by_host
        .into_iter()
        .map(|(host, mut routes)| {
            // Stable: ties keep Ingress age order, then rule order.
            routes.sort_by(|(a_len, a), (b_len, b)| {
                a.path.rank().cmp(&b.path.rank()).then(b_len.cmp(a_len))
            });
            (host, routes.into_iter().map(|(_, r)| r).collect())
        })
        .collect();
    RouteTable::new(hosts)
}

/// A route with the length of its path as written (longer sorts first).
type SizedRoute = (usize, Arc<Route>);
type HostRoutes = Vec<(Option<String>, SizedRoute)>;

fn routes_of(
    ing: &Ingress,
    clusters: &BTreeMap<String, Arc<Cluster>>,
    secrets: &Secrets,
    force_https: &HashSet<String>,
    notes: &mut Vec<String>,
) -> Result<HostRoutes, FieldError> {
    let meta = &ing.metadata;
    let ann = &ing.annotations;
    let name: Arc<str> = route_name(ing).into();
    let upstream = &ann.upstream;
    let ssl_redirect = ann.ssl_redirect;
    let ignore_case = ann.path.ignore_case;
    let regex = ann.path.use_regex;
    let timeout = ann.timeout;
    let annotated = &ann.destination;
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
            .map(|d| resolve(d, clusters, upstream, &meta.namespace, secrets, notes))
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
            let redirect = ssl_redirect || force_https.contains(host.as_deref().unwrap_or("*"));
            let route = Route::new(
                name.clone(),
                path,
                ignore_case,
                dests(&p.backend),
                timeout,
                redirect,
            );
            out.push((host.clone(), (raw.len(), Arc::new(route))));
        }
    }
    if let Some(b) = &ing.spec.default_backend {
        let route = Route::new(
            format!("{name}-default").into(),
            PathMatch::Prefix(String::new()),
            false,
            dests(b),
            timeout,
            ssl_redirect || force_https.contains("*"),
        );
        out.push((None, (0, Arc::new(route))));
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
    namespace: &str,
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
        None => (Protocol::Http, None, None),
    };
    let (protocol, tls) = upstream_tls::resolve(upstream, namespace, registry, secrets, notes);
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
    use crate::resources::SYSTEM_NAMESPACE;

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

    fn table(ings: &[Ingress]) -> RouteTable {
        let refs: Vec<&Ingress> = ings.iter().collect();
        let mut w = vec![];
        let t = build(&refs, &clusters(), &Secrets::new(), &HashSet::new(), &mut w);
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
        let mut ing = ingress("w", "", &rule(Some("a.com"), &[("Prefix", "/")]));
        ing.metadata.annotations.insert(
            "higress.io/destination".into(),
            "20% a.static\n80% b.static:81".into(),
        );
        // Annotations are parsed with the Ingress.
        ing.annotations =
            crate::annotations::IngressAnnotations::parse(&ing.metadata.annotations).unwrap();
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
}
