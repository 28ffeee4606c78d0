//! The Higress articles' AI API gateway scenario, with the articles' own configuration
//! (../shared/reference/seed-scenarios.md, A and B): WasmPlugins naming Higress's core
//! plugins by `oci://` images run natively (key-auth, key-rate-limit, request-block, the
//! article's chatgpt-proxy) in front of an OpenAI-compatible model API on loopback.

use test_support::llm::Llm;
use test_support::wasm::wasm_plugin_yaml;
use test_support::{request, ConfigDir, Gateway};

const KEY_AUTH: &str = "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-auth:1.0.0";
const KEY_RATE_LIMIT: &str =
    "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-rate-limit:1.0.0";
const REQUEST_BLOCK: &str =
    "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/request-block:1.0.0";
const CHATGPT_PROXY: &str = "oci://registry.cn-hangzhou.aliyuncs.com/zwj_test/chatgpt-proxy:1.0.0";

/// Scenario A's plugins, the article's YAML under `defaultConfig` / `matchRules`.
fn scenario_a(cfg: &ConfigDir, per_minute: u32) {
    cfg.wasm_plugin(
        "chatgpt-proxy",
        CHATGPT_PROXY,
        "phase: AUTHN\npriority: 1\ndefaultConfig:\n  apiKey: \"xxxxxxxxxxxxxxxxxx\"\n  model: \"curie\"\n  promptParam: \"text\"\n",
    );
    cfg.wasm_plugin(
        "key-auth",
        KEY_AUTH,
        "defaultConfig:\n  consumers:\n  - credential: \"xxxxxx\"\n    name: \"consumer1\"\n  - credential: \"yyyyyy\"\n    name: \"consumer2\"\n  global_auth: false\n  in_header: true\n  keys:\n  - \"apikey\"\nmatchRules:\n- ingress: [ai]\n  config:\n    allow: [consumer1]\n",
    );
    cfg.wasm_plugin(
        "request-block",
        REQUEST_BLOCK,
        "matchRules:\n- ingress: [ai]\n  config:\n    blocked_code: 404\n    block_urls:\n    - password\n    - pw\n    case_sensitive: false\n",
    );
    // Between request-block (AUTHN 320) and the proxy (AUTHN 1): limits apply before the
    // proxy plugin answers.
    cfg.wasm_plugin(
        "key-rate-limit",
        KEY_RATE_LIMIT,
        &format!("phase: AUTHN\npriority: 100\nmatchRules:\n- ingress: [ai]\n  config:\n    limit_by_header: x-mse-consumer\n    limit_keys:\n    - key: consumer1\n      query_per_minute: {per_minute}\n"),
    );
}

fn wait_natives(gw: &Gateway, names: &[&str]) {
    for n in names {
        gw.wait_plugin(n);
    }
}

