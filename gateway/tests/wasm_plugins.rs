//! Real compiled Higress plugins (PyPI `gpustack-higress-plugins` 0.5.1) in the real
//! gateway, asserting on what the upstream and the client see: `transformer` 2.0.0,
//! `gpustack-ext-auth` (an HTTP call to an auth cluster), `ai-statistics` (token metrics
//! after OpenAI-style requests to a loopback model stand-in, and the VM rebuild it asks
//! for after 1000 requests), and
//! `gpustack-set-header-pre-route`; rule matching by route, domain and service; phase
//! and priority order; route policy annotations around a plugin in Envoy's order; a
//! refused configuration; a live config change on an open
//! connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use test_support::client::request_with_body;
use test_support::wasm::{plugin, wasm_plugin_yaml};
use test_support::{request, wait_for, Backend, ConfigDir, Conn, Gateway};

fn url(name: &str, version: &str) -> String {
    format!("file://{}", plugin(name, version).display())
}

fn transformer() -> String {
    url("transformer", "2.0.0")
}

/// Indent YAML by `n` spaces (for config blocks under `defaultConfig:`).
fn indent(yaml: &str, n: usize) -> String {
    yaml.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

#[test]
fn transformer_edits_headers_query_and_json_bodies() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let rules = r#"reqRules:
- operate: remove
  headers:
  - key: x-remove
  querys:
  - key: k1
  body:
  - key: a1
- operate: rename
  headers:
  - oldKey: x-old
    newKey: x-new
  querys:
  - oldKey: k2
    newKey: k2-new
  body:
  - oldKey: a2
    newKey: a2-new
- operate: add
  headers:
  - key: x-added
    value: added
  body:
  - key: a5
    value: "5"
    value_type: number
respRules:
- operate: add
  headers:
  - key: x-resp-added
    value: r1
- operate: remove
  body:
  - key: backend
- operate: add
  body:
  - key: transformed
    value: "true"
    value_type: boolean
"#;
    let spec = format!(
        "phase: AUTHN\npriority: 410\ndefaultConfig:\n{}",
        indent(rules, 2)
    );
    let gw = Gateway::start_with_plugins(&cfg, &[], &[("transformer", &transformer(), &spec)]);
    let body = br#"{"a1":"t1","a2":"t2","a3":"t3"}"#;
    let r = request_with_body(
        gw.http,
        "POST",
        "t.test",
        "/post?k1=v1&k2=v2&k3=v3",
        &[
            ("content-type", "application/json"),
            ("x-remove", "gone"),
            ("x-old", "kept"),
        ],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-resp-added"), Some("r1"));
    // The response body: the backend's JSON, edited.
    let j = r.json();
    assert!(j.get("backend").is_none(), "{j}");
    assert_eq!(j["transformed"], true);
    // What the upstream saw.
    let h = &j["headers"];
    assert!(h.get("x-remove").is_none(), "{h}");
    assert!(h.get("x-old").is_none(), "{h}");
    assert_eq!(h["x-new"], "kept");
    assert_eq!(h["x-added"], "added");
    let path = j["path"].as_str().unwrap();
    assert!(path.starts_with("/post?"), "{path}");
    let mut query: Vec<&str> = path["/post?".len()..].split('&').collect();
    query.sort_unstable();
    assert_eq!(query, ["k2-new=v2", "k3=v3"]);
    let sent: serde_json::Value = serde_json::from_str(j["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"a2-new": "t2", "a3": "t3", "a5": 5})
    );
    // The upstream got a body framed by its real length.
    let len = j["headers"]["content-length"]
        .as_str()
        .map(|l| l.parse::<usize>().unwrap());
    let chunked = j["headers"]["transfer-encoding"] == "chunked";
    assert!(
        len == Some(j["body"].as_str().unwrap().len()) || chunked,
        "{j}"
    );
}

/// Route policy from annotations keeps Envoy's order around a plugin: the plugin sees
/// the request before the route's request header control (the router applies it) and
/// the response after the route's response header control; CORS, a filter before the
/// plugins, sees the response after the plugin.
#[test]
fn route_policy_runs_around_plugins_in_envoy_order() {
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("be", be.addr.to_string(), 80)]);
    cfg.ingress(
        "r",
        &[
            ("higress.io/destination", "be.static"),
            ("higress.io/request-header-control-add", "x-ctl req"),
            ("higress.io/response-header-control-add", "x-ctl-resp on"),
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
            (
                "nginx.ingress.kubernetes.io/cors-allow-origin",
                "https://app.test",
            ),
        ],
        &[(None, "Prefix", "/")],
    );
    let rules = "reqRules:\n- operate: remove\n  headers:\n  - key: x-ctl\nrespRules:\n- operate: remove\n  headers:\n  - key: x-ctl-resp\n  - key: access-control-allow-origin\n";
    let spec = format!(
        "phase: AUTHN\npriority: 410\ndefaultConfig:\n{}",
        indent(rules, 2)
    );
    let gw = Gateway::start_with_plugins(&cfg, &[], &[("transformer", &transformer(), &spec)]);
    let r = request(
        gw.http,
        "GET",
        "t.test",
        "/x",
        &[("origin", "https://app.test")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("x-ctl-resp").is_none(),
        "response control runs before the plugin"
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.test"),
        "CORS sees the response after the plugin"
    );
    let j = r.json();
    assert_eq!(
        j["headers"]["x-ctl"], "req",
        "request control runs after the plugin: {j}"
    );
}

/// An auth service: 200 with `x-user-id` for `authorization: Bearer good`, else 401.
/// Records the request lines and headers it got.
fn auth_server() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || serve_auth(conn, &s));
        }
    });
    (addr, seen)
}

