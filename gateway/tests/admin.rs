//! The stats and admin listeners.

use test_support::*;

#[test]
fn stats_configz_and_config_dump() {
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("be", be.addr.to_string(), 80)]);
    cfg.ingress(
        "r",
        &[
            ("higress.io/destination", "be.static"),
            ("higress.io/rewrite-path", "/x"),
        ],
        &[
            (Some("a.test"), "Prefix", "/"),
            (Some("a.test"), "Exact", "/exact"),
        ],
    );
    let gw = Gateway::start(cfg.path());

    let m = gw.metrics();
    for line in [
        "# TYPE gateway_config_reloads_total counter",
        "# TYPE gateway_config_snapshot_version gauge",
        "gateway_config_reloads_total{result=\"applied\"} 1",
        "gateway_config_reloads_total{result=\"rejected\"} 0",
        "gateway_config_snapshot_version 1",
        "envoy_server_live 1",
        "gateway_access_log_dropped_total 0",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    assert!(m.contains("# HELP gateway_config_reloads_total "));
    let r = get(gw.stats, "x", "/stats/prometheus").unwrap();
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    // Envoy admin's query options.
    let used = get(gw.stats, "x", "/stats/prometheus?usedonly")
        .unwrap()
        .text();
    assert!(
        used.contains("gateway_config_reloads_total{result=\"applied\"} 1"),
        "{used}"
    );
    assert!(
        !used.contains("result=\"rejected\""),
        "zero counter kept:\n{used}"
    );
    assert!(!used.contains("gateway_access_log_dropped_total"), "{used}");
    let only = get(gw.stats, "x", "/stats/prometheus?filter=snapshot_ver.%2B")
        .unwrap()
        .text();
    assert_eq!(
        only.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["gateway_config_snapshot_version 1"]
    );
    let bad = get(gw.stats, "x", "/stats/prometheus?filter=(").unwrap();
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().starts_with("filter: invalid regex"),
        "{}",
        bad.text()
    );
    assert_eq!(get(gw.stats, "x", "/healthz/ready").unwrap().status, 200);
    assert_eq!(get(gw.stats, "x", "/nope").unwrap().status, 404);

    let z = gw.configz();
    assert_eq!(z["version"], 1);
    let routes = &z["routes"][0];
    assert_eq!(routes["host"], "a.test");
    assert_eq!(
        routes["routes"][0]["match"]["exact"], "/exact",
        "match order: exact first"
    );
    assert_eq!(routes["routes"][1]["match"]["prefix"], "/");
    assert_eq!(
        routes["routes"][1]["destinations"][0]["cluster"],
        "outbound|80||be.static"
    );
    assert_eq!(z["clusters"][0]["endpoints"][0], be.addr.to_string());
    assert_eq!(
        z["items"]["global-option"]["downstream"]["idleTimeout"],
        180
    );

    let dump: serde_json::Value = get(gw.admin, "x", "/config_dump").unwrap().json();
    let ing = dump["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["file"] == "ingresses/r.yaml")
        .expect("the Ingress in config_dump");
    assert_eq!(ing["resource"]["spec"]["rules"][0]["host"], "a.test");
    assert_eq!(ing["resource"]["metadata"]["namespace"], "higress-system");
    assert_eq!(get(gw.admin, "x", "/ready").unwrap().status, 200);

    // A new snapshot moves the version everywhere.
    cfg.host_route("r2", "b.test", "be.static");
    let v = gw.wait_version_after(1);
    assert_eq!(gw.metric("gateway_config_snapshot_version"), Some(v as f64));
    assert_eq!(
        gw.metric("gateway_config_reloads_total{result=\"applied\"}"),
        Some(v as f64)
    );
}