#[test]
fn the_articles_sequence() {
    let llm = Llm::start();
    let cfg = ConfigDir::new();
    // The route's backend is a registry entry naming the model API (the chatgpt-proxy
    // call goes to the route's cluster, as the plugin's RouteCluster client does).
    cfg.static_registries(&[("llm", llm.addr.to_string(), 80)]);
    cfg.ingress(
        "ai",
        &[("higress.io/destination", "llm.static")],
        &[(None, "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    scenario_a(&cfg, 3);
    wait_natives(
        &gw,
        &[
            "chatgpt-proxy",
            "key-auth",
            "request-block",
            "key-rate-limit",
        ],
    );

    let get = |path: &str, key: Option<&str>| {
        let h: Vec<(&str, &str)> = key.map(|k| vec![("apikey", k)]).unwrap_or_default();
        request(gw.http, "GET", "ai.test", path, &h).unwrap()
    };
    let r = get("/?text=Say,hello", None);
    assert_eq!(r.status, 401, "no key: {}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Key realm=MSE Gateway"));
    assert_eq!(
        r.text(),
        "Request denied by Key Auth check. No Key Authentication information found."
    );
    assert_eq!(
        get("/?text=Say,hello", Some("zzzzzz")).status,
        401,
        "not a consumer"
    );
    let r = get("/?text=Say,hello", Some("yyyyyy"));
    assert_eq!(r.status, 403, "consumer2 is not allowed");
    assert_eq!(
        r.text(),
        "Request denied by Key Auth check. Unauthorized consumer."
    );
    assert!(llm.seen().is_empty(), "nothing reached the model yet");

    let r = get("/?text=Say,hello", Some("xxxxxx"));
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(
        answer["choices"][0]["text"], "Hello from curie: Say,hello",
        "{answer}"
    );
    let seen = llm.seen();
    assert_eq!(seen.len(), 1);
    let call = &seen[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/v1/completions")
    );
    assert_eq!(call.header("host"), Some("api.openai.com"));
    assert_eq!(
        call.header("authorization"),
        Some("Bearer xxxxxxxxxxxxxxxxxx")
    );
    assert_eq!(call.body["model"], "curie");
    assert_eq!(call.body["prompt"], "Say,hello");

    // request-block, on the route, before the limit counts.
    assert_eq!(get("/?text=Mypassword=xxxxxx", Some("xxxxxx")).status, 404);
    assert_eq!(get("/?text=pw=xxxxxx", Some("xxxxxx")).status, 404);
    // key-rate-limit: 3 a minute for consumer1; one is used.
    assert_eq!(get("/?text=again", Some("xxxxxx")).status, 200);
    assert_eq!(get("/?text=again", Some("xxxxxx")).status, 200);
    let r = get("/?text=again", Some("xxxxxx"));
    assert_eq!((r.status, r.text().as_str()), (429, "rate_limited"));

    // Usage per consumer.
    let m = |s: &str| gw.metric(s).unwrap_or(0.0);
    assert_eq!(
        m("gateway_key_auth_consumer_requests_total{plugin=\"higress-system.key-auth\",consumer=\"consumer1\"}"),
        6.0,
        "{}",
        gw.metrics()
    );
    assert_eq!(
        m("gateway_key_auth_denied_total{plugin=\"higress-system.key-auth\",reason=\"forbidden\"}"),
        1.0
    );
    assert_eq!(
        m("gateway_request_block_blocked_total{plugin=\"higress-system.request-block\"}"),
        2.0
    );
    assert_eq!(
        m("gateway_key_rate_limit_limited_total{plugin=\"higress-system.key-rate-limit\"}"),
        1.0
    );
    let entry = gw.wait_access("a 429 with its consumer", |e| e["response_code"] == 429);
    assert_eq!(entry["consumer"], "consumer1");
    let log = gw.log();
    assert!(
        !log.contains("xxxxxx\"") && !log.contains("yyyyyy"),
        "no credential in the log"
    );

    // /debug/configz says which plugins run natively, secrets hidden.
    let z = gw.configz();
    let plugins = z["plugins"].as_array().unwrap();
    let ka = plugins
        .iter()
        .find(|p| p["name"] == "higress-system.key-auth")
        .unwrap();
    assert_eq!(ka["implementation"], "native");
    assert_eq!(ka["native_plugin"], "key-auth");
    assert_eq!(
        (ka["phase"].as_str(), ka["priority"].as_i64()),
        (Some("AUTHN"), Some(321))
    );
    assert!(!z.to_string().contains("xxxxxx"), "{z}");
    let order: Vec<&str> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "higress-system.key-auth",
            "higress-system.request-block",
            "higress-system.key-rate-limit",
            "higress-system.chatgpt-proxy"
        ]
    );
}