fn serve_auth(conn: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let good = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("authorization: Bearer good"));
        seen.lock().unwrap().push(head);
        let resp = if good {
            "HTTP/1.1 200 OK\r\nx-user-id: u-1\r\ncontent-length: 0\r\n\r\n"
        } else {
            "HTTP/1.1 401 Unauthorized\r\nx-auth-reason: bad-token\r\ncontent-length: 0\r\n\r\n"
        };
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn ext_auth_asks_the_auth_cluster_over_http_call() {
    let be = Backend::start("be");
    let (auth, seen) = auth_server();
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("be", be.addr.to_string(), 80),
        ("auth", auth.to_string(), 80),
    ]);
    cfg.ingress(
        "api",
        &[("higress.io/destination", "be.static")],
        &[(None, "Prefix", "/")],
    );
    // gpustack-ext-auth's config: the Higress ext-auth `forward_auth` endpoint under
    // `authz`, and the routes it guards.
    let spec = "phase: AUTHN\npriority: 360\ndefaultConfig:\n  route_match_regexes: [\".*\"]\n  authz:\n    endpoint_mode: forward_auth\n    endpoint:\n      service_name: auth.static\n      service_port: 80\n      path: /verify\n    timeout: 2000\n";
    let gw = Gateway::start_with_plugins(
        &cfg,
        &[],
        &[("ext-auth", &url("gpustack-ext-auth", "0.1.3"), spec)],
    );
    let r = request(
        gw.http,
        "GET",
        "a.test",
        "/v1/models?x=1",
        &[("authorization", "Bearer good")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["backend"], "be");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let h = seen[0].to_ascii_lowercase();
        assert!(h.starts_with("get /verify http/1.1\r\n"), "{h}");
        assert!(h.contains("host: auth.static\r\n"), "{h}");
        assert!(h.contains("x-forwarded-uri: /v1/models?x=1\r\n"), "{h}");
        assert!(h.contains("x-forwarded-host: a.test\r\n"), "{h}");
        assert!(h.contains("authorization: bearer good\r\n"), "{h}");
    }
    // Refused by the auth service: the plugin answers with its status; the upstream is
    // never asked.
    let before = be.requests();
    let r = request(
        gw.http,
        "GET",
        "a.test",
        "/v1/models",
        &[("authorization", "Bearer bad")],
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("x-auth-reason"), Some("bad-token"));
    assert_eq!(be.requests(), before);
    assert_eq!(seen.lock().unwrap().len(), 2);
    let calls = gw
        .metric("gateway_wasm_calls_total{plugin=\"higress-system.ext-auth\"}")
        .unwrap();
    assert!(calls >= 4.0, "{calls}");
}

