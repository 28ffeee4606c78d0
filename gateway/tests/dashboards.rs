//! The shipped Grafana dashboards (`grafana/`) and k6 scripts (`loadtest/*.js`):
//! the dashboards' JSON holds together, and every panel query returns data from a real
//! Prometheus scraping a gateway that k6 (`smoke.js`) and the test load, tracing on;
//! the k6 scripts pass `k6 inspect` and their thresholds against `gateway demo`, and the
//! commands `loadtest/README.md` prints run as printed.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::prometheus::*;
use test_support::tracing_peers::ZipkinReceiver;
use test_support::*;

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo_root().join("grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 3,
        "dashboards: {:?}",
        out.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    out
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

/// The Grafana variables a query may use, and their values in these tests.
const VARIABLES: &[(&str, &str)] = &[
    ("$gateway", HIGRESS_LABEL),
    ("$namespace", "higress-system"),
    ("$__rate_interval", "1m"),
    ("$__range", "5m"),
    ("$__interval", "15s"),
];

fn substitute(expr: &str) -> String {
    let mut q = expr.to_string();
    // Longest names first: `$__range` is not a prefix of another, but keep it safe.
    let mut vars = VARIABLES.to_vec();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (var, value) in vars {
        q = q.replace(var, value);
    }
    q
}

#[test]
fn shipped_dashboards_are_well_formed() {
    let mut uids = HashSet::new();
    for (name, d) in dashboards() {
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_string()),
            "{name}: uid reused"
        );
        let schema = d["schemaVersion"].as_i64().unwrap();
        assert!(
            (38..=41).contains(&schema),
            "{name}: schemaVersion {schema}"
        );
        // Exactly the three variables.
        let vars: Vec<&Value> = d["templating"]["list"].as_array().unwrap().iter().collect();
        let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["datasource", "gateway", "namespace"], "{name}");
        assert_eq!(vars[0]["type"], "datasource");
        assert_eq!(vars[0]["query"], "prometheus");
        let mut ids = HashSet::new();
        let mut exprs = 0;
        for p in panels(&d) {
            let id = p["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{name}: a panel has no id"));
            assert!(ids.insert(id), "{name}: panel id {id} twice");
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_i64().unwrap(), g["w"].as_i64().unwrap());
            assert!(
                x >= 0 && w > 0 && x + w <= 24,
                "{name}: panel {id} gridPos {g}"
            );
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap();
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}: {title}");
            assert_eq!(p["datasource"]["type"], "prometheus", "{name}: {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title} has no target");
            let mut refs = HashSet::new();
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}: {title}");
                assert!(
                    refs.insert(t["refId"].as_str().unwrap()),
                    "{name}: {title} refId"
                );
                let expr = t["expr"].as_str().unwrap();
                assert!(!expr.trim().is_empty(), "{name}: {title}: empty expr");
                // Only the allowed variables and macros.
                for (i, _) in expr.match_indices('$') {
                    let rest = &expr[i..];
                    assert!(
                        VARIABLES.iter().any(|(v, _)| rest.starts_with(v)),
                        "{name}: {title}: {rest:?} is not an allowed variable or macro"
                    );
                }
                assert!(!expr.contains("${"), "{name}: {title}: {expr}");
                exprs += 1;
            }
        }
        assert!(exprs >= 10, "{name}: {exprs} queries");
    }
    // The JSON is what the generator writes.
    let out = Command::new("python3")
        .arg(repo_root().join("grafana/build_dashboards.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Provisioning: a Prometheus datasource whose exemplars link by `trace_id`, and a
    // file provider for the dashboards.
    let ds: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("grafana/provisioning/datasources/gateway.yaml"))
            .unwrap(),
    )
    .unwrap();
    let prom = ds["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "prometheus")
        .expect("a prometheus datasource");
    let dest = &prom["jsonData"]["exemplarTraceIdDestinations"][0];
    assert_eq!(dest["name"], "trace_id");
    let tracing_uid = dest["datasourceUid"].as_str().unwrap();
    assert!(ds["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["uid"] == tracing_uid));
    let dash: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("grafana/provisioning/dashboards/gateway.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(dash["providers"][0]["type"], "file");
    assert!(dash["providers"][0]["options"]["path"].as_str().is_some());
}

/// A gateway with tracing on (Zipkin, to a receiver of the test's own) and registries
/// for every kind of outcome the panels show.
struct Site {
    _ok: Backend,
    _slow: Backend,
    zipkin: ZipkinReceiver,
    _cfg: ConfigDir,
    gw: Gateway,
}

impl Site {
    fn start() -> Site {
        let ok = Backend::start("ok");
        let slow = Backend::start("slow");
        let zipkin = ZipkinReceiver::start();
        let cfg = ConfigDir::new();
        cfg.write(
            "mcpbridges/default.yaml",
            &format!(
                "spec:\n  registries:\n  - {{type: static, name: ok, domain: \"{}\", port: 80}}\n  - {{type: static, name: slow, domain: \"{}\", port: 80}}\n  - {{type: static, name: gone, domain: \"127.0.0.1:1\", port: 80}}\n  - {{type: static, name: notls, domain: \"{}\", port: 443, protocol: https}}\n  - {{type: static, name: zipkin, domain: \"{}\", port: 9411}}\n",
                ok.addr, slow.addr, ok.addr, zipkin.addr
            ),
        );
        cfg.host_route("ok", "ok.test", "ok.static");
        cfg.ingress(
            "slow",
            &[
                ("higress.io/destination", "slow.static"),
                ("higress.io/timeout", "0.2"),
            ],
            &[(Some("slow.test"), "Prefix", "/")],
        );
        cfg.host_route("gone", "gone.test", "gone.static");
        cfg.host_route("notls", "notls.test", "notls.static");
        cfg.higress_config(
            "tracing:\n  enable: true\n  sampling: 100\n  timeout: 500\n  zipkin:\n    service: zipkin.static\n    port: \"9411\"\n",
        );
        // The ABI test module on every route, fail-open: requests asking it to trap or
        // loop (`failures`) feed the Wasm panels and still get their answer.
        cfg.wasm_plugin(
            "wat",
            &format!("file://{}", test_support::wasm::abi_module().display()),
            "failStrategy: FAIL_OPEN",
        );
        let gw = Gateway::start_with(cfg.path(), &["--wasm-callback-deadline", "100ms"]);
        Site {
            _ok: ok,
            _slow: slow,
            zipkin,
            _cfg: cfg,
            gw,
        }
    }

    /// A config change the gateway rejects (an Ingress with an unknown path type).
    fn rejected_change(&self) {
        let v = self.gw.configz()["rejected"].as_array().map_or(0, Vec::len);
        self._cfg.write(
            "ingresses/broken.yaml",
            &ingress_yaml("broken", &[], &[(Some("b.test"), "Prefixx", "/")]),
        );
        wait_for("the rejection", || {
            (self.gw.configz()["rejected"].as_array()?.len() > v).then_some(())
        });
    }

    /// One of each failure: no route, connect failure (with retries), timeout, TLS error,
    /// a plugin trap and a plugin deadline hit (fail-open: still answered).
    fn failures(&self) {
        for (host, path, want) in [
            ("nothing.test", "/", 404),
            ("gone.test", "/", 503),
            ("slow.test", "/delay/1000", 504),
            ("notls.test", "/", 503),
        ] {
            let r = get(self.gw.http, host, path).unwrap();
            assert_eq!(r.status, want, "{host}{path}: {}", r.text());
        }
        for mode in ["T", "F"] {
            let r = request(self.gw.http, "GET", "ok.test", "/", &[("x-mode", mode)]).unwrap();
            assert_eq!(r.status, 200, "x-mode {mode}: {}", r.text());
        }
    }
}

/// Run k6 `script` with `env`; returns its exit status and output.
fn k6_run(script: &str, env: &[(&str, &str)], bound: Duration) -> (bool, String) {
    let out = Command::new("timeout")
        .arg(bound.as_secs().to_string())
        .arg(k6())
        .args(["run", "--no-color"])
        .arg(repo_root().join("loadtest").join(script))
        .envs(env.iter().copied())
        // k6 would otherwise phone home for usage reports.
        .env("K6_NO_USAGE_REPORT", "true")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Series the test's traffic makes grow: their panels must show more than zero.
const CAUSED: &[&str] = &[
    "envoy_http_downstream_rq_total",
    "envoy_http_downstream_rq{",
    "envoy_cluster_upstream_rq_total",
    "response_code_class=\"5xx\"",
    "envoy_cluster_upstream_cx_connect_fail",
    "envoy_cluster_upstream_rq_timeout",
    "envoy_cluster_upstream_rq_retry",
    "envoy_cluster_ssl_connection_error",
    "envoy_tracing_zipkin_spans_sent",
    "envoy_tracing_zipkin_reports_sent",
    "response_flags!=",
    "istio_requests_total",
    "_bytes_total",
    "gateway_config_snapshot_version",
    "gateway_config_reloads_total",
    "envoy_server_uptime",
    "envoy_server_memory",
    "gateway_wasm_calls_total",
    "gateway_wasm_failures_total",
    "gateway_wasm_vm_rebuilds_total",
    "gateway_wasm_vm_memory_bytes",
];

#[test]
fn every_panel_query_returns_data_for_traffic_sent() {
    let site = Site::start();
    let prom = Prometheus::start(site.gw.stats);
    // Real load from the shipped smoke test.
    let base = format!("http://{}", site.gw.http);
    let (ok, out) = k6_run(
        "smoke.js",
        &[
            ("BASE_URL", &base),
            ("HOST_HEADER", "ok.test"),
            ("PATHS", "/get,/items/1"),
            ("DURATION", "5s"),
        ],
        Duration::from_secs(60),
    );
    assert!(ok, "k6 smoke.js failed against the gateway:\n{out}");
    site.failures();
    site.rejected_change();
    site.zipkin
        .wait_span("a span at the collector", |s| s["kind"] == "SERVER");

    // A light, bounded background load keeps the rate() windows filled while queries run.
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (stop, addr) = (stop.clone(), site.gw.http);
        std::thread::spawn(move || {
            let start = Instant::now();
            // (host, path, what the test plugin does: trap, loop, nothing).
            let hosts = [
                ("ok.test", "/background", "E"),
                ("ok.test", "/background", "T"),
                ("nothing.test", "/", ""),
                ("gone.test", "/", ""),
                ("notls.test", "/", ""),
                ("slow.test", "/delay/1000", ""),
                ("ok.test", "/background", "F"),
            ];
            for (host, path, mode) in hosts.iter().cycle().take(1500) {
                if stop.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(150) {
                    break;
                }
                let _ = request(addr, "GET", host, path, &[("x-mode", mode)]);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // The variables resolve to the scrape job's label and the gateway's namespace.
    let live = prom.wait_query("envoy_server_live", |r| !r.is_empty());
    let gateways: BTreeSet<&str> = live
        .iter()
        .filter_map(|(l, _)| l.get("higress").map(String::as_str))
        .collect();
    assert!(gateways.contains(HIGRESS_LABEL), "{gateways:?}");
    let namespaces: BTreeSet<&str> = gateways
        .iter()
        .filter_map(|g| g.strip_suffix("-higress-gateway"))
        .collect();
    assert!(namespaces.contains("higress-system"), "{namespaces:?}");

    let mut c = Checks::new(&prom, PROM_WAIT);
    let mut report = Vec::new();
    let mut exemplar_exprs = Vec::new();
    for (name, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let q = substitute(t["expr"].as_str().unwrap());
                let title = p["title"].as_str().unwrap_or("");
                // Quantiles must be numbers, not the NaN of an empty histogram; what the
                // test's traffic caused must show as more than zero.
                let want_finite = q.contains("histogram_quantile");
                let want_positive = CAUSED.iter().any(|m| q.contains(m));
                let result = c.check("data", &q, |r| {
                    !r.is_empty()
                        && (!want_finite || r.iter().any(|(_, v)| v.is_finite()))
                        && (!want_positive || r.iter().any(|(_, v)| *v > 0.0))
                });
                if t["exemplar"] == true {
                    exemplar_exprs.push(q.clone());
                }
                report.push(format!(
                    "{name} / {title}: {} series: {q}",
                    result.map_or(0, |r| r.len())
                ));
            }
        }
    }
    // Exemplar-enabled queries find the trace ids of sampled requests.
    for q in exemplar_exprs.iter().take(3) {
        let found = poll("exemplars with a trace_id", PROM_WAIT, || {
            let ex = prom.exemplars(q, 600)?;
            let ids: Vec<String> = ex
                .iter()
                .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| e["labels"]["trace_id"].as_str().map(String::from))
                .collect();
            if ids.is_empty() {
                Err(format!("none yet for {q}"))
            } else {
                Ok(ids)
            }
        });
        assert!(found.iter().all(|id| id.len() == 32), "{found:?}");
    }
    stop.store(true, Ordering::Relaxed);
    background.join().unwrap();
    println!("{}", report.join("\n"));
    c.finish();
    prom.assert_target_healthy();
}

#[test]
fn k6_scripts_inspect_and_pass_against_the_demo() {
    let scripts: Vec<PathBuf> = std::fs::read_dir(repo_root().join("loadtest"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "js"))
        .collect();
    assert!(scripts.len() >= 4, "{scripts:?}");
    for s in &scripts {
        let out = Command::new(k6()).arg("inspect").arg(s).output().unwrap();
        assert!(
            out.status.success(),
            "k6 inspect {}: {}",
            s.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let demo = test_support::demo::Demo::start(&[]);
    let (http, admin, dir) = (demo.http, demo.admin, &demo.dir);
    let base = format!("http://{http}");
    let (ok, out) = k6_run(
        "smoke.js",
        &[("BASE_URL", &base), ("DURATION", "8s")],
        Duration::from_secs(30),
    );
    assert!(ok, "smoke.js against the demo:\n{out}");
    assert!(
        out.contains("checks_succeeded") && out.contains("100.00%"),
        "{out}"
    );
    // The demo propagates W3C trace context; every carrier's check must hold.
    let (ok, out) = k6_run(
        "tracing.js",
        &[("BASE_URL", &base), ("DURATION", "2s")],
        Duration::from_secs(30),
    );
    assert!(ok, "tracing.js against the demo:\n{out}");
    // Load while the companion rewrites the demo's config: not one failed request.
    let out = Command::new("timeout")
        .arg("40")
        .arg("bash")
        .arg(repo_root().join("loadtest/reload.sh"))
        .arg(dir)
        .arg(admin.to_string())
        .env("BASE_URL", &base)
        .env("DURATION", "6s")
        .env(
            "PATH",
            format!(
                "{}:{}",
                k6().parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("K6_NO_USAGE_REPORT", "true")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "reload.sh against the demo:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let published: u64 = text
        .split("the gateway published ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no snapshot count in:\n{text}"));
    assert!(published >= 5, "{text}");
}

/// The shell block of `loadtest/README.md` that shows how to run the k6 scripts: its
/// command lines, as printed.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("loadtest/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), l) if !l.is_empty() && !l.starts_with('#') => block.push(l.to_string()),
            _ => {}
        }
    }
    blocks
        .into_iter()
        .find(|b| b.iter().any(|l| l.contains("k6 run")))
        .expect("a ```sh block with `k6 run` lines in loadtest/README.md")
}

/// A new user's path through `loadtest/README.md`: each line of its k6 block, run by bash
/// from the repository root exactly as printed, against `gateway demo` (which the test
/// starts itself rather than through `scripts/demo.sh`, a release build). Only
/// `BASE_URL` (the demo's port) and a short `DURATION` come from the environment.
#[test]
fn loadtest_readme_commands_run_as_printed() {
    let lines = readme_commands();
    let (demo_line, commands): (Vec<String>, Vec<String>) = lines
        .into_iter()
        .partition(|l| l.starts_with("scripts/demo.sh"));
    assert_eq!(demo_line.len(), 1, "the block starts the demo once");
    let k6_lines = commands.iter().filter(|l| l.contains("k6 run")).count();
    assert!(k6_lines >= 3, "{commands:?}");
    // No `k6 run` printed elsewhere in the README escapes the test.
    let readme = std::fs::read_to_string(repo_root().join("loadtest/README.md")).unwrap();
    assert_eq!(
        readme.lines().filter(|l| l.contains("k6 run")).count(),
        k6_lines,
        "loadtest/README.md prints `k6 run` outside the block the test runs"
    );
    let demo = test_support::demo::Demo::start(&[]);
    let (http, dir) = (demo.http, &demo.dir);
    // The placeholder the README prints for the directory the demo names after its pid.
    let placeholder = "/tmp/gateway-demo-<pid>";
    assert_eq!(
        dir.file_name().unwrap().to_string_lossy(),
        format!("gateway-demo-{}", demo.pid()),
        "the demo's config dir is the README's {placeholder}"
    );
    let path = format!(
        "{}:{}",
        k6().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for printed in &commands {
        let line = printed.replace(placeholder, &dir.to_string_lossy());
        assert!(
            !line.contains('<'),
            "a placeholder the test does not know: {printed}"
        );
        let out = Command::new("timeout")
            .args(["90", "bash", "-c", &line])
            .current_dir(repo_root())
            .env("PATH", &path)
            .env("BASE_URL", format!("http://{http}"))
            .env("DURATION", "3s")
            // k6 would otherwise phone home for usage reports.
            .env("K6_NO_USAGE_REPORT", "true")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "`{printed}` failed:\n{text}");
        // k6's summary: the script ran and sent requests.
        assert!(text.contains("http_reqs"), "`{printed}`:\n{text}");
    }
}
