//! The migration corpus (`tests/fixtures/migration`): ingress-nginx's own documented
//! examples, kept as they are but for the class, loaded from one directory. Every
//! annotation of them acts (none is listed as not enforced), and each Ingress behaves as
//! its source documents, through the real binary against upstreams on loopback.

use std::collections::BTreeMap;
use std::path::Path;

use test_support::client::{request, Conn};
use test_support::scripted::{nginx_errors, reply, Upstream};
use test_support::*;

/// An upstream of a Service that tells who it is: JSON `{backend, path, headers}`;
/// `/status/<code>/...` answers `<code>`, `/flaky/...` 503 the first time a path is seen.
fn app(name: &'static str) -> Upstream {
    Upstream::start(move |req, n| {
        let p = req.path.as_str();
        if let Some(rest) = p.strip_prefix("/status/") {
            let code = rest.split(['/', '?']).next().unwrap().parse().unwrap();
            return reply(code, format!("{name} {code}"));
        }
        if p.starts_with("/flaky/") && n == 1 {
            return reply(503, "flaky");
        }
        let body = serde_json::json!({"backend": name, "path": p, "headers": req.headers});
        test_support::scripted::Reply {
            content_type: "application/json",
            ..reply(200, body.to_string())
        }
    })
}

/// The corpus copied into a config directory, with the Endpoints of its Services.
fn corpus(endpoints: &[(&str, Vec<u16>)]) -> ConfigDir {
    let cfg = ConfigDir::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migration");
    for dir in ["ingresses", "services", "secrets"] {
        for f in std::fs::read_dir(root.join(dir)).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            cfg.write(
                &format!("{dir}/{name}"),
                &std::fs::read_to_string(&f).unwrap(),
            );
        }
    }
    for (svc, ports) in endpoints {
        let mut eps =
            format!("apiVersion: v1\nkind: Endpoints\nmetadata: {{name: {svc}}}\nsubsets:\n");
        for p in ports {
            eps.push_str(&format!(
                "- addresses: [{{ip: 127.0.0.1}}]\n  ports: [{{name: http, port: {p}}}]\n"
            ));
        }
        cfg.write(&format!("endpoints/{svc}.yaml"), &eps);
    }
    cfg
}

fn backend_of(r: &client::Response) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["backend"].as_str().unwrap().to_string()
}

