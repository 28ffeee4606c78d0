use std::collections::BTreeMap;
use std::sync::Arc;

use pingora_http::RequestHeader;

use super::*;
use crate::model::{HashPolicy, LbPolicy, Protocol, RouteTable};
use crate::stats::ClusterStatsCache;

fn gateway(y: &str) -> IstioGateway {
    IstioGateway::parse(
        format!("apiVersion: networking.istio.io/v1beta1\nkind: Gateway\n{y}").as_bytes(),
    )
    .unwrap()
}

fn vs(y: &str) -> VirtualService {
    VirtualService::parse(
        format!("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\n{y}").as_bytes(),
    )
    .unwrap()
}

fn dr(y: &str) -> DestinationRule {
    DestinationRule::parse(
        format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\n{y}").as_bytes(),
    )
    .unwrap()
}

fn clusters(hosts: &[(&str, u16)]) -> Clusters {
    let mut stats = ClusterStatsCache::detached();
    hosts
        .iter()
        .map(|(h, p)| {
            let eps = vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ];
            let c = Cluster::new(h, *p, Protocol::Http, eps, &mut stats);
            (c.name.clone(), Arc::new(c))
        })
        .collect()
}

fn req(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

const GW: &str = r#"metadata: {name: gw, namespace: higress-system}
spec:
  selector: {higress: higress-system-higress-gateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8081, name: local, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["secure.example.com"]
    tls: {mode: SIMPLE, credentialName: secure-cert}
"#;

struct Built {
    out: Output,
}

impl Built {
    fn ext(self) -> (RouteTable, RouteTable, Output) {
        let mut out = self.out;
        let ext = std::mem::take(&mut out.routes.external).into_table();
        let local = std::mem::take(&mut out.routes.local).into_table();
        (ext, local, out)
    }
}

fn build_all(gws: &[&IstioGateway], vss: &[&VirtualService], cs: &Clusters) -> Built {
    crate::translate::regex_cache::new_generation();
    let selector: BTreeMap<String, String> = [(
        "higress".to_string(),
        "higress-system-higress-gateway".to_string(),
    )]
    .into();
    let inputs = Inputs {
        gateways: gws.to_vec(),
        virtual_services: vss.to_vec(),
        destination_rules: vec![],
    };
    let mut out = Output::default();
    build(
        &inputs,
        &Options {
            selector: &selector,
            local_port: Some(8081),
        },
        cs,
        &Secrets::new(),
        &mut out,
    );
    Built { out }
}

const WEB: &str = r#"metadata: {name: web, namespace: apps}
spec:
  hosts: [web.example.com]
  gateways: [higress-system/gw]
  http:
  - match:
    - uri: {exact: /exact}
    - uri: {prefix: /api}
      headers: {x-env: {exact: dev}}
    route:
    - destination: {host: web, port: {number: 80}}
      weight: 30
      headers:
        request: {set: {x-split: a}}
        response: {add: {x-resp: a}, remove: [server]}
    - destination: {host: web-canary.apps.svc.cluster.local}
      weight: 70
    headers:
      request: {set: {x-route: r}}
    rewrite: {uri: /v2, authority: web.internal}
    timeout: 2s
    retries: {attempts: 2, retryOn: "gateway-error,429"}
  - match:
    - uri: {regex: "/re/[0-9]+"}
      method: {exact: POST}
    redirect: {uri: /moved, authority: other.example.com}
  - route:
    - destination: {host: web}
"#;

#[test]
fn matches_in_order_weights_headers_rewrite() {
    let g = gateway(GW);
    let v = vs(WEB);
    let cs = clusters(&[
        ("web.apps.svc.cluster.local", 80),
        ("web-canary.apps.svc.cluster.local", 8080),
    ]);
    let (ext, local, out) = build_all(&[&g], &[&v], &cs).ext();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let h = "web.example.com";
    // Match 0: exact path.
    let r = ext.find(h, "/exact", &req("/exact", &[])).unwrap();
    assert_eq!(&*r.name, "apps/web");
    assert_eq!(r.destinations.len(), 2);
    let w: Vec<u32> = r.destinations.iter().map(|d| d.weight).collect();
    assert_eq!(w, [30, 70]);
    assert_eq!(
        &*r.destinations[0].name,
        "outbound|80||web.apps.svc.cluster.local"
    );
    // No port: the host's only cluster.
    assert_eq!(
        &*r.destinations[1].name,
        "outbound|8080||web-canary.apps.svc.cluster.local"
    );
    let hc = r.destinations[0].headers.as_ref().unwrap();
    assert_eq!(hc.request.set[0].0.as_str(), "x-split");
    assert_eq!(hc.response.add[0].0.as_str(), "x-resp");
    assert_eq!(hc.response.remove[0].as_str(), "server");
    assert!(r.destinations[1].headers.is_none());
    assert_eq!(
        r.policy.header_control.as_ref().unwrap().request.set[0]
            .0
            .as_str(),
        "x-route"
    );
    assert_eq!(r.timeout, Some(std::time::Duration::from_secs(2)));
    let retry = r.policy.retry.as_ref().unwrap();
    assert_eq!((retry.num_retries, retry.on_5xx), (2, false));
    assert_eq!(retry.status_codes, [429, 502, 503, 504]);
    let rw = r.policy.rewrite.as_ref().unwrap();
    assert_eq!(rw.host.as_ref().unwrap(), "web.internal");
    // Exact: the whole path is replaced.
    assert_eq!(
        rw.path.as_ref().unwrap().apply("/exact", None).as_deref(),
        Some("/v2")
    );
    // Match 1: a literal prefix (not element-wise) with a header.
    let dev = [("x-env", "dev")];
    let r1 = ext.find(h, "/apix", &req("/apix", &dev)).unwrap();
    assert!(!Arc::ptr_eq(r, r1));
    assert!(ext
        .find(h, "/api", &req("/api", &[]))
        .is_some_and(|r| r.destinations.len() == 1));
    // The prefix is replaced once (Envoy's prefix_rewrite).
    let rw = r1.policy.rewrite.as_ref().unwrap();
    assert_eq!(
        rw.path
            .as_ref()
            .unwrap()
            .apply("/api/x/api", None)
            .as_deref(),
        Some("/v2/x/api")
    );
    // Match of http[1]: a whole-path regex and a method.
    let post = {
        let mut r = RequestHeader::build("POST", b"/re/12", None).unwrap();
        r.append_header("host", h).unwrap();
        r
    };
    let r2 = ext.find(h, "/re/12", &post).unwrap();
    let red = r2.policy.redirect.as_ref().unwrap();
    assert_eq!(
        (red.code, red.authority.as_deref(), red.path.as_deref()),
        (301, Some("other.example.com"), Some("/moved"))
    );
    // Not a whole match, or GET: falls to http[2], the catch-all.
    let r3 = ext.find(h, "/re/12/x", &post).unwrap();
    assert!(r3.policy.redirect.is_none());
    assert_eq!(r3.destinations[0].weight, 100);
    assert_eq!(r3.timeout, Some(std::time::Duration::ZERO));
    assert!(r3.policy.retry.is_none());
    assert!(ext
        .find(h, "/re/12", &req("/re/12", &[]))
        .unwrap()
        .policy
        .redirect
        .is_none());
    // The VS is bound to every server of gw: 8081 is the local listener.
    assert!(local.find(h, "/exact", &req("/exact", &[])).is_some());
    // The HTTPS server's host does not meet web.example.com; its certificate is listed.
    assert_eq!(out.routes.tls.len(), 1);
    assert_eq!(
        (
            out.routes.tls[0].host.as_str(),
            out.routes.tls[0].secret.as_str(),
            out.routes.tls[0].namespace.as_str()
        ),
        ("secure.example.com", "secure-cert", "higress-system")
    );
    assert!(ext.find("other.example.com", "/", &req("/", &[])).is_none());
}

#[test]
fn selector_binding_and_match_gateways() {
    let ours = gateway(GW);
    let theirs = gateway(&GW.replace("name: gw,", "name: theirs,").replace(
        "higress: higress-system-higress-gateway",
        "istio: ingressgateway",
    ));
    // net-istio's shape: one VirtualService, each match narrowed to one gateway.
    let v = vs(r#"metadata: {name: hello-ingress, namespace: default}
spec:
  hosts: [hello.default, hello.default.example.com]
  gateways: [higress-system/gw, higress-system/local]
  http:
  - match:
    - authority: {prefix: hello.default.example.com}
      gateways: [higress-system/gw]
      port: 80
    - authority: {prefix: hello.default}
      gateways: [higress-system/gw]
      port: 8081
    route:
    - destination: {host: hello}
"#);
    let mesh = vs("metadata: {name: m, namespace: default}\nspec:\n  hosts: [hello]\n  http:\n  - route:\n    - destination: {host: hello}\n");
    let on_theirs = vs("metadata: {name: t, namespace: higress-system}\nspec:\n  hosts: [\"*\"]\n  gateways: [theirs]\n  http:\n  - route:\n    - destination: {host: x}\n");
    let cs = clusters(&[("hello.default.svc.cluster.local", 80)]);
    let (ext, local, out) = build_all(&[&ours, &theirs], &[&v, &mesh, &on_theirs], &cs).ext();
    let e = ext
        .find(
            "hello.default.example.com",
            "/",
            &req("/", &[("host", "hello.default.example.com")]),
        )
        .unwrap();
    assert_eq!(
        &*e.destinations[0].name,
        "outbound|80||hello.default.svc.cluster.local"
    );
    // The second match is on port 8081 only: the local listener; the first one's
    // authority does not take `hello.default` on the external listener.
    let l = local
        .find(
            "hello.default",
            "/",
            &req("/", &[("host", "hello.default")]),
        )
        .unwrap();
    assert!(Arc::ptr_eq(
        &l.destinations[0].cluster.clone().unwrap(),
        &e.destinations[0].cluster.clone().unwrap()
    ));
    assert!(ext
        .find(
            "hello.default",
            "/",
            &req("/", &[("host", "hello.default")])
        )
        .is_none());
    // Theirs is not ours: its VirtualService has no route, not even the catch-all.
    assert!(ext.find("any.example", "/", &req("/", &[])).is_none());
    assert!(
        out.not_enforced.contains(
            &"virtualservice default/m: spec.gateways (mesh only: no route on the gateway)"
                .to_string()
        ),
        "{:?}",
        out.not_enforced
    );
}

#[test]
fn server_host_namespaces_and_redirects() {
    let g = gateway(
        r#"metadata: {name: gw, namespace: higress-system}
spec:
  selector: {}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["apps/*.example.com"]
    tls: {httpsRedirect: true}
"#,
    );
    let a = vs("metadata: {name: a, namespace: apps}\nspec:\n  hosts: [\"*\"]\n  gateways: [higress-system/gw]\n  http:\n  - route:\n    - destination: {host: a}\n");
    let b = vs("metadata: {name: b, namespace: other}\nspec:\n  hosts: [b.example.com]\n  gateways: [higress-system/gw]\n  http:\n  - route:\n    - destination: {host: b}\n");
    let (ext, _, _) = build_all(&[&g], &[&a, &b], &clusters(&[])).ext();
    let r = ext.find("x.example.com", "/", &req("/", &[])).unwrap();
    assert_eq!(&*r.name, "apps/a");
    assert!(r.ssl_redirect);
    // Namespace `other` may not bind to this server.
    assert_eq!(
        &*ext.find("b.example.com", "/", &req("/", &[])).unwrap().name,
        "apps/a"
    );
    assert!(ext.find("example.org", "/", &req("/", &[])).is_none());
}

#[test]
fn hosts_of_tls_servers_only_are_not_served_on_plain_http() {
    let g = gateway(
        r#"metadata: {name: gw, namespace: higress-system}
spec:
  selector: {}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*.example.com"]
    tls: {mode: SIMPLE, credentialName: cert}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [both.example.com]
"#,
    );
    let v = vs("metadata: {name: a, namespace: apps}\nspec:\n  hosts: [secure.example.com, both.example.com]\n  gateways: [higress-system/gw]\n  http:\n  - route:\n    - destination: {host: a}\n");
    let (ext, _, out) = build_all(&[&g], &[&v], &clusters(&[])).ext();
    let secure = ext.find("secure.example.com", "/", &req("/", &[])).unwrap();
    assert!(secure.tls_only, "only the HTTPS server has it");
    let both = ext.find("both.example.com", "/", &req("/", &[])).unwrap();
    assert!(!both.tls_only, "a plain-HTTP server has it too");
    assert!(out.routes.tls.iter().any(|t| t.host == "*.example.com"));
}

#[test]
fn not_enforced_fields_are_listed() {
    let g = gateway(GW);
    let v = vs(r#"metadata: {name: n, namespace: apps}
spec:
  hosts: [n.example.com]
  gateways: [higress-system/gw]
  http:
  - match:
    - withoutHeaders: {x-a: {exact: "1"}}
    route:
    - destination: {host: n, subset: v1}
  - directResponse: {status: 200}
  tcp:
  - route: [{destination: {host: db}}]
"#);
    let (_, _, out) = build_all(&[&g], &[&v], &clusters(&[("n.apps.svc.cluster.local", 80)])).ext();
    for want in [
        "virtualservice apps/n: spec.tcp (TCP routes are not served)",
        "virtualservice apps/n: spec.http[0].match[0].withoutHeaders",
        "virtualservice apps/n: spec.http[0].route[0].destination.subset v1 (subsets are not built: every endpoint of the host)",
        "virtualservice apps/n: spec.http[1].directResponse (route left out)",
    ] {
        assert!(out.not_enforced.iter().any(|n| n == want), "{want} not in {:?}", out.not_enforced);
    }
}

#[test]
fn destination_rules_set_cluster_policies() {
    let mut cs = clusters(&[
        ("web.apps.svc.cluster.local", 80),
        ("web.apps.svc.cluster.local", 8080),
        ("api.apps.svc.cluster.local", 80),
        ("x.static", 80),
    ]);
    let hash = dr(r#"metadata: {name: web, namespace: apps}
spec:
  host: web
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: X-User}
    connectionPool: {tcp: {maxConnections: 10}}
    portLevelSettings:
    - port: {number: 8080}
      loadBalancer: {simple: LEAST_REQUEST}
"#);
    let wild = dr("metadata: {name: all, namespace: apps}\nspec:\n  host: \"*.apps.svc.cluster.local\"\n  trafficPolicy:\n    loadBalancer: {simple: RANDOM}\n");
    let mut out = Output::default();
    apply_destination_rules(&[&wild, &hash], &mut cs, &Secrets::new(), &mut out);
    let policy = |n: &str| cs[n].lb.policy().clone();
    assert_eq!(
        policy("outbound|80||web.apps.svc.cluster.local"),
        LbPolicy::RingHash(HashPolicy::Header {
            name: http::HeaderName::from_static("x-user"),
            alt: None
        })
    );
    assert_eq!(
        policy("outbound|8080||web.apps.svc.cluster.local"),
        LbPolicy::LeastRequest
    );
    assert_eq!(
        policy("outbound|80||api.apps.svc.cluster.local"),
        LbPolicy::Random
    );
    assert_eq!(policy("outbound|80||x.static"), LbPolicy::RoundRobin);
    assert_eq!(
        out.not_enforced,
        ["destinationrule apps/web: spec.trafficPolicy.connectionPool"]
    );
}

#[test]
fn destination_rule_tls_makes_the_cluster_speak_tls() {
    let mut cs = clusters(&[("web.apps.svc.cluster.local", 80)]);
    let t = dr("metadata: {name: web, namespace: apps}\nspec:\n  host: web.apps.svc.cluster.local\n  trafficPolicy:\n    tls: {mode: SIMPLE, sni: web.example.com}\n");
    let mut out = Output::default();
    apply_destination_rules(&[&t], &mut cs, &Secrets::new(), &mut out);
    let c = &cs["outbound|80||web.apps.svc.cluster.local"];
    assert_eq!(c.protocol, Protocol::Https);
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.sni, crate::model::Sni::Fixed("web.example.com".into()));
    assert!(!tls.verify);
}

#[test]
fn destination_rule_outlier_detection_makes_a_detector_as_istio_configures_envoy() {
    let mut cs = clusters(&[
        ("web.apps.svc.cluster.local", 80),
        ("web.apps.svc.cluster.local", 8080),
        ("api.apps.svc.cluster.local", 80),
    ]);
    let web = dr(r#"metadata: {name: web, namespace: apps}
spec:
  host: web
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 7, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 50}
    portLevelSettings:
    - port: {number: 8080}
      outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, minHealthPercent: 20}
"#);
    let mut out = Output::default();
    apply_destination_rules(&[&web], &mut cs, &Secrets::new(), &mut out);
    let cfg = |n: &str| cs[n].outlier.as_ref().map(|d| d.config().clone());
    let top = cfg("outbound|80||web.apps.svc.cluster.local").unwrap();
    assert_eq!(
        (top.consecutive_5xx, top.enforcing_consecutive_5xx),
        (7, true)
    );
    assert!(!top.enforcing_consecutive_gateway_failure);
    assert_eq!(top.interval, std::time::Duration::from_secs(1));
    assert_eq!(top.base_ejection_time, std::time::Duration::from_secs(2));
    assert_eq!(top.max_ejection_time, std::time::Duration::from_secs(300));
    assert_eq!(top.max_ejection_percent, 50);
    let port = cfg("outbound|8080||web.apps.svc.cluster.local").unwrap();
    assert_eq!(
        (port.consecutive_5xx, port.enforcing_consecutive_5xx),
        (0, false)
    );
    assert_eq!(
        (
            port.consecutive_gateway_failure,
            port.enforcing_consecutive_gateway_failure
        ),
        (3, true)
    );
    assert_eq!(
        port.interval,
        std::time::Duration::from_secs(10),
        "port-level settings replace the rule's"
    );
    assert_eq!(port.max_ejection_percent, 10);
    // Off unless a rule turns it on.
    assert!(cfg("outbound|80||api.apps.svc.cluster.local").is_none());
    assert_eq!(
        out.not_enforced,
        ["destinationrule apps/web: spec.trafficPolicy.portLevelSettings[0].outlierDetection.minHealthPercent (no panic routing: with every endpoint ejected, 503)"]
    );
}
