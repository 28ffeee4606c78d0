//! The gateway as a real Prometheus sees it: exact counts through PromQL, every
//! expression of the Higress Grafana dashboard, and `promtool check metrics`.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`, installed by
//! scripts/test.sh); without them these tests fail, they do not skip.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::prometheus::*;
use test_support::*;

const A: &str = "outbound|80||a.static";
const B: &str = "outbound|80||b.static";
/// A registry whose only endpoint is a closed port: every request is a connect failure.
const GONE: &str = "outbound|80||gone.static";

/// Requests of `send_mix`, by outcome.
const A_OK: usize = 7;
const B_OK: usize = 4;
const NO_ROUTE: usize = 3;
const CONNECT_FAIL: usize = 2;
const TOTAL: usize = A_OK + B_OK + NO_ROUTE + CONNECT_FAIL;

/// Two backends and a dead registry behind a gateway bound on 0.0.0.0 (the dashboard's
/// "Downstream QPS" panel matches `outbound_0.0.0.0_.*`; traffic stays on loopback).
struct Setup {
    _a: Backend,
    _b: Backend,
    _cfg: ConfigDir,
    gw: Gateway,
    /// `http_conn_manager_prefix` of the HTTP listener.
    prefix: String,
}

impl Setup {
    fn start() -> Setup {
        let a = Backend::start("a");
        let b = Backend::start("b");
        let cfg = ConfigDir::new();
        cfg.static_registries(&[
            ("a", a.addr.to_string(), 80),
            ("b", b.addr.to_string(), 80),
            ("gone", "127.0.0.1:1".into(), 80),
        ]);
        cfg.host_route("a", "a.test", "a.static");
        cfg.host_route("b", "b.test", "b.static");
        cfg.host_route("gone", "gone.test", "gone.static");
        let port = free_port();
        let gw = Gateway::start_with(cfg.path(), &["--http-addr", &format!("0.0.0.0:{port}")]);
        Setup {
            _a: a,
            _b: b,
            _cfg: cfg,
            gw,
            prefix: format!("outbound_0.0.0.0_{port}"),
        }
    }

    fn send(&self, host: &str, want: u16) {
        let r = request(self.gw.http, "GET", host, "/", &[]).unwrap();
        assert_eq!(r.status, want, "{host}: {}", r.text());
    }

    /// 7 x 200 from a, 4 x 200 from b, 3 x 404 (no route), 2 x 503 (connect failure).
    fn send_mix(&self) {
        for (host, n, status) in [
            ("a.test", A_OK, 200),
            ("b.test", B_OK, 200),
            ("nothing.test", NO_ROUTE, 404),
            ("gone.test", CONNECT_FAIL, 503),
        ] {
            for _ in 0..n {
                self.send(host, status);
            }
        }
    }
}

/// Start the gateway and Prometheus, let one scrape see the zero series (so `rate()`
/// sees the traffic's increase), then send the mix.
fn scraped_mix() -> (Setup, Prometheus) {
    require("prometheus");
    let s = Setup::start();
    // Returns once the target is up, i.e. after a first scrape.
    let prom = Prometheus::start(s.gw.stats);
    s.send_mix();
    (s, prom)
}

fn f(n: usize) -> f64 {
    n as f64
}

/// Downstream (HTTP connection manager) families, as PromQL sees them.
#[test]
fn downstream_counts_through_prometheus() {
    let (s, prom) = scraped_mix();
    let sel = format!("http_conn_manager_prefix=\"{}\"", s.prefix);
    let mut c = Checks::new(&prom, PROM_WAIT);
    c.value(
        &format!("envoy_http_downstream_rq_total{{{sel}}}"),
        f(TOTAL),
    );
    c.by_label(
        // Class series only: the family may also carry per-code series.
        &format!("envoy_http_downstream_rq{{{sel},response_code_class!=\"\"}}"),
        "response_code_class",
        &[
            ("1xx", 0.0),
            ("2xx", f(A_OK + B_OK)),
            ("3xx", 0.0),
            ("4xx", f(NO_ROUTE)),
            ("5xx", f(CONNECT_FAIL)),
        ],
    );
    c.value(
        &format!("envoy_http_downstream_rq_time_count{{{sel}}}"),
        f(TOTAL),
    );
    c.value(
        &format!("envoy_http_downstream_rq_time_bucket{{{sel},le=\"+Inf\"}}"),
        f(TOTAL),
    );
    // The dashboard's selector: the static `higress` label of the scrape job.
    c.value(
        &format!("sum(envoy_http_downstream_rq_total{{higress=\"{HIGRESS_LABEL}\"}})"),
        f(TOTAL),
    );
    c.finite(
        "histogram_quantile(0.99, sum(rate(envoy_http_downstream_rq_time_bucket[1m])) by (le))",
    );
    c.finish();
    prom.assert_target_healthy();
}

