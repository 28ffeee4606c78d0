//! The Higress Knative article (../shared/reference/seed-scenarios.md, B) step by step,
//! on `examples/knative/`: the KIngress Knative writes for `hello`, its two revisions on
//! loopback, the traffic split `kn service update --traffic` makes (emulated by editing
//! the KIngress as Knative writes it), and the article's key-rate-limit and key-auth
//! WasmPlugins verbatim.

use std::collections::BTreeMap;

use test_support::backend::Backend;
use test_support::{request, wait_for, ConfigDir, Gateway};

const HOST: &str = "hello.default.example.com";

/// `examples/knative/<rel>`, its revision ports pointed at the test's backends.
fn example(rel: &str, ports: &[u16; 2]) -> String {
    let p = test_support::repo_root().join("examples/knative").join(rel);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .replace("port: 9001", &format!("port: {}", ports[0]))
        .replace("port: 9002", &format!("port: {}", ports[1]))
}

fn copy_example(cfg: &ConfigDir, folders: &[&str], ports: &[u16; 2]) {
    let root = test_support::repo_root().join("examples/knative");
    for sub in folders {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            let rel = format!("{sub}/{name}");
            cfg.write(&rel, &example(&rel, ports));
        }
    }
}

/// Which revision answered, and the revision header it received.
fn hello(
    gw_addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let r = request(gw_addr, "GET", host, path, headers).unwrap();
    if r.status != 200 {
        return (r.status, r.text(), String::new());
    }
    let j = r.json();
    (
        r.status,
        j["backend"].as_str().unwrap().to_string(),
        j["headers"]["knative-serving-revision"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

fn revisions() -> (Backend, Backend, [u16; 2]) {
    let one = Backend::start("Hello World!");
    let two = Backend::start("Hello Knative!");
    let ports = [one.addr.port(), two.addr.port()];
    (one, two, ports)
}

/// The revisions, and a gateway on the example's KIngress, Services, Endpoints and
/// Secret.
fn start_example() -> ((Backend, Backend), [u16; 2], ConfigDir, Gateway) {
    let (one, two, ports) = revisions();
    let cfg = ConfigDir::new();
    copy_example(
        &cfg,
        &["services", "endpoints", "secrets", "kingresses"],
        &ports,
    );
    let gw = Gateway::start(cfg.path());
    ((one, two), ports, cfg, gw)
}

#[test]
fn the_articles_steps() {
    let (_revisions, ports, cfg, gw) = start_example();
    assert!(
        gw.configz()["warnings"].as_array().unwrap().is_empty(),
        "{}",
        gw.configz()["warnings"]
    );

    // `curl -H "host: hello.default.example.com" http://127.0.0.1` -> Hello World!
    let (status, who, revision) = hello(gw.http, HOST, "/", &[]);
    assert_eq!((status, who.as_str()), (200, "Hello World!"));
    assert_eq!(revision, "hello-00001");
    // Its access log names the KIngress's route, `<namespace>/<name>`.
    gw.wait_access("the access log entry", |e| {
        e["route_name"] == "default/hello"
    });
    // Another host is not served; the ExternalIP host is not on the cluster-local listener.
    assert_eq!(hello(gw.http, "other.example.com", "/", &[]).0, 404);
    assert_eq!(hello(gw.local, HOST, "/", &[]).0, 404);

    // The new revision at 50/50, as Knative writes the KIngress after
    // `kn service update hello --traffic hello-00001=50 --traffic @latest=50`.
    let v = gw.version();
    cfg.write(
        "kingresses/hello.yaml",
        &example("steps/hello-50-50.yaml", &ports),
    );
    gw.wait_version_after(v);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    const N: u32 = 1000;
    let mut conn = test_support::client::Conn::open(gw.http).unwrap();
    for _ in 0..N {
        let r = conn.request("GET", HOST, "/", &[]).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        let who = j["backend"].as_str().unwrap();
        let revision = j["headers"]["knative-serving-revision"].as_str().unwrap();
        let expected = if who == "Hello World!" {
            "hello-00001"
        } else {
            "hello-00002"
        };
        assert_eq!(
            revision, expected,
            "each split carries its own revision header"
        );
        assert_eq!(j["headers"]["knative-serving-namespace"], "default");
        *seen.entry(who.to_string()).or_default() += 1;
    }
    // 50/50 over 1000 requests: each side within 400..=600 (over six standard
    // deviations of a fair split, so a failure means the split is wrong).
    for who in ["Hello World!", "Hello Knative!"] {
        let n = seen.get(who).copied().unwrap_or(0);
        assert!((400..=600).contains(&n), "{who}: {n} of {N} ({seen:?})");
    }
    // Knative's cluster-local names answer on the cluster-local listener only.
    for host in [
        "hello.default",
        "hello.default.svc",
        "hello.default.svc.cluster.local",
    ] {
        assert_eq!(hello(gw.local, host, "/", &[]).0, 200, "{host}");
        assert_eq!(hello(gw.http, host, "/", &[]).0, 404, "{host}");
    }

    // The article's key-rate-limit, verbatim: two a minute for `x-ca-key: 123456`.
    cfg.write(
        "wasmplugins/key-rate-limit.yaml",
        &example("wasmplugins/key-rate-limit.yaml", &ports),
    );
    gw.wait_plugin("key-rate-limit");
    let key = [("x-ca-key", "123456")];
    assert_eq!(hello(gw.http, HOST, "/", &key).0, 200);
    assert_eq!(hello(gw.http, HOST, "/", &key).0, 200);
    let r = request(gw.http, "GET", HOST, "/", &key).unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), "rate_limited");
    // Another key, and another host, are not limited.
    assert_eq!(hello(gw.http, HOST, "/", &[("x-ca-key", "654321")]).0, 200);

    // The article's key-auth, verbatim: consumer2 only, the key in the query.
    cfg.write(
        "wasmplugins/key-auth.yaml",
        &example("wasmplugins/key-auth.yaml", &ports),
    );
    gw.wait_plugin("key-auth");
    assert_eq!(hello(gw.http, HOST, "/", &[]).0, 401);
    assert_eq!(
        hello(
            gw.http,
            HOST,
            "/?apikey=2bda943c-ba2b-11ec-ba07-00163e1250b5",
            &[]
        )
        .0,
        403
    );
    let (status, who, _) = hello(
        gw.http,
        HOST,
        "/?apikey=c8c8e9ca-558e-4a2d-bb62-e700dcc40e35",
        &[],
    );
    assert_eq!(status, 200);
    assert!(who.starts_with("Hello"), "{who}");
}

#[test]
fn tls_http_option_and_bad_kingresses() {
    let (_revisions, ports, cfg, gw) = start_example();
    // The KIngress's spec.tls serves the Secret of its namespace on the HTTPS listener.
    let ca = std::env::temp_dir().join(format!("knative-example-ca-{}.pem", std::process::id()));
    let secret: serde_yaml::Value = serde_yaml::from_str(&example(
        "secrets/route-ecbe0df2-101a-4aa4-8cf9-f2e98773fcdf.yaml",
        &ports,
    ))
    .unwrap();
    let crt = secret["data"]["tls.crt"].as_str().unwrap();
    use base64::Engine as _;
    std::fs::write(
        &ca,
        base64::engine::general_purpose::STANDARD
            .decode(crt)
            .unwrap(),
    )
    .unwrap();
    let r = wait_for("the HTTPS listener with the KIngress's certificate", || {
        let mut c = test_support::tls::tls_conn(gw.https, Some(HOST), &ca).ok()?;
        c.request("GET", HOST, "/", &[]).ok()
    });
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["backend"], "Hello World!");
    let _ = std::fs::remove_file(&ca);

    // httpOption: Redirected -> plain HTTP answers with a redirect to https://.
    let v = gw.version();
    let redirected = example("kingresses/hello.yaml", &ports)
        .replace("httpOption: Enabled", "httpOption: Redirected");
    cfg.write("kingresses/hello.yaml", &redirected);
    gw.wait_version_after(v);
    let r = request(gw.http, "GET", HOST, "/x?y=1", &[]).unwrap();
    assert_eq!(r.status, 301, "{}", r.text());
    assert!(
        r.header("location")
            .unwrap()
            .starts_with(&format!("https://{HOST}")),
        "{:?}",
        r.header("location")
    );

    // A bad KIngress is rejected alone, with its field; the last good one keeps serving.
    let v = gw.version();
    cfg.write(
        "kingresses/hello.yaml",
        &redirected.replace("percent: 100", "percent: 60"),
    );
    let rejected = wait_for("the rejection in /debug/configz", || {
        let z = gw.configz();
        z["rejected"].as_array()?.first().cloned()
    });
    assert_eq!(rejected["file"], "kingresses/hello.yaml");
    assert_eq!(
        rejected["error"],
        "spec.rules[0].http.paths[0].splits: the percents add up to 60, not 100"
    );
    assert_eq!(gw.version(), v, "nothing new was published");
    assert_eq!(request(gw.http, "GET", HOST, "/", &[]).unwrap().status, 301);

    // A KIngress of another class is not ours: not served, not judged.
    let other = example("kingresses/hello.yaml", &ports)
        .replace(
            "ingress.class: higress",
            "ingress.class: istio.ingress.networking.knative.dev",
        )
        .replace("name: hello\n", "name: other\n")
        .replace(HOST, "other.default.example.com")
        .replace("percent: 100", "percent: 7");
    cfg.write("kingresses/other.yaml", &other);
    gw.wait_version_after(v);
    assert_eq!(hello(gw.http, "other.default.example.com", "/", &[]).0, 404);

    // `gateway validate` names the bad one.
    let out = std::process::Command::new(test_support::gateway_bin())
        .args(["validate"])
        .arg(cfg.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(
        text.trim(),
        "kingresses/hello.yaml: KIngress default/hello: spec.rules[0].http.paths[0].splits: the percents add up to 60, not 100"
    );
}

/// The directory keeps a KIngress's namespace apart: the same name in two namespaces is
/// two objects, and a file moving namespace is one object deleted and another created.
#[test]
fn namespaces_are_kept_in_the_directory() {
    let (_one, _two, ports) = revisions();
    let cfg = ConfigDir::new();
    copy_example(&cfg, &["services", "endpoints", "kingresses"], &ports);
    // Object names come from file names: a namespace's copies live in a subfolder.
    let in_ns = |ns: &str, folder: &str, host: &str| {
        // Service and Endpoints `hello-00002` in namespace `ns`.
        for kind in ["services", "endpoints"] {
            cfg.write(
                &format!("{kind}/{folder}/hello-00002.yaml"),
                &example(&format!("{kind}/hello-00002.yaml"), &ports)
                    .replace("namespace: default", &format!("namespace: {ns}")),
            );
        }
        let k = example("kingresses/hello.yaml", &ports)
            .replace("namespace: default", &format!("namespace: {ns}"))
            .replace(
                "serviceNamespace: default",
                &format!("serviceNamespace: {ns}"),
            )
            .replace("serviceName: hello-00001", "serviceName: hello-00002")
            .replace(HOST, host);
        cfg.write(&format!("kingresses/{folder}/hello.yaml"), &k);
    };
    let gw = Gateway::start(cfg.path());
    let v = gw.version();
    in_ns("staging", "other", "hello.staging.example.com");
    wait_for("staging's KIngress", || {
        (gw.version() > v && hello(gw.http, "hello.staging.example.com", "/", &[]).0 == 200)
            .then_some(())
    });
    assert_eq!(hello(gw.http, HOST, "/", &[]).1, "Hello World!");
    assert_eq!(
        hello(gw.http, "hello.staging.example.com", "/", &[]).1,
        "Hello Knative!"
    );
    let objects = |z: &serde_json::Value| z.to_string();
    let z = gw.configz();
    assert!(objects(&z).contains("staging/hello"), "{z}");
    // The file moves to namespace `prod`: staging's object goes, prod's comes.
    let v = gw.version();
    in_ns("prod", "other", "hello.prod.example.com");
    wait_for("prod's KIngress", || {
        (gw.version() > v && hello(gw.http, "hello.prod.example.com", "/", &[]).0 == 200)
            .then_some(())
    });
    assert_eq!(hello(gw.http, "hello.staging.example.com", "/", &[]).0, 404);
}
