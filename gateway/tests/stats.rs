//! Envoy-compatible stats observed through `/stats/prometheus` after real traffic.

mod common;

use common::*;

/// A 2xx, 4xx and 5xx mix over keep-alive and fresh connections; the downstream (HTTP
/// connection manager) families count each request once, by class, with a time sample.
#[test]
fn downstream_requests_and_connections_are_counted() {
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("be", be.addr.to_string(), 80),
        ("gone", "127.0.0.1:1".into(), 80),
    ]);
    cfg.host_route("ok", "ok.test", "be.static");
    cfg.host_route("down", "down.test", "gone.static");
    let gw = Gateway::start(cfg.path());
    let prefix = format!("outbound_127.0.0.1_{}", gw.http.port());
    let series = |family: &str, class: Option<&str>| match class {
        Some(c) => {
            format!("{family}{{response_code_class=\"{c}\",http_conn_manager_prefix=\"{prefix}\"}}")
        }
        None => format!("{family}{{http_conn_manager_prefix=\"{prefix}\"}}"),
    };

    // The start-up helper's readiness probe connected once; wait until it is counted.
    let cx_before = wait_for("the probe's connection counted", || {
        gw.metric(&series("envoy_http_downstream_cx_total", None))
            .filter(|&v| v >= 1.0)
    });
    let mut c = Conn::open(gw.http).unwrap();
    for _ in 0..3 {
        assert_eq!(c.request("GET", "ok.test", "/", &[]).unwrap().status, 200);
    }
    assert_eq!(
        c.request("GET", "nothing.test", "/", &[]).unwrap().status,
        404
    );
    assert_eq!(
        request(gw.http, "GET", "nothing.test", "/x", &[])
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        request(gw.http, "GET", "down.test", "/", &[])
            .unwrap()
            .status,
        503
    );

    // The access of the last request may still be finishing: poll.
    wait_for("downstream stats", || {
        (gw.metric(&series("envoy_http_downstream_rq_time_count", None)) == Some(6.0)).then_some(())
    });
    let m = gw.metrics();
    let value = |s: String| {
        m.lines()
            .find_map(|l| l.strip_prefix(s.as_str()).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {s} in\n{m}"))
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(value(series("envoy_http_downstream_rq_total", None)), 6.0);
    assert_eq!(value(series("envoy_http_downstream_rq", Some("2xx"))), 3.0);
    assert_eq!(value(series("envoy_http_downstream_rq", Some("4xx"))), 2.0);
    assert_eq!(value(series("envoy_http_downstream_rq", Some("5xx"))), 1.0);
    assert_eq!(value(series("envoy_http_downstream_rq", Some("3xx"))), 0.0);
    let le_inf = format!(
        "envoy_http_downstream_rq_time_bucket{{http_conn_manager_prefix=\"{prefix}\",le=\"+Inf\"}}"
    );
    assert_eq!(value(le_inf), 6.0);
    // Three connections were opened (one keep-alive, two single requests); the keep-alive
    // one is still open.
    assert_eq!(
        value(series("envoy_http_downstream_cx_total", None)) - cx_before,
        3.0
    );
    assert_eq!(value(series("envoy_http_downstream_cx_active", None)), 1.0);
    drop(c);
    wait_for("connection closed", || {
        (gw.metric(&series("envoy_http_downstream_cx_active", None)) == Some(0.0)).then_some(())
    });
}