/// An OpenAI-style model API: `/v1/chat/completions` answers with `usage` (as JSON, or
/// as server-sent events when the request asks to `stream`).
fn model_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let c = c.clone();
            std::thread::spawn(move || serve_model(conn, &c));
        }
    });
    (addr, count)
}

fn serve_model(conn: TcpStream, count: &AtomicUsize) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut len = 0;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
        }
        let mut body = vec![0; len];
        if chunked {
            body = read_chunked(&mut r);
        } else if r.read_exact(&mut body).is_err() {
            return;
        }
        count.fetch_add(1, Ordering::Relaxed);
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let model = req["model"].as_str().unwrap_or("unknown");
        let (ctype, out) = if req["stream"] == true {
            let chunks = [
                serde_json::json!({"id":"c1","object":"chat.completion.chunk","model":model,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}),
                serde_json::json!({"id":"c1","object":"chat.completion.chunk","model":model,"choices":[{"index":0,"delta":{"content":" there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}),
            ];
            let mut s: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
            s.push_str("data: [DONE]\n\n");
            ("text/event-stream", s)
        } else {
            let j = serde_json::json!({"id":"c1","object":"chat.completion","model":model,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}});
            ("application/json", j.to_string())
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n{out}",
            out.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn read_chunked(r: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if r.read_line(&mut size).unwrap_or(0) == 0 {
            return body;
        }
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let mut chunk = vec![0; n + 2];
        if r.read_exact(&mut chunk).is_err() {
            return body;
        }
        if n == 0 {
            return body;
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn ai_statistics_token_metrics_in_prometheus() {
    let (llm, served) = model_server();
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("llm", llm.to_string(), 80)]);
    cfg.ingress(
        "ai-route",
        &[("higress.io/destination", "llm.static")],
        &[(None, "Prefix", "/")],
    );
    let gw = Gateway::start_with_plugins(
        &cfg,
        &[],
        &[(
            "ai-statistics",
            &url("ai-statistics", "2.0.0"),
            "phase: UNSPECIFIED_PHASE\npriority: 200\ndefaultConfig: {}",
        )],
    );
    let chat = |body: &str| {
        request_with_body(
            gw.http,
            "POST",
            "ai.test",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .unwrap()
    };
    let r = chat(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["usage"]["total_tokens"],
        16,
        "the response passes unchanged"
    );
    let r = chat(r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());
    assert_eq!(served.load(Ordering::Relaxed), 2);
    // Higress's tag extraction: the AI dashboard's series and labels.
    let labels = "ai_route=\"ai-route\",ai_cluster=\"outbound|80||llm.static\",ai_model=\"gpt-4o\",ai_consumer=\"none\"";
    let value = |metric: &str| {
        gw.metric(&format!(
            "route_upstream_model_consumer_metric_{metric}{{{labels}}}"
        ))
    };
    wait_for("ai-statistics token counters", || {
        (value("input_token") == Some(18.0)).then_some(())
    });
    assert_eq!(value("output_token"), Some(7.0));
    assert_eq!(value("total_token"), Some(25.0));
    assert_eq!(value("llm_stream_duration_count"), Some(1.0));
    let text = gw.metrics();
    assert!(
        text.contains("# TYPE route_upstream_model_consumer_metric_input_token counter"),
        "{text}"
    );
}

/// ai-statistics is built with Higress's SDK options `WithRebuildAfterRequests(1000)` and
/// `WithRebuildMaxMemBytes(200 MiB)`: after its 1000th request it sets
/// `wasm_need_rebuild`, and the gateway gives the next request a new VM.
#[test]
fn ai_statistics_gets_the_vm_rebuild_it_asks_for() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start_with_plugins(
        &cfg,
        &["--threads", "1"],
        &[(
            "ai-statistics",
            &url("ai-statistics", "2.0.0"),
            "phase: UNSPECIFIED_PHASE\npriority: 200\ndefaultConfig: {}",
        )],
    );
    let p = "plugin=\"higress-system.ai-statistics\"";
    let rebuilds = || gw.metric(&format!("gateway_wasm_vm_rebuilds_total{{{p}}}"));
    let memory = || gw.metric(&format!("gateway_wasm_vm_memory_bytes{{{p}}}"));
    let mut conn = Conn::open(gw.http).unwrap();
    let mut send = |n: usize| {
        for _ in 0..n {
            let r = conn.request("GET", "any.test", "/get", &[]).unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    send(999);
    assert_eq!(rebuilds(), Some(0.0));
    let grown = memory().unwrap();
    assert!(grown > 0.0);
    // The 1000th request asks: its VM goes with its stream, and no VM is left until the
    // 1001st request meets a new one.
    send(1);
    wait_for(
        "the old VM dropped after the 1000th request's log phase",
        || (memory() == Some(0.0)).then_some(()),
    );
    assert_eq!(rebuilds(), Some(0.0));
    send(1);
    assert_eq!(rebuilds(), Some(1.0));
    let fresh = memory().unwrap();
    assert!(fresh > 0.0 && fresh <= grown, "{fresh} after {grown}");
    send(998);
    assert_eq!(rebuilds(), Some(1.0));
}

#[test]
fn set_header_pre_route_names_route_and_cluster() {
    let be = Backend::start("be");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("models", be.addr.to_string(), 80)]);
    cfg.ingress(
        "llm-route",
        &[("higress.io/destination", "models.static")],
        &[(None, "Prefix", "/")],
    );
    let spec = "phase: AUTHN\npriority: 900\ndefaultConfig:\n  routeNameHeader: x-higress-route\n  clusterNameHeader: x-higress-cluster\n  enableOnPathPrefix: [\"/v1/\"]\n";
    let gw = Gateway::start_with_plugins(
        &cfg,
        &[],
        &[(
            "set-header",
            &url("gpustack-set-header-pre-route", "1.0.1"),
            spec,
        )],
    );
    let r = request(gw.http, "GET", "m.test", "/v1/models", &[]).unwrap();
    let h = &r.json()["headers"];
    assert_eq!(h["x-higress-route"], "llm-route");
    assert_eq!(h["x-higress-cluster"], "models.static");
    // Off its path prefixes the plugin leaves the request alone.
    let r = request(gw.http, "GET", "m.test", "/health", &[]).unwrap();
    assert!(r.json()["headers"].get("x-higress-route").is_none());
    // A configuration the plugin refuses is rejected with the plugin's reason, and the
    // running one stays.
    cfg.write(
        "wasmplugins/set-header.yaml",
        &wasm_plugin_yaml(
            "set-header",
            &url("gpustack-set-header-pre-route", "1.0.1"),
            "defaultConfig:\n  enableOnPathPrefix: [\"/v1/\"]",
        ),
    );
    let error = gw.wait_rejection("set-header");
    assert!(
        error.contains("routeNameHeader or clusterNameHeader"),
        "{error}"
    );
    let r = request(gw.http, "GET", "m.test", "/v1/models", &[]).unwrap();
    assert_eq!(r.json()["headers"]["x-higress-route"], "llm-route");
}

/// A transformer that adds `x-rule: <tag>` for each match rule.
fn tagging_rules() -> String {
    let tag = |t: &str| {
        format!("  config:\n    reqRules:\n    - operate: add\n      headers:\n      - key: x-rule\n        value: {t}\n")
    };
    format!(
        "defaultConfigDisable: true\nmatchRules:\n- ingress: [route-a]\n{}- domain: [\"*.wild.test\"]\n{}- service: [svc-c.static]\n{}",
        tag("route"),
        tag("domain"),
        tag("service")
    )
}

#[test]
fn match_rules_by_route_domain_and_service() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("svc-a", a.addr.to_string(), 80),
        ("svc-b", b.addr.to_string(), 80),
        ("svc-c", c.addr.to_string(), 80),
    ]);
    cfg.host_route("route-a", "a.test", "svc-a.static");
    cfg.host_route("route-wild", "*.wild.test", "svc-b.static");
    cfg.host_route("route-c", "c.test", "svc-c.static");
    cfg.host_route("route-other", "other.test", "svc-b.static");
    let gw =
        Gateway::start_with_plugins(&cfg, &[], &[("tagger", &transformer(), &tagging_rules())]);
    let tag = |host: &str| {
        let r = request(gw.http, "GET", host, "/", &[]).unwrap();
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        r.json()["headers"]["x-rule"].as_str().map(str::to_string)
    };
    assert_eq!(tag("a.test").as_deref(), Some("route"));
    assert_eq!(tag("x.wild.test").as_deref(), Some("domain"));
    assert_eq!(
        tag("x.wild.test:8080").as_deref(),
        Some("domain"),
        "the port is not part of the domain"
    );
    assert_eq!(tag("c.test").as_deref(), Some("service"));
    // No rule matches and the default config is disabled: the plugin does nothing.
    assert_eq!(tag("other.test"), None);
}

#[test]
fn phase_and_priority_order_requests_and_reverses_responses() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let appender = |name: &str, phase: &str, priority: i32| {
        let spec = format!(
            "phase: {phase}\npriority: {priority}\ndefaultConfig:\n  reqRules:\n  - operate: append\n    headers:\n    - key: x-order\n      appendValue: {name}\n  respRules:\n  - operate: append\n    headers:\n    - key: x-resp-order\n      appendValue: {name}\n"
        );
        (name.to_string(), spec)
    };
    let plugins = [
        appender("stats-1000", "STATS", 1000),
        appender("authn-10", "AUTHN", 10),
        appender("unspecified-5000", "UNSPECIFIED_PHASE", 5000),
        appender("authn-500", "AUTHN", 500),
    ];
    let t = transformer();
    let list: Vec<(&str, &str, &str)> = plugins
        .iter()
        .map(|(n, s)| (n.as_str(), t.as_str(), s.as_str()))
        .collect();
    let gw = Gateway::start_with_plugins(&cfg, &[], &list);
    assert_eq!(
        gw.chain(),
        [
            "higress-system.authn-500",
            "higress-system.authn-10",
            "higress-system.stats-1000",
            "higress-system.unspecified-5000"
        ]
    );
    let r = request(gw.http, "GET", "o.test", "/", &[]).unwrap();
    assert_eq!(
        r.json()["headers"]["x-order"],
        "authn-500, authn-10, stats-1000, unspecified-5000"
    );
    let resp: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "x-resp-order")
        .flat_map(|(_, v)| v.split(',').map(str::trim))
        .collect();
    assert_eq!(
        resp,
        ["unspecified-5000", "stats-1000", "authn-10", "authn-500"]
    );
}

