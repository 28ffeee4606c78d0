//! KIngresses (`resources/kingress.rs`) into routes, as Higress's KIngress controller
//! writes them (`pkg/ingress/kube/kingress/resources/virtual_service.go` and
//! `pkg/ingress/config/kingress_config.go`):
//!
//! - one route per path, on every host of its rule: `ExternalIP` rules on the gateway's
//!   listeners, `ClusterLocal` rules on the cluster-local one (Higress's port 8081);
//! - the path is a literal prefix of the request path (Istio's `uri.prefix`, not
//!   element-wise); an empty path matches every path; `headers` must match exactly
//!   (all of them: Higress keeps only one, a quirk of its loop, not copied);
//! - the splits are the weighted destinations `<serviceName>.<serviceNamespace>.svc.
//!   cluster.local:<servicePort>`, their percents renormalised to add up to 100 (the
//!   remainder to the first, as Higress's `normalizeWeightedKCluster`); a split's
//!   `appendHeaders` are set on the request when it is taken, the path's whichever is;
//! - `rewriteHost` replaces the `Host` sent upstream;
//! - no retries (Higress writes an empty `HTTPRetry`, which turns Istio's default off);
//! - `httpOption: Redirected` answers plain HTTP on an `ExternalIP` host with a redirect
//!   to `https://`;
//! - `spec.tls` gives its hosts the certificate of Secret `secretNamespace/secretName`
//!   (the KIngress's namespace when `secretNamespace` is empty), as Knative's API says.
//!   (Higress reads the Secret from the KIngress's namespace whatever `secretNamespace`
//!   says.)
//!
//! Routes are named `<namespace>/<name>` (the bare name in the gateway's namespace), as
//! Higress's `GenerateUniqueRouteName`; KIngresses are taken oldest first.
//!
//! Higress applies its Ingress annotations to a KIngress's routes; here those of route
//! policy act: timeout, `ssl-redirect`, request matching, redirects, rewrites (the
//! KIngress's `rewriteHost` wins over `upstream-vhost`), header control (with the path's
//! `appendHeaders` after it), CORS, mirroring, retries (replacing "no retries"),
//! `backend-protocol` and `proxy-ssl-*`. The rest are listed under `not_enforced`
//! (`annotations::not_enforced_on_kingress`).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::certificates::Secrets;
use super::certificates::TlsEntry;
use super::cors::cors_filter;
use super::destinations::{resolve, ClusterPorts};
use super::hosts::{ListenerRoutes, VirtualHosts};
use super::mirror::mirror_policy;
use super::rewrite::IngressPolicy;
use crate::annotations::Destination;
use crate::model::header_control::{HeaderControl, HeaderOps};
use crate::model::matcher::{HeaderMatcher, HeaderSource, RequestMatch, StringMatch};
use crate::model::retry::RetryPolicy;
use crate::model::rewrite::Rewrite;
use crate::model::{Cluster, PathMatch, Route, WeightedCluster};
use crate::resources::kingress::{HttpOption, KHttpPath, KIngress, ServicePort, Visibility};
use crate::resources::service::service_host;
use crate::resources::FieldError;

/// A KIngress the snapshot serves, for its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub namespace: String,
    pub name: String,
    /// `metadata.generation` of the object translated (0 when absent).
    pub generation: i64,
}

/// What the KIngresses add to a snapshot.
#[derive(Debug, Default)]
pub struct Output {
    /// `ExternalIP` rules on the gateway's listeners, `ClusterLocal` ones on the
    /// cluster-local listener, `spec.tls` certificates.
    pub routes: ListenerRoutes,
    /// Problems, one per KIngress left out (`kingress default/hello: <field>: <what>`).
    pub warnings: Vec<String>,
    /// The KIngresses whose routes are in this output.
    pub served: Vec<Served>,
}

/// `<namespace>/<name>`, or the bare name in the gateway's namespace.
pub fn route_name(k: &KIngress) -> String {
    super::unique_route_name(&k.metadata)
}

