//! Access and limits (issue 17, group 7) on the wire: source ranges by the client's
//! loopback address (127.0.0.1 and ::1), a route's local rate limit (429
//! `local_rate_limited`, `RL` in the access log, Envoy's counters), and basic auth with
//! every htpasswd hash kind nginx accepts.
//!
//! Includes the migration examples of ingress-nginx's docs: `docs/examples/auth/basic`
//! (the `basic-auth` Secret and `ingress-with-auth` Ingress, verbatim but for the
//! backend) and the `whitelist-source-range` example of
//! `docs/user-guide/nginx-configuration/annotations.md` (`10.0.0.0/24,172.10.0.1`).

use std::net::SocketAddr;

use base64::Engine;
use test_support::client::Conn;
use test_support::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{pass}")))
}

/// A Secret `name` with these (key, plain value) pairs.
fn secret(cfg: &ConfigDir, name: &str, data: &[(&str, &str)]) {
    let mut y =
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\ndata:\n");
    for (k, v) in data {
        y.push_str(&format!("  {k}: {}\n", b64(v)));
    }
    cfg.write(&format!("secrets/{name}.yaml"), &y);
}

/// The gateway on a dual-stack `[::]` listener, so clients come from 127.0.0.1 and ::1.
fn start_dual_stack(cfg: &ConfigDir) -> (Gateway, SocketAddr, SocketAddr) {
    let port = free_port();
    let addr = format!("[::]:{port}");
    let gw = Gateway::start_with(cfg.path(), &["--http-addr", &addr]);
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    (gw, v4, v6)
}

fn backend_of(r: &client::Response) -> String {
    r.json()["backend"].as_str().unwrap_or("").to_string()
}

#[test]
fn source_ranges_allow_and_deny_by_client_address() {
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("be", be.addr.to_string(), 80)]);
    let dest = ("higress.io/destination", "be.static");
    // ingress-nginx's documented example: neither loopback address is in it.
    cfg.ingress(
        "doc-example",
        &[
            dest,
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/24,172.10.0.1",
            ),
        ],
        &[(Some("example.test"), "Prefix", "/")],
    );
    cfg.ingress(
        "allow-v4",
        &[
            dest,
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "127.0.0.1/32, 10.0.0.0/8",
            ),
        ],
        &[(Some("allow4.test"), "Prefix", "/")],
    );
    cfg.ingress(
        "allow-v6",
        &[dest, ("higress.io/whitelist-source-range", "::1")],
        &[(Some("allow6.test"), "Prefix", "/")],
    );
    cfg.ingress(
        "deny-v4",
        &[dest, ("higress.io/blacklist-source-range", "127.0.0.0/8")],
        &[(Some("deny4.test"), "Prefix", "/")],
    );
    // A host's domain list covers the routes of every Ingress of that host (the oldest
    // Ingress that sets one: file mode orders by name); a route's own list replaces it.
    cfg.ingress(
        "dom-a",
        &[
            dest,
            ("higress.io/domain-whitelist-source-range", "::1/128"),
        ],
        &[(Some("dom.test"), "Prefix", "/a")],
    );
    cfg.ingress("dom-b", &[dest], &[(Some("dom.test"), "Prefix", "/b")]);
    cfg.ingress(
        "dom-c",
        &[dest, ("higress.io/whitelist-source-range", "127.0.0.1")],
        &[(Some("dom.test"), "Prefix", "/c")],
    );
    cfg.ingress("open", &[dest], &[(Some("open.test"), "Prefix", "/")]);
    let (gw, v4, v6) = start_dual_stack(&cfg);

    let status = |addr: SocketAddr, host: &str, path: &str| {
        let r = get(addr, host, path).unwrap();
        if r.status == 200 {
            assert_eq!(backend_of(&r), "be");
        } else {
            assert_eq!(r.status, 403, "{host}{path}: {}", r.text());
            assert_eq!(r.text(), "RBAC: access denied");
            assert_eq!(r.header("content-type"), Some("text/plain"));
        }
        r.status
    };
    for (host, path, from_v4, from_v6) in [
        ("example.test", "/", 403, 403),
        ("allow4.test", "/", 200, 403),
        ("allow6.test", "/", 403, 200),
        ("deny4.test", "/", 403, 200),
        ("dom.test", "/a", 403, 200),
        ("dom.test", "/b", 403, 200),
        ("dom.test", "/c", 200, 403),
        ("open.test", "/", 200, 200),
    ] {
        assert_eq!(
            status(v4, host, path),
            from_v4,
            "{host}{path} from 127.0.0.1"
        );
        assert_eq!(status(v6, host, path), from_v6, "{host}{path} from ::1");
    }
    // The address is the connection's: x-forwarded-for does not choose it (Higress's
    // gateway trusts no hops by default).
    let r = request(v4, "GET", "allow6.test", "/", &[("x-forwarded-for", "::1")]).unwrap();
    assert_eq!(r.status, 403);
    let r = request(
        v6,
        "GET",
        "allow4.test",
        "/",
        &[("x-forwarded-for", "127.0.0.1")],
    )
    .unwrap();
    assert_eq!(r.status, 403);
    // Denied requests never reached the backend: one request per 200 above, and none of the denied ones.
    assert_eq!(be.requests(), 8);
    let e = gw.wait_access("a denied request", |e| {
        e["authority"] == "allow4.test" && e["response_code"] == 403
    });
    assert_eq!(e["upstream_host"], serde_json::Value::Null);
    // What acts is not reported as not enforced.
    let not_enforced = gw.configz()["not_enforced"].to_string();
    assert!(!not_enforced.contains("source-range"), "{not_enforced}");
}

