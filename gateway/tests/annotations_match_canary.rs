//! Matching and canary annotations on the wire: `match-method`, header, query and
//! pseudo-header matches choosing upstreams; canary Ingresses by header (always/never,
//! value, pattern), by cookie and by weight; a live `canary-weight` change under
//! keep-alive traffic; bad values rejected with the Ingress and the annotation.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use test_support::*;

const N: &str = "nginx.ingress.kubernetes.io";

/// Backends `a`, `b`, `c`, `d` (registries `<name>.static`).
fn setup() -> (ConfigDir, Vec<Backend>) {
    let cfg = ConfigDir::new();
    let backends: Vec<Backend> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let regs: Vec<(&str, String, u16)> = ["a", "b", "c", "d"]
        .iter()
        .zip(&backends)
        .map(|(n, b)| (*n, b.addr.to_string(), 80))
        .collect();
    cfg.static_registries(&regs);
    (cfg, backends)
}

fn backend_of(r: &Response) -> String {
    if r.status != 200 {
        return r.status.to_string();
    }
    r.json()["backend"].as_str().unwrap_or("").to_string()
}

fn to(backend: &str) -> String {
    format!("{backend}.static")
}

#[test]
fn method_header_query_matches_choose_upstreams() {
    let (cfg, _b) = setup();
    let host = Some("m.test");
    cfg.ingress(
        "plain",
        &[("higress.io/destination", &to("a"))],
        &[(host, "Prefix", "/api")],
    );
    cfg.ingress(
        "by-method",
        &[
            ("higress.io/destination", &to("b")),
            ("higress.io/match-method", "POST PUT"),
        ],
        &[(host, "Prefix", "/api")],
    );
    cfg.ingress(
        "by-header",
        &[
            ("higress.io/destination", &to("c")),
            ("higress.io/regex-match-header-x-env", "dev|test"),
            ("higress.io/prefix-match-header-x-user", "team-"),
        ],
        &[(host, "Prefix", "/api")],
    );
    cfg.ingress(
        "by-query",
        &[
            ("higress.io/destination", &to("d")),
            ("higress.io/exact-match-query-version", "2"),
        ],
        &[(host, "Prefix", "/api")],
    );
    cfg.ingress(
        "by-authority",
        &[
            ("higress.io/destination", &to("b")),
            (
                "higress.io/regex-match-pseudo-header-authority",
                "v[0-9]+\\.m\\.test",
            ),
        ],
        &[(None, "Prefix", "/api")],
    );
    let gw = Gateway::start(cfg.path());
    let send = |method: &str, host: &str, path: &str, headers: &[(&str, &str)]| {
        backend_of(&request(gw.http, method, host, path, headers).unwrap())
    };
    assert_eq!(send("GET", "m.test", "/api/x", &[]), "a");
    assert_eq!(send("POST", "m.test", "/api/x", &[]), "b", "match-method");
    let team = [("x-env", "test"), ("x-user", "team-1")];
    assert_eq!(send("GET", "m.test", "/api", &team), "c", "both headers");
    assert_eq!(
        send(
            "GET",
            "m.test",
            "/api",
            &[("x-env", "test"), ("x-user", "me")]
        ),
        "a",
        "every header must match"
    );
    assert_eq!(
        send(
            "GET",
            "m.test",
            "/api",
            &[("x-env", "testing"), ("x-user", "team-1")]
        ),
        "a",
        "a regex matches the whole value"
    );
    // Method match ranks before header match (Higress's order).
    assert_eq!(send("POST", "m.test", "/api", &team), "b");
    assert_eq!(send("GET", "m.test", "/api?a=1&version=2", &[]), "d");
    assert_eq!(send("GET", "m.test", "/api?version=2.1", &[]), "a");
    assert_eq!(send("GET", "v2.m.test", "/api", &[]), "b", ":authority");
    assert_eq!(send("GET", "vx.m.test", "/api", &[]), "404");
    let routes = gw.configz().to_string();
    assert!(
        routes.contains("\"methods\":[\"POST\",\"PUT\"]"),
        "{routes}"
    );
}

/// A main Ingress to `a` on `host` `/` and a canary to `b` with `annotations`.
fn canary_pair(cfg: &ConfigDir, host: &str, annotations: &[(&str, &str)]) {
    cfg.ingress(
        &format!("{host}-main"),
        &[("higress.io/destination", &to("a"))],
        &[(Some(host), "Prefix", "/")],
    );
    let mut ann = vec![("higress.io/destination".to_string(), to("b"))];
    ann.push((format!("{N}/canary"), "true".into()));
    ann.extend(
        annotations
            .iter()
            .map(|(k, v)| (format!("{N}/{k}"), v.to_string())),
    );
    let ann: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    cfg.ingress(
        &format!("{host}-canary"),
        &ann,
        &[(Some(host), "Prefix", "/")],
    );
}

