//! The console's JSON endpoints against a real gateway (no browser): the trace list and
//! its filters, a trace's waterfall with the plugin chain's time, the config panel's
//! plugin chain per route, `--console-addr` behind the login, and the page's weight and
//! origin.

use serde_json::Value;
use test_support::backend::Backend;
use test_support::client::get;
use test_support::*;

fn json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let r = get(addr, "admin", path).unwrap();
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// A route with the no-op Wasm plugin, every request traced (to a Zipkin that is not
/// there: the console shows the gateway's own record).
fn traced_config(be: &Backend) -> ConfigDir {
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("be", be.addr.to_string(), 80)]);
    cfg.ingress(
        "r",
        &[
            ("higress.io/destination", "be.static"),
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
        ],
        &[(None, "Prefix", "/")],
    );
    cfg.higress_config(
        "tracing:\n  enable: true\n  sampling: 100\n  timeout: 500\n  zipkin:\n    service: zipkin.static\n    port: \"9411\"\n",
    );
    cfg.write(
        "wasmplugins/noop.yaml",
        &format!(
            "apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: noop\n  namespace: higress-system\nspec:\n  url: file://{}\n  phase: UNSPECIFIED_PHASE\n  priority: 10\n",
            repo_root().join("loadtest/wasm_noop.wat").display()
        ),
    );
    cfg
}

#[test]
fn traces_list_filter_and_open_as_a_waterfall_with_plugin_time() {
    let be = Backend::start("console-api");
    let cfg = traced_config(&be);
    let gw = Gateway::start(cfg.path());
    wait_for("the plugin in force", || {
        let z = gw.configz();
        (z["plugins"].as_array().map_or(0, |p| p.len()) == 1).then_some(())
    });
    for i in 0..5 {
        let r = get(gw.http, "a.example.com", &format!("/item/{i}")).unwrap();
        assert_eq!(r.status, 200);
    }
    let (status, list) = wait_for("five traces", || {
        let (s, v) = json(gw.admin, "/api/console/traces?limit=50");
        (v["count"].as_u64() >= Some(5)).then_some((s, v))
    });
    assert_eq!(status, 200);
    let traces = list["traces"].as_array().unwrap();
    let first = &traces[traces.len() - 1];
    assert_eq!(first["route"], "r", "{first}");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/item/0");
    assert_eq!(first["attempts"], 1);
    assert!(first["link"].is_null(), "no --trace-ui-url: no link");

    // Filters: by route, by status class, by duration.
    let (_, none) = json(gw.admin, "/api/console/traces?route=nope");
    assert_eq!(none["count"], 0);
    let (_, ok) = json(gw.admin, "/api/console/traces?status=2xx");
    let class = |v: &Value| {
        v["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(class(&ok).iter().all(|s| (200..300).contains(s)), "{ok}");
    let (_, slow) = json(gw.admin, "/api/console/traces?min_ms=60000");
    assert_eq!(slow["count"], 0);
    let (_, exact) = json(gw.admin, "/api/console/traces?status=200");
    assert_eq!(exact["count"], 5, "{exact}");
    let (_, errors) = json(gw.admin, "/api/console/traces?status=5xx");
    assert_eq!(errors["count"], 0, "{errors}");
    let (_, two) = json(gw.admin, "/api/console/traces?limit=2");
    assert_eq!(two["count"], 2);

    // One trace: the server span, its upstream attempt and the plugin phases, all
    // children of the server span, laid out from offset 0.
    let id = first["trace_id"].as_str().unwrap();
    let (status, w) = json(gw.admin, &format!("/api/console/traces/{id}"));
    assert_eq!(status, 200, "{w}");
    let spans = w["spans"].as_array().unwrap();
    let server = spans.iter().find(|s| s["kind"] == "server").unwrap();
    assert_eq!(server["offset_us"], 0);
    assert_eq!(server["depth"], 0);
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"client"), "{kinds:?}");
    let phases: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "plugin").collect();
    assert!(
        phases
            .iter()
            .any(|p| p["name"] == "plugins: request headers")
            && phases
                .iter()
                .any(|p| p["name"] == "plugins: response headers"),
        "{w}"
    );
    for s in spans.iter().filter(|s| s["kind"] != "server") {
        assert_eq!(s["parent_span_id"], server["span_id"], "{s}");
        assert_eq!(s["depth"], 1);
        assert!(
            s["offset_us"].as_u64().unwrap() + s["duration_us"].as_u64().unwrap()
                <= w["total_us"].as_u64().unwrap()
        );
    }
    let (status, _) = json(
        gw.admin,
        "/api/console/traces/0123456789abcdef0123456789abcdef",
    );
    assert_eq!(status, 404);

    // The config panel: the version, when it was applied, the route's plugin chain.
    let (_, c) = json(gw.admin, "/api/console/config");
    assert_eq!(c["version"], gw.version());
    assert!(c["applied_at"].as_str().unwrap().ends_with('Z'), "{c}");
    assert!(c["last_rejected"].is_null());
    let route = c["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "r")
        .unwrap();
    // The route's own filter (its CORS annotation) first, then the plugin chain.
    assert_eq!(
        route["plugins"][0]["name"], "envoy.filters.http.cors",
        "{route}"
    );
    assert_eq!(
        route["plugins"][1]["name"], "higress-system.noop",
        "{route}"
    );
    assert_eq!(route["plugins"][1]["implementation"], "wasm");

    // A rejected change: the last one, with file, object and field.
    let v = gw.version();
    cfg.write(
        "mcpbridges/default.yaml",
        "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\nspec:\n  registries:\n  - name: be\n    type: static\n    domain: 127.0.0.1\n    port: 80\n",
    );
    let c = wait_for("the rejected change", || {
        let (_, c) = json(gw.admin, "/api/console/config");
        (!c["last_rejected"].is_null()).then_some(c)
    });
    let rej = &c["last_rejected"];
    assert_eq!(rej["object"], "McpBridge higress-system/default", "{rej}");
    assert!(rej["file"]
        .as_str()
        .unwrap()
        .ends_with("mcpbridges/default.yaml"));
    assert!(
        rej["error"]
            .as_str()
            .unwrap()
            .contains("spec.registries[0].domain"),
        "{rej}"
    );
    assert_eq!(c["version"], v, "the last good config keeps serving");
    assert_eq!(get(gw.http, "a.example.com", "/").unwrap().status, 200);
}

