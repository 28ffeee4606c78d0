//! The Proxy-Wasm host's edge cases, through a hand-written module
//! (`fixtures/abi_edge.wat`, its header comment says what each `x-mode` does) loaded by
//! the real gateway in front of a real backend: empty returns, re-entrant allocation,
//! local replies, an HTTP call round trip to a cluster, request bodies streamed and held,
//! traps with FAIL_CLOSE and FAIL_OPEN, the callback deadline and the memory limit, a
//! configuration the plugin refuses, and modules from file:// and http:// with sha256.

use std::io::{Read, Write};
use std::net::TcpListener;

use test_support::client::request_with_body;
use test_support::wasm::{abi_module, wasm_plugin_yaml, LOAD_WAIT};
use test_support::{request, wait_for, Backend, ConfigDir, Conn, Gateway};

const HOST: &str = "wat.test";

/// A config routing everything to `be`, with `auth.static` a second registry.
fn config(be: &Backend, auth: &Backend) -> ConfigDir {
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("be", be.addr.to_string(), 80),
        ("auth", auth.addr.to_string(), 80),
    ]);
    cfg.ingress(
        "r",
        &[("higress.io/destination", "be.static")],
        &[(None, "Prefix", "/")],
    );
    cfg
}

fn file_url() -> String {
    format!("file://{}", abi_module().display())
}

/// The gateway with the ABI module as plugin `wat` (spec lines after `url`).
fn start(cfg: &ConfigDir, spec: &str, extra: &[&str]) -> Gateway {
    Gateway::start_with_plugins(cfg, extra, &[("wat", &file_url(), spec)])
}

fn mode(gw: &Gateway, m: &str) -> test_support::Response {
    request(gw.http, "GET", HOST, "/get", &[("x-mode", m)]).unwrap()
}

/// What the backend saw of the request, from its JSON echo.
fn upstream_header(r: &test_support::Response, name: &str) -> Option<String> {
    r.json()["headers"][name].as_str().map(str::to_string)
}

fn metric(gw: &Gateway, family: &str, labels: &str) -> f64 {
    gw.metric(&format!("{family}{{{labels}}}")).unwrap_or(0.0)
}

#[test]
fn empty_returns_and_reentrant_allocation() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let gw = start(&cfg, "", &[]);
    // An empty value is Ok with nothing; a missing header and the body outside a body
    // callback are NotFound.
    let r = request(
        gw.http,
        "GET",
        HOST,
        "/get",
        &[("x-mode", "E"), ("x-empty", "")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(upstream_header(&r, "x-empty-len").as_deref(), Some("0"));
    assert_eq!(upstream_header(&r, "x-absent").as_deref(), Some("notfound"));
    assert_eq!(upstream_header(&r, "x-body").as_deref(), Some("notfound"));
    assert_eq!(r.header("x-wat-response"), Some("1"));
    // 36 000 bytes do not fit the module's first page: its allocator grows memory while
    // the host waits inside `proxy_get_header_map_value`, then the host writes the value.
    let big: String = (0..36_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let r = request(
        gw.http,
        "GET",
        HOST,
        "/get",
        &[("x-mode", "B"), ("x-big", &big)],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        upstream_header(&r, "x-big-copy").as_deref(),
        Some(big.as_str())
    );
}

#[test]
fn local_reply_from_request_headers_passes_the_response_callbacks() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let gw = start(&cfg, "", &[]);
    let before = be.requests();
    let mut conn = Conn::open(gw.http).unwrap();
    let r = conn
        .request("GET", HOST, "/get", &[("x-mode", "L")])
        .unwrap();
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "short and stout");
    assert_eq!(r.header("x-wat"), Some("yes"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("15"));
    // The plugin's own response callback ran on its reply, as Envoy's encoder chain does.
    assert_eq!(r.header("x-wat-response"), Some("1"));
    assert_eq!(
        be.requests(),
        before,
        "a local reply must not reach the upstream"
    );
    // The connection stays usable.
    let r = conn
        .request("GET", HOST, "/get", &[("x-mode", "E")])
        .unwrap();
    assert_eq!(r.status, 200);
    let e = gw.wait_access("the 418 in the access log", |e| e["response_code"] == 418);
    assert_eq!(e["route_name"], "r");
}

#[test]
fn http_call_round_trip_resumes_the_request() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let gw = start(&cfg, "", &[]);
    let r = mode(&gw, "C");
    assert_eq!(r.status, 200, "{}", r.text());
    // The call went to the `auth.static` cluster's endpoint with the plugin's headers;
    // its status and body came back to the plugin, which put them on the request.
    assert_eq!(upstream_header(&r, "x-call-status").as_deref(), Some("200"));
    let body: serde_json::Value =
        serde_json::from_str(&upstream_header(&r, "x-call-body").unwrap()).unwrap();
    assert_eq!(body["backend"], "auth");
    assert_eq!(body["path"], "/check");
    assert_eq!(body["headers"]["host"], "auth");
    assert_eq!(auth.requests(), 1);
    assert_eq!(r.json()["backend"], "be");
}

