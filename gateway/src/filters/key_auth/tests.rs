use serde_json::json;
use telemetry::stats::Registry;

use super::*;
use crate::filters::{FilterFamilies, NativeFilter};

/// The article's global configuration, plus a route rule allowing consumer1.
fn article() -> Value {
    json!({
        "consumers": [
            {"credential": "xxxxxx", "name": "consumer1"},
            {"credential": "yyyyyy", "name": "consumer2"},
        ],
        "global_auth": false,
        "in_header": true,
        "keys": ["apikey"],
        "_rules_": [{"_match_route_": ["ai"], "allow": ["consumer1"]}],
    })
}

fn build(registry: &Registry, config: &Value) -> Result<NativeFilter, FieldError> {
    NativeFilter::build(
        &KeyAuthFactory,
        "higress-system.key-auth".into(),
        None,
        config,
        FilterFamilies::register(registry).stats("higress-system.key-auth"),
        &BuildContext::detached("higress-system.key-auth", registry),
    )
}

/// Run a request on route `route` with `headers` and `path`: the status (200 when it
/// goes on) and the consumer header it goes on with.
fn run(
    f: &NativeFilter,
    route: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>) {
    let input = MatchInput {
        route: Some(route),
        authority: "ai.example.com",
        ..Default::default()
    };
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
    for (k, v) in headers {
        req.append_header(k.to_string(), *v).unwrap();
    }
    let Some(filter) = f.select(&input) else {
        return (200, None);
    };
    let consumer = |r: &RequestHeader| {
        r.headers
            .get(CONSUMER_HEADER)
            .map(|v| v.to_str().unwrap().to_string())
    };
    match filter.on_request_headers(&mut req, &input) {
        FilterStatus::Continue => (200, consumer(&req)),
        FilterStatus::Reply(r) => {
            assert_eq!(
                r.headers,
                [("www-authenticate".to_string(), CHALLENGE.to_string())]
            );
            let body = String::from_utf8(r.body).unwrap();
            match r.status {
                401 => assert!(body == NO_KEY || body == MULTI_KEY || body == UNAUTHORIZED),
                403 => assert_eq!(body, UNAUTHORIZED),
                s => panic!("status {s}"),
            }
            (r.status, consumer(&req))
        }
        FilterStatus::Wait(_) => panic!("key-auth never waits"),
    }
}