/// Cluster and Istio families. Local replies (404 no route) count downstream only; a
/// connect failure's 503 counts on the cluster as Envoy's router charges it
/// (`upstream_rq_503`/`_5xx`) but sends no request (`upstream_rq_total` stays 0).
#[test]
fn cluster_and_istio_counts_through_prometheus() {
    let (_s, prom) = scraped_mix();
    // OpenMetrics was negotiated: only there is a `_total` counter declared under its
    // family name (`gateway_config_reloads`), and Envoy's suffix-less counters `unknown`.
    poll("OpenMetrics metadata", PROM_WAIT, || {
        let family = prom.metadata_type("gateway_config_reloads")?;
        let envoy = prom.metadata_type("envoy_cluster_upstream_rq")?;
        match (family.as_deref(), envoy.as_deref()) {
            (Some("counter"), Some("unknown")) => Ok(()),
            other => Err(format!("metadata types {other:?}")),
        }
    });
    let mut c = Checks::new(&prom, PROM_WAIT);
    let (a, b) = (f(A_OK), f(B_OK));
    c.by_label(
        "sum by (cluster_name) (envoy_cluster_upstream_rq_total)",
        "cluster_name",
        &[(A, a), (B, b), (GONE, 0.0)],
    );
    c.by_label(
        r#"envoy_cluster_upstream_rq{response_code_class="2xx"}"#,
        "cluster_name",
        &[(A, a), (B, b), (GONE, 0.0)],
    );
    c.by_label(
        r#"envoy_cluster_upstream_rq{response_code_class="5xx"}"#,
        "cluster_name",
        &[(A, 0.0), (B, 0.0), (GONE, f(CONNECT_FAIL))],
    );
    // Per-code series appear with their first response.
    c.by_label(
        r#"envoy_cluster_upstream_rq{response_code="200"}"#,
        "cluster_name",
        &[(A, a), (B, b)],
    );
    c.by_label(
        r#"envoy_cluster_upstream_rq{response_code="503"}"#,
        "cluster_name",
        &[(GONE, f(CONNECT_FAIL))],
    );
    let _ = c.check(
        "connect failures on gone only, at least one per request",
        "sum by (cluster_name) (envoy_cluster_upstream_cx_connect_fail)",
        |r| {
            let m = by_label(r, "cluster_name");
            m.len() == 3
                && m.get(A) == Some(&0.0)
                && m.get(B) == Some(&0.0)
                && m.get(GONE).is_some_and(|&v| v >= f(CONNECT_FAIL))
        },
    );
    // Every attempt to gone fails to connect: the requests plus their retries, whatever
    // the retry policy.
    c.value(
        &format!(
            "envoy_cluster_upstream_cx_connect_fail{{cluster_name=\"{GONE}\"}} \
             - envoy_cluster_upstream_rq_retry{{cluster_name=\"{GONE}\"}}"
        ),
        f(CONNECT_FAIL),
    );
    c.finite(
        "histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket[1m])) by (le))",
    );
    c.by_label(
        r#"sum by (destination_service) (istio_requests_total{reporter="source",response_code="200"})"#,
        "destination_service",
        &[("a.static", a), ("b.static", b)],
    );
    c.by_label(
        r#"sum by (destination_service) (istio_requests_total{reporter="source",response_code="503"})"#,
        "destination_service",
        &[("gone.static", f(CONNECT_FAIL))],
    );
    c.finish();
    prom.assert_target_healthy();
}

