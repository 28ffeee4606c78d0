//! Overload and shutdown: `--max-active-requests` and `--overload-max-heap` shed with
//! 503 `envoy overloaded`, `--max-connections` closes at accept, `--request-headers-timeout`
//! disconnects a slowloris client, SIGTERM drains (`envoy_server_state` 1) within
//! `--drain-timeout`, and the stats / admin listeners keep their exposure rules.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use test_support::{get, request, wait_for, Backend, ConfigDir, Conn, Gateway};

fn prefix(gw: &Gateway) -> String {
    format!("outbound_127.0.0.1_{}", gw.http.port())
}

#[test]
fn past_max_active_requests_new_requests_get_503_and_admitted_ones_keep_their_latency() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start_with(cfg.path(), &["--max-active-requests", "4"]);
    let addr = gw.http;
    // Unloaded: each request waits 300 ms at the backend, nothing else.
    let mut unloaded = Vec::new();
    for _ in 0..4 {
        let t = Instant::now();
        assert_eq!(get(addr, "x", "/delay/300").unwrap().status, 200);
        unloaded.push(t.elapsed());
    }
    // 16 clients at once, four times the limit.
    let clients: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = get(addr, "x", "/delay/300").unwrap();
                (r.status, r.text(), t.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let shed: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    let admitted: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    assert_eq!(shed.len() + admitted.len(), 16, "{results:?}");
    assert!(admitted.len() >= 4, "{results:?}");
    assert!(!shed.is_empty(), "{results:?}");
    for r in &shed {
        assert_eq!(r.1, "envoy overloaded");
    }
    // Admitted requests wait only for their backend: within 2x the unloaded worst case
    // (300 ms of backend time dominates both).
    let worst_unloaded = unloaded.iter().max().unwrap();
    let worst_admitted = admitted.iter().map(|r| r.2).max().unwrap();
    eprintln!("unloaded max {worst_unloaded:?}, admitted max {worst_admitted:?}");
    assert!(
        worst_admitted < *worst_unloaded * 2,
        "{worst_admitted:?} vs {worst_unloaded:?}"
    );
    let closed = gw.metric(&format!(
        "envoy_http_downstream_rq_overload_close{{http_conn_manager_prefix=\"{}\"}}",
        prefix(&gw)
    ));
    assert_eq!(closed, Some(shed.len() as f64));
    let e = gw.wait_access("a shed request's log entry", |e| e["response_code"] == 503);
    assert_eq!(e["response_flags"], "OM", "{e}");
    // Load gone: served again.
    assert_eq!(get(addr, "x", "/").unwrap().status, 200);
}

#[test]
fn a_heap_over_the_limit_sheds_every_request_and_says_so() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    // Any running gateway has more than 1 KiB of heap.
    let gw = Gateway::start_with(cfg.path(), &["--overload-max-heap", "1KiB"]);
    let gauge = "envoy_overload_envoy_overload_actions_stop_accepting_requests_active";
    wait_for("the overload action to be active", || {
        (gw.metric(gauge) == Some(1.0)).then_some(())
    });
    let r = get(gw.http, "x", "/").unwrap();
    assert_eq!((r.status, r.text().as_str()), (503, "envoy overloaded"));
    assert_eq!(be.requests(), 0);

    let gw2 = Gateway::start_with(cfg.path(), &["--overload-max-heap", "4GiB"]);
    assert_eq!(get(gw2.http, "x", "/").unwrap().status, 200);
    assert_eq!(gw2.metric(gauge), Some(0.0));
}

#[test]
fn past_max_connections_a_new_connection_is_closed_at_accept_and_counted() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start_with(cfg.path(), &["--max-connections", "2"]);
    let overflow = format!(
        "envoy_listener_downstream_cx_overflow{{envoy_listener_address=\"127.0.0.1_{}\"}}",
        gw.http.port()
    );
    // The test support's readiness probe connected once: wait until it came and went.
    let [total, active] = [
        "envoy_http_downstream_cx_total",
        "envoy_http_downstream_cx_active",
    ]
    .map(|m| format!("{m}{{http_conn_manager_prefix=\"{}\"}}", prefix(&gw)));
    wait_for("the probe connection to come and go", || {
        (gw.metric(&total) >= Some(1.0) && gw.metric(&active) == Some(0.0)).then_some(())
    });
    let mut a = Conn::open(gw.http).unwrap();
    assert_eq!(a.request("GET", "x", "/", &[]).unwrap().status, 200);
    let mut b = Conn::open(gw.http).unwrap();
    assert_eq!(b.request("GET", "x", "/", &[]).unwrap().status, 200);
    let mut c = Conn::open(gw.http).unwrap();
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "the third connection stays open"
    );
    assert_eq!(gw.metric(&overflow), Some(1.0));
    // The two admitted connections still work; a freed place is taken again.
    assert_eq!(a.request("GET", "x", "/", &[]).unwrap().status, 200);
    drop(b);
    let r = wait_for("a place for a new connection", || {
        let mut d = Conn::open(gw.http).ok()?;
        d.request("GET", "x", "/", &[]).ok()
    });
    assert_eq!(r.status, 200);
}