#[test]
fn a_route_limit_answers_429_local_rate_limited_with_rl_and_envoy_counters() {
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("be", be.addr.to_string(), 80)]);
    // 2 a minute, a bucket of 2 * 2: four requests pass at once, then one each 30 s.
    cfg.ingress(
        "limited",
        &[
            ("higress.io/destination", "be.static"),
            ("higress.io/route-limit-rpm", "2"),
            ("higress.io/route-limit-burst-multiplier", "2"),
        ],
        &[
            (Some("rl.test"), "Prefix", "/one"),
            (Some("rl.test"), "Prefix", "/two"),
        ],
    );
    cfg.ingress(
        "free",
        &[("higress.io/destination", "be.static")],
        &[(Some("free.test"), "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    let metric = |name: &str| {
        gw.metric(&format!(
            "envoy_http_local_rate_limiter_http_local_rate_limit_{name}"
        ))
    };
    // The counters exist from start-up, as Higress's always-present filter has them.
    for name in ["enabled", "ok", "rate_limited", "enforced"] {
        assert_eq!(metric(name), Some(0.0), "{name}");
    }

    // One keep-alive connection: a 429 keeps it open.
    let mut conn = Conn::open(gw.http).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = conn.request("GET", "rl.test", "/one", &[]).unwrap();
        if r.status == 429 {
            assert_eq!(r.text(), "local_rate_limited");
            assert_eq!(r.header("x-local-rate-limit"), Some("true"));
            assert_eq!(r.header("x-envoy-ratelimited"), None);
            assert_eq!(r.header("content-type"), Some("text/plain"));
        } else {
            assert_eq!(backend_of(&r), "be");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);
    // Each route has its own bucket.
    let two: Vec<u16> = (0..5)
        .map(|_| conn.request("GET", "rl.test", "/two", &[]).unwrap().status)
        .collect();
    assert_eq!(two, [200, 200, 200, 200, 429]);
    // A route without the annotations is not limited and not counted.
    for _ in 0..10 {
        assert_eq!(
            conn.request("GET", "free.test", "/", &[]).unwrap().status,
            200
        );
    }
    assert_eq!(be.requests(), 18);

    assert_eq!(metric("enabled"), Some(13.0));
    assert_eq!(metric("ok"), Some(8.0));
    assert_eq!(metric("rate_limited"), Some(5.0));
    assert_eq!(metric("enforced"), Some(5.0));
    let metrics = gw.metrics();
    assert!(
        metrics.contains(
            "# TYPE envoy_http_local_rate_limiter_http_local_rate_limit_rate_limited counter"
        ),
        "{metrics}"
    );
    // The access log and Istio's metrics carry Envoy's `RL`.
    let limited = wait_for("five RL entries in the access log", || {
        let e: Vec<_> = gw
            .access_entries()
            .into_iter()
            .filter(|e| e["response_code"] == 429)
            .collect();
        (e.len() == 5).then_some(e)
    });
    for e in &limited {
        assert_eq!(e["response_flags"], "RL", "{e}");
        assert_eq!(e["authority"], "rl.test");
    }
    assert!(gw
        .access_entries()
        .iter()
        .filter(|e| e["response_code"] == 200)
        .all(|e| e["response_flags"] == "-"));
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("response_code=\"429\"")
                && l.contains("response_flags=\"RL\"")
                && l.ends_with(" 5")),
        "{metrics}"
    );

    // A bad value is rejected live, naming the Ingress, the annotation and the reason;
    // the last good version (and its empty bucket) stays.
    cfg.ingress(
        "limited",
        &[
            ("higress.io/destination", "be.static"),
            ("higress.io/route-limit-rps", "abc"),
        ],
        &[(Some("rl.test"), "Prefix", "/one")],
    );
    let rejected = wait_for("the bad limit rejected", || {
        let z = gw.configz();
        z["rejected"].as_array()?.first().cloned()
    });
    assert!(
        rejected["object"].as_str().unwrap().contains("limited"),
        "{rejected}"
    );
    assert_eq!(
        rejected["error"],
        "metadata.annotations[\"higress.io/route-limit-rps\"]: \"abc\" is not an integer"
    );
    let r = conn.request("GET", "rl.test", "/one", &[]).unwrap();
    assert_eq!(r.status, 429);
}

