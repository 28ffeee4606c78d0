//! The request runner with native filters in the chain: their order, their rules,
//! their replies, on a real Pingora session over a scripted connection.

use std::sync::Arc;

use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use serde_json::{json, Value};
use telemetry::stats::Registry;

use super::{Chain, Verdict, WasmRequest};
use crate::error::FieldError;
use crate::filters::{
    ChainEntry, FilterFactory, FilterFamilies, FilterStatus, HttpFilter, LocalReply, MatchInput,
    NativeFilter, ResponseParts,
};
use crate::model::plugin_chain::{order, Phase};
use crate::wasm::stream::StreamInfo;

/// Appends its tag to `x-order` on the request and on the response; with `deny` set it
/// answers the request with 403 instead.
#[derive(Debug)]
struct Tag {
    tag: String,
    deny: bool,
}

fn append(headers: &http::HeaderMap, tag: &str) -> String {
    match headers.get("x-order").and_then(|v| v.to_str().ok()) {
        Some(v) => format!("{v},{tag}"),
        None => tag.to_string(),
    }
}

impl HttpFilter for Tag {
    fn on_request_headers(&self, req: &mut RequestHeader, _: &MatchInput<'_>) -> FilterStatus {
        if self.deny {
            return FilterStatus::Reply(LocalReply {
                status: 403,
                headers: vec![("x-denied-by".into(), self.tag.clone())],
                body: b"no".to_vec(),
                ..Default::default()
            });
        }
        let v = append(&req.headers, &self.tag);
        req.insert_header("x-order", v).unwrap();
        FilterStatus::Continue
    }

    fn on_response_headers(&self, _req: &RequestHeader, resp: &mut ResponseParts) -> FilterStatus {
        let v = append(&resp.headers, &self.tag);
        resp.headers
            .insert("x-order", http::HeaderValue::from_str(&v).unwrap());
        FilterStatus::Continue
    }
}

struct TagFactory;

impl FilterFactory for TagFactory {
    fn name(&self) -> &'static str {
        "tag"
    }
    fn default_order(&self) -> (Phase, i32) {
        (Phase::Unspecified, 0)
    }
    fn build(
        &self,
        config: &Value,
        _: Option<&Arc<dyn HttpFilter>>,
        _: &crate::filters::BuildContext<'_>,
    ) -> Result<Arc<dyn HttpFilter>, FieldError> {
        Ok(Arc::new(Tag {
            tag: config["tag"].as_str().unwrap_or("global").to_string(),
            deny: config.get("deny").is_some(),
        }))
    }
}

fn native(
    families: &FilterFamilies,
    name: &str,
    at: (Phase, i32),
    config: Value,
) -> ChainEntry<crate::wasm::LoadedPlugin> {
    let f = NativeFilter::build(
        &TagFactory,
        name.into(),
        Some(at),
        &config,
        families.stats(name),
        &crate::filters::BuildContext::detached(name, &telemetry::stats::Registry::new()),
    )
    .unwrap();
    ChainEntry::Native(Arc::new(f))
}

/// A session that has read `GET <path>` for `host`.
async fn session(host: &str) -> Session {
    let wire = format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let io = tokio_test::io::Builder::new().read(wire.as_bytes()).build();
    let mut s = Session::new_h1(Box::new(io));
    assert!(s.read_request().await.unwrap());
    s
}

fn info(route: &str) -> StreamInfo {
    StreamInfo {
        route_name: Some(route.into()),
        cluster_name: Some("outbound|80||svc.dns".into()),
        ..StreamInfo::default()
    }
}

