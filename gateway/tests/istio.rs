//! Istio's networking API as config input, through the real binary: Gateways,
//! VirtualServices and DestinationRules in `gateways/`, `virtualservices/` and
//! `destinationrules/` of a config directory, served to loopback backends.

use std::collections::BTreeMap;

use test_support::*;

/// Within p +- 4 standard deviations of n draws.
fn within(count: usize, n: usize, p: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - mean).abs() <= 4.0 * sd
}

/// A Service `name` in `namespace` on port 80 whose endpoints are `backends`.
fn service(cfg: &ConfigDir, namespace: &str, name: &str, backends: &[&Backend]) {
    cfg.write(
        &format!("services/{namespace}/{name}.yaml"),
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  ports:\n  - {{name: http, port: 80, targetPort: 8012}}\n"
        ),
    );
    let mut eps = format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: {name}, namespace: {namespace}}}\nsubsets:\n"
    );
    for b in backends {
        eps.push_str(&format!(
            "- addresses: [{{ip: 127.0.0.1}}]\n  ports: [{{name: http, port: {}}}]\n",
            b.addr.port()
        ));
    }
    // The file's base name is the object's name.
    cfg.write(&format!("endpoints/{namespace}/{name}.yaml"), &eps);
}

/// net-istio's shipped Gateways (`config/202-gateway.yaml`, `config/203-local-gateway.yaml`
/// of knative-extensions/net-istio); the local one's port is the test's cluster-local
/// listener instead of 8081 (the gateway binds a free port there).
fn knative_gateways(local_port: u16) -> (String, String) {
    let ingress = "apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: knative-ingress-gateway
  namespace: knative-serving
  labels:
    networking.knative.dev/ingress-provider: istio
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - \"*\"
";
    let local = format!(
        "apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: knative-local-gateway
  namespace: knative-serving
  labels:
    networking.knative.dev/ingress-provider: istio
spec:
  selector:
    istio: ingressgateway
  servers:
    - port:
        number: {local_port}
        name: http
        protocol: HTTP
      hosts:
        - \"*\"
"
    );
    (ingress.to_string(), local)
}

/// The VirtualService net-istio writes for a KIngress `hello` with two revisions at
/// 50/50, as `MakeIngressVirtualService` / `makeVirtualServiceRoute` / `makeMatch` in
/// knative-extensions/net-istio `pkg/reconciler/ingress/resources/virtual_service.go`
/// make it: the expanded hosts of both rules, both Gateways, one `http` entry per rule
/// whose match narrows to its visibility's Gateway with an `authority` prefix, weighted
/// destinations `<svc>.<ns>.svc.cluster.local:80` each setting its
/// `Knative-Serving-*` headers, and an empty `retries` (no retries). (The probe route
/// `ingress.InsertProbe` adds is left out.)
const HELLO_VS: &str = "apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: hello-ingress
  namespace: default
  labels:
    networking.internal.knative.dev/ingress: hello
spec:
  gateways:
  - knative-serving/knative-ingress-gateway
  - knative-serving/knative-local-gateway
  hosts:
  - hello.default
  - hello.default.example.com
  - hello.default.svc
  - hello.default.svc.cluster.local
  http:
  - match:
    - authority:
        prefix: hello.default.example.com
      gateways:
      - knative-serving/knative-ingress-gateway
      headers: {}
    retries: {}
    route:
    - destination:
        host: hello-00001.default.svc.cluster.local
        port:
          number: 80
      headers:
        request:
          set:
            Knative-Serving-Namespace: default
            Knative-Serving-Revision: hello-00001
      weight: 50
    - destination:
        host: hello-00002.default.svc.cluster.local
        port:
          number: 80
      headers:
        request:
          set:
            Knative-Serving-Namespace: default
            Knative-Serving-Revision: hello-00002
      weight: 50
  - match:
    - authority:
        prefix: hello.default
      gateways:
      - knative-serving/knative-local-gateway
      headers: {}
    retries: {}
    route:
    - destination:
        host: hello-00001.default.svc.cluster.local
        port:
          number: 80
      headers:
        request:
          set:
            Knative-Serving-Namespace: default
            Knative-Serving-Revision: hello-00001
      weight: 50
    - destination:
        host: hello-00002.default.svc.cluster.local
        port:
          number: 80
      headers:
        request:
          set:
            Knative-Serving-Namespace: default
            Knative-Serving-Revision: hello-00002
      weight: 50
";

#[test]
fn knative_hello_split_as_net_istio_writes_it() {
    let b1 = Backend::start("hello-00001");
    let b2 = Backend::start("hello-00002");
    let cfg = ConfigDir::new();
    service(&cfg, "default", "hello-00001", &[&b1]);
    service(&cfg, "default", "hello-00002", &[&b2]);
    let local_port = free_port();
    let (ingress_gw, local_gw) = knative_gateways(local_port);
    cfg.write("gateways/knative-ingress-gateway.yaml", &ingress_gw);
    cfg.write("gateways/knative-local-gateway.yaml", &local_gw);
    cfg.write("virtualservices/hello-ingress.yaml", HELLO_VS);
    let local_addr = format!("127.0.0.1:{local_port}");
    let gw = Gateway::start_with(
        cfg.path(),
        &[
            "--gateway-selector",
            "istio=ingressgateway",
            "--local-http-addr",
            &local_addr,
        ],
    );
    let z = gw.configz();
    assert!(
        z["rejected"].as_array().is_none_or(|a| a.is_empty()),
        "{}",
        z["rejected"]
    );
    const N: usize = 1000;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..N {
        let r = get(gw.http, "hello.default.example.com", "/").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        let backend = j["backend"].as_str().unwrap().to_string();
        // Each upstream request carries the headers of the destination it took.
        assert_eq!(
            j["headers"]["knative-serving-revision"].as_str(),
            Some(backend.as_str()),
            "{j}"
        );
        assert_eq!(
            j["headers"]["knative-serving-namespace"].as_str(),
            Some("default")
        );
        *seen.entry(backend).or_default() += 1;
    }
    for rev in ["hello-00001", "hello-00002"] {
        let n = seen.get(rev).copied().unwrap_or(0);
        assert!(within(n, N, 0.5), "{rev}: {n} of {N} ({seen:?})");
    }
    // The cluster-local gateway serves the local hosts on the cluster-local listener;
    // the external listener does not (its match's authority is the external host).
    for host in [
        "hello.default",
        "hello.default.svc",
        "hello.default.svc.cluster.local",
    ] {
        // The cluster-local listener comes up beside the others: poll its first answer.
        let r = wait_for("the cluster-local listener", || {
            get(gw.local, host, "/").ok()
        });
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        let j = r.json();
        assert_eq!(j["headers"]["knative-serving-revision"], j["backend"]);
    }
    assert_eq!(get(gw.http, "hello.default", "/").unwrap().status, 404);
}

