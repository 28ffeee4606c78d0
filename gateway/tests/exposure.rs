//! What the gateway shows and to whom: planted secrets (a TLS key, key-auth credentials,
//! a Redis password, an image pull secret, a tracing `access_token`) never appear in
//! any admin or stats output nor in the logs, and the gateway runs as uid 65532 with
//! only its cache directory writable.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use base64::Engine;
use test_support::tls::{tls_conn, TestCa};
use test_support::*;

const KEY_AUTH: &str = "SECRET-KEYAUTH-7f3a91";
const REDIS_PASSWORD: &str = "SECRET-REDIS-55c2e0";
const PULL_PASSWORD: &str = "SECRET-PULL-0b9d44";
const ACCESS_TOKEN: &str = "SECRET-SWTOKEN-a81c";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn planted_secrets_appear_in_no_output_and_no_log() {
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("be", be.addr.to_string(), 80),
        ("redis", "127.0.0.1:1".into(), 6379),
        ("oap", "127.0.0.1:1".into(), 11800),
    ]);
    cfg.host_route("site", "site.test", "be.static");
    let ca = TestCa::new("exposure-ca");
    let issued = ca.issue(&["site.test"]);
    cfg.tls_secret("site-cert", &issued);
    cfg.write(
        "ingresses/site-tls.yaml",
        &format!(
            "{}  tls:\n  - secretName: site-cert\n    hosts: [site.test]\n",
            ingress_yaml(
                "site-tls",
                &[("higress.io/destination", "be.static")],
                &[(Some("site.test"), "Prefix", "/tls")],
            )
        ),
    );
    let docker_config = format!(
        r#"{{"auths":{{"registry.test":{{"auth":"{}"}}}}}}"#,
        b64(&format!("bob:{PULL_PASSWORD}"))
    );
    cfg.write(
        "secrets/regcred.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
            b64(&docker_config)
        ),
    );
    cfg.write(
        "wasmplugins/key-auth.yaml",
        &format!(
            "apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: key-auth\n  namespace: higress-system\nspec:\n  imagePullSecret: regcred\n  defaultConfig:\n    consumers:\n    - credential: {KEY_AUTH}\n      name: c1\n    keys: [apikey]\n    in_header: true\n    global_auth: false\n  matchRules:\n  - ingress: [site]\n    config:\n      allow: [c1]\n  url: oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-auth:1.0.0\n"
        ),
    );
    cfg.write(
        "wasmplugins/limit.yaml",
        &format!(
            "apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: limit\n  namespace: higress-system\nspec:\n  defaultConfig:\n    rule_name: r\n    rule_items:\n    - limit_by_header: x-key\n      limit_keys:\n      - key: k1\n        query_per_minute: 10\n    redis:\n      service_name: redis.static\n      password: {REDIS_PASSWORD}\n      timeout: 100\n  url: oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/cluster-key-rate-limit:1.0.0\n"
        ),
    );
    cfg.higress_config(&format!(
        "tracing:\n  enable: true\n  sampling: 100\n  timeout: 500\n  skywalking:\n    service: oap.static\n    port: \"11800\"\n    access_token: {ACCESS_TOKEN}\n"
    ));
    let gw = Gateway::start_with_env(cfg.path(), &[], &[("RUST_LOG", "debug")]);
    wait_for("the HTTPS listener", || {
        std::net::TcpStream::connect(gw.https).ok()
    });

    // Exercise the secrets: an authenticated request, a refused one, one over TLS.
    let ok = request(gw.http, "GET", "site.test", "/", &[("apikey", KEY_AUTH)]).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let bad = request(gw.http, "GET", "site.test", "/", &[("apikey", "wrong")]).unwrap();
    assert_eq!(bad.status, 401);
    let mut tls = tls_conn(gw.https, Some("site.test"), &ca.pem_path()).unwrap();
    let r = tls.request("GET", "site.test", "/tls", &[]).unwrap();
    assert!(r.status > 0);
    // A rejected change that names a secret must not echo it either.
    cfg.write(
        "wasmplugins/limit.yaml",
        &format!(
            "apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: limit\n  namespace: higress-system\nspec:\n  defaultConfig:\n    rule_name: r\n    redis:\n      service_name: redis.static\n      password: {REDIS_PASSWORD}\n  url: oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/cluster-key-rate-limit:1.0.0\n"
        ),
    );
    wait_for("the bad change to be rejected", || {
        gw.configz()["rejected"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|_| ())
    });

    let key_lines: Vec<&str> = issued
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut planted: Vec<String> = [KEY_AUTH, REDIS_PASSWORD, PULL_PASSWORD, ACCESS_TOKEN]
        .iter()
        .map(|s| s.to_string())
        .collect();
    planted.push(b64(&issued.key_pem));
    planted.push(b64(&format!("bob:{PULL_PASSWORD}")));
    planted.push(b64(&docker_config));
    planted.extend(key_lines.iter().map(|l| l.to_string()));

    let mut outputs = vec![];
    for path in [
        "/debug/configz",
        "/config_dump",
        "/clusters",
        "/debug/traces",
        "/ready",
    ] {
        let r = get(gw.admin, "x", path).unwrap();
        assert_eq!(r.status, 200, "{path}");
        outputs.push((path.to_string(), r.text()));
    }
    outputs.push(("/stats/prometheus".into(), gw.metrics()));
    std::thread::sleep(Duration::from_millis(300));
    outputs.push(("gateway log".into(), gw.log()));
    outputs.push((
        "access log".into(),
        std::fs::read_to_string(&gw.access_log).unwrap_or_default(),
    ));
    // The console's reads (open on loopback) show none of them either.
    for path in [
        "/api/console/config",
        "/api/console/traces",
        "/api/console/settings",
    ] {
        let r = get(gw.admin, "x", path).unwrap();
        assert_eq!(r.status, 200, "{path}");
        outputs.push((path.to_string(), r.text()));
    }
    let traces: serde_json::Value = serde_json::from_str(
        &outputs
            .last()
            .map(|_| get(gw.admin, "x", "/api/console/traces").unwrap().text())
            .unwrap(),
    )
    .unwrap();
    for t in traces["traces"].as_array().into_iter().flatten() {
        let path = format!("/api/console/traces/{}", t["trace_id"].as_str().unwrap());
        outputs.push((path.clone(), get(gw.admin, "x", &path).unwrap().text()));
    }
    // Without a session the config items (which carry credentials) are not shown.
    for path in [
        "/api/console/resources/plugins",
        "/api/console/resources/service-sources",
    ] {
        let r = get(gw.admin, "x", path).unwrap();
        assert_eq!(r.status, 401, "{path}");
    }
    // The outputs are not empty: the objects are there, redacted.
    let dump = &outputs[1].1;
    assert!(
        dump.contains("regcred") && dump.contains("<redacted"),
        "{dump}"
    );
    assert!(
        dump.contains("key-auth") && dump.contains("limit"),
        "{dump}"
    );
    assert!(outputs[6].1.contains("DEBUG"), "debug logging is on");
    for (what, text) in &outputs {
        for secret in &planted {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows the planted secret {secret:?}: {}",
                text.lines()
                    .filter(|l| l.contains(secret.as_str()))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// The manifests' user: uid 65532, nothing writable but the Wasm cache directory.
#[test]
fn runs_as_uid_65532_with_only_its_cache_directory_writable() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test starts the gateway as uid 65532 and needs root (CI runs as root)");
    }
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let cache = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(cache.path(), Some(65532), Some(65532)).unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // The config is readable by anyone and writable by root only.
    let mut perms = std::fs::metadata(cfg.path()).unwrap().permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(cfg.path(), perms).unwrap();
    for entry in walk(cfg.path()) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // A Wasm plugin to compile: its module in a world-readable place.
    let modules = tempfile::tempdir().unwrap();
    std::fs::set_permissions(modules.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let module = modules.path().join("abi_edge.wat");
    std::fs::copy(wasm::abi_module(), &module).unwrap();
    std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o644)).unwrap();
    let gw = Gateway::start_as(
        cfg.path(),
        &["--wasm-cache-dir", cache.path().to_str().unwrap()],
        65532,
    );
    cfg.wasm_plugin("wat", &format!("file://{}", module.display()), "");
    std::fs::set_permissions(
        cfg.path().join("wasmplugins"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    gw.wait_plugin("wat");
    let cached = std::fs::read_dir(cache.path()).unwrap().count();
    assert!(
        cached > 0,
        "the compiled module is cached in the cache directory"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uid_line}"
    );
    assert_eq!(get(gw.http, "x", "/").unwrap().status, 200);
    // It cannot write its config; a live change by root still applies.
    let before = gw.version();
    cfg.host_route("other", "other.test", "be.static");
    gw.wait_version_after(before);
    assert_eq!(get(gw.http, "other.test", "/").unwrap().status, 200);
    assert!(!gw.log().contains("Permission denied"), "{}", gw.log());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
