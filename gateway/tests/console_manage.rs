//! The console's login and config management (`/api/console/*` on the admin listener):
//! a password set on first visit, logins rate limited, and items written where the
//! config lives (the directory, or the Kubernetes API stand-in) that the gateway then
//! serves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};
use test_support::client::request_with_body;
use test_support::kube::ApiServer;
use test_support::*;

const PASSWORD: &str = "console-pass-1";

/// A console client: the listener, and the session cookie once logged in.
struct Console {
    addr: SocketAddr,
    cookie: Option<String>,
}

impl Console {
    fn call(
        &self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(c) = &self.cookie {
            headers.push(("cookie", format!("gw_console={c}")));
        }
        if let Some(v) = if_match {
            headers.push(("if-match", v.to_string()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        request_with_body(self.addr, method, "console", path, &headers, &body).unwrap()
    }

    fn get(&self, path: &str) -> Response {
        self.call("GET", path, None, None)
    }

    fn put(&self, kind_name: &str, if_match: Option<&str>, item: Value) -> Response {
        self.call(
            "PUT",
            &format!("/api/console/resources/{kind_name}"),
            if_match,
            Some(&json!({ "item": item })),
        )
    }

    /// PUT that must succeed; the new version.
    fn put_ok(&self, kind_name: &str, if_match: Option<&str>, item: Value) -> String {
        let r = self.put(kind_name, if_match, item);
        assert_eq!(r.status, 200, "PUT {kind_name}: {}", r.text());
        r.json()["version"].as_str().unwrap().to_string()
    }

    fn login(&mut self, user: &str, password: &str) -> Response {
        let r = self.call(
            "POST",
            "/api/console/login",
            None,
            Some(&json!({"username": user, "password": password})),
        );
        if r.status == 200 {
            self.cookie = Some(cookie_of(&r));
        }
        r
    }

    /// Set the first password (this test is the loopback peer) and keep the session.
    fn init(&mut self) {
        let r = self.get("/api/console/session");
        assert_eq!(r.json(), json!({"password_set": false, "username": null}));
        let r = self.call(
            "POST",
            "/api/console/init",
            None,
            Some(&json!({"password": "short"})),
        );
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (400, json!("password"))
        );
        let r = self.call(
            "POST",
            "/api/console/init",
            None,
            Some(&json!({"password": PASSWORD})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["username"], "admin");
        self.cookie = Some(cookie_of(&r));
        let again = self.call(
            "POST",
            "/api/console/init",
            None,
            Some(&json!({"password": PASSWORD})),
        );
        assert_eq!(again.status, 409, "the password is set once");
        let r = self.get("/api/console/session");
        assert_eq!(r.json(), json!({"password_set": true, "username": "admin"}));
    }
}

fn cookie_of(r: &Response) -> String {
    let c = r.header("set-cookie").expect("a session cookie");
    assert!(
        c.ends_with("; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"),
        "{c}"
    );
    let token = c
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("gw_console=")
        .unwrap();
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    token.to_string()
}

/// The contents of every file below `dir`.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The items the page writes: a static service source to `be`, a collector for the
/// tracer, a domain, a route, tracing on.
fn create_site(c: &Console, be: &Backend, collector: &Backend) {
    c.put_ok(
        "service-sources/be",
        None,
        json!({"type": "static", "domain": be.addr.to_string(), "port": 80}),
    );
    // The McpBridge exists now: a second registry goes into it at its version, or none.
    c.put_ok(
        "service-sources/collector",
        None,
        json!({"type": "static", "domain": collector.addr.to_string(), "port": 9411}),
    );
    c.put_ok(
        "domains/app.example.com",
        None,
        json!({"enableHttps": "off", "cert": null}),
    );
    c.put_ok(
        "routes/app",
        None,
        json!({"domains": ["app.example.com"], "path": {"matchType": "PRE", "matchValue": "/"},
            "services": [{"name": "be.static", "port": 80, "weight": 100}]}),
    );
    let t = c.get("/api/console/resources/global/tracing").json();
    assert_eq!(t["item"]["enable"], false);
    c.put_ok(
        "global/tracing",
        t["version"].as_str(),
        json!({"enable": true, "sampling": 100, "timeout": 500,
            "provider": "zipkin", "service": "collector.static", "port": 9411}),
    );
}

/// A request through the new route reaches `be`; the tracer exports to the collector.
fn served(gw: &Gateway, collector: &Backend) {
    wait_for("the new route serving", || {
        get(gw.http, "app.example.com", "/hello")
            .ok()
            .filter(|r| r.status == 200 && r.json()["backend"] == "be")
    });
    wait_for("spans exported to the collector", || {
        let _ = get(gw.http, "app.example.com", "/traced");
        (collector
            .counters
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0)
        .then_some(())
    });
}

#[test]
fn the_console_writes_a_directory_the_gateway_serves_and_validate_accepts() {
    let be = Backend::start("be");
    let collector = Backend::start("collector");
    let cfg = ConfigDir::new();
    let gw = Gateway::start(cfg.path());
    let mut c = Console {
        addr: gw.admin,
        cookie: None,
    };

    // No write without a session.
    let r = c.put(
        "service-sources/be",
        None,
        json!({"type": "static", "domain": "127.0.0.1:1", "port": 80}),
    );
    assert_eq!(r.status, 401);
    c.init();

    // A wrong password is 401; five failures in a minute, then 429 even for the right one.
    let mut other = Console {
        addr: gw.admin,
        cookie: None,
    };
    assert_eq!(other.login("admin", "wrong-password").status, 401);
    assert_eq!(other.login("root", PASSWORD).status, 401);
    for _ in 0..3 {
        assert_eq!(other.login("admin", "wrong-password").status, 401);
    }
    let r = other.login("admin", PASSWORD);
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(other.cookie.is_none());

    create_site(&c, &be, &collector);
    served(&gw, &collector);

    // Written as Higress standalone lays them out, valid for `gateway validate`.
    let dir = cfg.path();
    for f in [
        "mcpbridges/default.yaml",
        "configmaps/domain-app.example.com.yaml",
        "ingresses/app.yaml",
        "configmaps/higress-config.yaml",
        "secrets/higress-console.yaml",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let ingress = std::fs::read_to_string(dir.join("ingresses/app.yaml")).unwrap();
    assert!(
        ingress.contains("higress.io/destination: be.static:80"),
        "{ingress}"
    );
    assert!(ingress.contains("ingressClassName: higress"), "{ingress}");
    assert!(!files(dir).keys().any(|f| f.contains(".tmp")));
    let (status, text) = validate(dir);
    assert!(status.success(), "gateway validate: {text}");

    // Reads: lists and one item with its YAML as stored.
    let list = c.get("/api/console/resources/service-sources").json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["be", "collector"]);
    let route = c.get("/api/console/resources/routes/app").json();
    assert_eq!(route["item"]["services"][0]["name"], "be.static");
    assert_eq!(route["yaml"], ingress);
    let version = route["version"].as_str().unwrap().to_string();
    assert_eq!(version.len(), 16);
    assert_eq!(c.get("/api/console/resources/routes/nope").status, 404);

    // A stale or missing If-Match: 409 with the current version.
    let item = route["item"].clone();
    for stale in [Some("0123456789abcdef"), None] {
        let r = c.put("routes/app", stale, item.clone());
        assert_eq!(r.status, 409, "{}", r.text());
        assert!(r.json()["error"].as_str().unwrap().starts_with("stale: "));
        assert_eq!(r.json()["version"], version.as_str());
    }

    // A bad annotation value: 400 naming the field, and no file changes.
    let before = files(dir);
    let mut bad = item.clone();
    bad["annotations"] = json!({"higress.io/timeout": "soon"});
    let r = c.put("routes/app", Some(&version), bad);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(
        e["field"], "metadata.annotations[\"higress.io/timeout\"]",
        "{e}"
    );
    assert_eq!(
        e["item_field"], "annotations[\"higress.io/timeout\"]",
        "{e}"
    );
    assert_eq!(e["object"], "Ingress higress-system/app");
    assert_eq!(e["file"], "ingresses/app.yaml");
    assert!(files(dir) == before, "a refused write changes nothing");
    // A wrong domain value, inline too.
    let r = c.put(
        "domains/app.example.com",
        Some("x"),
        json!({"enableHttps": "maybe"}),
    );
    assert_eq!(r.status, 409, "the version is checked first");
    let dv = c
        .get("/api/console/resources/domains/app.example.com")
        .json()["version"]
        .clone();
    let r = c.put(
        "domains/app.example.com",
        dv.as_str(),
        json!({"enableHttps": "maybe"}),
    );
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (400, json!("data.enableHttps"))
    );
    assert!(files(dir) == before);

    // The right version: written, and the gateway applies it.
    let mut timed = item;
    timed["annotations"] = json!({"higress.io/timeout": "5"});
    let v2 = c.put_ok("routes/app", Some(&version), timed);
    assert_ne!(v2, version);
    // Delete: needs the version too; then the route is gone.
    let r = c.call("DELETE", "/api/console/resources/routes/app", None, None);
    assert_eq!(r.status, 409);
    let r = c.call(
        "DELETE",
        "/api/console/resources/routes/app",
        Some(&v2),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!dir.join("ingresses/app.yaml").exists());
    wait_for("the deleted route gone", || {
        get(gw.http, "app.example.com", "/")
            .ok()
            .filter(|r| r.status == 404)
    });
    // Logged out: no more writes.
    let r = c.call("POST", "/api/console/logout", None, None);
    assert_eq!(r.status, 200);
    let r = c.put("domains/b.example.com", None, json!({"enableHttps": "off"}));
    assert_eq!(r.status, 401);
}

#[test]
fn on_a_console_address_every_read_needs_a_session() {
    let cfg = ConfigDir::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let gw = Gateway::start_with(cfg.path(), &["--console-addr", &addr]);
    let mut c = Console {
        addr: addr.parse().unwrap(),
        cookie: None,
    };
    wait_for("the console listener", || {
        std::net::TcpStream::connect(c.addr).ok()
    });
    assert_eq!(c.get("/api/console/config").status, 401);
    assert_eq!(c.get("/api/console/resources/routes").status, 401);
    c.init();
    assert_eq!(c.get("/api/console/config").status, 200);
    assert_eq!(
        c.get("/api/console/resources/routes").json(),
        json!({"items": []})
    );
    drop(gw);
}

#[test]
fn in_kubernetes_mode_the_console_writes_api_objects() {
    let api = ApiServer::start();
    let be = Backend::start("be");
    let collector = Backend::start("collector");
    let gw = api.gateway(&[]);
    let mut c = Console {
        addr: gw.admin,
        cookie: None,
    };
    let r = c.put(
        "routes/app",
        None,
        json!({"services": [{"name": "be.static"}]}),
    );
    assert_eq!(r.status, 401);
    c.init();
    let kubectl_json = |args: &[&str]| -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-n", "higress-system", "-o", "json"]);
        serde_json::from_str(&api.kubectl_ok(&all, None)).unwrap()
    };
    let secret = kubectl_json(&["secret", "higress-console"]);
    assert!(secret["data"]["adminPasswordHash"].is_string(), "{secret}");

    create_site(&c, &be, &collector);
    served(&gw, &collector);

    let bridge = kubectl_json(&["mcpbridges.networking.higress.io", "default"]);
    assert_eq!(bridge["spec"]["registries"][0]["name"], "be", "{bridge}");
    assert_eq!(bridge["spec"]["registries"][0]["type"], "static");
    let ing = kubectl_json(&["ingress", "app"]);
    assert_eq!(
        ing["metadata"]["annotations"]["higress.io/destination"],
        "be.static:80"
    );
    assert_eq!(ing["spec"]["ingressClassName"], "higress");
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["resource"]["kind"],
        "McpBridge"
    );
    let domain = kubectl_json(&["configmap", "domain-app.example.com"]);
    assert_eq!(domain["data"]["domain"], "app.example.com");
    let cfg = kubectl_json(&["configmap", "higress-config"]);
    assert!(
        cfg["data"]["higress"].as_str().unwrap().contains("zipkin"),
        "{cfg}"
    );

    // The version is the resourceVersion; a stale one is 409, a bad value 400.
    let route = c.get("/api/console/resources/routes/app").json();
    let version = route["version"].as_str().unwrap().to_string();
    assert_eq!(
        version,
        ing["metadata"]["resourceVersion"].as_str().unwrap()
    );
    let r = c.put("routes/app", Some("1"), route["item"].clone());
    assert_eq!(
        (r.status, r.json()["version"].clone()),
        (409, json!(version))
    );
    let mut bad = route["item"].clone();
    bad["annotations"] = json!({"higress.io/timeout": "soon"});
    let r = c.put("routes/app", Some(&version), bad);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["field"],
        "metadata.annotations[\"higress.io/timeout\"]"
    );
    assert_eq!(r.json()["object"], "Ingress higress-system/app");
    assert_eq!(
        kubectl_json(&["ingress", "app"])["metadata"]["resourceVersion"],
        version.as_str(),
        "a refused write changes nothing"
    );
}