#[test]
fn basic_auth_with_every_htpasswd_kind_the_docs_example_and_a_missing_secret() {
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("be", be.addr.to_string(), 80)]);
    // ingress-nginx docs/examples/auth/basic: `htpasswd -c auth foo` (password `bar`),
    // `kubectl create secret generic basic-auth --from-file=auth`; the Secret's data as
    // the example prints it.
    cfg.write(
        "secrets/basic-auth.yaml",
        "apiVersion: v1\ndata:\n  auth: Zm9vOiRhcHIxJE9GRzNYeWJwJGNrTDBGSERBa29YWUlsSDkuY3lzVDAK\nkind: Secret\nmetadata:\n  name: basic-auth\n  namespace: default\ntype: Opaque\n",
    );
    cfg.ingress(
        "ingress-with-auth",
        &[
            ("higress.io/destination", "be.static"),
            ("nginx.ingress.kubernetes.io/auth-type", "basic"),
            ("nginx.ingress.kubernetes.io/auth-secret", "basic-auth"),
            (
                "nginx.ingress.kubernetes.io/auth-realm",
                "Authentication Required - foo",
            ),
        ],
        &[(Some("foo.bar.com"), "Prefix", "/")],
    );
    // Every hash kind, made by Apache's htpasswd 2.4.71 (`-B -C 5`, `-m`, `-s`, all
    // with password `secret`) and libxcrypt's crypt(3) for $2b$; a DES line nginx would
    // crypt() and this gateway cannot check.
    let file = "# made by htpasswd\n\
        alice:$2y$05$rnX8IgCtTYW3KkXSRaauU.PYG8cSDehE8nH24eTaPExxxrIxFt/jK\n\
        bob:$apr1$8AJL0E2t$WvoQK3yCEAQASngTUByTH/\n\
        carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n\
        erin:$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a\n\
        dave:abJnggxhB/yWI\n";
    secret(&cfg, "users-file", &[("auth", file)]);
    cfg.ingress(
        "file",
        &[
            ("higress.io/destination", "be.static"),
            ("higress.io/auth-type", "basic"),
            ("higress.io/auth-secret", "users-file"),
        ],
        &[(Some("file.test"), "Prefix", "/")],
    );
    secret(
        &cfg,
        "users-map",
        &[
            ("mia", "$apr1$8AJL0E2t$WvoQK3yCEAQASngTUByTH/"),
            ("max", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="),
        ],
    );
    cfg.ingress(
        "map",
        &[
            ("higress.io/destination", "be.static"),
            ("nginx.ingress.kubernetes.io/auth-type", "basic"),
            (
                "nginx.ingress.kubernetes.io/auth-secret",
                "higress-system/users-map",
            ),
            ("nginx.ingress.kubernetes.io/auth-secret-type", "auth-map"),
            ("nginx.ingress.kubernetes.io/auth-realm", "maps"),
        ],
        &[(Some("map.test"), "Prefix", "/")],
    );
    cfg.ingress(
        "no-secret",
        &[
            ("higress.io/destination", "be.static"),
            ("nginx.ingress.kubernetes.io/auth-type", "basic"),
            ("nginx.ingress.kubernetes.io/auth-secret", "absent"),
        ],
        &[(Some("nosecret.test"), "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());

    let auth = |host: &str, cred: Option<String>| {
        let headers: Vec<(&str, &str)> = cred
            .as_deref()
            .map(|c| vec![("authorization", c)])
            .unwrap_or_default();
        request(gw.http, "GET", host, "/", &headers).unwrap()
    };
    let challenged = |r: &client::Response, realm: &str| {
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some(format!("Basic realm=\"{realm}\"").as_str())
        );
        assert!(
            r.text().contains("401 Authorization Required"),
            "{}",
            r.text()
        );
    };

    // The docs' example: 401 without credentials, 200 with foo:bar.
    challenged(&auth("foo.bar.com", None), "Authentication Required - foo");
    challenged(
        &auth("foo.bar.com", Some(basic("foo", "wrong"))),
        "Authentication Required - foo",
    );
    let r = auth("foo.bar.com", Some(basic("foo", "bar")));
    assert_eq!(r.status, 200);
    assert_eq!(backend_of(&r), "be");
    // The Authorization header goes upstream, as nginx passes it.
    assert_eq!(r.json()["headers"]["authorization"], basic("foo", "bar"));

    // Each hash kind; a keep-alive client's repeat is served from the cache.
    let mut conn = Conn::open(gw.http).unwrap();
    for user in ["alice", "bob", "carol", "erin"] {
        for _ in 0..3 {
            let good = basic(user, "secret");
            let r = conn
                .request("GET", "file.test", "/", &[("authorization", &good)])
                .unwrap();
            assert_eq!(r.status, 200, "{user}");
        }
        let bad = basic(user, "Secret");
        let r = conn
            .request("GET", "file.test", "/", &[("authorization", &bad)])
            .unwrap();
        challenged(&r, "");
    }
    challenged(&auth("file.test", Some(basic("dave", "secret"))), "");
    challenged(&auth("file.test", Some(basic("nobody", "secret"))), "");
    challenged(&auth("file.test", Some("Basic not-base64!".into())), "");
    for user in ["mia", "max"] {
        assert_eq!(auth("map.test", Some(basic(user, "secret"))).status, 200);
        challenged(&auth("map.test", Some(basic(user, "nope"))), "maps");
    }
    challenged(&auth("map.test", None), "maps");
    // 1 (docs) + 4 users * 3 + 2 (map) requests got through.
    assert_eq!(be.requests(), 15);

    // A missing Secret: the Ingress's routes are left out, and /debug/configz names the
    // Ingress and the annotation; the unsupported DES line is reported too.
    assert_eq!(auth("nosecret.test", Some(basic("a", "b"))).status, 404);
    let configz = gw.configz();
    let warnings: Vec<&str> = configz["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert!(
        warnings.contains(
            &"ingress no-secret: metadata.annotations[\"nginx.ingress.kubernetes.io/auth-secret\"]: Secret higress-system/absent not found"
        ),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("user \"dave\": crypt(3) DES hashes are not supported")),
        "{warnings:?}"
    );
    let not_enforced = configz["not_enforced"].to_string();
    assert!(!not_enforced.contains("auth-"), "{not_enforced}");
}