#[test]
fn request_bodies_streamed_and_held() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let gw = start(&cfg, "", &[]);
    // Streamed: each chunk edited in place, the length unchanged.
    let r = request_with_body(
        gw.http,
        "POST",
        HOST,
        "/post",
        &[("x-mode", "U")],
        b"hello wasm",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "HELLO WASM");
    // Held: the headers wait for the whole body; the plugin edits both, and the
    // upstream gets the new body with its real length.
    let r = request_with_body(
        gw.http,
        "POST",
        HOST,
        "/post",
        &[("x-mode", "H")],
        b"hello wasm",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["body"], "held:hello wasm");
    assert_eq!(j["headers"]["x-held-body"], "hello wasm");
    assert_eq!(j["headers"]["content-length"], "15");
    // A chunked body is held the same way and leaves with a length.
    let mut conn = Conn::open(gw.http).unwrap();
    conn.send_raw(
        format!("POST /post HTTP/1.1\r\nHost: {HOST}\r\nx-mode: H\r\ntransfer-encoding: chunked\r\n\r\n5\r\nchunk\r\n4\r\ny!!!\r\n0\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let r = conn.read_response(false).unwrap();
    let j = r.json();
    assert_eq!(j["body"], "held:chunky!!!");
    assert_eq!(j["headers"]["content-length"], "14");
    assert!(j["headers"].get("transfer-encoding").is_none(), "{j}");
    // Over the buffer limit (downstream.connectionBufferLimits, 32 KiB by default):
    // 413, as Envoy's buffer overflow, and nothing reaches the upstream.
    let before = be.requests();
    let big = vec![b'x'; 40_000];
    let r = request_with_body(gw.http, "POST", HOST, "/post", &[("x-mode", "H")], &big).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(be.requests(), before);
}

#[test]
fn trap_fails_closed_then_open_and_the_vm_is_rebuilt() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    // One worker thread: the request after the trap meets the rebuilt VM.
    let gw = start(&cfg, "failStrategy: FAIL_CLOSE", &["--threads", "1"]);
    let labels = "plugin=\"higress-system.wat\",reason=\"trap\"";
    let r = mode(&gw, "T");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(metric(&gw, "gateway_wasm_failures_total", labels), 1.0);
    // The next request gets a new VM.
    let r = mode(&gw, "E");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-wat-response"), Some("1"));
    assert!(
        metric(
            &gw,
            "gateway_wasm_vm_rebuilds_total",
            "plugin=\"higress-system.wat\""
        ) >= 1.0
    );
    // FAIL_OPEN, live: the failing plugin is skipped and the request goes on.
    let v = gw.version();
    cfg.write(
        "wasmplugins/wat.yaml",
        &wasm_plugin_yaml("wat", &file_url(), "failStrategy: FAIL_OPEN"),
    );
    gw.wait_version_after(v);
    let r = mode(&gw, "T");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["backend"], "be");
    assert_eq!(
        r.header("x-wat-response"),
        None,
        "a failed plugin is skipped for the rest of its request"
    );
    assert_eq!(metric(&gw, "gateway_wasm_failures_total", labels), 2.0);
    assert!(
        metric(
            &gw,
            "gateway_wasm_calls_total",
            "plugin=\"higress-system.wat\""
        ) > 0.0
    );
}

