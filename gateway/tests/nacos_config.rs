//! Nacos as the config store (`gateway run --config nacos://...`), as Higress standalone
//! keeps it: the Nacos stand-in (`peers/nacos_standin.py`) holds the objects, published
//! and read by the official client (nacos-sdk-python's `NacosClient`, driven by
//! `peers/nacos_sdk.py`); the gateway serves them, follows edits live, rejects a bad one
//! naming its data id and field, reads an encrypted Secret, and the console writes back.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use test_support::client::request_with_body;
use test_support::nacos::NacosStandin;
use test_support::tls::{tls_conn, tls_secret_yaml, TestCa};
use test_support::tracing_peers::{peers_dir, python};
use test_support::*;

const NS: &str = "higress-system";
/// Every stand-in runs with authentication: the gateway logs in as Higress does.
const USER: &str = "nacos";
const PASSWORD: &str = "nacos";
/// The key Secrets are encrypted with (AES-256).
const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

/// One run of `nacos_sdk.py`: (success, stdout, stderr).
fn sdk(server: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let work = tempfile::tempdir().unwrap();
    let mut child = Command::new(python())
        .arg(peers_dir().join("nacos_sdk.py"))
        .args(["--server", server, "--namespace", NS])
        .args(["--username", USER, "--password", PASSWORD])
        .args(args)
        .current_dir(work.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nacos_sdk.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Publish `content` as `data_id` in `group` with the SDK.
fn publish(n: &NacosStandin, data_id: &str, group: &str, content: &str, extra: &[&str]) {
    let server = n.server_addr();
    let mut args = vec!["publish", data_id, group];
    args.extend_from_slice(extra);
    let (ok, out, err) = sdk(&server, &args, content);
    assert!(
        ok && out.trim() == "published",
        "publish {data_id}: {out}\n{err}"
    );
}

/// What the SDK reads for `data_id` in `group`; `None` when there is none.
fn read(n: &NacosStandin, data_id: &str, group: &str) -> Option<String> {
    let (ok, out, err) = sdk(&n.server_addr(), &["get", data_id, group], "");
    if !ok {
        assert!(err.is_empty() || !err.contains("Traceback"), "{err}");
        return None;
    }
    Some(out)
}

fn remove(n: &NacosStandin, data_id: &str, group: &str) {
    let (ok, out, err) = sdk(&n.server_addr(), &["remove", data_id, group], "");
    assert!(ok, "remove {data_id}: {out}\n{err}");
}

fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The quick-start's objects (examples/quickstart), the registry switched to `static`
/// at `be`: `(kind folder, name, YAML)`.
fn quickstart(be: &Backend) -> Vec<(String, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let mut out = Vec::new();
    for kind in ["configmaps", "ingresses", "mcpbridges"] {
        for e in std::fs::read_dir(src.join(kind)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let yaml = std::fs::read_to_string(&p)
                .unwrap()
                .replace(
                    "domain: httpbin.org",
                    &format!("domain: 127.0.0.1:{}", be.addr.port()),
                )
                .replace("type: dns", "type: static")
                .replace("httpbin.dns", "httpbin.static");
            out.push((kind.to_string(), name, yaml));
        }
    }
    out
}

fn nacos_gateway(n: &NacosStandin, extra: &[&str]) -> Gateway {
    let mut args = vec![
        "--nacos-list-refresh-interval",
        "1s",
        "--nacos-username",
        USER,
        "--nacos-password",
        PASSWORD,
    ];
    args.extend_from_slice(extra);
    Gateway::start_mode(
        &[
            "--config".into(),
            format!("nacos://{}", n.server_addr()).into(),
        ],
        &args,
        &[],
    )
}

fn standin() -> NacosStandin {
    NacosStandin::start(&["--auth", &format!("{USER}:{PASSWORD}")])
}

fn status_of(gw: &Gateway, path: &str) -> u16 {
    get(gw.http, "foo.bar.com", path).map_or(0, |r| r.status)
}

#[test]
fn the_quickstart_in_nacos_serves_as_the_directory_and_follows_sdk_edits() {
    let be = Backend::start("be");
    let n = standin();
    let objects = quickstart(&be);
    let cfg = ConfigDir::new();
    for (kind, name, yaml) in &objects {
        publish(&n, &format!("{kind}.{name}"), NS, yaml, &[]);
        cfg.write(&format!("{kind}/{name}.yaml"), yaml);
    }
    let gw = nacos_gateway(&n, &[]);
    let dir_gw = Gateway::start(cfg.path());
    let r = get(gw.http, "foo.bar.com", "/get?foo=bar").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["backend"], "be");
    // The same routes and clusters as from the directory.
    let (z, dz) = (gw.configz(), dir_gw.configz());
    assert_eq!(z["routes"], dz["routes"]);
    assert_eq!(z["clusters"], dz["clusters"]);
    assert_eq!(z["rejected"], json!([]));
    drop(dir_gw);

    // An edit through the SDK applies live (the long poll wakes at once).
    let ing = &objects.iter().find(|o| o.0 == "ingresses").unwrap().2;
    let edited = ing.replace("path: /", "path: /v2");
    let t0 = Instant::now();
    publish(&n, "ingresses.route-foo-bar", NS, &edited, &[]);
    let published = t0.elapsed();
    wait_for("the edited route", || {
        (status_of(&gw, "/get") == 404 && status_of(&gw, "/v2/x") == 200).then_some(())
    });
    eprintln!(
        "edit applied {:?} after the SDK returned",
        t0.elapsed().saturating_sub(published)
    );

    // A bad edit: rejected with its data id and field, the last good version serves.
    let bad = edited.replace("pathType: Prefix", "pathType: Prefixx");
    publish(&n, "ingresses.route-foo-bar", NS, &bad, &[]);
    let rejected = wait_for("the bad edit rejected", || {
        gw.configz()["rejected"].as_array()?.first().cloned()
    });
    assert_eq!(rejected["object"], "Ingress higress-system/route-foo-bar");
    assert_eq!(
        rejected["file"],
        "nacos:higress-system/ingresses.route-foo-bar"
    );
    let error = rejected["error"].as_str().unwrap();
    assert!(
        error.contains("pathType") && error.contains("Prefixx"),
        "{error}"
    );
    let log = gw.log();
    assert!(
        log.contains("nacos:higress-system/ingresses.route-foo-bar: Ingress higress-system/route-foo-bar: spec.rules[0].http.paths[0].pathType"),
        "{log}"
    );
    assert_eq!(status_of(&gw, "/v2/x"), 200);

    // Nacos goes away: the config in force stays and the failure is logged; back, a
    // fixed edit applies and clears the rejection.
    n.control("/down", json!({}));
    wait_for("the failure logged", || {
        gw.log().contains("Nacos unreachable").then_some(())
    });
    assert_eq!(status_of(&gw, "/v2/x"), 200);
    n.control("/up", json!({}));
    wait_for("Nacos answering again", || {
        gw.log().contains("Nacos answers again").then_some(())
    });
    publish(
        &n,
        "ingresses.route-foo-bar",
        NS,
        &edited.replace("/v2", "/v3"),
        &[],
    );
    wait_for("the edit after the outage", || {
        (status_of(&gw, "/v2/x") == 404 && status_of(&gw, "/v3/x") == 200).then_some(())
    });
    assert_eq!(
        gw.configz()["rejected"],
        json!([]),
        "the fix clears the rejection"
    );

    // A new object published without touching the name index is found by the relist;
    // removing one deletes its routes.
    let second = ingress_yaml(
        "second",
        &[("higress.io/destination", "httpbin.static")],
        &[(Some("two.bar.com"), "Prefix", "/")],
    );
    publish(&n, "ingresses.second", NS, &second, &[]);
    wait_for("the new Ingress served", || {
        get(gw.http, "two.bar.com", "/")
            .ok()
            .filter(|r| r.status == 200)
    });
    remove(&n, "ingresses.second", NS);
    wait_for("the removed Ingress gone", || {
        get(gw.http, "two.bar.com", "/")
            .ok()
            .filter(|r| r.status == 404)
    });
    assert_eq!(status_of(&gw, "/v3/x"), 200);
}

/// `gateway validate --config nacos://...`: exit code and output.
fn validate_nacos(n: &NacosStandin, extra: &[&str]) -> (i32, String) {
    let out = Command::new(gateway_bin())
        .args([
            "validate",
            "--config",
            &format!("nacos://{}", n.server_addr()),
        ])
        .args(["--nacos-username", USER, "--nacos-password", PASSWORD])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn an_encrypted_secret_is_read_and_validate_checks_what_nacos_holds() {
    let be = Backend::start("be");
    let n = standin();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("key");
    std::fs::write(&key_file, KEY).unwrap();
    let key_file = key_file.to_str().unwrap();
    for (kind, name, yaml) in quickstart(&be) {
        publish(&n, &format!("{kind}.{name}"), NS, &yaml, &[]);
    }
    // The certificate of a.test, sealed by the SDK driver as Higress standalone seals
    // Secrets; an Ingress serving a.test over TLS with it.
    let ca = TestCa::new("Test CA nacos");
    let secret = tls_secret_yaml("a-cert", &ca.issue(&["a.test"]), None);
    publish(
        &n,
        "secrets.a-cert",
        NS,
        &secret,
        &["--encrypt-key-file", key_file],
    );
    let stored = read(&n, "secrets.a-cert", NS).unwrap();
    assert!(
        stored.starts_with("enc|") && !stored.contains("tls.crt"),
        "{stored}"
    );
    let tls_ing = ingress_yaml(
        "a",
        &[("higress.io/destination", "httpbin.static")],
        &[(Some("a.test"), "Prefix", "/")],
    ) + "  tls:\n  - hosts: [a.test]\n    secretName: a-cert\n";
    publish(&n, "ingresses.a", NS, &tls_ing, &[]);

    // Offline checks: without the key the Secret is rejected, naming its data id.
    let (code, out) = validate_nacos(&n, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("nacos:higress-system/secrets.a-cert: Secret higress-system/a-cert: .: the content is encrypted")
            && out.contains("--nacos-encryption-key-file"),
        "{out}"
    );
    let (code, out) = validate_nacos(&n, &["--nacos-encryption-key-file", key_file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"), "{out}");
    // A key of the wrong length is refused at once.
    let short = keys.path().join("short");
    std::fs::write(&short, b"0123456789abcdef\n").unwrap();
    let (code, out) = validate_nacos(
        &n,
        &["--nacos-encryption-key-file", short.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("17 bytes"), "{out}");

    let gw = nacos_gateway(&n, &["--nacos-encryption-key-file", key_file]);
    let mut c = wait_for("the HTTPS listener with a.test's certificate", || {
        tls_conn(gw.https, Some("a.test"), &ca.pem_path()).ok()
    });
    let r = c.request("GET", "a.test", "/", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["backend"], "be");
    assert_eq!(gw.configz()["rejected"], json!([]));
}

/// A console client on the admin listener, logged in once the password is set.
struct Console {
    addr: std::net::SocketAddr,
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

    fn put(&self, kind_name: &str, if_match: Option<&str>, item: Value) -> Response {
        self.call(
            "PUT",
            &format!("/api/console/resources/{kind_name}"),
            if_match,
            Some(&json!({ "item": item })),
        )
    }

    fn put_ok(&self, kind_name: &str, if_match: Option<&str>, item: Value) -> String {
        let r = self.put(kind_name, if_match, item);
        assert_eq!(r.status, 200, "PUT {kind_name}: {}", r.text());
        r.json()["version"].as_str().unwrap().to_string()
    }

    fn init(&mut self) {
        let r = self.call(
            "POST",
            "/api/console/init",
            None,
            Some(&json!({"password": "console-pass-1"})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let c = r.header("set-cookie").expect("a session cookie");
        let token = c
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("gw_console=")
            .unwrap();
        self.cookie = Some(token.to_string());
    }
}

#[test]
fn console_writes_land_in_nacos_as_higress_standalone_writes_them() {
    let be = Backend::start("be");
    let n = standin();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("key");
    std::fs::write(&key_file, KEY).unwrap();
    let gw = nacos_gateway(
        &n,
        &["--nacos-encryption-key-file", key_file.to_str().unwrap()],
    );
    let mut c = Console {
        addr: gw.admin,
        cookie: None,
    };
    // The password goes into the Secret higress-console: encrypted in Nacos.
    c.init();
    let console_secret = read(&n, "secrets.higress-console", NS).expect("the console's Secret");
    assert!(console_secret.starts_with("enc|"), "{console_secret}");

    c.put_ok(
        "service-sources/be",
        None,
        json!({"type": "static", "domain": be.addr.to_string(), "port": 80}),
    );
    c.put_ok(
        "domains/app.example.com",
        None,
        json!({"enableHttps": "off", "cert": null}),
    );
    let v1 = c.put_ok(
        "routes/app",
        None,
        json!({"domains": ["app.example.com"], "path": {"matchType": "PRE", "matchValue": "/"},
            "services": [{"name": "be.static", "port": 80, "weight": 100}]}),
    );
    wait_for("the console's route served", || {
        get(gw.http, "app.example.com", "/hello")
            .ok()
            .filter(|r| r.status == 200 && r.json()["backend"] == "be")
    });

    // In Nacos as Higress standalone lays them out, readable by the SDK; the version is
    // the MD5 of the stored content.
    let ingress = read(&n, "ingresses.app", NS).expect("ingresses.app");
    assert!(
        ingress.contains("higress.io/destination: be.static:80"),
        "{ingress}"
    );
    assert!(!ingress.contains("resourceVersion"), "{ingress}");
    assert_eq!(md5_hex(&ingress), v1);
    assert!(read(&n, "mcpbridges.default", NS)
        .unwrap()
        .contains("type: static"));
    assert!(read(&n, "configmaps.domain-app.example.com", NS).is_some());
    let names = read(&n, "ingresses.__names__", "DEFAULT_GROUP").expect("the name index");
    assert_eq!(names, "higress-system/app\n");
    let route = c
        .call("GET", "/api/console/resources/routes/app", None, None)
        .json();
    assert_eq!(route["version"], v1.as_str());
    assert_eq!(route["yaml"], ingress.as_str());

    // Changed through the SDK meanwhile: the console's write at the old version is
    // refused (409, the current version), nothing is written.
    let by_sdk = ingress.replace("be.static:80", "be.static:80 ");
    publish(&n, "ingresses.app", NS, &by_sdk, &[]);
    let r = c.put("routes/app", Some(&v1), route["item"].clone());
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["version"], md5_hex(&by_sdk).as_str());
    assert_eq!(read(&n, "ingresses.app", NS).unwrap(), by_sdk);

    // A bad value: 400 naming the field and the data id.
    let mut bad = route["item"].clone();
    bad["annotations"] = json!({"higress.io/timeout": "soon"});
    let r = c.put("routes/app", Some(&md5_hex(&by_sdk)), bad);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["file"], "nacos:higress-system/ingresses.app");

    // Deleted from the console: gone from Nacos and its index, no longer served.
    let current = c
        .call("GET", "/api/console/resources/routes/app", None, None)
        .json();
    let r = c.call(
        "DELETE",
        "/api/console/resources/routes/app",
        current["version"].as_str(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(read(&n, "ingresses.app", NS).is_none());
    assert_eq!(
        read(&n, "ingresses.__names__", "DEFAULT_GROUP").unwrap(),
        "EMPTY"
    );
    wait_for("the deleted route gone", || {
        get(gw.http, "app.example.com", "/hello")
            .ok()
            .filter(|r| r.status == 404)
    });
}
