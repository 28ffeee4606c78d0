//! Retries and fallbacks (`proxy-next-upstream*`, `default-backend`,
//! `custom-http-errors`) through the real binary, against scripted upstreams on
//! loopback that count what they receive.

use std::net::TcpListener;
use std::time::Duration;

use test_support::client::request_with_body;
use test_support::scripted::{nginx_errors, reply, Reply, Upstream};
use test_support::*;

/// The app upstream of most tests:
/// - `/flaky/...`: 503 the first time a path is seen, then 200;
/// - `/fail/...`: always 503; `/status/<code>/...`: always `<code>`;
/// - `/hang/...`: the first time, waits 3 s before a 200; then 200 at once;
/// - anything else: 200.
fn app() -> Upstream {
    Upstream::start(|req, n| {
        let p = req.path.as_str();
        if p.starts_with("/flaky/") {
            return if n == 1 {
                reply(503, "flaky")
            } else {
                reply(200, "ok")
            };
        }
        if p.starts_with("/fail/") {
            return reply(503, "down");
        }
        if let Some(rest) = p.strip_prefix("/status/") {
            let code = rest.split('/').next().unwrap().parse().unwrap();
            return reply(code, format!("app {code}"));
        }
        if p.starts_with("/hang/") && n == 1 {
            return Reply {
                delay: Duration::from_secs(3),
                ..reply(200, "late")
            };
        }
        reply(200, "ok")
    })
}

/// One Ingress per host, all to the `app` registry, each with its own annotations.
fn gateway(app: &Upstream, hosts: &[(&str, &[(&str, &str)])]) -> (ConfigDir, Gateway) {
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("app", app.addr.to_string(), 80)]);
    for (host, ann) in hosts {
        let mut a = vec![("higress.io/destination", "app.static")];
        a.extend_from_slice(ann);
        let name = host.split('.').next().unwrap();
        cfg.ingress(name, &a, &[(Some(host), "Prefix", "/")]);
    }
    let gw = Gateway::start(cfg.path());
    (cfg, gw)
}

const RETRY_CLUSTER: &str =
    "envoy_cluster_upstream_rq_retry{cluster_name=\"outbound|80||app.static\"}";

