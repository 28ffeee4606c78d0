//! Kubernetes mode (`gateway run --kube`) against a local stand-in for the API server
//! (`tests/peers/kube_apiserver.py`: the real list/watch protocol with resourceVersions,
//! chunked watch streams, bookmarks and 410 Gone), driven by the real kubectl v1.33.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::kube::ApiServer;
use test_support::{get, wait_for, Backend};

fn service(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n"
    )
}

fn slice(ns: &str, name: &str, service: &str, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nendpoints:\n- addresses: [127.0.0.1]\n  conditions: {{ready: true}}\nports:\n- {{name: http, port: {port}, protocol: TCP}}\n"
    )
}

/// Service `web` in `ns` with one ready endpoint, 127.0.0.1:`port`, behind its port `http`.
fn web_service(api: &ApiServer, ns: &str, port: u16) {
    api.create(&service(ns, "web"));
    api.create(&slice(ns, "web-a", "web", port));
}

fn ingress(ns: &str, name: &str, class: Option<&str>, host: &str, service: &str) -> String {
    let class = class
        .map(|c| format!("  ingressClassName: {c}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{class}  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: {service}\n            port: {{name: http}}\n"
    )
}

const HIGRESS_CONFIG: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: higress-config, namespace: higress-system}\ndata:\n  higress: |\n    tracing:\n      enable: false\n      sampling: 100\n      timeout: 500\n      zipkin:\n        service: zipkin.static\n        port: \"9411\"\n";

/// Which backend answered `host`'s `/`, or the status when it was not a 200.
fn answer(gw: &test_support::Gateway, host: &str) -> Result<String, u16> {
    match get(gw.http, host, "/") {
        Ok(r) if r.status == 200 => Ok(r.json()["backend"].as_str().unwrap_or("").to_string()),
        Ok(r) => Err(r.status),
        Err(_) => Err(0),
    }
}

fn wait_answer(gw: &test_support::Gateway, host: &str, want: Result<&str, u16>) {
    let want = want.map(str::to_string);
    wait_for(&format!("{host} answering {want:?}"), || {
        (answer(gw, host) == want).then_some(())
    });
}