/// Translate `kingresses` (ours, oldest first).
pub fn build(
    kingresses: &[&KIngress],
    clusters: &BTreeMap<String, Arc<Cluster>>,
    secrets: &Secrets,
) -> Output {
    let ports = ClusterPorts::new(clusters);
    let mut out = Output::default();
    for k in kingresses {
        let name = route_name(k);
        let mut external = VirtualHosts::new();
        let mut local = VirtualHosts::new();
        match routes_of(
            k,
            &name,
            clusters,
            &ports,
            secrets,
            &mut external,
            &mut local,
        ) {
            Ok(()) => {
                out.routes.external.append(external);
                out.routes.local.append(local);
                out.served.push(Served {
                    namespace: k.metadata.namespace.clone(),
                    name: k.metadata.name.clone(),
                    generation: k.metadata.generation.unwrap_or(0),
                });
            }
            Err(e) => out.warnings.push(format!("kingress {name}: {e}")),
        }
        for (i, tls) in k.spec.tls.iter().enumerate() {
            let namespace = if tls.secret_namespace.is_empty() {
                k.metadata.namespace.clone()
            } else {
                tls.secret_namespace.clone()
            };
            for host in &tls.hosts {
                out.routes.tls.push(TlsEntry {
                    origin: format!("kingress {name} spec.tls[{i}]"),
                    host: host.to_ascii_lowercase(),
                    namespace: namespace.clone(),
                    secret: tls.secret_name.clone(),
                });
            }
        }
    }
    out
}

/// What every route of one KIngress gets from its annotations, built once.
struct Shared {
    cors: Option<Arc<dyn crate::model::http_filter::HttpFilter>>,
    mirror: Option<Arc<crate::model::mirror::MirrorPolicy>>,
}

fn routes_of(
    k: &KIngress,
    name: &str,
    clusters: &BTreeMap<String, Arc<Cluster>>,
    ports: &ClusterPorts,
    secrets: &Secrets,
    external: &mut VirtualHosts,
    local: &mut VirtualHosts,
) -> Result<(), FieldError> {
    let name: Arc<str> = name.into();
    let ann = &k.annotations;
    let shared = Shared {
        cors: ann.cors.as_deref().map(cors_filter).transpose()?,
        mirror: ann
            .mirror
            .as_ref()
            .map(|m| Arc::new(mirror_policy(m, &k.metadata.namespace, clusters))),
    };
    for (ri, rule) in k.spec.rules.iter().enumerate() {
        let Some(http) = &rule.http else { continue };
        let redirect = rule.visibility == Visibility::ExternalIP
            && k.spec.http_option == HttpOption::Redirected;
        for (pi, path) in http.paths.iter().enumerate() {
            let at = format!("spec.rules[{ri}].http.paths[{pi}]");
            let route = route_of(k, &name, path, redirect, ports, secrets, &at)?;
            let route = Arc::new(with_annotations(k, route, path, &shared)?);
            let target = match rule.visibility {
                Visibility::ExternalIP => &mut *external,
                Visibility::ClusterLocal => &mut *local,
            };
            for host in &rule.hosts {
                target.push(Some(host.to_ascii_lowercase()), route.clone());
            }
        }
    }
    Ok(())
}

/// `set` header edits of `headers` (validated with the object).
fn set_ops(headers: &BTreeMap<String, String>, at: &str) -> Result<HeaderOps, FieldError> {
    let mut ops = HeaderOps::default();
    for (n, v) in headers {
        let bad = |what: &str| FieldError::new(format!("{at}.{n}"), format!("not a valid {what}"));
        let name = HeaderName::from_bytes(n.as_bytes()).map_err(|_| bad("header name"))?;
        let value = HeaderValue::from_str(v).map_err(|_| bad("header value"))?;
        ops.set.push((name, value));
    }
    Ok(ops)
}