#[test]
fn the_articles_sequence() {
    let registry = Registry::new();
    let f = build(&registry, &article()).unwrap();
    assert_eq!(run(&f, "ai", "/?text=hi", &[]), (401, None), "no key");
    assert_eq!(
        run(&f, "ai", "/", &[("apikey", "zzzzzz")]),
        (401, None),
        "unknown key"
    );
    assert_eq!(
        run(&f, "ai", "/", &[("apikey", "yyyyyy")]),
        (403, Some("consumer2".into())),
        "consumer2 is known but not allowed (named before the allow check, as Go does)"
    );
    assert_eq!(
        run(
            &f,
            "ai",
            "/",
            &[("apikey", "xxxxxx"), ("x-mse-consumer", "admin")]
        ),
        (200, Some("consumer1".into())),
        "the client's own consumer header is replaced"
    );
    assert_eq!(
        run(&f, "ai", "/", &[("apikey", "xxxxxx"), ("APIKEY", "yyyyyy")]).0,
        401,
        "the key header twice is a repeated key"
    );
    // global_auth false and a rule exists: other routes are not authenticated, and a
    // client's consumer header does not survive.
    assert_eq!(
        run(&f, "web", "/", &[("x-mse-consumer", "admin")]),
        (200, None)
    );
    let text = registry.render();
    for line in [
        "gateway_key_auth_consumer_requests_total{plugin=\"higress-system.key-auth\",consumer=\"consumer1\"} 1",
        "gateway_key_auth_consumer_requests_total{plugin=\"higress-system.key-auth\",consumer=\"consumer2\"} 0",
        "gateway_key_auth_denied_total{plugin=\"higress-system.key-auth\",reason=\"forbidden\"} 1",
        "gateway_key_auth_denied_total{plugin=\"higress-system.key-auth\",reason=\"no_key\"} 1",
        "gateway_key_auth_denied_total{plugin=\"higress-system.key-auth\",reason=\"unknown_key\"} 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(!text.contains("xxxxxx") && !format!("{f:?}").contains("xxxxxx"));
}

#[test]
fn query_keys_several_keys_and_global_auth() {
    let registry = Registry::new();
    // The Knative article's form: in_query, a domain rule, no global_auth.
    let f = build(
        &registry,
        &json!({
            "consumers": [{"credential": "c1", "name": "consumer1"}, {"credential": 222, "name": "consumer2"}],
            "keys": ["apikey", "x-key"],
            "in_query": true,
            "_rules_": [{"_match_domain_": ["ai.example.com"], "allow": ["consumer2"]}],
        }),
    )
    .unwrap();
    assert_eq!(run(&f, "r", "/", &[]).0, 401);
    assert_eq!(run(&f, "r", "/?apikey=c1", &[]).0, 403);
    assert_eq!(
        run(&f, "r", "/?apikey=222", &[]),
        (200, Some("consumer2".into()))
    );
    assert_eq!(
        run(&f, "r", "/?apikey=222&x-key=222", &[]).0,
        401,
        "two keys"
    );
    assert_eq!(
        run(&f, "r", "/?apikey=222", &[("apikey", "c1")]).0,
        200,
        "headers not read"
    );
    // global_auth true: every request, and no allow list means any consumer.
    let g = build(
        &registry,
        &json!({"consumers": [{"credential": "k", "name": "a"}], "keys": ["apikey"], "in_header": true, "global_auth": true}),
    )
    .unwrap();
    assert_eq!(run(&g, "r", "/", &[]).0, 401);
    assert_eq!(
        run(&g, "r", "/", &[("apikey", "k")]),
        (200, Some("a".into()))
    );
    // Unset global_auth and no rules: every request.
    let u = build(
        &registry,
        &json!({"consumers": [{"credential": "k", "name": "a"}], "keys": ["apikey"], "in_header": true}),
    )
    .unwrap();
    assert_eq!(run(&u, "r", "/", &[]).0, 401);
}

#[test]
fn bad_configurations_name_their_field() {
    let registry = Registry::new();
    let base = || json!({"consumers": [{"credential": "a", "name": "n1"}], "keys": ["apikey"], "in_header": true});
    let cases = [
        (
            json!({"consumers": [], "keys": ["k"], "in_header": true}),
            "consumers",
        ),
        (json!({"keys": ["k"], "in_header": true}), "consumers"),
        (
            json!({"consumers": [{"credential": "a", "name": "n1"}, {"credential": "a", "name": "n2"}], "keys": ["k"], "in_header": true}),
            "consumers[1].credential",
        ),
        (
            json!({"consumers": [{"credential": "", "name": "n"}], "keys": ["k"], "in_header": true}),
            "consumers[0].credential",
        ),
        (
            json!({"consumers": [{"credential": "a"}], "keys": ["k"], "in_header": true}),
            "consumers[0].name",
        ),
        (
            json!({"consumers": "a", "keys": ["k"], "in_header": true}),
            "consumers",
        ),
        (
            json!({"consumers": [{"credential": "a", "name": "n"}], "keys": [], "in_header": true}),
            "keys",
        ),
        (
            json!({"consumers": [{"credential": "a", "name": "n"}], "keys": ["k"]}),
            "in_header",
        ),
        (
            json!({"consumers": [{"credential": "a", "name": "n"}], "keys": ["k"], "in_header": "yes"}),
            "in_header",
        ),
    ];
    for (config, field) in cases {
        let e = build(&registry, &config).unwrap_err();
        assert_eq!(e.path, field, "{config}: {e}");
        assert!(
            !e.message.contains("\"a\""),
            "no credential in messages: {e}"
        );
    }
    let mut rule = base();
    rule["_rules_"] = json!([{"_match_route_": ["r"]}]);
    assert_eq!(
        build(&registry, &rule).unwrap_err().path,
        "_rules_[0].allow"
    );
    let mut extra = base();
    extra["realm"] = json!("x");
    let f = build(&registry, &extra).unwrap();
    assert_eq!(f.not_enforced, ["realm"]);
}