#[test]
fn the_knative_articles_rules_in_the_older_form() {
    let be = test_support::Backend::start("hello");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start(cfg.path());
    // Verbatim from the article (`_rules_` inside defaultConfig, a numeric key).
    cfg.write(
        "wasmplugins/key-rate-limit.yaml",
        "apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: key-rate-limit\n  namespace: higress-system\nspec:\n  defaultConfig:\n    _rules_:\n    - _match_domain_:\n      - \"hello.default.example.com\"\n      limit_by_header: x-ca-key\n      limit_keys:\n      - key: 123456\n        query_per_minute: 2\n  url: oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-rate-limit:1.0.0\n",
    );
    cfg.write(
        "wasmplugins/key-auth.yaml",
        "apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: key-auth\n  namespace: higress-system\nspec:\n  defaultConfig:\n    consumers:\n    - credential: 2bda943c-ba2b-11ec-ba07-00163e1250b5\n      name: consumer1\n    - credential: c8c8e9ca-558e-4a2d-bb62-e700dcc40e35\n      name: consumer2\n    keys:\n    - apikey\n    in_query: true\n    _rules_:\n    - _match_domain_:\n      - \"hello.default.example.com\"\n      allow:\n      - consumer2\n  url: oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-auth:1.0.0\n",
    );
    wait_natives(&gw, &["key-rate-limit", "key-auth"]);
    let host = "hello.default.example.com";
    let c1 = "/?apikey=2bda943c-ba2b-11ec-ba07-00163e1250b5";
    let c2 = "/?apikey=c8c8e9ca-558e-4a2d-bb62-e700dcc40e35";
    assert_eq!(request(gw.http, "GET", host, "/", &[]).unwrap().status, 401);
    assert_eq!(request(gw.http, "GET", host, c1, &[]).unwrap().status, 403);
    let r = request(gw.http, "GET", host, c2, &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-mse-consumer"], "consumer2");
    // Other hosts: no rule matches, global_auth unset with rules: not authenticated.
    assert_eq!(
        request(gw.http, "GET", "other.test", "/", &[])
            .unwrap()
            .status,
        200
    );
    let limited = |n: u32| {
        (0..n)
            .map(|_| request(gw.http, "GET", host, c2, &[("x-ca-key", "123456")]).unwrap())
            .map(|r| (r.status, r.text()))
            .collect::<Vec<_>>()
    };
    let got = limited(3);
    assert_eq!(got[0].0, 200);
    assert_eq!(got[1].0, 200);
    assert_eq!(got[2], (429, "rate_limited".to_string()));
}

#[test]
fn bad_configurations_are_rejected_with_the_plugin_and_field() {
    let llm = Llm::start();
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("llm", llm.addr.to_string(), 80)]);
    cfg.ingress(
        "ai",
        &[("higress.io/destination", "llm.static")],
        &[(None, "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    scenario_a(&cfg, 1000);
    wait_natives(
        &gw,
        &[
            "chatgpt-proxy",
            "key-auth",
            "request-block",
            "key-rate-limit",
        ],
    );
    let ok = || {
        request(
            gw.http,
            "GET",
            "ai.test",
            "/?text=hi",
            &[("apikey", "xxxxxx")],
        )
        .unwrap()
        .status
    };
    assert_eq!(ok(), 200);
    let cases = [
        (
            "key-auth",
            KEY_AUTH,
            "defaultConfig:\n  consumers: []\n  keys: [apikey]\n  in_header: true\n",
            "spec.defaultConfig.consumers: must not be empty",
        ),
        (
            "key-auth",
            KEY_AUTH,
            "defaultConfig:\n  consumers:\n  - {name: a, credential: same}\n  - {name: b, credential: same}\n  keys: [apikey]\n  in_header: true\n",
            "spec.defaultConfig.consumers[1].credential: duplicate",
        ),
        (
            "key-auth",
            KEY_AUTH,
            "defaultConfig:\n  consumers: [{name: a, credential: k}]\n  keys: apikey\n  in_header: true\n",
            "spec.defaultConfig.keys: expected a list of strings",
        ),
        (
            "key-rate-limit",
            KEY_RATE_LIMIT,
            "matchRules:\n- ingress: [ai]\n  config:\n    limit_by_header: x-mse-consumer\n    limit_keys:\n    - key: consumer1\n      query_per_minute: -5\n",
            "spec.matchRules[0].config.limit_keys[0].query_per_minute: expected a non-negative integer",
        ),
        (
            "request-block",
            REQUEST_BLOCK,
            "defaultConfig:\n  blocked_code: 404\n",
            "spec.defaultConfig.block_urls: there is no block rule",
        ),
    ];
    for (name, url, spec, want) in cases {
        cfg.write(
            &format!("wasmplugins/{name}.yaml"),
            &wasm_plugin_yaml(name, url, spec),
        );
        let got = test_support::wait_for(&format!("the rejection of {name}: {want}"), || {
            let z = gw.configz();
            z["rejected"].as_array().and_then(|a| {
                a.iter()
                    .filter(|r| r["object"] == format!("WasmPlugin higress-system/{name}").as_str())
                    .find_map(|r| {
                        r["error"]
                            .as_str()
                            .filter(|e| e.contains(want))
                            .map(str::to_string)
                    })
            })
        });
        assert!(got.contains(want), "{got}");
        assert!(!got.contains("\"same\""), "no credential in errors: {got}");
        // The last good plugins keep serving.
        assert_eq!(ok(), 200, "after {want}");
    }
    // Unknown fields are accepted and reported.
    cfg.wasm_plugin(
        "key-auth",
        KEY_AUTH,
        "defaultConfig:\n  consumers: [{name: consumer1, credential: xxxxxx}]\n  keys: [apikey]\n  in_header: true\n  realm: Mine\n",
    );
    let not = test_support::wait_for("realm reported as not enforced", || {
        let z = gw.configz();
        let list = z["not_enforced"].as_array().cloned()?;
        list.iter()
            .filter_map(|v| v.as_str())
            .find(|s| s.contains("realm"))
            .map(str::to_string)
    });
    assert_eq!(
        not,
        "wasmplugin higress-system.key-auth: key-auth field realm"
    );
}

#[test]
fn validate_checks_native_plugin_configurations() {
    let cfg = ConfigDir::new();
    cfg.wasm_plugin(
        "key-auth",
        KEY_AUTH,
        "defaultConfig:\n  consumers: [{name: a, credential: k}]\n  keys: [apikey]\n  in_header: true\nmatchRules:\n- ingress: [r]\n  configDisable: true\n- ingress: [ai]\n  config:\n    allow: []\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .arg(cfg.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(
        text.trim(),
        "wasmplugins/key-auth.yaml: WasmPlugin higress-system/key-auth: spec.matchRules[1].config.allow: must not be empty"
    );
}

/// `examples/ai-gateway/` copied into a test directory, its model API pointed at `llm`,
/// plus ai-statistics (token metrics per consumer). The plugins are written by
/// [`write_plugins`] once the gateway is up (a cold compile of the Wasm ones takes longer
/// than start-up may).
fn example_dir(llm: &Llm) -> (ConfigDir, Vec<(String, String)>) {
    let cfg = ConfigDir::new();
    let mut plugins = Vec::new();
    let root = test_support::repo_root().join("examples/ai-gateway");
    let ai_proxy = test_support::wasm::plugin("gpustack-ai-proxy", "2.0.3-patched");
    for sub in ["ingresses", "mcpbridges", "wasmplugins"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("127.0.0.1:8000", &llm.addr.to_string())
                .replace(
                    "file://../../target/peers-venv/lib/python3.11/site-packages/gpustack_higress_plugins/plugins/gpustack-ai-proxy/2.0.3-patched/plugin.wasm",
                    &format!("file://{}", ai_proxy.display()),
                );
            let rel = format!("{sub}/{}", p.file_name().unwrap().to_str().unwrap());
            if sub == "wasmplugins" {
                plugins.push((rel, text));
            } else {
                cfg.write(&rel, &text);
            }
        }
    }
    let stats = format!(
        "file://{}",
        test_support::wasm::plugin("ai-statistics", "2.0.0").display()
    );
    plugins.push((
        "wasmplugins/ai-statistics.yaml".into(),
        wasm_plugin_yaml(
            "ai-statistics",
            &stats,
            "phase: UNSPECIFIED_PHASE\npriority: 200\ndefaultConfig: {}",
        ),
    ));
    (cfg, plugins)
}

#[test]
fn the_example_directory_serves_the_scenario_with_ai_proxy_streaming() {
    use std::io::{Read, Write};
    let llm = Llm::start();
    let (cfg, plugins) = example_dir(&llm);
    let cache = test_support::wasm::cache_dir();
    let gw = Gateway::start_with(cfg.path(), &["--wasm-cache-dir", cache.to_str().unwrap()]);
    for (rel, text) in &plugins {
        cfg.write(rel, text);
    }
    for p in [
        "key-auth",
        "request-block",
        "key-rate-limit",
        "chatgpt-proxy",
        "ai-proxy",
        "ai-statistics",
    ] {
        gw.wait_plugin(p);
    }
    let get = |path: &str, key: &str| {
        request(gw.http, "GET", "ai.test", path, &[("apikey", key)]).unwrap()
    };
    assert_eq!(get("/?text=Say,hello", "").status, 401);
    assert_eq!(get("/?text=Say,hello", "yyyyyy").status, 403);
    let r = get("/?text=Say,hello", "xxxxxx");
    assert_eq!(
        (r.status, r.json()["choices"][0]["text"].as_str()),
        (200, Some("Hello from curie: Say,hello"))
    );
    assert_eq!(get("/?text=Mypassword=xxxxxx", "xxxxxx").status, 404);

    // ai-proxy: a streamed chat completion arrives chunk by chunk.
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut s = std::net::TcpStream::connect(gw.http).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: ai.test\r\napikey: xxxxxx\r\nauthorization: Bearer client-token\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"Hi\"") {
        let n = s
            .read(&mut buf)
            .expect("the first chunk before the upstream finishes");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let first = String::from_utf8_lossy(&got).to_string();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        !first.contains("[DONE]"),
        "the upstream has not finished: {first}"
    );
    llm.finish_stream();
    while !String::from_utf8_lossy(&got).contains("0\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before the end: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let all = String::from_utf8_lossy(&got);
    assert!(all.contains("data: [DONE]"), "{all}");
    // What ai-proxy sent the model: its token, the stream asked to include usage.
    let seen = llm.seen();
    let chat = seen
        .iter()
        .find(|s| s.path.ends_with("/chat/completions"))
        .unwrap();
    assert_eq!(chat.path, "/v1/chat/completions");
    assert_eq!(
        chat.header("authorization"),
        Some("Bearer sk-example-token")
    );
    assert_eq!(chat.header("host"), Some("llm.example"));
    assert_eq!(chat.header("x-mse-consumer"), Some("consumer1"));
    assert_eq!(
        chat.body["stream_options"]["include_usage"], true,
        "{}",
        chat.body
    );

    // Token usage per consumer, as Higress's AI dashboard reads it.
    let labels = "ai_route=\"ai-api\",ai_cluster=\"outbound|80||llm.static\",ai_model=\"gpt-4o\",ai_consumer=\"consumer1\"";
    test_support::wait_for("token metrics of consumer1", || {
        (gw.metric(&format!(
            "route_upstream_model_consumer_metric_total_token{{{labels}}}"
        )) == Some(9.0))
        .then_some(())
    });
    let entry = gw.wait_access("the streamed request's log line", |e| {
        e["path"] == "/v1/chat/completions"
    });
    assert_eq!(entry["consumer"], "consumer1");
}

#[test]
fn native_plugins_off_loads_the_image_instead() {
    let be = test_support::Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    // A registry that refuses connections: with native plugins off the image must be
    // pulled, so the plugin is rejected; with them on it runs without any pull.
    let url = format!(
        "oci://127.0.0.1:{}/plugins/key-auth:1.0.0",
        test_support::free_port()
    );
    let spec = "defaultConfig:\n  consumers: [{name: a, credential: k}]\n  keys: [apikey]\n  in_header: true\n";
    cfg.wasm_plugin("key-auth", &url, spec);
    let off = Gateway::start_with(cfg.path(), &["--wasm-native-plugins", "off"]);
    let error = off.wait_rejection("key-auth");
    assert!(error.contains("spec.url"), "{error}");
    assert_eq!(
        request(off.http, "GET", "a.test", "/", &[]).unwrap().status,
        200
    );
    let on = Gateway::start(cfg.path());
    on.wait_plugin("key-auth");
    assert_eq!(
        request(on.http, "GET", "a.test", "/", &[]).unwrap().status,
        401
    );
}

#[test]
fn request_block_reads_held_bodies_and_passes_the_rest_intact() {
    let be = test_support::Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start(cfg.path());
    cfg.wasm_plugin(
        "request-block",
        REQUEST_BLOCK,
        "defaultConfig:\n  block_bodies: [\"drop table\"]\n  blocked_code: 403\n  blocked_message: blocked\n",
    );
    gw.wait_plugin("request-block");
    let post = |body: &[u8]| {
        test_support::client::request_with_body(
            gw.http,
            "POST",
            "a.test",
            "/sql",
            &[("content-type", "text/plain")],
            body,
        )
        .unwrap()
    };
    let r = post(b"select 1; DROP TABLE users");
    assert_eq!((r.status, r.text().as_str()), (403, "blocked"));
    let before = be.requests();
    let r = post(b"select * from users");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        j["body"], "select * from users",
        "the held body goes upstream as it was: {j}"
    );
    assert_eq!(be.requests(), before + 1);
    assert_eq!(
        gw.metric("gateway_request_block_blocked_total{plugin=\"higress-system.request-block\"}"),
        Some(1.0)
    );
}
