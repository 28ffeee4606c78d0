//! Rewrite, redirect and header-control annotations on the wire: the upstream sees the
//! rewritten path (capture groups included) and host, redirects carry Higress's codes
//! and locations, header control edits both directions, and bad values are rejected with
//! the Ingress and the annotation.

use test_support::*;

const DEST: (&str, &str) = ("higress.io/destination", "a.static");

fn setup() -> (ConfigDir, Backend) {
    let cfg = ConfigDir::new();
    let a = Backend::start("a");
    cfg.static_registries(&[("a", a.addr.to_string(), 80)]);
    (cfg, a)
}

/// The path the backend received.
fn upstream_path(gw: &Gateway, host: &str, path: &str) -> String {
    let r = get(gw.http, host, path).unwrap();
    assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
    r.json()["path"].as_str().unwrap().to_string()
}

#[test]
fn rewrites_reach_the_upstream() {
    let (cfg, _a) = setup();
    // ingress-nginx docs/examples/rewrite/README.md, "Rewrite Target" (the backend is the
    // McpBridge registry instead of `http-svc`).
    cfg.ingress(
        "rewrite",
        &[
            DEST,
            ("nginx.ingress.kubernetes.io/use-regex", "true"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
        ],
        &[(
            Some("rewrite.bar.com"),
            "ImplementationSpecific",
            "/something(/|$)(.*)",
        )],
    );
    // Higress's e2e httproute-rewrite-path: a group in the target makes the path a regex
    // without use-regex.
    cfg.ingress(
        "svc",
        &[DEST, ("nginx.ingress.kubernetes.io/rewrite-target", "/$1")],
        &[(Some("svc.com"), "ImplementationSpecific", "/svc/(.*)")],
    );
    // No group, plain prefix: Higress's regex_rewrite of the exact path, every occurrence.
    cfg.ingress(
        "plain",
        &[DEST, ("higress.io/rewrite-target", "/")],
        &[(Some("plain.com"), "Prefix", "/foo")],
    );
    cfg.ingress(
        "rewrite-path",
        &[DEST, ("higress.io/rewrite-path", "/v2")],
        &[
            (Some("rp.com"), "Prefix", "/api"),
            (Some("rp.com"), "Exact", "/exact"),
        ],
    );
    cfg.ingress(
        "vhost",
        &[
            DEST,
            (
                "nginx.ingress.kubernetes.io/upstream-vhost",
                "internal.example",
            ),
        ],
        &[(Some("vhost.com"), "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());

    assert_eq!(upstream_path(&gw, "rewrite.bar.com", "/something"), "/");
    assert_eq!(upstream_path(&gw, "rewrite.bar.com", "/something/"), "/");
    assert_eq!(
        upstream_path(&gw, "rewrite.bar.com", "/something/new"),
        "/new"
    );
    assert_eq!(
        upstream_path(&gw, "rewrite.bar.com", "/something/a/b?q=1"),
        "/a/b?q=1"
    );
    assert_eq!(
        get(gw.http, "rewrite.bar.com", "/other").unwrap().status,
        404
    );

    assert_eq!(upstream_path(&gw, "svc.com", "/svc/foo"), "/foo");

    assert_eq!(upstream_path(&gw, "plain.com", "/foo"), "/");
    assert_eq!(upstream_path(&gw, "plain.com", "/foo/bar"), "//bar");

    assert_eq!(upstream_path(&gw, "rp.com", "/api"), "/v2");
    assert_eq!(
        upstream_path(&gw, "rp.com", "/api/users?x=1"),
        "/v2/users?x=1"
    );
    assert_eq!(upstream_path(&gw, "rp.com", "/exact?y"), "/v2?y");
    let r = get(gw.http, "rp.com", "/api/users?x=1").unwrap();
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-envoy-original-path"], "/api/users?x=1");
    assert_eq!(seen["host"], "rp.com");

    let r = get(gw.http, "vhost.com", "/p").unwrap();
    assert_eq!(r.json()["headers"]["host"], "internal.example");
    assert_eq!(r.json()["path"], "/p");

    // The access log keeps the client's path (Higress's X-ENVOY-ORIGINAL-PATH?:PATH) and
    // the upstream's authority (Envoy's router edits the request the log reads).
    gw.wait_access("the rewritten request's log line", |e| {
        e["path"] == "/api/users?x=1" && e["authority"] == "rp.com"
    });
    gw.wait_access("the vhost request's log line", |e| {
        e["path"] == "/p" && e["authority"] == "internal.example"
    });
}

#[test]
fn redirects_answer_with_higress_codes() {
    let (cfg, a) = setup();
    // ingress-nginx docs/examples/rewrite/README.md, "App Root".
    cfg.ingress(
        "approot",
        &[DEST, ("nginx.ingress.kubernetes.io/app-root", "/app1")],
        &[(Some("approot.bar.com"), "Prefix", "/")],
    );
    cfg.ingress(
        "temporal",
        &[
            DEST,
            (
                "nginx.ingress.kubernetes.io/temporal-redirect",
                "http://bar.com",
            ),
            (
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "http://ignored.com",
            ),
        ],
        &[(Some("tr.com"), "Prefix", "/foo")],
    );
    cfg.ingress(
        "permanent",
        &[
            DEST,
            ("higress.io/permanent-redirect", "https://bar.com:8443/new"),
        ],
        &[(Some("pr.com"), "Prefix", "/")],
    );
    cfg.ingress(
        "permanent-code",
        &[
            DEST,
            (
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "http://bar.com",
            ),
            ("nginx.ingress.kubernetes.io/permanent-redirect-code", "308"),
            // The URL redirect replaces ssl-redirect on the route, as in Higress.
            ("nginx.ingress.kubernetes.io/ssl-redirect", "true"),
        ],
        &[(Some("prc.com"), "Prefix", "/foo")],
    );
    let gw = Gateway::start(cfg.path());
    let redirect = |host: &str, path: &str| {
        let r = get(gw.http, host, path).unwrap();
        (r.status, r.header("location").unwrap_or("").to_string())
    };
    let before = a.requests();
    assert_eq!(
        redirect("approot.bar.com", "/"),
        (302, "http://approot.bar.com/app1".into())
    );
    assert_eq!(
        redirect("approot.bar.com", "/?x=1"),
        (302, "http://approot.bar.com/app1?x=1".into())
    );
    assert_eq!(
        redirect("tr.com", "/foo?q=1"),
        (302, "http://bar.com/foo?q=1".into())
    );
    assert_eq!(
        redirect("pr.com", "/a?q=1"),
        (301, "https://bar.com:8443/new?q=1".into())
    );
    assert_eq!(
        redirect("prc.com", "/foo/x"),
        (308, "http://bar.com/foo/x".into())
    );
    assert_eq!(a.requests(), before, "redirects never reach the upstream");
    let r = get(gw.http, "approot.bar.com", "/app1").unwrap();
    assert_eq!(r.status, 200, "app-root redirects `/` only");
    gw.wait_access("the redirect's log line", |e| {
        e["response_code"] == 301 && e["authority"] == "pr.com" && e["upstream_cluster"].is_null()
    });
}

#[test]
fn header_control_edits_both_directions() {
    let (cfg, _a) = setup();
    cfg.ingress(
        "headers",
        &[
            DEST,
            (
                "higress.io/request-header-control-add",
                "x-add a\nx-new 'b c'",
            ),
            (
                "higress.io/request-header-control-update",
                "x-set new\nhost upstream.example",
            ),
            (
                "higress.io/request-header-control-remove",
                "x-drop, x-drop2",
            ),
            ("higress.io/response-header-control-add", "x-resp-add 1"),
            (
                "higress.io/response-header-control-update",
                "content-type text/x-json",
            ),
            (
                "higress.io/response-header-control-remove",
                "x-envoy-upstream-service-time",
            ),
            // Not read under the nginx prefix (Higress only).
            (
                "nginx.ingress.kubernetes.io/request-header-control-add",
                "x-nginx 1",
            ),
        ],
        &[(Some("hc.com"), "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    let r = request(
        gw.http,
        "GET",
        "hc.com",
        "/h",
        &[
            ("x-add", "client"),
            ("x-set", "old"),
            ("x-drop", "1"),
            ("x-drop2", "2"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-add"], "client, a", "add appends");
    assert_eq!(seen["x-new"], "b c");
    assert_eq!(seen["x-set"], "new", "update overwrites");
    assert!(
        seen.get("x-drop").is_none() && seen.get("x-drop2").is_none(),
        "{seen}"
    );
    assert!(seen.get("x-nginx").is_none());
    assert_eq!(
        seen["host"], "upstream.example",
        "a request host line is Istio's authority rewrite"
    );
    assert_eq!(r.header("x-resp-add"), Some("1"));
    assert_eq!(r.header("content-type"), Some("text/x-json"));
    assert_eq!(r.header("x-envoy-upstream-service-time"), None);
    let z = gw.configz();
    assert!(
        z.to_string()
            .contains("nginx.ingress.kubernetes.io/request-header-control-add"),
        "the nginx spelling is reported not enforced: {z}"
    );
}

#[test]
fn bad_values_are_rejected_naming_ingress_and_annotation() {
    let (cfg, _a) = setup();
    let good = [DEST, ("nginx.ingress.kubernetes.io/rewrite-target", "/$1")];
    cfg.ingress(
        "shop",
        &good,
        &[(Some("shop.com"), "ImplementationSpecific", "/svc/(.*)")],
    );
    let gw = Gateway::start(cfg.path());
    assert_eq!(upstream_path(&gw, "shop.com", "/svc/x"), "/x");
    let v = gw.version();
    cfg.ingress(
        "shop",
        &[
            DEST,
            ("nginx.ingress.kubernetes.io/rewrite-target", "/$1"),
            ("nginx.ingress.kubernetes.io/permanent-redirect-code", "abc"),
        ],
        &[(Some("shop.com"), "ImplementationSpecific", "/svc/(.*)")],
    );
    let rejected = wait_for("the bad Ingress to be rejected", || {
        let z = gw.configz();
        z["rejected"]
            .as_array()?
            .iter()
            .find(|r| r["object"].as_str().is_some_and(|o| o.contains("shop")))
            .cloned()
    });
    let error = rejected["error"].as_str().unwrap();
    assert!(
        error.contains(
            "metadata.annotations[\"nginx.ingress.kubernetes.io/permanent-redirect-code\"]: \"abc\" is not an integer"
        ),
        "{rejected}"
    );
    assert_eq!(gw.version(), v, "no new snapshot");
    assert_eq!(
        upstream_path(&gw, "shop.com", "/svc/y"),
        "/y",
        "the last good version serves"
    );

    // `gateway validate` names the file (the Ingress) and the annotation.
    let dir = ConfigDir::new();
    dir.static_registries(&[("a", "127.0.0.1:1".into(), 80)]);
    dir.ingress(
        "groups",
        &[DEST, ("higress.io/rewrite-target", "/$2")],
        &[(None, "ImplementationSpecific", "/svc/(.*)")],
    );
    dir.ingress(
        "lines",
        &[
            DEST,
            ("higress.io/request-header-control-add", "x-ok 1\nlonely"),
        ],
        &[(None, "Prefix", "/")],
    );
    dir.ingress(
        "url",
        &[DEST, ("higress.io/temporal-redirect", "ftp://x.com")],
        &[(None, "Prefix", "/")],
    );
    let (status, text) = validate(dir.path());
    assert_eq!(status.code(), Some(1), "{text}");
    for want in [
        "ingresses/groups.yaml: Ingress higress-system/groups: metadata.annotations[\"higress.io/rewrite-target\"]: \"/$2\" references group 2 but the path \"/svc/(.*)\" has 1",
        "ingresses/lines.yaml: Ingress higress-system/lines: metadata.annotations[\"higress.io/request-header-control-add\"]: line 2: \"lonely\" is not `<name> <value>`",
        "ingresses/url.yaml: Ingress higress-system/url: metadata.annotations[\"higress.io/temporal-redirect\"]: \"ftp://x.com\" is not an http or https URL",
    ] {
        assert!(text.contains(want), "{want}\n---\n{text}");
    }
}

/// A `rewrite-target` changed under keep-alive traffic: the next request after the
/// snapshot goes live is rewritten the new way, on the same connection, and no request
/// fails meanwhile.
#[test]
fn a_live_rewrite_change_takes_effect_on_the_next_request() {
    let (cfg, _a) = setup();
    let write = |target: &str| {
        cfg.ingress(
            "live",
            &[DEST, ("higress.io/rewrite-target", target)],
            &[(Some("live.com"), "Prefix", "/app")],
        )
    };
    write("/v1");
    let gw = Gateway::start(cfg.path());
    let mut conn = client::Conn::open(gw.http).unwrap();
    let path_now = |conn: &mut client::Conn| {
        let r = conn.request("GET", "live.com", "/app/x", &[]).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["path"].as_str().unwrap().to_string()
    };
    assert_eq!(path_now(&mut conn), "/v1/x");
    let v = gw.version();
    write("/v2");
    // Requests on the one connection until the change is live (bounded by the wait
    // below); every one succeeds, rewritten the old way or the new one.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let p = path_now(&mut conn);
        let done = p == "/v2/x";
        seen.push(p);
        if done || std::time::Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(seen.last().map(String::as_str), Some("/v2/x"), "{seen:?}");
    assert!(
        seen.iter().all(|p| p == "/v1/x" || p == "/v2/x"),
        "{seen:?}"
    );
    gw.wait_version_after(v);
    // Once live, it stays.
    for _ in 0..5 {
        assert_eq!(path_now(&mut conn), "/v2/x");
    }
}