#[test]
fn deadline_and_memory_limit_stop_a_callback() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let gw = start(
        &cfg,
        "",
        &[
            "--wasm-callback-deadline",
            "200ms",
            "--wasm-memory-limit",
            "64MiB",
        ],
    );
    let p = "plugin=\"higress-system.wat\"";
    // An endless loop is interrupted at the deadline: 503, the VM rebuilt.
    let r = mode(&gw, "F");
    assert_eq!(r.status, 503);
    assert_eq!(
        metric(
            &gw,
            "gateway_wasm_failures_total",
            &format!("{p},reason=\"deadline\"")
        ),
        1.0
    );
    assert_eq!(mode(&gw, "E").status, 200);
    let vm_memory = || metric(&gw, "gateway_wasm_vm_memory_bytes", p);
    let small = vm_memory();
    assert!(small > 0.0 && small < 1_048_576.0, "{small}");
    // Growing past the memory limit is refused; the module traps and that is counted as
    // the limit.
    let r = mode(&gw, "G");
    assert_eq!(r.status, 503);
    assert_eq!(
        metric(
            &gw,
            "gateway_wasm_failures_total",
            &format!("{p},reason=\"memory\"")
        ),
        1.0
    );
    assert_eq!(mode(&gw, "E").status, 200);
    // The grown VM's memory went with it.
    assert!(vm_memory() < 1_048_576.0, "{}", vm_memory());
    // Other requests were never held up: the callback latency histogram saw them all.
    assert!(
        gw.metric(&format!(
            "gateway_wasm_callback_duration_milliseconds_count{{{p}}}"
        ))
        .unwrap_or(0.0)
            > 0.0
    );
}

#[test]
fn plugin_asks_for_a_new_vm_and_running_streams_finish_on_the_old_one() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    // One worker thread: every request meets the same slot.
    let gw = start(&cfg, "", &["--threads", "1"]);
    let p = "plugin=\"higress-system.wat\"";
    let fresh = |r: &test_support::Response| upstream_header(r, "x-vm-fresh").is_some();
    let r = mode(&gw, "N");
    assert_eq!(r.status, 200);
    assert!(fresh(&r), "the first request meets a fresh VM");
    assert!(!fresh(&mode(&gw, "N")));
    let rebuilds = || metric(&gw, "gateway_wasm_vm_rebuilds_total", p);
    let vm_memory = || metric(&gw, "gateway_wasm_vm_memory_bytes", p);
    assert_eq!(rebuilds(), 0.0);
    let one_vm = vm_memory();
    assert!(one_vm >= 65536.0, "{one_vm}");
    // W asks for a new VM from its request headers; the rest of its stream stays on the
    // VM it started on, and the next request gets a new one.
    let w = mode(&gw, "W");
    assert_eq!(w.status, 200);
    assert_eq!(w.header("x-wat-response"), Some("1"));
    assert!(!fresh(&w));
    assert!(fresh(&mode(&gw, "N")));
    assert_eq!(rebuilds(), 1.0);
    wait_for("the old VM dropped with its last stream", || {
        (vm_memory() == one_vm).then_some(())
    });
    // Again, with W still waiting 2 s at the backend when the next request comes.
    let before = be.requests();
    let http = gw.http;
    let slow = std::thread::spawn(move || {
        request(http, "GET", HOST, "/delay/2000", &[("x-mode", "W")]).unwrap()
    });
    wait_for("the W request at the backend", || {
        (be.requests() > before).then_some(())
    });
    // The next request starts on a new VM while W's stream is still open on the old one.
    let r = mode(&gw, "N");
    assert_eq!(r.status, 200);
    assert!(
        fresh(&r),
        "a request after wasm_need_rebuild meets a new VM"
    );
    assert_eq!(rebuilds(), 2.0);
    assert_eq!(vm_memory(), 2.0 * one_vm, "both VMs are alive");
    // W's response callback still ran, on the VM that has its context.
    let w = slow.join().unwrap();
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(w.header("x-wat-response"), Some("1"));
    assert!(!fresh(&w));
    // The old VM went with its last stream.
    wait_for("the old VM dropped", || {
        (vm_memory() == one_vm).then_some(())
    });
    assert!(!fresh(&mode(&gw, "N")));
    assert_eq!(rebuilds(), 2.0);
}