#[test]
fn objects_of_every_kind_reach_routing_and_ingress_status() {
    let api = ApiServer::start();
    let one = Backend::start("one");
    let two = Backend::start("two");
    api.create(HIGRESS_CONFIG);
    web_service(&api, "apps", one.addr.port());
    api.create(&ingress(
        "apps",
        "web",
        Some("higress"),
        "web.example.com",
        "web",
    ));
    api.create(&ingress(
        "apps",
        "unclassed",
        None,
        "unclassed.example.com",
        "web",
    ));
    api.create(&ingress(
        "apps",
        "nginx",
        Some("nginx"),
        "nginx.example.com",
        "web",
    ));
    let gw = api.gateway(&["--status-address", "127.0.0.1"]);

    // backend.service by port name: the Service's port 80, endpoints from the slice.
    assert_eq!(answer(&gw, "web.example.com"), Ok("one".into()));
    let z = gw.configz();
    assert!(
        z["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "outbound|80||web.apps.svc.cluster.local"),
        "{z}"
    );
    // Without --watch-ingress-without-class, unclassed Ingresses are not ours; nor
    // another class's.
    assert_eq!(answer(&gw, "unclassed.example.com"), Err(404));
    assert_eq!(answer(&gw, "nginx.example.com"), Err(404));

    // Status: the gateway's address, on ours only.
    let status = |name: &str| {
        api.kubectl_ok(
            &[
                "get",
                "ingress",
                name,
                "-n",
                "apps",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ],
            None,
        )
    };
    wait_for("ingress status", || {
        (status("web") == "127.0.0.1").then_some(())
    });
    assert_eq!(status("nginx"), "");

    // Endpoints move: the slice is replaced to point at the other backend.
    api.kubectl_ok(
        &["replace", "-f", "-"],
        Some(&slice("apps", "web-a", "web", two.addr.port())),
    );
    wait_answer(&gw, "web.example.com", Ok("two"));

    // `kubectl get --watch` sees what the gateway sees, through the same watch protocol.
    let mut watch = std::process::Command::new(test_support::kube::kubectl_bin())
        .args(["get", "ingress", "-n", "apps", "--watch", "-o", "name"])
        .env("KUBECONFIG", api.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let watched = {
        let out = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = Vec::new();
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let done = l.contains("watched");
                lines.push(l);
                if done {
                    break;
                }
            }
            lines
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    api.create(&ingress(
        "apps",
        "watched",
        Some("higress"),
        "watched.example.com",
        "web",
    ));
    wait_answer(&gw, "watched.example.com", Ok("two"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !watched.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let lines = watched.join().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l == "ingress.networking.k8s.io/watched"),
        "kubectl get --watch printed {lines:?}"
    );

    // McpBridge + the destination annotation.
    api.create(&format!(
        "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata: {{name: default, namespace: higress-system}}\nspec:\n  registries:\n  - {{type: static, name: one, domain: \"{}\", port: 80}}\n",
        one.addr
    ));
    api.create("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: bridged\n  namespace: higress-system\n  annotations: {higress.io/destination: one.static}\nspec:\n  ingressClassName: higress\n  rules:\n  - host: bridged.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {resource: {apiGroup: networking.higress.io, kind: McpBridge, name: default}}}\n");
    wait_answer(&gw, "bridged.example.com", Ok("one"));

    // A WasmPlugin (the ABI test module adds x-wat-response to every response).
    let wat = test_support::repo_root().join("gateway/tests/fixtures/abi_edge.wat");
    api.create(&format!(
        "apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: wat, namespace: higress-system}}\nspec:\n  url: file://{}\n  defaultConfig: {{}}\n",
        wat.display()
    ));
    let wat_header = || {
        get(gw.http, "web.example.com", "/")
            .ok()
            .and_then(|r| r.header("x-wat-response").map(str::to_string))
    };
    wait_for("the WasmPlugin on responses", || {
        wat_header().filter(|v| v == "1")
    });
    api.kubectl_ok(
        &["delete", "wasmplugin", "wat", "-n", "higress-system"],
        None,
    );
    wait_for("the WasmPlugin gone", || {
        wat_header().is_none().then_some(())
    });

    // An invalid object is rejected alone, naming the object and the field; the rest
    // keeps serving.
    api.create("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bad, namespace: apps}\nspec:\n  ingressClassName: higress\n  rules:\n  - host: bad.example.com\n    http:\n      paths:\n      - {path: /, pathType: Sideways, backend: {service: {name: web, port: {number: 80}}}}\n");
    let rejected = wait_for("the bad Ingress rejected", || {
        gw.configz()["rejected"]
            .as_array()?
            .iter()
            .find(|r| r.to_string().contains("apps/bad"))
            .cloned()
    });
    assert!(rejected.to_string().contains("pathType"), "{rejected}");
    assert_eq!(answer(&gw, "web.example.com"), Ok("two".into()));

    // Deletes.
    api.kubectl_ok(&["delete", "ingress", "web", "-n", "apps"], None);
    wait_answer(&gw, "web.example.com", Err(404));
    api.kubectl_ok(&["delete", "service", "web", "-n", "apps"], None);
    wait_for("the service's cluster gone", || {
        (!gw.configz()["clusters"]
            .as_array()?
            .iter()
            .any(|c| c["name"] == "outbound|80||web.apps.svc.cluster.local"))
        .then_some(())
    });
}

#[test]
fn kubectl_edit_of_higress_config_turns_tracing_on_and_a_bad_edit_is_refused() {
    let api = ApiServer::start();
    api.create(HIGRESS_CONFIG);
    let gw = api.gateway(&[]);
    let tracing = || gw.configz()["items"]["tracing"].clone();
    assert_eq!(tracing()["enable"], false, "{}", tracing());

    // kubectl edit with an editor that flips the switch, as a user would by hand.
    kubectl_edit_higress_config(&api, "s/enable: false/enable: true/");
    wait_for("tracing on", || (tracing()["enable"] == true).then_some(()));

    // A bad edit: sampling out of range. Rejected with the field named; tracing stays on.
    kubectl_edit_higress_config(&api, "s/sampling: 100/sampling: 200/");
    let rejected = wait_for("the bad edit rejected", || {
        gw.configz()["rejected"]
            .as_array()?
            .iter()
            .find(|r| r.to_string().contains("higress-config"))
            .cloned()
    });
    assert!(rejected.to_string().contains("sampling"), "{rejected}");
    assert_eq!(tracing()["enable"], true);
}

/// `kubectl edit configmap higress-config` with an editor that applies `sed_script`.
fn kubectl_edit_higress_config(api: &ApiServer, sed_script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let editor = dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        format!("#!/bin/sh\nsed -i '{sed_script}' \"$1\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = api.kubectl(
        &[
            "edit",
            "configmap",
            "higress-config",
            "-n",
            "higress-system",
        ],
        None,
        &[("KUBE_EDITOR", editor.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_410_and_an_api_outage_relist_without_a_gap_in_service() {
    let api = ApiServer::start();
    let be = Backend::start("web");
    api.create(HIGRESS_CONFIG);
    web_service(&api, "apps", be.addr.port());
    api.create(&ingress(
        "apps",
        "web",
        Some("higress"),
        "web.example.com",
        "web",
    ));
    api.create(&ingress(
        "apps",
        "gone",
        Some("higress"),
        "gone.example.com",
        "web",
    ));
    let gw = api.gateway(&[]);
    assert_eq!(answer(&gw, "gone.example.com"), Ok("web".into()));

    // Constant traffic meanwhile (bounded in count and time); every request must pass.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let http = gw.http;
    let load = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && sent.load(Ordering::Relaxed) < 20_000
                && start.elapsed() < Duration::from_secs(60)
            {
                let ok = get(http, "web.example.com", "/").is_ok_and(|r| r.status == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    // The history is compacted and `gone` removed unseen: the watches get 410, re-list,
    // and the re-list shows `gone` is gone.
    let lists_before = ingress_lists(&api);
    api.control("expire?delete=ingresses/apps/gone");
    wait_answer(&gw, "gone.example.com", Err(404));
    assert!(
        ingress_lists(&api) > lists_before,
        "no re-list after the 410"
    );

    // An outage: watches drop and every request is refused for a while. The snapshot
    // stays; afterwards the watchers are back and see new objects.
    api.control("outage?ms=1500");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(answer(&gw, "web.example.com"), Ok("web".into()));
    wait_for("the API back after the outage", || {
        let out = api.kubectl(
            &["create", "-f", "-"],
            Some(&ingress(
                "apps",
                "after",
                Some("higress"),
                "after.example.com",
                "web",
            )),
            &[],
        );
        out.status.success().then_some(())
    });
    wait_answer(&gw, "after.example.com", Ok("web"));

    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(sent.load(Ordering::Relaxed) > 50);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the re-lists"
    );
}

/// How many Ingress lists (not watches) the stand-in has served.
fn ingress_lists(api: &ApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|r| {
            r.starts_with("GET /apis/networking.k8s.io/v1/ingresses") && !r.contains("watch=true")
        })
        .count()
}

#[test]
fn readiness_waits_for_the_first_complete_list_and_namespaces_and_classes_select() {
    let api = ApiServer::start();
    let be = Backend::start("web");
    api.create(HIGRESS_CONFIG);
    for ns in ["apps", "elsewhere"] {
        web_service(&api, ns, be.addr.port());
    }
    api.create(&ingress(
        "apps",
        "unclassed",
        None,
        "apps.example.com",
        "web",
    ));
    api.create(&ingress(
        "elsewhere",
        "web",
        Some("higress"),
        "elsewhere.example.com",
        "web",
    ));
    // The API refuses everything for 2 s: the gateway must not be ready before it has
    // listed every kind once.
    let t0 = Instant::now();
    api.control("outage?ms=2000");
    let gw = api.gateway(&["--watch-namespace", "apps", "--watch-ingress-without-class"]);
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "ready after {:?}, during the outage",
        t0.elapsed()
    );
    // Ready means complete: the first request already routes.
    assert_eq!(answer(&gw, "apps.example.com"), Ok("web".into()));
    // Only `apps` is watched.
    assert_eq!(answer(&gw, "elsewhere.example.com"), Err(404));
    assert!(gw.log().contains("initial list synced"), "{}", gw.log());
}

#[test]
fn without_a_cluster_to_talk_to_the_gateway_says_so_and_exits_2() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--kube", "--http-addr", "127.0.0.1:0"])
        .args(["--stats-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in-cluster config or KUBECONFIG"), "{err}");
}

#[test]
fn a_tls_secret_and_ingress_tls_from_the_api_serve_https_and_go_away_with_the_secret() {
    let api = ApiServer::start();
    let be = Backend::start("web");
    let ca = test_support::tls::TestCa::new("kube test CA");
    let issued = ca.issue(&["secure.example.com"]);
    api.create(HIGRESS_CONFIG);
    web_service(&api, "apps", be.addr.port());
    let mut secret = test_support::tls::tls_secret_yaml("secure", &issued, None);
    secret = secret.replace("  name: secure\n", "  name: secure\n  namespace: apps\n");
    api.create(&secret);
    let tls_ingress = ingress(
        "apps",
        "secure",
        Some("higress"),
        "secure.example.com",
        "web",
    )
    .replace(
        "spec:\n",
        "spec:\n  tls:\n  - hosts: [secure.example.com]\n    secretName: secure\n",
    );
    api.create(&tls_ingress);
    let gw = api.gateway(&[]);
    let certs = || {
        gw.configz()["tls"]["certificates"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(certs(), 1, "{}", gw.configz()["tls"]);
    let https = wait_for("the HTTPS listener", || {
        let mut c =
            test_support::tls::tls_conn(gw.https, Some("secure.example.com"), &ca.pem_path())
                .ok()?;
        c.request("GET", "secure.example.com", "/", &[]).ok()
    });
    assert_eq!(https.status, 200);
    assert_eq!(https.json()["backend"], "web");
    // The Secret goes: no certificate is left, and the listener closes.
    api.kubectl_ok(&["delete", "secret", "secure", "-n", "apps"], None);
    wait_for("the certificate gone", || (certs() == 0).then_some(()));
    wait_for("the HTTPS listener closed", || {
        std::net::TcpStream::connect(gw.https)
            .is_err()
            .then_some(())
    });
}
