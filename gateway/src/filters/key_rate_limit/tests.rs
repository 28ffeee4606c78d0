use serde_json::json;
use telemetry::stats::Registry;

use super::*;
use crate::filters::{FilterFamilies, NativeFilter};

fn build(registry: &Registry, config: &Value) -> Result<NativeFilter, FieldError> {
    NativeFilter::build(
        &KeyRateLimitFactory,
        "higress-system.key-rate-limit".into(),
        None,
        config,
        FilterFamilies::register(registry).stats("higress-system.key-rate-limit"),
        &BuildContext::detached("higress-system.key-rate-limit", registry),
    )
}

fn status(f: &NativeFilter, host: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    let input = MatchInput {
        authority: host,
        ..Default::default()
    };
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
    for (k, v) in headers {
        req.append_header(k.to_string(), *v).unwrap();
    }
    let Some(filter) = f.select(&input) else {
        return 200;
    };
    match filter.on_request_headers(&mut req, &input) {
        FilterStatus::Continue => 200,
        FilterStatus::Reply(r) => {
            assert_eq!(r.body, LIMITED_BODY.as_bytes());
            assert!(r.headers.is_empty());
            r.status
        }
        FilterStatus::Wait(_) => panic!("never waits"),
    }
}

#[test]
fn the_knative_articles_rule() {
    let registry = Registry::new();
    // Verbatim: the older `_rules_` form with a numeric key.
    let f = build(
        &registry,
        &json!({"_rules_": [{
            "_match_domain_": ["hello.default.example.com"],
            "limit_by_header": "x-ca-key",
            "limit_keys": [{"key": 123456, "query_per_minute": 2}],
        }]}),
    )
    .unwrap();
    let host = "hello.default.example.com";
    let key = [("x-ca-key", "123456")];
    assert_eq!(status(&f, host, "/", &key), 200);
    assert_eq!(status(&f, host, "/", &key), 200);
    assert_eq!(status(&f, host, "/", &key), 429);
    assert_eq!(
        status(&f, host, "/", &[("x-ca-key", "other")]),
        200,
        "unlisted key"
    );
    assert_eq!(status(&f, host, "/", &[]), 200, "no key");
    assert_eq!(
        status(&f, "other.example.com", "/", &key),
        200,
        "no rule matches"
    );
    assert!(registry.render().contains(
        "gateway_key_rate_limit_limited_total{plugin=\"higress-system.key-rate-limit\"} 1"
    ));
}

#[test]
fn params_and_the_first_nonzero_window() {
    let registry = Registry::new();
    let f = build(
        &registry,
        &json!({"limit_by_param": "apikey", "limit_keys": [
            {"key": "a", "query_per_second": 0, "query_per_day": 1},
            {"key": "b", "query_per_hour": "3"},
        ]}),
    )
    .unwrap();
    assert_eq!(status(&f, "h", "/?apikey=a", &[]), 200);
    assert_eq!(status(&f, "h", "/?x=1&apikey=a", &[]), 429);
    for _ in 0..3 {
        assert_eq!(status(&f, "h", "/?apikey=b", &[]), 200);
    }
    assert_eq!(status(&f, "h", "/?apikey=b", &[]), 429);
}

#[test]
fn bad_configurations_name_their_field() {
    let registry = Registry::new();
    let cases = [
        (
            json!({"limit_keys": [{"key": "a", "query_per_second": 1}]}),
            "limit_by_header",
        ),
        (
            json!({"limit_by_header": "h", "limit_by_param": "p", "limit_keys": [{"key": "a", "query_per_second": 1}]}),
            "limit_by_param",
        ),
        (
            json!({"limit_by_header": "h", "limit_keys": []}),
            "limit_keys",
        ),
        (
            json!({"limit_by_header": "h", "limit_keys": [{"key": "a", "query_per_second": -1}]}),
            "limit_keys[0].query_per_second",
        ),
        (
            json!({"limit_by_header": "h", "limit_keys": [{"key": "a"}]}),
            "limit_keys[0].query_per_second",
        ),
        (
            json!({"limit_by_header": "h", "limit_keys": [{"query_per_second": 1}]}),
            "limit_keys[0].key",
        ),
        (
            json!({"limit_by_header": "h", "limit_keys": [{"key": "a", "query_per_second": 1}, {"key": "a", "query_per_minute": 1}]}),
            "limit_keys[1].key",
        ),
        (
            json!({"_rules_": [{"_match_route_": ["r"], "limit_by_header": "bad header", "limit_keys": [{"key": "a", "query_per_second": 1}]}]}),
            "_rules_[0].limit_by_header",
        ),
    ];
    for (config, field) in cases {
        let e = build(&registry, &config).unwrap_err();
        assert_eq!(e.path, field, "{config}: {e}");
    }
}