#[test]
fn refused_config_and_unloadable_modules_keep_the_running_plugin() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let gw = start(&cfg, "", &[]);
    let good = mode(&gw, "E");
    assert_eq!(good.header("x-wat-response"), Some("1"));
    let cases = [
        (
            wasm_plugin_yaml("wat", &file_url(), "defaultConfig:\n  reject: 1"),
            "the plugin rejected its configuration",
        ),
        (
            wasm_plugin_yaml("wat", "file:///nonexistent/plugin.wasm", ""),
            "spec.url: reading /nonexistent/plugin.wasm",
        ),
        (
            wasm_plugin_yaml("wat", &file_url(), &format!("sha256: {}", "0".repeat(64))),
            "spec.sha256: the module's sha256 is",
        ),
        (
            // Port 1 on loopback refuses at once (no network needed); nothing is cached
            // for it.
            wasm_plugin_yaml(
                "wat",
                "oci://127.0.0.1:1/plugins/transformer:2.0.0",
                "",
            ),
            "spec.url: oci://127.0.0.1:1/plugins/transformer:2.0.0: registry 127.0.0.1:1 unreachable",
        ),
    ];
    for (yaml, want) in cases {
        cfg.write("wasmplugins/wat.yaml", &yaml);
        let error = wait_for_rejection_containing(&gw, want);
        assert!(error.contains(want), "{error}");
        // The last good plugin still runs.
        let r = mode(&gw, "E");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-wat-response"), Some("1"), "after: {error}");
    }
    assert!(
        gw.metric("gateway_config_reloads_total{result=\"rejected\"}")
            .unwrap()
            >= 4.0
    );
    // A non-Wasm file is refused with what it is.
    let junk = cfg.path().join("junk.wasm");
    std::fs::write(&junk, b"not a module").unwrap();
    cfg.write(
        "wasmplugins/wat.yaml",
        &wasm_plugin_yaml("wat", &format!("file://{}", junk.display()), ""),
    );
    let error = wait_for_rejection_containing(&gw, "not a Wasm module");
    assert!(error.starts_with("spec.url:"), "{error}");
}

fn wait_for_rejection_containing(gw: &Gateway, want: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let error = gw.wait_rejection("wat");
        if error.contains(want) {
            return error;
        }
        assert!(
            start.elapsed() < LOAD_WAIT,
            "last rejection {error:?}, want {want:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Serves `body` at every path, counting requests.
fn file_server(body: Vec<u8>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = conn.write_all(&body);
        }
    });
    addr
}

#[test]
fn module_over_http_with_sha256() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let bytes = std::fs::read(abi_module()).unwrap();
    let sha = openssl_sha256(&bytes);
    let server = file_server(bytes);
    let url = format!("http://{server}/plugins/abi_edge.wat");
    let gw = Gateway::start_with_plugins(&cfg, &[], &[("wat", &url, &format!("sha256: {sha}"))]);
    assert_eq!(mode(&gw, "E").header("x-wat-response"), Some("1"));
    // The same URL with another hash is refused; the loaded plugin stays.
    cfg.write(
        "wasmplugins/wat.yaml",
        &wasm_plugin_yaml(
            "wat",
            &url,
            &format!("sha256: {}\nfailStrategy: FAIL_OPEN", "ab".repeat(32)),
        ),
    );
    let error = wait_for_rejection_containing(&gw, "spec.sha256");
    assert!(error.contains(&sha), "{error}");
    assert_eq!(mode(&gw, "E").header("x-wat-response"), Some("1"));
    wait_for("the plugin in configz with its hash", || {
        (gw.configz()["plugins"][0]["sha256"] == sha.as_str()).then_some(())
    });
}

