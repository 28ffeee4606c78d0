//! Knative's Ingress (KIngress) and Istio's networking kinds in Kubernetes mode, against
//! the API stand-in (`tests/peers/kube_apiserver.py`) driven by the real kubectl v1.33:
//! a KIngress of class `higress` serves, its status says `Ready` for the generation that
//! serves (never ahead of it), other classes are left alone, and without the CRDs the
//! gateway starts without those watchers.

use std::time::{Duration, Instant};

use test_support::kube::ApiServer;
use test_support::{get, Backend, Gateway};

/// Longer than `test_support::WAIT`: a status write follows a snapshot, on a busy machine.
const LONG: Duration = Duration::from_secs(30);

fn wait_long<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Service `name` in `default` on port 80 (`http`), one ready endpoint 127.0.0.1:`port`.
fn revision(api: &ApiServer, name: &str, port: u16) {
    api.create(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n"
    ));
    api.create(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-a\n  namespace: default\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nendpoints:\n- addresses: [127.0.0.1]\n  conditions: {{ready: true}}\nports:\n- {{name: http, port: {port}, protocol: TCP}}\n"
    ));
}

/// A KIngress `name` in `default` for `host`, all traffic to Service `service` port 80.
fn kingress(name: &str, class: &str, host: &str, service: &str) -> String {
    format!(
        "apiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  annotations: {{networking.knative.dev/ingress.class: {class}}}\nspec:\n  rules:\n  - hosts: [{host}]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits:\n        - {{serviceName: {service}, serviceNamespace: default, servicePort: 80, percent: 100}}\n"
    )
}

const KINGRESS: &str = "ingresses.networking.internal.knative.dev";

fn kingress_json(api: &ApiServer, name: &str) -> serde_json::Value {
    let out = api.kubectl_ok(
        &["get", KINGRESS, name, "-n", "default", "-o", "json"],
        None,
    );
    serde_json::from_str(&out).unwrap()
}

/// `(generation, observedGeneration when Ready is True)`.
fn readiness(k: &serde_json::Value) -> (i64, Option<i64>) {
    let generation = k["metadata"]["generation"].as_i64().unwrap();
    let st = &k["status"];
    let ready = st["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    (
        generation,
        ready.then(|| st["observedGeneration"].as_i64()).flatten(),
    )
}

/// Which backend answered `host`'s `/`, or the status when it was not a 200.
fn answer(gw: &Gateway, host: &str) -> Result<String, u16> {
    match get(gw.http, host, "/") {
        Ok(r) if r.status == 200 => Ok(r.json()["backend"].as_str().unwrap_or("").to_string()),
        Ok(r) => Err(r.status),
        Err(_) => Err(0),
    }
}

fn status_patches(api: &ApiServer, name: &str) -> usize {
    let suffix = format!("/ingresses/{name}/status");
    api.requests()
        .iter()
        .filter(|l| {
            l.starts_with("PATCH /apis/networking.internal.knative.dev/") && l.contains(&suffix)
        })
        .count()
}