fn route_of(
    k: &KIngress,
    name: &Arc<str>,
    path: &KHttpPath,
    redirect: bool,
    ports: &ClusterPorts,
    secrets: &Secrets,
    at: &str,
) -> Result<Route, FieldError> {
    let matcher = if path.path.is_empty() || path.path == "/" {
        PathMatch::Prefix(String::new())
    } else {
        // A literal prefix: an anchored regex of the escaped text.
        let re = super::regex_cache::compile(&regex::escape(&path.path))
            .map_err(|e| FieldError::new(format!("{at}.path"), e.to_string()))?;
        PathMatch::Regex(re)
    };
    let total: u32 = path.splits.iter().map(|s| s.share()).sum();
    let mut destinations = Vec::with_capacity(path.splits.len());
    let mut notes = Vec::new();
    for (si, split) in path.splits.iter().enumerate() {
        let host = service_host(&split.service_name, &split.service_namespace);
        let port = match &split.service_port {
            ServicePort::Number(n) => u16::try_from(*n).ok(),
            // A named port is the Service port of that name.
            ServicePort::Name(n) => ports.named.get(&(host.as_str(), n.as_str())).copied(),
        };
        let d = Destination {
            weight: split.share(),
            host,
            port,
            subset: String::new(),
        };
        let mut dest: WeightedCluster = resolve(
            &d,
            ports,
            &k.annotations.upstream,
            &k.metadata.namespace,
            secrets,
            &mut notes,
        );
        let ops = set_ops(
            &split.append_headers,
            &format!("{at}.splits[{si}].appendHeaders"),
        )?;
        if !ops.is_empty() {
            dest.headers = Some(Arc::new(HeaderControl {
                request: ops,
                response: HeaderOps::default(),
            }));
        }
        destinations.push(dest);
    }
    // Renormalise to 100, the remainder to the first (Higress's normalizeWeightedKCluster).
    if total > 0 && total != 100 {
        let mut sum = 0;
        for d in destinations.iter_mut() {
            d.weight = d.weight * 100 / total;
            sum += d.weight;
        }
        if let Some(first) = destinations.first_mut() {
            first.weight += 100 - sum;
        }
    }
    let mut m = RequestMatch::default();
    for (h, v) in &path.headers {
        let header = HeaderName::from_bytes(h.as_bytes())
            .map_err(|_| FieldError::new(format!("{at}.headers.{h}"), "not a valid header name"))?;
        m.headers.push(HeaderMatcher {
            source: HeaderSource::Header(header),
            value: StringMatch::Exact(v.exact.clone()),
        });
    }
    let mut route = Route::new(name.clone(), matcher, false, destinations, None, redirect)
        .with_request_match(m);
    // Envoy's `require_tls` (Higress's `httpsRedirect` server) answers 301.
    route.ssl_redirect_code = 301;
    let ops = set_ops(&path.append_headers, &format!("{at}.appendHeaders"))?;
    if !ops.is_empty() {
        route.policy.header_control = Some(Arc::new(HeaderControl {
            request: ops,
            response: HeaderOps::default(),
        }));
    }
    if !path.rewrite_host.is_empty() {
        let host = HeaderValue::from_str(&path.rewrite_host)
            .map_err(|_| FieldError::new(format!("{at}.rewriteHost"), "not a valid host"))?;
        route.policy.rewrite = Some(Box::new(Rewrite {
            path: None,
            host: Some(host),
        }));
    }
    // Higress's empty HTTPRetry: no retry, not even Istio's default.
    route.policy.retry = Some(Box::new(RetryPolicy::default()));
    Ok(route)
}

