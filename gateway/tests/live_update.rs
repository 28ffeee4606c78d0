//! Live updates under traffic: while routes and `higress-config` are rewritten 50 times
//! (10 of them invalid), clients that never retry see no failed request and no closed
//! connection, WebSockets keep echoing, valid changes become visible and invalid ones are
//! rejected and counted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use test_support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
}

fn base_ingresses(cfg: &ConfigDir) {
    cfg.host_route("main", "live.test", "a.static");
    cfg.host_route("ws", "ws.test", "ws.static");
}

#[test]
fn fifty_changes_under_traffic_lose_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ws_addr = rt.block_on(test_support::ws::echo_server());
    let a = Backend::start("a");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("a", a.addr.to_string(), 80),
        ("ws", ws_addr.to_string(), 80),
    ]);
    base_ingresses(&cfg);
    cfg.higress_config("addXRealIpHeader: false\n");
    let gw = Gateway::start(cfg.path());
    let stop = Arc::new(AtomicBool::new(false));

    // Raw HTTP/1.1 keep-alive clients: one connection each, never retried.
    let http = Arc::new(Tally::default());
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (stop, tally, addr) = (stop.clone(), http.clone(), gw.http);
        threads.push(std::thread::spawn(move || {
            let mut c = Conn::open(addr).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match c.request("GET", "live.test", "/", &[]) {
                    Ok(r) if r.status == 200 && r.header("connection") != Some("close") => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        eprintln!("unexpected response {} {:?}", r.status, r.text());
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("connection error: {e}");
                        tally.closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }

    // WebSocket clients through the gateway, echoing all along.
    let ws = Arc::new(Tally::default());
    let mut ws_tasks = Vec::new();
    for n in 0..3 {
        let (stop, tally, addr) = (stop.clone(), ws.clone(), gw.http);
        ws_tasks.push(rt.spawn(async move {
            let connect = || async {
                let mut req = format!("ws://{addr}/chat").into_client_request().unwrap();
                req.headers_mut().insert("host", "ws.test".parse().unwrap());
                let (sock, resp) = tokio_tungstenite::connect_async(req)
                    .await
                    .expect("websocket upgrade through the gateway");
                assert_eq!(resp.status(), 101);
                sock
            };
            // Every tunnel must echo from its first message on (the gateway works around
            // cloudflare/pingora#946, which ended some right after their 101).
            let mut sock = connect().await;
            let mut i = 0u64;
            loop {
                let last = stop.load(Ordering::Relaxed);
                let msg = format!("client {n} message {i}");
                let echoed = async {
                    sock.send(Message::text(msg.clone())).await.ok()?;
                    match sock.next().await {
                        Some(Ok(Message::Text(t))) => Some(t.to_string()),
                        _ => None,
                    }
                };
                match tokio::time::timeout(WAIT, echoed).await {
                    Ok(Some(t)) if t == msg => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        tally.closed.fetch_add(1, Ordering::Relaxed);
                        return false;
                    }
                }
                if last {
                    // One echo after the last change went through.
                    return true;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    let rejected_metric = "gateway_config_reloads_total{result=\"rejected\"}";
    let rejected_at_start = gw.metric(rejected_metric).unwrap();
    let mut rejected_expected = rejected_at_start;
    let mut real_ip = false;
    for i in 0..50 {
        if i % 5 == 4 {
            // Invalid: each object kind in turn; the last good version must stay.
            match (i / 5) % 3 {
                0 => cfg.write(
                    "ingresses/main.yaml",
                    &ingress_yaml("main", &[("higress.io/destination", "a.static")], &[(Some("live.test"), "Bogus", "/")]),
                ),
                1 => cfg.higress_config("downstream:\n  maxRequestHeadersKb: 9000\n"),
                _ => cfg.write(
                    "mcpbridges/default.yaml",
                    "spec:\n  registries:\n  - {type: static, name: a, domain: \"not-an-ip:1\", port: 80}\n",
                ),
            }
            rejected_expected += 1.0;
            wait_for("the invalid change to be rejected and counted", || {
                (gw.metric(rejected_metric).unwrap() >= rejected_expected).then_some(())
            });
            assert_eq!(
                gw.metric(rejected_metric).unwrap(),
                rejected_expected,
                "counted once"
            );
            // Put the object back as it was (a valid change of its own).
            match (i / 5) % 3 {
                0 => base_ingresses(&cfg),
                1 => cfg.higress_config(if real_ip {
                    "addXRealIpHeader: true\n"
                } else {
                    "addXRealIpHeader: false\n"
                }),
                _ => cfg.static_registries(&[
                    ("a", a.addr.to_string(), 80),
                    ("ws", ws_addr.to_string(), 80),
                ]),
            }
        } else if i % 2 == 0 {
            // A new host appears.
            let host = format!("h{i}.test");
            assert_eq!(get(gw.http, &host, "/").unwrap().status, 404);
            cfg.ingress(
                &format!("extra-{i}"),
                &[("higress.io/destination", "a.static")],
                &[(Some(host.as_str()), "Prefix", "/")],
            );
            wait_for("the new route", || {
                (get(gw.http, &host, "/").unwrap().status == 200).then_some(())
            });
        } else {
            // A global option flips.
            real_ip = !real_ip;
            cfg.higress_config(if real_ip {
                "addXRealIpHeader: true\n"
            } else {
                "addXRealIpHeader: false\n"
            });
            wait_for("x-real-ip to follow the config", || {
                let r = get(gw.http, "live.test", "/").unwrap();
                (r.json()["headers"].get("x-real-ip").is_some() == real_ip).then_some(())
            });
        }
    }

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let ws_results: Vec<bool> = ws_tasks
        .into_iter()
        .map(|t| rt.block_on(t).unwrap())
        .collect();

    assert_eq!(
        gw.metric(rejected_metric).unwrap() - rejected_at_start,
        10.0,
        "10 invalid changes rejected"
    );
    assert_eq!(http.failed.load(Ordering::Relaxed), 0, "failed requests");
    assert_eq!(
        http.closed.load(Ordering::Relaxed),
        0,
        "closed HTTP connections"
    );
    assert!(
        http.ok.load(Ordering::Relaxed) > 100,
        "clients made progress"
    );
    assert_eq!(ws.closed.load(Ordering::Relaxed), 0, "broken WebSockets");
    assert!(
        ws_results.iter().all(|&ok| ok),
        "every WebSocket echoed after the last change"
    );
}

#[test]
fn an_idle_gateway_does_not_rescan_in_a_loop() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start_with_env(
        cfg.path(),
        &[],
        &[("RUST_LOG", "info,gateway::sources=debug")],
    );
    // A full rescan, or the re-read of the files the events named.
    let rescans = || {
        let log = gw.log();
        log.matches("config directory rescan").count() + log.matches("config files re-read").count()
    };
    // One change: exactly the reads it needs, then quiet (its own reads of the files
    // must not trigger more).
    let v = gw.version();
    cfg.host_route("r2", "r2.test", "be.static");
    gw.wait_version_after(v);
    let after_change = rescans();
    assert!(after_change >= 1);
    std::thread::sleep(Duration::from_millis(1000));
    // The periodic safety rescan runs every 5 s: at most one may fall in this second.
    assert!(
        rescans() <= after_change + 1,
        "{} rescans in an idle second",
        rescans() - after_change
    );
}