fn order_of(h: &http::HeaderMap) -> Option<&str> {
    h.get("x-order").and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn native_filters_run_in_chain_order_and_reverse_on_the_response() {
    let registry = Registry::new();
    let families = FilterFamilies::register(&registry);
    let chain: Chain = order(vec![
        native(
            &families,
            "ns.stats",
            (Phase::Stats, 0),
            json!({"tag": "stats"}),
        ),
        native(
            &families,
            "ns.authn",
            (Phase::Authn, 10),
            json!({"tag": "authn"}),
        ),
        native(
            &families,
            "ns.authz",
            (Phase::Authz, 0),
            json!({"_rules_": [{"tag": "authz", "_match_route_": ["api"]}]}),
        ),
    ])
    .into();
    // Route `api`: all three, in phase order; the response in reverse.
    let mut s = session("a.test").await;
    let mut w = WasmRequest::new(&chain, info("api"));
    assert!(matches!(
        w.on_request(&mut s, 1024).await.unwrap(),
        Verdict::Continue
    ));
    assert_eq!(order_of(&s.req_header().headers), Some("authn,authz,stats"));
    let mut resp = ResponseHeader::build(200, None).unwrap();
    w.on_response_headers(&mut s, &mut resp, true)
        .await
        .unwrap();
    assert_eq!(order_of(&resp.headers), Some("stats,authz,authn"));
    // Another route: the rule of ns.authz does not match and it has no global config.
    let mut s = session("a.test").await;
    let mut w = WasmRequest::new(&chain, info("web"));
    assert!(matches!(
        w.on_request(&mut s, 1024).await.unwrap(),
        Verdict::Continue
    ));
    assert_eq!(order_of(&s.req_header().headers), Some("authn,stats"));
    let mut resp = ResponseHeader::build(200, None).unwrap();
    w.on_response_headers(&mut s, &mut resp, true)
        .await
        .unwrap();
    assert_eq!(order_of(&resp.headers), Some("stats,authn"));
    let text = registry.render();
    assert!(
        text.contains("gateway_filter_runs_total{plugin=\"ns.authz\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("gateway_filter_runs_total{plugin=\"ns.authn\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_native_reply_ends_the_chain_and_only_earlier_filters_see_the_response() {
    let registry = Registry::new();
    let families = FilterFamilies::register(&registry);
    let chain: Chain = order(vec![
        native(&families, "ns.first", (Phase::Authn, 0), json!({"tag": "first"})),
        native(
            &families,
            "ns.deny",
            (Phase::Authz, 0),
            json!({"tag": "outer", "_rules_": [{"tag": "deny", "deny": true, "_match_domain_": ["*.blocked.test"]}]}),
        ),
        native(&families, "ns.last", (Phase::Stats, 0), json!({"tag": "last"})),
    ])
    .into();
    let mut s = session("x.blocked.test:8080").await;
    let mut w = WasmRequest::new(&chain, info("api"));
    let Verdict::Respond(lr) = w.on_request(&mut s, 1024).await.unwrap() else {
        panic!("the deny rule answers");
    };
    assert_eq!(lr.status, 403);
    assert_eq!(
        lr.headers,
        vec![(b"x-denied-by".to_vec(), b"deny".to_vec())]
    );
    assert_eq!(lr.body, b"no");
    assert_eq!(
        order_of(&s.req_header().headers),
        Some("first"),
        "ns.last never ran"
    );
    // The reply goes back, last first, through the filters that ran on the request,
    // the one that answered included (as a Wasm plugin's own reply does).
    let mut resp = super::local_header(&lr);
    w.on_response_headers(&mut s, &mut resp, false)
        .await
        .unwrap();
    assert_eq!(order_of(&resp.headers), Some("deny,first"));
    let text = registry.render();
    assert!(
        text.contains("gateway_filter_local_replies_total{plugin=\"ns.deny\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("gateway_filter_runs_total{plugin=\"ns.last\"} 1"),
        "{text}"
    );
    // Outside the blocked domain the global configuration of ns.deny tags instead.
    let mut s = session("open.test").await;
    let mut w = WasmRequest::new(&chain, info("api"));
    assert!(matches!(
        w.on_request(&mut s, 1024).await.unwrap(),
        Verdict::Continue
    ));
    assert_eq!(order_of(&s.req_header().headers), Some("first,outer,last"));
}