fn openssl_sha256(bytes: &[u8]) -> String {
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("openssl (scripts/test.sh installs it)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn shared_data_queues_ticks_and_done() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let gw = start(&cfg, "", &[]);
    // The 20 ms tick writes shared data; any VM of the plugin reads it.
    let r = wait_for("a tick's shared data", || {
        let r = mode(&gw, "S");
        (upstream_header(&r, "x-ticked").as_deref() == Some("yes")).then_some(r)
    });
    assert_eq!(upstream_header(&r, "x-shared").as_deref(), Some("v1"));
    assert_eq!(upstream_header(&r, "x-cas").as_deref(), Some("mismatch"));
    // A queue registered while configuring, found by name, notifies its owner's root
    // context, which dequeues the item into shared data.
    assert_eq!(mode(&gw, "Q").status, 200);
    wait_for("the queue item moved to shared data", || {
        (upstream_header(&mode(&gw, "R"), "x-from-queue").as_deref() == Some("ping")).then_some(())
    });
    // `proxy_done` from `proxy_on_done`: the context is deleted (its on_delete writes
    // shared data the next request reads).
    assert_eq!(mode(&gw, "D").status, 200);
    wait_for("on_delete after proxy_done", || {
        (upstream_header(&mode(&gw, "S"), "x-deleted").as_deref() == Some("yes")).then_some(())
    });
    // Time, log level, a replaced header; the HTTP call's status via proxy_get_status.
    let r = request(
        gw.http,
        "GET",
        HOST,
        "/get",
        &[("x-mode", "P"), ("x-drop", "me")],
    )
    .unwrap();
    assert_eq!(upstream_header(&r, "x-drop"), None);
    assert_eq!(upstream_header(&r, "x-time").as_deref(), Some("set"));
    assert_eq!(upstream_header(&r, "x-log-level").as_deref(), Some("set"));
    assert_eq!(upstream_header(&r, "x-mode").as_deref(), Some("P2"));
    let r = mode(&gw, "C");
    assert_eq!(upstream_header(&r, "x-get-status").as_deref(), Some("200"));
}

#[test]
fn close_stream_resets_without_a_response() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let gw = start(&cfg, "", &[]);
    let before = be.requests();
    let r = request(gw.http, "GET", HOST, "/get", &[("x-mode", "X")]);
    assert!(
        r.is_err(),
        "expected a reset, got {:?}",
        r.map(|r| r.status)
    );
    assert_eq!(be.requests(), before);
    let e = gw.wait_access("the reset in the access log", |e| {
        e["response_flags"] == "LR"
    });
    assert_eq!(e["response_code"], 0);
}

#[test]
fn vm_config_env_reaches_the_vm_environment() {
    let (be, auth) = (Backend::start("be"), Backend::start("auth"));
    let cfg = config(&be, &auth);
    let spec = "vmConfig:\n  env:\n  - {name: INLINED, value: \"one=1\"}\n  - {name: GATEWAY_TEST_FROM_HOST, valueFrom: HOST}\n  - {name: GATEWAY_TEST_NOT_SET, valueFrom: HOST}\n";
    let cache = test_support::wasm::cache_dir();
    let gw = Gateway::start_with_env(
        cfg.path(),
        &["--wasm-cache-dir", cache.to_str().unwrap()],
        &[("GATEWAY_TEST_FROM_HOST", "host value")],
    );
    cfg.wasm_plugin("wat", &file_url(), spec);
    gw.wait_plugin("wat");
    let r = mode(&gw, "V");
    assert_eq!(r.status, 200, "{}", r.text());
    // INLINE as given, HOST from the gateway's environment, a HOST variable the gateway
    // does not have left out; nothing else (the VM does not see the gateway's own env).
    assert_eq!(
        upstream_header(&r, "x-env").as_deref(),
        Some("INLINED=one=1, GATEWAY_TEST_FROM_HOST=host value")
    );
    // A bad name is refused with its field.
    cfg.wasm_plugin(
        "bad-env",
        &file_url(),
        "vmConfig:\n  env:\n  - {name: \"A=B\"}\n",
    );
    let err = gw.wait_rejection("bad-env");
    assert!(err.contains("spec.vmConfig.env[0].name"), "{err}");
}

/// A plugin's request header edit re-routes the request when a route matches on headers
/// (the lookup is skipped only when none does and the host, path and method stayed).
#[test]
fn request_header_edit_routes_again_by_header_match() {
    let (be, auth, other) = (
        Backend::start("be"),
        Backend::start("auth"),
        Backend::start("other"),
    );
    let cfg = config(&be, &auth);
    cfg.static_registries(&[
        ("be", be.addr.to_string(), 80),
        ("auth", auth.addr.to_string(), 80),
        ("other", other.addr.to_string(), 80),
    ]);
    // Mode P replaces `x-mode: P` with `P2`: the request now matches this route.
    cfg.ingress(
        "p2",
        &[
            ("higress.io/destination", "other.static"),
            ("higress.io/exact-match-header-x-mode", "P2"),
        ],
        &[(None, "Prefix", "/")],
    );
    let gw = start(&cfg, "", &[]);
    let r = mode(&gw, "P");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["backend"], "other");
    assert_eq!(upstream_header(&r, "x-mode").as_deref(), Some("P2"));
    // Without the edit the header route does not match.
    let r = mode(&gw, "E");
    assert_eq!(r.json()["backend"], "be");
}