#[test]
fn canary_by_header_value_pattern_and_cookie() {
    let (cfg, _b) = setup();
    canary_pair(&cfg, "h.test", &[("canary-by-header", "X-Canary")]);
    canary_pair(
        &cfg,
        "v.test",
        &[
            ("canary-by-header", "x-region"),
            ("canary-by-header-value", "eu.west"),
        ],
    );
    canary_pair(
        &cfg,
        "p.test",
        &[
            ("canary-by-header", "x-user"),
            ("canary-by-header-pattern", "^beta-[0-9]+"),
        ],
    );
    canary_pair(
        &cfg,
        "c.test",
        &[("canary-by-cookie", "use_canary"), ("canary-weight", "0")],
    );
    canary_pair(
        &cfg,
        "hc.test",
        &[
            ("canary-by-header", "x-canary"),
            ("canary-by-cookie", "use_canary"),
        ],
    );
    let gw = Gateway::start(cfg.path());
    let send = |host: &str, headers: &[(&str, &str)]| {
        backend_of(&request(gw.http, "GET", host, "/x", headers).unwrap())
    };
    // By header: always / never as nginx-ingress; any other value is ignored.
    assert_eq!(send("h.test", &[]), "a");
    assert_eq!(send("h.test", &[("x-canary", "always")]), "b");
    assert_eq!(send("h.test", &[("x-canary", "never")]), "a");
    assert_eq!(send("h.test", &[("x-canary", "yes")]), "a");
    // By value (taken literally; `always` too, as Higress's `always|<value>`).
    assert_eq!(send("v.test", &[("x-region", "eu.west")]), "b");
    assert_eq!(send("v.test", &[("x-region", "euxwest")]), "a");
    assert_eq!(send("v.test", &[("x-region", "always")]), "b");
    assert_eq!(send("v.test", &[]), "a");
    // By pattern.
    assert_eq!(send("p.test", &[("x-user", "beta-42")]), "b");
    assert_eq!(send("p.test", &[("x-user", "alpha-42")]), "a");
    // By cookie.
    assert_eq!(send("c.test", &[("cookie", "a=1; use_canary=always")]), "b");
    assert_eq!(send("c.test", &[("cookie", "use_canary=never")]), "a");
    assert_eq!(send("c.test", &[("cookie", "use_canary=maybe")]), "a");
    assert_eq!(send("c.test", &[]), "a");
    // Header before cookie: `never` wins over the cookie, another value falls through.
    let always = ("cookie", "use_canary=always");
    assert_eq!(send("hc.test", &[("x-canary", "never"), always]), "a");
    assert_eq!(send("hc.test", &[("x-canary", "other"), always]), "b");
    assert_eq!(
        send(
            "hc.test",
            &[("x-canary", "always"), ("cookie", "use_canary=never")]
        ),
        "b"
    );
    // The canary route is named after the canary Ingress.
    let routes = gw.configz()["routes"].to_string();
    assert!(routes.contains("\"name\":\"h.test-canary\""), "{routes}");
}

/// Send `n` GETs on one keep-alive connection; how many `b` answered.
fn count_b(gw: &Gateway, host: &str, n: usize) -> usize {
    let mut conn = client::Conn::open(gw.http).unwrap();
    let mut b = 0;
    for _ in 0..n {
        let r = conn.request("GET", host, "/", &[]).unwrap();
        assert_eq!(r.status, 200);
        if backend_of(&r) == "b" {
            b += 1;
        }
    }
    b
}

/// Whether `k` of `n` is within p +- 4 standard deviations.
fn within_4_sd(k: usize, n: usize, p: f64) -> bool {
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (k as f64 - n as f64 * p).abs() <= 4.0 * sd
}

#[test]
fn canary_by_weight_splits_traffic() {
    let (cfg, _b) = setup();
    canary_pair(&cfg, "w.test", &[("canary-weight", "30")]);
    canary_pair(
        &cfg,
        "t.test",
        &[("canary-weight", "25"), ("canary-weight-total", "200")],
    );
    // A header canary with a weight: the header decides first.
    canary_pair(
        &cfg,
        "hw.test",
        &[("canary-by-header", "x-canary"), ("canary-weight", "100")],
    );
    let gw = Gateway::start(cfg.path());
    let n = 1000;
    let b = count_b(&gw, "w.test", n);
    assert!(
        within_4_sd(b, n, 0.3),
        "{b} of {n} to the canary, expected 30%"
    );
    let b = count_b(&gw, "t.test", n);
    assert!(
        within_4_sd(b, n, 0.125),
        "{b} of {n} to the canary, expected 25/200"
    );
    let send = |headers: &[(&str, &str)]| {
        backend_of(&request(gw.http, "GET", "hw.test", "/", headers).unwrap())
    };
    assert_eq!(send(&[]), "b", "weight 100 of 100");
    assert_eq!(
        send(&[("x-canary", "never")]),
        "a",
        "never beats the weight"
    );
}