#[test]
fn plugin_config_changes_apply_to_the_next_request_on_an_open_connection() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let add = |v: &str| {
        format!("defaultConfig:\n  reqRules:\n  - operate: add\n    headers:\n    - key: x-version\n      value: {v}\n")
    };
    let gw = Gateway::start_with_plugins(&cfg, &[], &[("versioned", &transformer(), &add("one"))]);
    let mut conn = Conn::open(gw.http).unwrap();
    let r = conn.request("GET", "v.test", "/", &[]).unwrap();
    assert_eq!(r.json()["headers"]["x-version"], "one");
    let accepted = be.accepted();
    let v = gw.version();
    cfg.wasm_plugin("versioned", &transformer(), &add("two"));
    gw.wait_version_after(v);
    let r = conn.request("GET", "v.test", "/", &[]).unwrap();
    assert_eq!(r.json()["headers"]["x-version"], "two");
    assert_eq!(
        be.accepted(),
        accepted,
        "the upstream connection is reused too"
    );
    // Removing the plugin takes it out of the chain.
    let v = gw.version();
    cfg.remove("wasmplugins/versioned.yaml");
    gw.wait_version_after(v);
    let r = conn.request("GET", "v.test", "/", &[]).unwrap();
    assert!(r.json()["headers"].get("x-version").is_none());
    assert!(gw.chain().is_empty());
}

#[test]
fn ai_data_masking_from_the_rust_sdk_masks_the_prompt() {
    // ai-data-masking is built with the Rust SDK (every other plugin here with Go's).
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let spec = "defaultConfig:\n  replace_roles:\n  - regex: \"%{MOBILE}\"\n    type: replace\n    value: \"****\"\n";
    let gw = Gateway::start_with_plugins(
        &cfg,
        &[],
        &[("masking", &url("ai-data-masking", "2.0.3"), spec)],
    );
    let r = request_with_body(
        gw.http,
        "POST",
        "ai.test",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"call me at 13800138000"}]}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen: serde_json::Value = serde_json::from_str(r.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["messages"][0]["content"], "call me at ****");
}