#[test]
fn nginx_ingress_examples_work_unchanged() {
    let (a, b) = (app("http-svc-a"), app("http-svc-b"));
    let (prod, canary) = (app("production"), app("canary"));
    let (sticky_a, sticky_b) = (app("sticky-a"), app("sticky-b"));
    let errors = nginx_errors();
    let cfg = corpus(&[
        ("http-svc", vec![a.addr.port(), b.addr.port()]),
        (
            "sticky-svc",
            vec![sticky_a.addr.port(), sticky_b.addr.port()],
        ),
        ("production", vec![prod.addr.port()]),
        ("canary", vec![canary.addr.port()]),
        ("nginx-errors", vec![errors.addr.port()]),
    ]);
    let gw = Gateway::start(cfg.path());
    let http_svc = || a.all().len() + b.all().len();

    // Every annotation of the corpus acts.
    let z = gw.configz();
    let ings = z["ingresses"].as_array().unwrap();
    assert_eq!(ings.len(), 12, "{}", z["ingresses"]);
    for i in ings {
        assert_eq!(
            i["annotations"]["not_enforced"],
            serde_json::json!([]),
            "{}",
            i["object"]
        );
    }
    // (The global list also names global options the gateway takes differently.)
    let global = z["not_enforced"].to_string();
    assert!(
        !global.contains("nginx.ingress.kubernetes.io/") && !global.contains("higress.io/"),
        "{global}"
    );
    assert_eq!(z["rejected"], serde_json::json!([]), "{}", z["rejected"]);
    assert_eq!(z["warnings"], serde_json::json!([]), "{}", z["warnings"]);

    // Rewrite target: `/something(/|$)(.*)` to `/$2`.
    for (path, upstream) in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new", "/new"),
    ] {
        let r = get(gw.http, "rewrite.bar.com", path).unwrap();
        assert_eq!(r.json()["path"], upstream, "{path}");
    }

    // App root: `/` redirects to `/app1` (302); other paths pass.
    let r = get(gw.http, "approot.bar.com", "/").unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://approot.bar.com/app1"));
    assert_eq!(
        get(gw.http, "approot.bar.com", "/app1").unwrap().json()["path"],
        "/app1"
    );

    // Permanent redirect with its code, never upstream. The URL has no path, so the
    // request's path and query are kept (Higress sets Envoy's scheme and host redirect
    // only; nginx would answer the bare URL).
    let before = http_svc();
    let r = get(gw.http, "redirect.example.com", "/any?q=1").unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://www.google.com/any?q=1"));

    // Whitelist: the client (127.0.0.1) is outside the ranges.
    let r = get(gw.http, "whitelist.example.com", "/").unwrap();
    assert_eq!(r.status, 403);

    // Basic auth against the htpasswd Secret (user foo, password bar).
    let r = get(gw.http, "foo.bar.com", "/").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Authentication Required - foo\"")
    );
    let wrong = request(
        gw.http,
        "GET",
        "foo.bar.com",
        "/",
        &[("authorization", "Basic Zm9vOmJheg==")],
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(
        http_svc(),
        before,
        "refused requests never reach the upstream"
    );
    let ok = request(
        gw.http,
        "GET",
        "foo.bar.com",
        "/",
        &[("authorization", "Basic Zm9vOmJhcg==")],
    )
    .unwrap();
    backend_of(&ok);

    // CORS: a preflight from a listed origin is answered by the gateway.
    let before = http_svc();
    let r = request(
        gw.http,
        "OPTIONS",
        "cors.example.com",
        "/",
        &[
            ("origin", "https://origin-site.com:4443"),
            ("access-control-request-method", "PUT"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://origin-site.com:4443")
    );
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("PUT,GET,POST,OPTIONS")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("X-Forwarded-For,X-app123-XPTO")
    );
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert_eq!(
        http_svc(),
        before,
        "the preflight never reaches the upstream"
    );
    let r = request(
        gw.http,
        "GET",
        "cors.example.com",
        "/",
        &[("origin", "http://origin-site.com")],
    )
    .unwrap();
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://origin-site.com")
    );
    let r = request(
        gw.http,
        "GET",
        "cors.example.com",
        "/",
        &[("origin", "http://evil.com")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);

    // Canary: the header decides when it is `always` or `never`, else the weight (50;
    // 200 requests, within 4 standard deviations: 100 +- 28).
    for _ in 0..5 {
        let always = request(
            gw.http,
            "GET",
            "echo.prod.mydomain.com",
            "/",
            &[("x-canary", "always")],
        )
        .unwrap();
        assert_eq!(backend_of(&always), "canary");
        let never = request(
            gw.http,
            "GET",
            "echo.prod.mydomain.com",
            "/",
            &[("x-canary", "never")],
        )
        .unwrap();
        assert_eq!(backend_of(&never), "production");
    }
    let mut split = BTreeMap::new();
    for _ in 0..200 {
        let r = get(gw.http, "echo.prod.mydomain.com", "/").unwrap();
        *split.entry(backend_of(&r)).or_insert(0) += 1;
    }
    assert_eq!(split.len(), 2, "{split:?}");
    assert!(
        split.values().all(|&n| (72..=128).contains(&n)),
        "{split:?}"
    );

    // Cookie affinity: the gateway makes the `route` cookie and honours it.
    for _ in 0..8 {
        let mut conn = Conn::open(gw.http).unwrap();
        let r = conn
            .request("GET", "stickyingress.example.com", "/", &[])
            .unwrap();
        let first = backend_of(&r);
        let set = r
            .header("set-cookie")
            .expect("the affinity cookie")
            .to_string();
        assert!(
            set.starts_with("route=") && set.contains("Max-Age=172800"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        for _ in 0..4 {
            let again = request(
                gw.http,
                "GET",
                "stickyingress.example.com",
                "/",
                &[("cookie", &cookie)],
            )
            .unwrap();
            assert_eq!(backend_of(&again), first, "{cookie}");
            assert_eq!(again.header("set-cookie"), None);
        }
    }

    // Hashing by `$request_uri`: one URI, one endpoint; many URIs spread.
    let mut by_uri = BTreeMap::new();
    for i in 0..40 {
        let uri = format!("/item?id={i}");
        let first = backend_of(&get(gw.http, "hash.example.com", &uri).unwrap());
        for _ in 0..2 {
            assert_eq!(
                backend_of(&get(gw.http, "hash.example.com", &uri).unwrap()),
                first,
                "{uri}"
            );
        }
        *by_uri.entry(first).or_insert(0) += 1;
    }
    assert_eq!(by_uri.len(), 2, "{by_uri:?}");

    // Retries on 503 (`http_503`): the flaky answer is retried on the other tries.
    let r = get(gw.http, "retry.example.com", "/flaky/1").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let tried = |p: &str| a.count(p) + b.count(p);
    assert!(tried("/flaky/1") >= 2, "{}", tried("/flaky/1"));
    // Without the annotation a 503 is the client's.
    let r = get(gw.http, "hash.example.com", "/status/503/x").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(tried("/status/503/x"), 1);

    // Custom errors: a 404 or 503 of the Service is answered by `nginx-errors`.
    for path in ["/status/404/page", "/status/503/page"] {
        let r = get(gw.http, "errors.example.com", path).unwrap();
        assert_eq!(
            r.status, 404,
            "{path}: nginx-errors answers 404 without X-Code"
        );
        assert!(r.text().contains("could not be found"), "{}", r.text());
        assert_eq!(tried(path), 1);
    }
    assert_eq!(errors.all().len(), 2);
    let r = get(gw.http, "errors.example.com", "/status/500/page").unwrap();
    assert_eq!(r.status, 500, "codes not listed pass as they are");
    assert!(r.text().starts_with("http-svc-"), "{}", r.text());
}