/// The KIngress's annotations on `route` (see the module's doc).
fn with_annotations(
    k: &KIngress,
    mut route: Route,
    path: &KHttpPath,
    shared: &Shared,
) -> Result<Route, FieldError> {
    let ann = &k.annotations;
    if ann.timeout.is_some() {
        route.timeout = ann.timeout;
    }
    if ann.ssl_redirect && !route.ssl_redirect {
        route.ssl_redirect = true;
        route.ssl_redirect_code = 308;
    }
    if let Some(extra) = ann.matching.as_deref() {
        let mut m = route.request_match.take().map(|b| *b).unwrap_or_default();
        m.methods = extra.methods.clone();
        m.headers.extend(extra.headers.iter().cloned());
        m.query.extend(extra.query.iter().cloned());
        m.cookies.extend(extra.cookies.iter().cloned());
        route = route.with_request_match(m);
    }
    // The policy replaces what `route_of` put there: keep the KIngress's own.
    let own_control = route.policy.header_control.take();
    let own_host = route.policy.rewrite.take().and_then(|r| r.host);
    let raw = if path.path.is_empty() {
        "/"
    } else {
        &path.path
    };
    IngressPolicy::new(ann).apply(&mut route, raw)?;
    if let Some(own) = own_control {
        let mut c = route
            .policy
            .header_control
            .as_deref()
            .cloned()
            .unwrap_or_default();
        c.request.set.extend(own.request.set.iter().cloned());
        route.policy.header_control = Some(Arc::new(c));
    }
    if let Some(host) = own_host {
        let path_rewrite = route.policy.rewrite.take().and_then(|r| r.path);
        route.policy.rewrite = Some(Box::new(Rewrite {
            path: path_rewrite,
            host: Some(host),
        }));
    }
    if let Some(retry) = &ann.retry {
        route.policy.retry = Some(retry.clone());
    }
    if let Some(f) = &shared.cors {
        route.policy.filters.insert(0, f.clone());
    }
    route.policy.mirror = shared.mirror.clone();
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use pingora_http::RequestHeader;

    fn kingress(spec: &str) -> KIngress {
        let y = format!(
            "metadata:\n  name: hello\n  namespace: default\n  generation: 3\n  annotations:\n    networking.knative.dev/ingress.class: higress\nspec:\n{spec}"
        );
        KIngress::parse(y.as_bytes()).unwrap()
    }

    fn clusters() -> BTreeMap<String, Arc<Cluster>> {
        ["hello-00001", "hello-00002"]
            .iter()
            .map(|s| {
                let c = Cluster::new(
                    &format!("{s}.default.svc.cluster.local"),
                    80,
                    Protocol::Http,
                    vec!["127.0.0.1:1".parse().unwrap()],
                    &mut crate::stats::ClusterStatsCache::detached(),
                );
                (c.name.clone(), Arc::new(c))
            })
            .collect()
    }

    const SPLIT: &str = r#"  httpOption: Redirected
  rules:
  - hosts: [hello.default.example.com]
    visibility: ExternalIP
    http:
      paths:
      - path: /api
        headers: {x-env: {exact: dev}}
        appendHeaders: {K-Original-Host: hello}
        rewriteHost: hello.internal
        splits:
        - {serviceName: hello-00001, serviceNamespace: default, servicePort: 80, percent: 30, appendHeaders: {Knative-Serving-Revision: hello-00001}}
        - {serviceName: hello-00002, serviceNamespace: default, servicePort: 80, percent: 70, appendHeaders: {Knative-Serving-Revision: hello-00002}}
  - hosts: [hello.default, hello.default.svc.cluster.local]
    visibility: ClusterLocal
    http:
      paths:
      - splits:
        - {serviceName: hello-00002, serviceNamespace: default, servicePort: 80}
  tls:
  - {hosts: [hello.default.example.com], secretName: cert}
"#;

    fn req(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn paths_splits_headers_and_visibility() {
        let k = kingress(SPLIT);
        let out = build(&[&k], &clusters(), &Secrets::new());
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        assert_eq!(
            out.served,
            [Served {
                namespace: "default".into(),
                name: "hello".into(),
                generation: 3
            }]
        );
        let ext = out.routes.external.into_table();
        let local = out.routes.local.into_table();
        let h = "hello.default.example.com";
        let dev = [("x-env", "dev")];
        // A literal prefix, not element-wise; the header must match.
        assert!(ext.find(h, "/apix", &req("/apix", &dev)).is_some());
        assert!(ext.find(h, "/ap", &req("/ap", &dev)).is_none());
        assert!(ext.find(h, "/api", &req("/api", &[])).is_none());
        let r = ext.find(h, "/api/v1", &req("/api/v1", &dev)).unwrap();
        assert_eq!(&*r.name, "default/hello");
        assert!(r.ssl_redirect);
        assert_eq!(r.policy.retry.as_ref().unwrap().num_retries, 0);
        let w: Vec<u32> = r.destinations.iter().map(|d| d.weight).collect();
        assert_eq!(w, [30, 70]);
        assert_eq!(
            &*r.destinations[1].name,
            "outbound|80||hello-00002.default.svc.cluster.local"
        );
        assert!(r.destinations[1].cluster.is_some());
        let rev = &r.destinations[1].headers.as_ref().unwrap().request.set[0];
        assert_eq!(
            (rev.0.as_str(), rev.1.to_str().unwrap()),
            ("knative-serving-revision", "hello-00002")
        );
        let route_set = &r.policy.header_control.as_ref().unwrap().request.set[0];
        assert_eq!(route_set.0.as_str(), "k-original-host");
        assert_eq!(
            r.policy.rewrite.as_ref().unwrap().host.as_ref().unwrap(),
            "hello.internal"
        );
        // ClusterLocal hosts only on the local table, and no redirect there.
        assert!(ext.find("hello.default", "/", &req("/", &[])).is_none());
        let l = local
            .find("hello.default:8081", "/x", &req("/x", &[]))
            .unwrap();
        assert!(!l.ssl_redirect);
        assert!(local
            .find("hello.default.svc.cluster.local", "/", &req("/", &[]))
            .is_some());
        assert_eq!(
            out.routes.tls,
            [TlsEntry {
                origin: "kingress default/hello spec.tls[0]".into(),
                host: h.into(),
                namespace: "default".into(),
                secret: "cert".into(),
            }]
        );
    }

    #[test]
    fn annotations_act_on_the_routes() {
        let y = SPLIT.replace("  httpOption: Redirected\n", "  httpOption: Enabled\n");
        let mut k = kingress(&y);
        for (key, v) in [
            ("higress.io/timeout", "7"),
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
            (
                "higress.io/request-header-control-add",
                "x-from-annotation a",
            ),
            (
                "nginx.ingress.kubernetes.io/upstream-vhost",
                "vhost.internal",
            ),
            ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "3"),
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8",
            ),
            ("higress.io/destination", "a.static"),
        ] {
            k.metadata.annotations.insert(key.into(), v.into());
        }
        k.annotations =
            crate::annotations::IngressAnnotations::parse(&k.metadata.annotations).unwrap();
        let out = build(&[&k], &clusters(), &Secrets::new());
        let t = out.routes.external.into_table();
        let dev = [("x-env", "dev")];
        let r = t
            .find("hello.default.example.com", "/api", &req("/api", &dev))
            .unwrap();
        assert_eq!(r.timeout, Some(std::time::Duration::from_secs(7)));
        assert_eq!(r.policy.filters.len(), 1, "the CORS filter");
        let c = r.policy.header_control.as_ref().unwrap();
        let names: Vec<&str> = c.request.set.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["k-original-host"],
            "appendHeaders after the annotation's"
        );
        assert_eq!(c.request.add[0].0.as_str(), "x-from-annotation");
        // The KIngress's rewriteHost wins over upstream-vhost.
        assert_eq!(
            r.policy.rewrite.as_ref().unwrap().host.as_ref().unwrap(),
            "hello.internal"
        );
        assert_eq!(r.policy.retry.as_ref().unwrap().num_retries, 3);
        assert_eq!(
            crate::annotations::not_enforced_on_kingress(&k.metadata.annotations),
            [
                "higress.io/destination",
                "nginx.ingress.kubernetes.io/whitelist-source-range"
            ]
        );
    }

    #[test]
    fn unknown_service_is_503_not_an_error() {
        let k = kingress(&SPLIT.replace("hello-00002, serviceNamespace", "gone, serviceNamespace"));
        let out = build(&[&k], &clusters(), &Secrets::new());
        let t = out.routes.external.into_table();
        let dev = [("x-env", "dev")];
        let r = t
            .find("hello.default.example.com", "/api", &req("/api", &dev))
            .unwrap();
        assert!(r.destinations[1].cluster.is_none());
    }
}
