//! `proxy_redis_init` / `proxy_redis_call` against a real `redis-server` behind a
//! `static` McpBridge registry (cluster `outbound|80||redis.static`):
//!
//! - the hand-written ABI module (`fixtures/abi_edge.wat`, mode `I`): refusals
//!   (unknown cluster, partial command), the raw reply as buffer 9, `?db=` selecting the
//!   database, status 1 while Redis is down, recovery;
//! - a real compiled Higress plugin that keeps its counters in Redis,
//!   `gpustack-rate-limit` 1.0.1 (PyPI `gpustack-higress-plugins`): requests are limited
//!   by the count it keeps in Redis (read back with redis-cli); with Redis gone its own
//!   failure path runs (it fails open) and no request hangs; with Redis back, limiting
//!   resumes.

use std::time::{Duration, Instant};

use test_support::redis::RedisServer;
use test_support::wasm::{abi_module, plugin};
use test_support::{request, Backend, ConfigDir, Gateway};

const PASSWORD: &str = "s3cret";

/// gpustack-rate-limit's config: one fallback combination (it matches every request)
/// with a per-minute request quota, counted in Redis behind `redis.static` (a static
/// registry's cluster is `outbound|80||redis.static`), with AUTH and database 2.
fn spec(quota: u32) -> String {
    format!(
        "priority: 100\ndefaultConfig:\n  rule_name: rl\n  limit_combinations:\n  - name: everyone\n    is_fallback: true\n    query_limits:\n      per_minute: {quota}\n  redis:\n    service_name: redis.static\n    service_port: 80\n    password: {PASSWORD}\n    database: 2\n    timeout: 500\n"
    )
}

/// Every key of database 2 with the members of its sorted set (the plugin records one
/// member per counted request).
fn counted(redis: &RedisServer) -> Vec<(String, usize)> {
    let keys = redis.cli(&["-n", "2", "KEYS", "*"]);
    keys.lines()
        .filter(|k| !k.is_empty())
        .map(|k| {
            let n = redis.cli(&["-n", "2", "ZCARD", k]);
            (k.to_string(), n.trim().parse().unwrap_or(0))
        })
        .collect()
}

fn get(gw: &Gateway) -> (u16, String, Duration) {
    let start = Instant::now();
    let r = request(gw.http, "GET", "a.test", "/v1/chat/completions", &[]).unwrap();
    (r.status, r.text(), start.elapsed())
}

#[test]
fn gpustack_rate_limit_counts_in_redis() {
    let mut redis = RedisServer::start(Some(PASSWORD));
    let be = Backend::start("be");
    let cfg = config(&be, &redis);
    let url = format!(
        "file://{}",
        plugin("gpustack-rate-limit", "1.0.1").display()
    );
    let gw = Gateway::start_with_plugins(&cfg, &[], &[("rate-limit", &url, &spec(3))]);

    for i in 0..3 {
        let (status, body, _) = get(&gw);
        assert_eq!(status, 200, "request {i}: {body}\n{}", gw.log());
    }
    let (status, body, _) = get(&gw);
    assert_eq!(status, 429, "{body}\n{}", gw.log());
    assert!(body.contains("rate_limit_exceeded"), "{body}");
    assert_eq!(be.requests(), 3);
    // The count lives in Redis: one key for the combination, three requests recorded
    // (the refused one is not).
    let keys = counted(&redis);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].1, 3, "{keys:?}");
    // In database 2, as configured: nothing in 0.
    assert_eq!(redis.cli(&["-n", "0", "DBSIZE"]), "0");

    // Redis gone: the plugin's call fails (status 1) and it fails open; every request
    // is answered well within the plugin's 500 ms Redis timeout plus slack.
    redis.stop();
    for _ in 0..3 {
        let (status, body, took) = get(&gw);
        assert_eq!(status, 200, "{body}\n{}", gw.log());
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    // Back (empty): counting starts again from zero on a new connection.
    redis.resume();
    let (status, body, _) = get(&gw);
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    test_support::wait_for("the plugin to count in Redis again", || {
        let keys = counted(&redis);
        (keys.len() == 1 && keys[0].1 >= 1).then_some(())
    });
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..4 {
        match get(&gw).0 {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("status {s}"),
        }
    }
    assert_eq!((ok, limited), (2, 2), "{:?}", counted(&redis));
}

/// Routes everything to `be`, with `redis.static` naming the server.
fn config(be: &Backend, redis: &RedisServer) -> ConfigDir {
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("be", be.addr.to_string(), 80),
        ("redis", redis.addr.to_string(), 80),
    ]);
    cfg.ingress(
        "api",
        &[("higress.io/destination", "be.static")],
        &[(None, "Prefix", "/")],
    );
    cfg
}

/// The ABI module's Redis mode: the request headers the backend saw (`x-redis-*`).
fn redis_mode(gw: &Gateway) -> (serde_json::Value, Duration) {
    let start = Instant::now();
    let r = request(gw.http, "GET", "a.test", "/get", &[("x-mode", "I")]).unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    (r.json()["headers"].clone(), start.elapsed())
}

#[test]
fn abi_module_calls_redis_and_reads_the_raw_reply() {
    let mut redis = RedisServer::start(None);
    let be = Backend::start("be");
    let cfg = config(&be, &redis);
    let url = format!("file://{}", abi_module().display());
    let gw = Gateway::start_with_plugins(&cfg, &[], &[("wat", &url, "")]);

    let (h, _) = redis_mode(&gw);
    // An unknown cluster and a partial command: BadArgument (2).
    assert_eq!(h["x-redis-unknown"], "2", "{h}");
    assert_eq!(h["x-redis-partial"], "2", "{h}");
    // INCR's reply, raw (`:1` and its CRLF), in database 5 as `?db=5` asked.
    assert_eq!(h["x-redis-reply"], ":1", "{h}");
    assert!(h.get("x-redis-status").is_none(), "{h}");
    let (h, _) = redis_mode(&gw);
    assert_eq!(h["x-redis-reply"], ":2", "{h}");
    assert_eq!(redis.cli(&["-n", "5", "GET", "wat"]), "2");
    assert_eq!(redis.cli(&["-n", "0", "EXISTS", "wat"]), "0");

    // Down: the callback gets NetworkError (1) and no reply, at once (connection
    // refused), and the request goes on.
    redis.stop();
    let (h, took) = redis_mode(&gw);
    assert_eq!(h["x-redis-status"], "1", "{h}");
    assert!(h.get("x-redis-reply").is_none(), "{h}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Back (empty): a new connection, database 5 selected again.
    redis.resume();
    let (h, _) = redis_mode(&gw);
    assert_eq!(h["x-redis-reply"], ":1", "{h}");
    assert_eq!(redis.cli(&["-n", "5", "GET", "wat"]), "1");
}
