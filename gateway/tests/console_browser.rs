//! The console (`/ui`) in a real browser: Debian's chromium driven by playwright-core
//! (`tests/browser/console.mjs`, installed by scripts/test.sh), against a gateway under
//! k6 load. Screenshots are kept in `target/console-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use test_support::demo::Demo;
use test_support::*;

const TRACE_UI: &str = "http://tracing.example/trace/{trace_id}";

fn browser_dir() -> PathBuf {
    repo_root().join("gateway/tests/browser")
}

fn artifacts() -> PathBuf {
    repo_root().join("target/console-artifacts")
}

/// Run the browser script in `mode`; panics with its output when it fails.
fn run_browser(mode: &str, env: &[(&str, String)], bound: Duration) {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "{} has no node_modules: run scripts/test.sh, which installs playwright-core",
        dir.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium not found: run scripts/test.sh, which installs Debian's chromium"
    );
    let out = Command::new("timeout")
        .arg(bound.as_secs().to_string())
        .args(["node", "console.mjs"])
        .current_dir(&dir)
        .env("MODE", mode)
        .env("ARTIFACTS", artifacts())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("node (Node.js) to run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "the browser test failed:\n{text}");
}

/// k6 running `loadtest/smoke.js` against `base` for up to `secs`; killed when dropped.
struct Load(Child);

impl Load {
    fn start(base: &str, secs: u64) -> Load {
        let child = Command::new("timeout")
            .arg((secs + 10).to_string())
            .arg(k6())
            .args(["run", "--no-color", "--quiet"])
            .arg(repo_root().join("loadtest/smoke.js"))
            .env("BASE_URL", base)
            .env("DURATION", format!("{secs}s"))
            .env("VUS", "2")
            .env("K6_NO_USAGE_REPORT", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Load(child)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The manage flow (`tests/browser/manage.mjs`) against `gw`, its new route to `be`.
fn run_manage(gw: &Gateway, be: &backend::Backend, host: &str, store: &str) {
    run_browser(
        "manage",
        &[
            ("CONSOLE", format!("http://{}", gw.admin)),
            ("STATS", format!("http://{}", gw.stats)),
            ("GATEWAY", format!("http://{}", gw.http)),
            ("BACKEND", be.addr.to_string()),
            ("ROUTE_HOST", host.to_string()),
            ("STORE", store.to_string()),
        ],
        Duration::from_secs(240),
    );
}

/// On the demo, out of the box: live charts that match `/stats/prometheus`, an
/// exemplar that opens its trace, the trace list by keyboard, a rejected change with
/// its file and field, the page's weight and origin.
#[test]
fn the_console_shows_traffic_traces_and_config_on_the_demo() {
    let demo = Demo::start(&["--trace-ui-url", TRACE_UI]);
    assert!(
        demo.printed
            .contains(&format!("console: http://{}/ui", demo.admin)),
        "the demo prints the console's URL: {}",
        demo.printed
    );
    let base = format!("http://{}", demo.http);
    let _load = Load::start(&base, 120);
    // A few 404s, so a status filter has something to leave out.
    for _ in 0..3 {
        let _ = client::get(demo.http, "nowhere.example", "/");
    }
    run_browser(
        "observe",
        &[
            ("CONSOLE", format!("http://{}", demo.admin)),
            ("STATS", format!("http://{}", demo.stats)),
            ("GATEWAY", base.clone()),
            ("CONFIG_DIR", demo.dir.display().to_string()),
            ("TRACE_UI", TRACE_UI.to_string()),
        ],
        Duration::from_secs(240),
    );
    for shot in [
        "console-traffic.png",
        "console-trace.png",
        "console-config.png",
    ] {
        let p = artifacts().join(shot);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{} is {len} bytes", p.display());
    }
}

/// Managing the config in the browser, file mode: the password set on first visit, a
/// service source, a domain and a route created, tracing turned on; the new route
/// serves and its trace shows; the files written pass `gateway validate`.
#[test]
fn the_console_creates_a_service_source_a_domain_and_a_route() {
    let be = backend::Backend::start("console-be");
    let cfg = ConfigDir::new();
    let gw = Gateway::start(cfg.path());
    let host = "console.example.com";
    run_manage(&gw, &be, host, "files");
    assert!(
        be.requests() > 0,
        "the backend was reached through the new route"
    );
    // What the console wrote is where Higress standalone keeps it, and valid.
    for f in [
        "mcpbridges/default.yaml",
        "ingresses/console-route.yaml",
        &format!("configmaps/domain-{host}.yaml"),
        "configmaps/higress-config.yaml",
        "secrets/higress-console.yaml",
    ] {
        assert!(cfg.path().join(f).exists(), "{f} was not written");
    }
    let secret = std::fs::read_to_string(cfg.path().join("secrets/higress-console.yaml")).unwrap();
    assert!(
        !secret.contains("console-pass-1234"),
        "the password is stored hashed: {secret}"
    );
    let (status, text) = validate(cfg.path());
    assert!(
        status.success(),
        "gateway validate on what the console wrote: {text}"
    );
}

/// The same in Kubernetes mode, against the API server stand-in: what the console
/// writes are objects in the gateway's namespace, read back with kubectl.
#[test]
fn the_console_writes_kubernetes_objects() {
    let api = test_support::kube::ApiServer::start();
    let be = backend::Backend::start("console-kube-be");
    let gw = api.gateway(&[]);
    let host = "console-kube.example.com";
    run_manage(&gw, &be, host, "kube");
    assert!(
        be.requests() > 0,
        "the backend was reached through the new route"
    );
    let get = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["get", "-n", "higress-system", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&api.kubectl_ok(&all, None)).unwrap()
    };
    let bridge = get(&["mcpbridges.networking.higress.io", "default"]);
    let registries = bridge["spec"]["registries"].as_array().unwrap();
    assert!(
        registries
            .iter()
            .any(|r| r["name"] == "console-be" && r["domain"] == be.addr.to_string()),
        "{bridge}"
    );
    let ing = get(&["ingresses.networking.k8s.io", "console-route"]);
    assert_eq!(ing["spec"]["rules"][0]["host"], host, "{ing}");
    assert_eq!(
        ing["metadata"]["annotations"]["higress.io/destination"]
            .as_str()
            .map(str::trim),
        Some("console-be.static:80"),
        "{ing}"
    );
    let domain = get(&["configmap", &format!("domain-{host}")]);
    assert_eq!(domain["data"]["domain"], host, "{domain}");
    let config = get(&["configmap", "higress-config"]);
    assert!(
        config["data"]["higress"]
            .as_str()
            .unwrap()
            .contains("enable: true"),
        "{config}"
    );
    let secret = get(&["secret", "higress-console"]);
    assert!(secret["data"]["adminPasswordHash"].is_string(), "{secret}");
}