#[test]
fn destination_rule_consistent_hash_keeps_a_user_on_one_endpoint() {
    let bs: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("b{i}"))).collect();
    let cfg = ConfigDir::new();
    service(&cfg, "apps", "web", &bs.iter().collect::<Vec<_>>());
    cfg.write(
        "gateways/gw.yaml",
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {higress: higress-system-higress-gateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n",
    );
    cfg.write(
        "virtualservices/web.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: apps}\nspec:\n  hosts: [web.example.com]\n  gateways: [higress-system/gw]\n  http:\n  - route:\n    - destination: {host: web}\n",
    );
    cfg.write(
        "destinationrules/web.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: apps}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x-user}\n",
    );
    let gw = Gateway::start(cfg.path());
    let mut by_user: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..3 {
        for u in 0..30 {
            let user = format!("user-{u}");
            let r = request(gw.http, "GET", "web.example.com", "/", &[("x-user", &user)]).unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            let backend = r.json()["backend"].as_str().unwrap().to_string();
            match by_user.get(&user) {
                Some(b) => assert_eq!(b, &backend, "{user} moved in round {round}"),
                None => {
                    by_user.insert(user, backend);
                }
            }
        }
    }
    let used: std::collections::BTreeSet<&String> = by_user.values().collect();
    assert!(used.len() >= 2, "30 users all on {used:?}");
}

#[test]
fn a_bad_virtual_service_is_rejected_alone() {
    let be = Backend::start("web");
    let cfg = ConfigDir::new();
    service(&cfg, "apps", "web", &[&be]);
    cfg.write(
        "gateways/gw.yaml",
        "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {higress: higress-system-higress-gateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n",
    );
    let vs = |name: &str, host: &str, weight: &str| {
        format!("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  hosts: [{host}]\n  gateways: [higress-system/gw]\n  http:\n  - route:\n    - destination: {{host: web}}\n      weight: {weight}\n")
    };
    cfg.write(
        "virtualservices/good.yaml",
        &vs("good", "good.example.com", "100"),
    );
    cfg.write(
        "virtualservices/bad.yaml",
        &vs("bad", "bad.example.com", "-5"),
    );
    let gw = Gateway::start(cfg.path());
    let rejected = wait_for("the rejection", || {
        gw.configz()["rejected"]
            .as_array()
            .and_then(|a| a.first().cloned())
    });
    assert_eq!(rejected["object"], "VirtualService apps/bad", "{rejected}");
    let err = rejected["error"].as_str().unwrap();
    assert!(
        err.contains("spec.http[0].route[0].weight") && err.contains("-5 is negative"),
        "{err}"
    );
    assert_eq!(get(gw.http, "good.example.com", "/").unwrap().status, 200);
    assert_eq!(get(gw.http, "bad.example.com", "/").unwrap().status, 404);
    let out = std::process::Command::new(gateway_bin())
        .arg("validate")
        .arg(cfg.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("VirtualService apps/bad: spec.http[0].route[0].weight: -5 is negative"),
        "{text}"
    );
    assert!(!text.contains("apps/good"), "{text}");
}

/// `fault`: a delayed abort answers with the abort status after the delay; a route
/// without a fault on the same host goes upstream.
#[test]
fn fault_delay_and_abort() {
    let be = Backend::start("web");
    let cfg = ConfigDir::new();
    service(&cfg, "apps", "web", &[&be]);
    cfg.write(
        "gateways/gw.yaml",
        "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {higress: higress-system-higress-gateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n",
    );
    cfg.write(
        "virtualservices/web.yaml",
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: web, namespace: apps}\nspec:\n  hosts: [web.example.com]\n  gateways: [higress-system/gw]\n  http:\n  - match:\n    - uri: {prefix: /faulty}\n    fault:\n      delay: {fixedDelay: 200ms, percentage: {value: 100}}\n      abort: {httpStatus: 418, percentage: {value: 100}}\n    route:\n    - destination: {host: web}\n  - route:\n    - destination: {host: web}\n",
    );
    let gw = Gateway::start(cfg.path());
    let t0 = std::time::Instant::now();
    let r = get(gw.http, "web.example.com", "/faulty/x").unwrap();
    assert_eq!(r.status, 418, "{}", r.text());
    assert!(t0.elapsed() >= std::time::Duration::from_millis(200));
    assert_eq!(be.requests(), 0);
    assert_eq!(get(gw.http, "web.example.com", "/ok").unwrap().status, 200);
    assert_eq!(be.requests(), 1);
}
