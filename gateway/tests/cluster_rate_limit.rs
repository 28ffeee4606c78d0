//! cluster-key-rate-limit, native, counting in a real `redis-server` shared by two
//! gateway processes: one limit across both, fail open while Redis is gone, limits back
//! with it, and a Redis service no registry names yet.

use test_support::redis::RedisServer;
use test_support::wasm::wasm_plugin_yaml;
use test_support::{request, wait_for, Backend, ConfigDir, Gateway};

const URL: &str =
    "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/cluster-key-rate-limit:1.0.0";

fn plugin_yaml() -> String {
    wasm_plugin_yaml(
        "cluster-key-rate-limit",
        URL,
        "defaultConfig:\n  rule_name: api\n  rule_items:\n  - limit_by_header: x-key\n    limit_keys:\n    - key: k1\n      query_per_minute: 10\n    - key: k2\n      query_per_minute: 1000\n  show_limit_quota_header: true\n  redis:\n    service_name: redis.static\n    timeout: 300\n",
    )
}

fn registries(cfg: &ConfigDir, be: &Backend, redis: Option<&RedisServer>) {
    let mut regs = vec![("be", be.addr.to_string(), 80)];
    if let Some(r) = redis {
        regs.push(("redis", r.addr.to_string(), 80));
    }
    cfg.static_registries(&regs);
}

#[test]
fn two_gateways_share_one_limit_through_redis() {
    let mut redis = RedisServer::start(None);
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    // The plugin first, its Redis registry later: files arrive in any order.
    cfg.write("wasmplugins/cluster-key-rate-limit.yaml", &plugin_yaml());
    let a = Gateway::start(cfg.path());
    let b = Gateway::start(cfg.path());
    for gw in [&a, &b] {
        gw.wait_plugin("cluster-key-rate-limit");
    }
    let errors = |gw: &Gateway, reason: &str| {
        gw.metric(&format!("gateway_cluster_rate_limit_redis_errors_total{{plugin=\"higress-system.cluster-key-rate-limit\",reason=\"{reason}\"}}")).unwrap_or(0.0)
    };
    let send = |gw: &Gateway, key: &str| {
        request(gw.http, "GET", "api.test", "/", &[("x-key", key)]).unwrap()
    };
    // No registry names redis.static yet: requests pass, counted.
    assert_eq!(send(&a, "k1").status, 200);
    assert_eq!(errors(&a, "no_endpoint"), 1.0);
    assert!(
        a.log()
            .contains("no registry names outbound|80||redis.static yet"),
        "{}",
        a.log()
    );

    registries(&cfg, &be, Some(&redis));
    for gw in [&a, &b] {
        wait_for("the Redis registry", || {
            gw.configz()["clusters"]
                .to_string()
                .contains("redis.static")
                .then_some(())
        });
    }
    // 30 requests, alternating: exactly 10 pass in the window, whichever gateway.
    let mut admitted = [0, 0];
    let mut last = None;
    for i in 0..30 {
        let r = send(if i % 2 == 0 { &a } else { &b }, "k1");
        match r.status {
            200 => admitted[i % 2] += 1,
            429 => last = Some(r),
            s => panic!("status {s}: {}", r.text()),
        }
    }
    assert_eq!(admitted[0] + admitted[1], 10, "{admitted:?}");
    assert!(
        admitted[0] > 0 && admitted[1] > 0,
        "both gateways admitted some: {admitted:?}"
    );
    let r = last.unwrap();
    assert_eq!(r.text(), "Too many requests");
    let reset: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset), "{reset}");
    assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let key = "higress-cluster-key-rate-limit:api:limit_by_header:60:x-key:k1";
    assert_eq!(
        redis.cli(&["GET", key]),
        "11",
        "past the threshold the count stays"
    );
    let ok = send(&a, "k2");
    assert_eq!(
        (ok.status, ok.header("x-ratelimit-remaining")),
        (200, Some("999"))
    );
    assert_eq!(
        send(&b, "none").status,
        200,
        "an unlisted key is not counted"
    );

    // Redis gone: requests pass (never hang), each failure counted and logged.
    redis.stop();
    let before = errors(&a, "connect") + errors(&a, "connection") + errors(&a, "timeout");
    for _ in 0..5 {
        let t = std::time::Instant::now();
        assert_eq!(send(&a, "k1").status, 200);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "bounded: {:?}",
            t.elapsed()
        );
    }
    let after = errors(&a, "connect") + errors(&a, "connection") + errors(&a, "timeout");
    assert_eq!(after - before, 5.0, "{}", a.metrics());
    assert!(a.log().contains("requests pass unlimited (fail open)"));

    // Redis back (empty): limits apply again, across both gateways.
    redis.resume();
    let statuses: Vec<u16> = (0..12)
        .map(|i| send(if i % 2 == 0 { &b } else { &a }, "k1").status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(&statuses[10..], [429, 429]);
}