/// What of the dashboard only a Kubernetes install of Higress (Envoy, kubelet, the WAF
/// plugin) produces. These expressions must still be valid PromQL; they may be empty.
const NOT_OURS: &[(&str, &str)] = &[
    // cAdvisor, scraped from the kubelet: the pods' CPU and memory.
    ("container_", "cAdvisor (kubelet) container metrics"),
    // Coraza WAF Wasm plugin's own metrics; no WAF plugin runs here.
    ("waf_filter_", "WAF plugin metrics"),
    // Envoy's xDS control-plane connection; the gateway reads config without xDS.
    (r#"cluster_name="xds-grpc""#, "Envoy's xDS cluster"),
];

/// Grafana variables the dashboard may use, with values for this test: the defaults
/// of `$gateway` and `$namespace`, and windows that 1 s scrapes fill.
const VARIABLES: &[(&str, &str)] = &[
    ("${gateway}", HIGRESS_LABEL),
    ("$gateway", HIGRESS_LABEL),
    ("${namespace}", "higress-system"),
    ("$namespace", "higress-system"),
    ("$__rate_interval", "1m"),
    ("$__interval", "1s"),
    ("$__range", "5m"),
];

/// Every PromQL expression of the Higress console's main dashboard returns data.
#[test]
fn higress_dashboard_queries_return_data() {
    let exprs = dashboard_fixture();
    assert!(exprs.len() >= 30, "only {} expressions", exprs.len());
    // Where the dashboard itself is at hand, the fixture must still be its queries.
    let path = dashboard_path();
    if let Ok(text) = std::fs::read_to_string(&path) {
        assert_eq!(
            dashboard_exprs(&serde_json::from_str(&text).unwrap()),
            exprs,
            "tests/fixtures/higress-dashboard-exprs.json differs from {}",
            path.display()
        );
    }

    let (s, prom) = scraped_mix();
    let s = Arc::new(s);
    // A light, bounded request loop so the irate/rate windows keep seeing increases
    // while the expressions are evaluated.
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let cycle = [
                ("a.test", 200),
                ("b.test", 200),
                ("nothing.test", 404),
                ("gone.test", 503),
            ];
            for (host, status) in cycle.iter().cycle().take(800) {
                if stop.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(120) {
                    break;
                }
                s.send(host, *status);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let mut c = Checks::new(&prom, PROM_WAIT);
    let mut report = Vec::new();
    for raw in &exprs {
        let mut q = raw.clone();
        for (var, value) in VARIABLES {
            q = q.replace(var, value);
        }
        // `$1`-style label_replace references stay; a Grafana variable must not.
        if let Some((i, _)) = q.match_indices('$').find(|&(i, _)| {
            q[i + 1..]
                .chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_' || ch == '{')
        }) {
            c.fail(format!("unsubstituted variable at {:?} in {q}", &q[i..]));
            continue;
        }
        let excluded = NOT_OURS.iter().find(|(pat, _)| q.contains(pat));
        let result = match excluded {
            // Evaluated once, for validity only.
            Some(_) => prom.try_query(&q),
            None => c.check("non-empty", &q, |r| !r.is_empty()),
        };
        if let (Some(_), Err(e)) = (excluded, &result) {
            c.fail(format!("invalid PromQL {q}: {e}"));
        }
        report.push((q, excluded.map(|(_, why)| *why), result));
    }
    stop.store(true, Ordering::Relaxed);
    background.join().unwrap();

    println!("\n{} dashboard expressions:", report.len());
    for (q, excluded, result) in &report {
        let size = match result {
            Ok(r) => {
                let values: Vec<String> = r.iter().take(4).map(|(_, v)| format!("{v}")).collect();
                format!("{} series [{}]", r.len(), values.join(", "))
            }
            Err(e) => format!("error {e}"),
        };
        match excluded {
            Some(why) => println!("  excluded ({why}): {size}: {q}"),
            None => println!("  {size}: {q}"),
        }
    }
    c.finish();
    prom.assert_target_healthy();
}

/// Envoy gauges whose own name ends in `_total` (`cluster.<name>.membership_total`).
const ENVOY_TOTAL_GAUGES: &[&str] = &["envoy_cluster_membership_total"];

/// Lint notes that Envoy's and Istio's own names trigger by design.
fn by_design(line: &str) -> bool {
    // Envoy's counters keep their Envoy names (`upstream_rq`, `..._connect_fail`).
    let envoy_counter = line
        .strip_suffix(r#" counter metrics should have "_total" suffix"#)
        .is_some_and(|name| name.starts_with("envoy_") && !name.contains(' '));
    let envoy_gauge = line
        .strip_suffix(r#" non-counter metrics should not have "_total" suffix"#)
        .is_some_and(|name| ENVOY_TOTAL_GAUGES.contains(&name));
    // Istio's latency histogram is in milliseconds; Envoy counts certificate life in days.
    let by_design_unit = line
        == r#"istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds""#
        || line
            == r#"envoy_server_days_until_first_cert_expiring use base unit "seconds" instead of "days""#;
    envoy_counter || envoy_gauge || by_design_unit
}

/// `promtool check metrics` finds nothing in `/stats/prometheus` beyond those notes.
#[test]
fn promtool_check_metrics_reports_only_by_design_notes() {
    require("promtool");
    let s = Setup::start();
    s.send_mix();
    let total = format!(
        "envoy_http_downstream_rq_total{{http_conn_manager_prefix=\"{}\"}}",
        s.prefix
    );
    // Every family with data in it, so series created on first use are linted too.
    wait_for("the mix counted", || {
        (s.gw.metric(&total) == Some(f(TOTAL))).then_some(())
    });
    let metrics = s.gw.metrics();
    let (code, out) = promtool_check_metrics(&metrics);
    println!("promtool check metrics: exit {code:?}\n{out}");
    // 0: clean; 3: lint problems (judged below); anything else: it could not parse.
    assert!(
        matches!(code, Some(0 | 3)),
        "promtool failed (exit {code:?}):\n{out}\n--- input ---\n{metrics}"
    );
    let unexpected: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty() && !by_design(l))
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool reports problems beyond the by-design notes:\n{}",
        unexpected.join("\n")
    );
}