#[test]
fn live_canary_weight_change_under_keepalive_traffic() {
    let (cfg, _b) = setup();
    canary_pair(&cfg, "live.test", &[("canary-weight", "0")]);
    let gw = Gateway::start(cfg.path());
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, to_b) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, to_b) = (stop.clone(), ok.clone(), failed.clone(), to_b.clone());
            let addr = gw.http;
            std::thread::spawn(move || {
                let mut conn = client::Conn::open(addr).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match conn.request("GET", "live.test", "/", &[]) {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if backend_of(&r) == "b" {
                                to_b.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            conn = client::Conn::open(addr).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    wait_for("traffic", || {
        (ok.load(Ordering::Relaxed) > 50).then_some(())
    });
    assert_eq!(
        to_b.load(Ordering::Relaxed),
        0,
        "weight 0 sends nothing to the canary"
    );

    let rewrite = |weight: &str| {
        let ann = [
            ("higress.io/destination", "b.static"),
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", weight),
        ];
        cfg.write(
            "ingresses/live.test-canary.yaml",
            &ingress_yaml(
                "live.test-canary",
                &ann,
                &[(Some("live.test"), "Prefix", "/")],
            ),
        );
    };
    // All to the canary: polled on the keep-alive connections.
    rewrite("100");
    wait_for("weight 100 to take effect", || {
        let before = to_b.load(Ordering::Relaxed);
        let sent = ok.load(Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (after, sent_after) = (to_b.load(Ordering::Relaxed), ok.load(Ordering::Relaxed));
        (sent_after > sent && after - before == sent_after - sent).then_some(())
    });
    // A bad value is rejected; the last good weight stays.
    let version = gw.version();
    rewrite("abc");
    wait_for("the bad weight to be rejected", || {
        let z = gw.configz();
        z["rejected"]
            .to_string()
            .contains("canary-weight")
            .then_some(())
    });
    assert_eq!(
        gw.version(),
        version,
        "no new snapshot for a rejected change"
    );
    assert_eq!(backend_of(&get(gw.http, "live.test", "/").unwrap()), "b");
    // Back to the main service.
    rewrite("0");
    wait_for("weight 0 to take effect", || {
        let before = to_b.load(Ordering::Relaxed);
        let sent = ok.load(Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (after, sent_after) = (to_b.load(Ordering::Relaxed), ok.load(Ordering::Relaxed));
        (sent_after > sent && after == before).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    assert!(ok.load(Ordering::Relaxed) > 200, "clients made progress");
}

#[test]
fn validate_names_the_ingress_and_annotation() {
    let (cfg, _b) = setup();
    canary_pair(&cfg, "ok.test", &[("canary-weight", "10")]);
    cfg.ingress(
        "shop",
        &[
            ("higress.io/destination", "b.static"),
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", "abc"),
        ],
        &[(Some("ok.test"), "Prefix", "/")],
    );
    cfg.ingress(
        "orphan",
        &[
            ("higress.io/destination", "b.static"),
            ("higress.io/canary", "true"),
            ("higress.io/canary-by-header", "x-canary"),
        ],
        &[(Some("nowhere.test"), "Prefix", "/shop/")],
    );
    cfg.ingress(
        "bad-match",
        &[
            ("higress.io/destination", "a.static"),
            ("higress.io/regex-match-header-x-env", "dev("),
            ("higress.io/match-method", "GET FETCH"),
        ],
        &[(Some("ok.test"), "Prefix", "/m")],
    );
    let (status, text) = validate(cfg.path());
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("ingresses/shop.yaml: Ingress higress-system/shop: metadata.annotations[\"nginx.ingress.kubernetes.io/canary-weight\"]: \"abc\" is not an integer"),
        "{text}"
    );
    assert!(
        text.contains("ingresses/orphan.yaml: Ingress higress-system/orphan: spec.rules[0].http.paths[0]: canary Ingress has no main (non-canary) Ingress with host \"nowhere.test\", Prefix path \"/shop\""),
        "{text}"
    );
    assert!(
        text.contains("ingresses/bad-match.yaml: Ingress higress-system/bad-match: metadata.annotations[\"higress.io/match-method\"]: \"FETCH\" is not a method"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "{text}");

    // The run: the bad Ingresses are rejected, the orphan canary is a warning, the rest
    // serves.
    let gw = Gateway::start(cfg.path());
    let z = gw.configz();
    let rejected = z["rejected"].to_string();
    assert!(
        rejected.contains("shop") && rejected.contains("bad-match"),
        "{rejected}"
    );
    let warnings = z["warnings"].to_string();
    assert!(
        warnings
            .contains("ingress orphan: spec.rules[0].http.paths[0]: canary Ingress has no main"),
        "{warnings}"
    );
    assert_eq!(get(gw.http, "ok.test", "/").unwrap().status, 200);
}