#[test]
fn a_slowloris_head_is_cut_off_after_the_request_headers_timeout() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start_with(cfg.path(), &["--request-headers-timeout", "1s"]);
    let counter = format!(
        "envoy_http_downstream_rq_header_timeout{{http_conn_manager_prefix=\"{}\"}}",
        prefix(&gw)
    );
    // A keep-alive connection idle between requests is not a slow head.
    let mut idle = Conn::open(gw.http).unwrap();
    assert_eq!(idle.request("GET", "x", "/", &[]).unwrap().status, 200);

    let mut slow = TcpStream::connect(gw.http).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let start = Instant::now();
    let mut closed = false;
    // One header byte every 100 ms: never idle, never done.
    while start.elapsed() < Duration::from_secs(15) {
        if slow.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 64];
        match slow.read(&mut b) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("the slow client got an answer"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the slow head was never cut off");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(gw.metric(&counter), Some(1.0));
    assert_eq!(be.requests(), 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(idle.request("GET", "x", "/", &[]).unwrap().status, 200);
    assert_eq!(gw.metric(&counter), Some(1.0));
}

#[test]
fn sigterm_drains_with_the_server_state_and_readiness_saying_so() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let mut gw = Gateway::start_with(cfg.path(), &["--drain-timeout", "15s"]);
    assert_eq!(gw.metric("envoy_server_state"), Some(0.0));
    let addr = gw.http;
    let inflight = std::thread::spawn(move || get(addr, "x", "/delay/1500"));
    wait_for("the request to reach the backend", || {
        (be.requests() >= 1).then_some(())
    });
    unsafe { libc::kill(gw.pid() as i32, libc::SIGTERM) };
    // The stats listener keeps answering while the proxy drains.
    wait_for("envoy_server_state 1", || {
        (gw.metric("envoy_server_state") == Some(1.0)).then_some(())
    });
    let ready = get(gw.stats, "x", "/healthz/ready").unwrap();
    assert_eq!((ready.status, ready.text().as_str()), (503, "DRAINING\n"));
    assert!(
        TcpStream::connect(addr).is_err(),
        "new connections refused while draining"
    );
    let r = inflight
        .join()
        .unwrap()
        .expect("in-flight request finished");
    assert_eq!(r.status, 200);
    assert_eq!(gw.wait_exit().code(), Some(0));
}

#[test]
fn the_drain_timeout_bounds_how_long_sigterm_waits() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let mut gw = Gateway::start_with(cfg.path(), &["--drain-timeout", "1s"]);
    let addr = gw.http;
    let _stuck = std::thread::spawn(move || get(addr, "x", "/delay/20000"));
    wait_for("the request to reach the backend", || {
        (be.requests() >= 1).then_some(())
    });
    let t = Instant::now();
    unsafe { libc::kill(gw.pid() as i32, libc::SIGTERM) };
    assert_eq!(gw.wait_exit().code(), Some(0));
    // Well before the request would have ended (20 s).
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

#[test]
fn the_stats_listener_only_reads_and_a_public_admin_refuses_writes_unless_allowed() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start_with(
        cfg.path(),
        &[
            "--admin-addr",
            &format!("0.0.0.0:{}", test_support::free_port()),
        ],
    );
    let post = |addr, path: &str| request(addr, "POST", "x", path, &[]).unwrap();
    assert_eq!(post(gw.stats, "/stats/prometheus").status, 405);
    assert_eq!(get(gw.stats, "x", "/config_dump").unwrap().status, 404);
    assert_eq!(get(gw.stats, "x", "/debug/configz").unwrap().status, 404);
    let r = post(gw.admin, "/healthcheck/fail");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("--admin-allow-writes"));
    assert_eq!(get(gw.stats, "x", "/healthz/ready").unwrap().status, 200);
    // Reads are served to anyone.
    assert_eq!(get(gw.admin, "x", "/ready").unwrap().status, 200);
    let clusters = get(gw.admin, "x", "/clusters").unwrap().text();
    let ep = format!("::{}::health_flags::healthy", be.addr);
    assert!(clusters.lines().any(|l| l.ends_with(&ep)), "{clusters}");
    assert!(clusters.contains("::added_via_api::true"), "{clusters}");

    let gw = Gateway::start_with(
        cfg.path(),
        &[
            "--admin-addr",
            &format!("0.0.0.0:{}", test_support::free_port()),
            "--admin-allow-writes",
        ],
    );
    assert_eq!(get(gw.admin, "x", "/healthcheck/fail").unwrap().status, 405);
    assert_eq!(post(gw.admin, "/healthcheck/fail").status, 200);
    let r = get(gw.stats, "x", "/healthz/ready").unwrap();
    assert_eq!(r.status, 503);
    // Failing health checks does not stop traffic (as Envoy's).
    assert_eq!(get(gw.http, "x", "/").unwrap().status, 200);
    assert_eq!(post(gw.admin, "/healthcheck/ok").status, 200);
    assert_eq!(get(gw.stats, "x", "/healthz/ready").unwrap().status, 200);
}

#[test]
fn quitquitquit_on_the_loopback_admin_drains_like_sigterm() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let mut gw = Gateway::start(cfg.path());
    let r = request(gw.admin, "POST", "x", "/quitquitquit", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(gw.wait_exit().code(), Some(0));
}