#[test]
fn the_page_is_small_self_contained_and_guarded_on_a_console_address() {
    let be = Backend::start("console-page");
    let cfg = ConfigDir::routing_all_to(&be);
    let console: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start_with(
        cfg.path(),
        &[
            "--console-addr",
            &console.to_string(),
            "--trace-ui-url",
            "http://t.example/{trace_id}",
        ],
    );
    wait_for("the console listener", || get(console, "c", "/ui").ok());
    let mut total = 0;
    for path in ["/ui", "/ui/app.js", "/ui/app.css"] {
        let r = get(console, "c", path).unwrap();
        assert_eq!(r.status, 200, "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        if path == "/ui" {
            assert!(csp.contains("default-src 'self'"), "{csp}");
        }
        let text = String::from_utf8_lossy(&r.body).into_owned();
        // Nothing is fetched from elsewhere: no absolute URL in the page's sources but
        // the documentation's example host.
        for scheme in ["http://", "https://", "//cdn", "@import"] {
            let hits: Vec<&str> = text
                .match_indices(scheme)
                .map(|(i, _)| &text[i..(i + 40).min(text.len())])
                .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{path} refers off the listener: {hits:?}");
        }
        total += r.body.len();
    }
    assert!(total < 300 * 1024, "the page weighs {total} bytes");
    // On --console-addr every read needs the login; the page and the session do not.
    let (status, _) = json(console, "/api/console/config");
    assert_eq!(status, 401);
    let (status, s) = json(console, "/api/console/settings");
    assert_eq!(status, 200);
    assert_eq!(s["login_for_reads"], true);
    assert_eq!(s["trace_ui_url"], "http://t.example/{trace_id}");
    // ...and the admin listener no longer serves it.
    let r = get(gw.admin, "admin", "/ui").unwrap();
    assert_eq!(r.status, 404);
}