#[test]
fn a_higress_kingress_serves_and_is_ready_only_for_the_generation_that_serves() {
    let api = ApiServer::start();
    let one = Backend::start("one");
    let two = Backend::start("two");
    revision(&api, "hello-00001", one.addr.port());
    revision(&api, "hello-00002", two.addr.port());
    // One there before the gateway starts: listed, served, then given its status.
    api.create(&kingress(
        "early",
        "higress",
        "early.default.example.com",
        "hello-00002",
    ));
    let gw = api.gateway(&["--status-address", "127.0.0.1"]);
    assert_eq!(
        answer(&gw, "early.default.example.com"),
        Ok("two".to_string())
    );
    wait_long("KIngress early Ready", || {
        (readiness(&kingress_json(&api, "early")) == (1, Some(1))).then_some(())
    });

    api.create(&kingress(
        "hello",
        "higress",
        "hello.default.example.com",
        "hello-00001",
    ));
    api.create(&kingress(
        "other",
        "istio.ingress.networking.knative.dev",
        "other.default.example.com",
        "hello-00001",
    ));
    // Whenever the status says Ready at the current generation, requests already reach
    // that generation's backend.
    let backend_of = |generation: i64| if generation == 1 { "one" } else { "two" };
    let check_ready = |want: i64| {
        wait_long(
            &format!("KIngress hello Ready at generation {want}"),
            || {
                let k = kingress_json(&api, "hello");
                match readiness(&k) {
                    (g, Some(o)) if o == g => {
                        assert_eq!(
                            answer(&gw, "hello.default.example.com"),
                            Ok(backend_of(g).to_string()),
                            "status Ready at generation {g} before its routes served: {k}"
                        );
                        (g == want).then_some(k)
                    }
                    _ => None,
                }
            },
        )
    };
    let k = check_ready(1);
    assert_eq!(
        answer(&gw, "hello.default.example.com"),
        Ok("one".to_string())
    );
    let st = &k["status"];
    assert_eq!(st["observedGeneration"], 1, "{k}");
    let types: Vec<&str> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["status"], "True", "{c}");
            assert!(
                c["lastTransitionTime"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
                "{c}"
            );
            c["type"].as_str().unwrap()
        })
        .collect();
    assert_eq!(types, ["LoadBalancerReady", "NetworkConfigured", "Ready"]);
    for lb in ["publicLoadBalancer", "privateLoadBalancer"] {
        assert_eq!(
            st[lb]["ingress"][0]["domainInternal"],
            "higress-gateway.higress-system.svc.cluster.local",
            "{k}"
        );
        assert_eq!(st[lb]["ingress"][0]["ip"], "127.0.0.1", "{k}");
    }

    // Another class's KIngress: no route, no status.
    assert_eq!(answer(&gw, "other.default.example.com"), Err(404));
    let other = kingress_json(&api, "other");
    assert!(other.get("status").is_none(), "{other}");

    // The splits move to the next revision: traffic follows, and so does the status,
    // never ahead of the traffic.
    api.kubectl_ok(
        &[
            "patch",
            KINGRESS,
            "hello",
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"rules":[{"hosts":["hello.default.example.com"],"visibility":"ExternalIP","http":{"paths":[{"splits":[{"serviceName":"hello-00002","serviceNamespace":"default","servicePort":80,"percent":100}]}]}}]}}"#,
        ],
        None,
    );
    let k = check_ready(2);
    assert_eq!(k["metadata"]["generation"], 2);
    assert_eq!(
        answer(&gw, "hello.default.example.com"),
        Ok("two".to_string())
    );

    // Our own status patches come back through the watch: one write per generation,
    // not a loop.
    let writes = status_patches(&api, "hello");
    assert_eq!(writes, 2, "{:?}", api.requests());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status_patches(&api, "hello"), writes);
    assert_eq!(status_patches(&api, "other"), 0);
    assert_eq!(status_patches(&api, "early"), 1);

    // Deleted: no route.
    api.kubectl_ok(&["delete", KINGRESS, "hello", "-n", "default"], None);
    wait_long("hello gone", || {
        (answer(&gw, "hello.default.example.com") == Err(404)).then_some(())
    });
    assert_eq!(answer(&gw, "other.default.example.com"), Err(404));
    let other = kingress_json(&api, "other");
    assert!(other.get("status").is_none(), "{other}");
}

#[test]
fn istio_objects_from_kubectl_reach_the_config_loop() {
    let api = ApiServer::start();
    let gw = api.gateway(&[]);
    api.create("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw1, namespace: default}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n");
    api.create("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: vs1, namespace: default}\nspec:\n  hosts: [vs.example.com]\n  gateways: [gw1]\n  http:\n  - route:\n    - destination: {host: web.default.svc.cluster.local, port: {number: 80}}\n");
    api.create("apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: dr1, namespace: default}\nspec:\n  host: web.default.svc.cluster.local\n  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n");
    let dump = || -> serde_json::Value {
        let r = get(gw.admin, "admin", "/config_dump").unwrap();
        serde_json::from_slice(&r.body).unwrap()
    };
    for object in [
        "Gateway default/gw1",
        "VirtualService default/vs1",
        "DestinationRule default/dr1",
    ] {
        wait_long(object, || {
            let d = dump();
            let held = d["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["object"] == object);
            let rejected = d["configz"]["rejected"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["object"] == object);
            assert!(!rejected, "{object} rejected: {}", d["configz"]["rejected"]);
            held.then_some(())
        });
    }
    // Every version of the group is one set of objects.
    let listed = api.kubectl_ok(
        &[
            "get",
            "virtualservices.v1alpha3.networking.istio.io",
            "-n",
            "default",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(listed.trim(), "virtualservice.networking.istio.io/vs1");
    api.kubectl_ok(&["delete", "virtualservice", "vs1", "-n", "default"], None);
    wait_long("vs1 gone", || {
        (!dump()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["object"] == "VirtualService default/vs1"))
        .then_some(())
    });
}

#[test]
fn without_the_crds_the_gateway_starts_and_watches_the_rest() {
    let api = ApiServer::start();
    api.control("hide?group=networking.internal.knative.dev");
    api.control("hide?group=networking.istio.io");
    let one = Backend::start("one");
    revision(&api, "web", one.addr.port());
    api.create("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: default}\nspec:\n  ingressClassName: higress\n  rules:\n  - host: web.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n");
    // Ready (the start waits for it) although four kinds are not served.
    let gw = api.gateway(&[]);
    assert_eq!(answer(&gw, "web.example.com"), Ok("one".to_string()));
    let log = gw.log();
    for resource in [
        "ingresses",
        "gateways",
        "virtualservices",
        "destinationrules",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("not watched") && l.contains(resource)),
            "{resource}: {log}"
        );
    }
    // Asked once, at start-up; never listed.
    let requests = api.requests();
    assert!(
        !requests.iter().any(|l| l.contains("/ingresses?")
            && l.contains("networking.internal.knative.dev")
            || l.contains("/virtualservices?")),
        "{requests:?}"
    );
    assert!(requests
        .iter()
        .any(|l| l == "GET /apis/networking.internal.knative.dev/v1alpha1"));
}
