use serde_json::json;
use telemetry::stats::Registry;

use super::*;
use crate::filters::{FilterFamilies, NativeFilter};

fn build(registry: &Registry, config: &Value) -> Result<NativeFilter, FieldError> {
    NativeFilter::build(
        &RequestBlockFactory,
        "higress-system.request-block".into(),
        None,
        config,
        FilterFamilies::register(registry).stats("higress-system.request-block"),
        &BuildContext::detached("higress-system.request-block", registry),
    )
}

/// The status a request gets (200: it goes on) and the reply's body.
fn run(f: &NativeFilter, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let input = MatchInput::default();
    let mut req = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
    for (k, v) in headers {
        req.append_header(k.to_string(), *v).unwrap();
    }
    let filter = f.select(&input).unwrap();
    let mut status = filter.on_request_headers(&mut req, &input);
    if status == FilterStatus::Continue && filter.wants_request_body() {
        status = filter.on_request_body(&req, body);
    }
    match status {
        FilterStatus::Continue => (200, String::new()),
        FilterStatus::Reply(r) => (r.status, String::from_utf8(r.body).unwrap()),
        FilterStatus::Wait(_) => panic!("never waits"),
    }
}

#[test]
fn the_articles_words() {
    let registry = Registry::new();
    let f = build(
        &registry,
        &json!({"blocked_code": 404, "block_urls": ["password", "pw"], "case_sensitive": false}),
    )
    .unwrap();
    assert_eq!(run(&f, "/?text=Mypassword=xxxxxx", &[], b"").0, 404);
    assert_eq!(run(&f, "/?text=PW=xxxxxx", &[], b"").0, 404);
    assert_eq!(run(&f, "/?text=Say,hello", &[], b""), (200, String::new()));
    assert!(registry.render().contains(
        "gateway_request_block_blocked_total{plugin=\"higress-system.request-block\"} 2"
    ));
}

#[test]
fn exact_regexp_headers_bodies_and_case() {
    let registry = Registry::new();
    let f = build(
        &registry,
        &json!({
            "block_exact_urls": ["/admin"],
            "block_regexp_urls": ["^/api/v[0-9]+/secret"],
            "block_headers": ["x-debug\non", "evil-agent"],
            "block_bodies": ["DROP TABLE"],
            "blocked_code": 451,
            "blocked_message": "blocked",
            "case_sensitive": true,
        }),
    )
    .unwrap();
    assert_eq!(run(&f, "/admin", &[], b""), (451, "blocked".into()));
    assert_eq!(
        run(&f, "/admin?x=1", &[], b"").0,
        200,
        "exact: the query counts"
    );
    assert_eq!(run(&f, "/api/v2/secret/x", &[], b"").0, 451);
    assert_eq!(
        run(&f, "/API/v2/secret/x", &[], b"").0,
        200,
        "case-sensitive"
    );
    assert_eq!(
        run(&f, "/", &[("x-debug", "on")], b"").0,
        451,
        "name\\nvalue"
    );
    assert_eq!(run(&f, "/", &[("user-agent", "evil-agent/1")], b"").0, 451);
    assert_eq!(run(&f, "/", &[], b"x; DROP TABLE users").0, 451);
    assert_eq!(run(&f, "/", &[], b"x; drop table users").0, 200);
    let lower = build(&registry, &json!({"block_bodies": ["drop table"]})).unwrap();
    assert_eq!(
        run(&lower, "/", &[], b"x; DROP TABLE users"),
        (403, String::new())
    );
}

#[test]
fn bad_configurations_name_their_field() {
    let registry = Registry::new();
    for (config, field) in [
        (json!({"blocked_code": 404}), "block_urls"),
        (json!({"block_urls": ["", ""]}), "block_urls"),
        (json!({"block_urls": "pw"}), "block_urls"),
        (json!({"block_regexp_urls": ["("]}), "block_regexp_urls[0]"),
        (
            json!({"block_urls": ["pw"], "blocked_code": -1}),
            "blocked_code",
        ),
        (
            json!({"block_urls": ["pw"], "case_sensitive": 3}),
            "case_sensitive",
        ),
    ] {
        let e = build(&registry, &config).unwrap_err();
        assert_eq!(e.path, field, "{config}: {e}");
    }
    let odd = build(
        &registry,
        &json!({"block_urls": ["pw"], "blocked_code": 700}),
    )
    .unwrap();
    assert_eq!(
        run(&odd, "/pw", &[], b"").0,
        403,
        "out of range: 403, as Go"
    );
}