#[test]
fn a_503_is_retried_with_the_annotation_and_not_without() {
    let app = app();
    let (_cfg, gw) = gateway(
        &app,
        &[
            (
                "retry.com",
                &[("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "2")],
            ),
            ("plain.com", &[]),
            // Only the timeout: Higress's defaults (3 retries on 5xx) apply.
            (
                "defaults.com",
                &[("higress.io/proxy-next-upstream-timeout", "5")],
            ),
        ],
    );
    let r = get(gw.http, "retry.com", "/flaky/a").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let seen = app.requests("/flaky/a");
    assert_eq!(seen.len(), 2, "the 503 was retried once");
    assert_eq!(seen[1].headers["x-envoy-attempt-count"], "2");
    assert!(
        !seen[0].headers.contains_key("x-envoy-attempt-count")
            || seen[0].headers["x-envoy-attempt-count"] == "1"
    );

    // The gateway's default retries connect failures only: the 503 goes to the client.
    let r = get(gw.http, "plain.com", "/flaky/b").unwrap();
    assert_eq!((r.status, r.text().as_str()), (503, "flaky"));
    assert_eq!(app.count("/flaky/b"), 1);

    let r = get(gw.http, "defaults.com", "/flaky/c").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(app.count("/flaky/c"), 2);

    // Retries count in the cluster's stats; the dropped 503s are not responses.
    wait_for("two retries counted", || {
        (gw.metric(RETRY_CLUSTER) == Some(2.0)).then_some(())
    });
    let code = |c: &str| {
        gw.metric(&format!(
            "envoy_cluster_upstream_rq{{response_code=\"{c}\",cluster_name=\"outbound|80||app.static\"}}"
        ))
    };
    assert_eq!(
        code("503"),
        Some(1.0),
        "only plain.com's 503 reached the client"
    );
    assert_eq!(code("200"), Some(2.0));
}

#[test]
fn off_disables_retries_even_after_a_connect_failure() {
    let app = app();
    // Nothing listens there.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("pair", format!("{dead},{}", app.addr), 80)]);
    cfg.ingress(
        "off",
        &[
            ("higress.io/destination", "pair.static"),
            ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "5"),
            ("nginx.ingress.kubernetes.io/proxy-next-upstream", "off"),
        ],
        &[(Some("off.com"), "Prefix", "/")],
    );
    cfg.ingress(
        "plain",
        &[("higress.io/destination", "pair.static")],
        &[(Some("plain.com"), "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    // Round robin over [dead, live]: without retries, half the requests fail.
    let statuses: Vec<u16> = (0..4)
        .map(|i| get(gw.http, "off.com", &format!("/x/{i}")).unwrap().status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        2,
        "{statuses:?}"
    );
    let e = gw.wait_access("a connect failure", |e| {
        e["authority"] == "off.com" && e["response_code"] == 503
    });
    assert_eq!(e["response_flags"], "UF");
    // The default retries the connect failure on the other endpoint.
    for i in 0..4 {
        let r = get(gw.http, "plain.com", &format!("/y/{i}")).unwrap();
        assert_eq!(r.status, 200);
    }
    // And `off` keeps 503s from being retried.
    let r = get(gw.http, "off.com", "/flaky/z").unwrap();
    if r.status != 503 || r.text() != "flaky" {
        // This one went to the dead endpoint; the live one must not have seen it.
        assert_eq!(app.count("/flaky/z"), 0);
    } else {
        assert_eq!(app.count("/flaky/z"), 1);
    }
}

#[test]
fn tries_are_retries_after_the_first_attempt_and_are_counted() {
    let app = app();
    let (_cfg, gw) = gateway(
        &app,
        &[
            (
                "three.com",
                &[("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "3")],
            ),
            (
                "zero.com",
                &[("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "0")],
            ),
            (
                "post.com",
                &[
                    ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "2"),
                    (
                        "nginx.ingress.kubernetes.io/proxy-next-upstream",
                        "error non_idempotent",
                    ),
                ],
            ),
            (
                "codes.com",
                &[
                    ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "1"),
                    (
                        "nginx.ingress.kubernetes.io/proxy-next-upstream",
                        "http_404",
                    ),
                ],
            ),
        ],
    );
    // 3 retries: 4 attempts in all (Istio's `attempts` is Envoy's `num_retries`).
    let r = get(gw.http, "three.com", "/fail/a").unwrap();
    assert_eq!((r.status, r.text().as_str()), (503, "down"));
    assert_eq!(app.count("/fail/a"), 4);
    let e = gw.wait_access("the exhausted request", |e| e["path"] == "/fail/a");
    assert_eq!(e["response_flags"], "URX");
    assert_eq!(e["response_code"], 503);

    let r = get(gw.http, "zero.com", "/fail/b").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(app.count("/fail/b"), 1);

    // POST is retried only with `non_idempotent`.
    let r = request_with_body(gw.http, "POST", "three.com", "/fail/c", &[], b"payload").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(app.count("/fail/c"), 1);
    let r = request_with_body(gw.http, "POST", "post.com", "/fail/d", &[], b"payload").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(app.count("/fail/d"), 3);

    // A list of codes only: those codes, and not other 5xx.
    let r = get(gw.http, "codes.com", "/status/404/e").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(app.count("/status/404/e"), 2);
    let r = get(gw.http, "codes.com", "/fail/f").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(app.count("/fail/f"), 1);
}

#[test]
fn the_retried_body_is_replayed() {
    let app = Upstream::start(|req, n| {
        if n == 1 {
            reply(502, "first")
        } else {
            reply(200, format!("{} again", req.method))
        }
    });
    let (_cfg, gw) = gateway(
        &app,
        &[(
            "put.com",
            &[(
                "nginx.ingress.kubernetes.io/proxy-next-upstream",
                "http_502",
            )],
        )],
    );
    let r = request_with_body(gw.http, "PUT", "put.com", "/doc", &[], b"0123456789").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "PUT again"));
    let seen = app.requests("/doc");
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.headers["content-length"] == "10"));
}

#[test]
fn the_per_try_timeout_bounds_each_attempt() {
    let app = app();
    let (_cfg, gw) = gateway(
        &app,
        &[
            (
                "pertry.com",
                &[(
                    "nginx.ingress.kubernetes.io/proxy-next-upstream-timeout",
                    "1",
                )],
            ),
            (
                "once.com",
                &[
                    (
                        "nginx.ingress.kubernetes.io/proxy-next-upstream-timeout",
                        "1",
                    ),
                    ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "0"),
                ],
            ),
        ],
    );
    // The first attempt hangs past its 1 s; the retry answers.
    let r = get(gw.http, "pertry.com", "/hang/a").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(app.count("/hang/a"), 2);
    // Without retries the per-try timeout ends the request: 504 `UT`.
    let r = get(gw.http, "once.com", "/hang/b").unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(app.count("/hang/b"), 1);
    let e = gw.wait_access("the timed-out request", |e| e["path"] == "/hang/b");
    assert_eq!(e["response_flags"], "UT");
}

#[test]
fn custom_http_errors_send_the_request_to_the_default_backend() {
    let app = app();
    let errors = nginx_errors();
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("app", app.addr.to_string(), 80)]);
    // The example's Service, here with its Endpoints (a directory has no pods).
    cfg.write(
        "services/nginx-errors.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: nginx-errors\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n    name: http\n",
    );
    cfg.write(
        "endpoints/nginx-errors.yaml",
        &format!(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: nginx-errors}}\nsubsets:\n- addresses: [{{ip: 127.0.0.1}}]\n  ports: [{{name: http, port: {}}}]\n",
            errors.addr.port()
        ),
    );
    // The example sets `custom-http-errors: 404,503` in the controller's ConfigMap; per
    // Ingress, as Higress reads it, that is the annotation.
    cfg.ingress(
        "shop",
        &[
            ("higress.io/destination", "app.static"),
            (
                "nginx.ingress.kubernetes.io/default-backend",
                "nginx-errors",
            ),
            ("nginx.ingress.kubernetes.io/custom-http-errors", "404,503"),
        ],
        &[(Some("shop.com"), "Prefix", "/")],
    );
    // `default-backend` alone: the fallback of a route whose cluster has no endpoint.
    cfg.ingress(
        "gone",
        &[
            ("higress.io/destination", "gone.static"),
            ("higress.io/default-backend", "higress-system/nginx-errors"),
        ],
        &[(Some("gone.com"), "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());

    // A 404 of the app: the client gets the error backend's page and status.
    let r = get(gw.http, "shop.com", "/status/404/item?id=7").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(
        r.text(),
        "<span>The page you're looking for could not be found.</span>"
    );
    assert_eq!(app.count("/status/404/item?id=7"), 1);
    // What the error backend received: Higress's internal redirect to `/` on the
    // original host, with its headers (no nginx X-Code / X-Format / X-Original-URI).
    let got = errors.all();
    assert_eq!(got.len(), 1, "{got:?}");
    let g = &got[0];
    assert_eq!((g.method.as_str(), g.path.as_str()), ("GET", "/"));
    assert_eq!(g.headers["host"], "shop.com");
    assert_eq!(g.headers["x-envoy-route-name"], "shop-fallback");
    assert_eq!(
        g.headers["x-envoy-fallback-service"],
        "higress-system/nginx-errors"
    );
    assert_eq!(
        g.headers["x-envoy-original-url"],
        "http://shop.com/status/404/item?id=7"
    );
    assert!(!g.headers.contains_key("x-code"));

    // A 503 of the app: replaced too; the error backend answers 404 without X-Code.
    let r = get(gw.http, "shop.com", "/fail/x").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.text().contains("could not be found"));
    assert_eq!(errors.all().len(), 2);

    // Codes not listed, and successes, pass as they are.
    let r = get(gw.http, "shop.com", "/status/500/y").unwrap();
    assert_eq!((r.status, r.text().as_str()), (500, "app 500"));
    let r = get(gw.http, "shop.com", "/ok").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    // A request with a body is not redirected (Higress's Envoy does not replay it).
    let r = request_with_body(gw.http, "POST", "shop.com", "/status/404/z", &[], b"x").unwrap();
    assert_eq!((r.status, r.text().as_str()), (404, "app 404"));
    assert_eq!(errors.all().len(), 2);

    let e = gw.wait_access("the redirected request", |e| {
        e["path"] == "/status/404/item?id=7"
    });
    assert_eq!(e["response_code"], 404);
    assert_eq!(
        e["upstream_cluster"],
        "outbound|80||nginx-errors.higress-system.svc.cluster.local"
    );

    // No endpoint behind the route: the request goes to the default backend as it is.
    let r = get(gw.http, "gone.com", "/page?q=1").unwrap();
    assert_eq!(r.status, 404);
    let g = errors.requests("/page?q=1");
    assert_eq!(g.len(), 1);
    assert!(!g[0].headers.contains_key("x-envoy-route-name"));
}

#[test]
fn bad_values_reject_the_ingress_by_name() {
    let cfg = ConfigDir::new();
    cfg.ingress(
        "bad",
        &[(
            "nginx.ingress.kubernetes.io/proxy-next-upstream-tries",
            "abc",
        )],
        &[(Some("bad.com"), "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    let z = gw.configz().to_string();
    assert!(
        z.contains("proxy-next-upstream-tries")
            && z.contains("\\\"abc\\\" is not a non-negative integer"),
        "{z}"
    );
    // The rejected Ingress has no route.
    assert_eq!(get(gw.http, "bad.com", "/").unwrap().status, 404);
}
