//! The Proxy-Wasm host's ABI under random call sequences: a driver module, generated once
//! from what the host's linker defines (no WAT written per case), imports every `env`
//! and WASI function and interprets a script: its plugin configuration, which it reads
//! through `proxy_get_buffer_bytes` while configuring. Each callback the gateway makes
//! (configure, context create, request and response headers and bodies, call answers,
//! tick, done, log, delete) runs the script's next segment, so host calls see a real VM
//! (real linear memory, allocator, deadlines, memory limit) and a real request lent the
//! way the data plane lends it.
//!
//! Script: a sequence of calls, `op` then each parameter as `mode` + 4 bytes (LE);
//! `op == 0xff` ends the segment, else it calls function `op % n` of the imports (sorted
//! by module and name). A parameter's `mode % 6`: 0 the value itself; 1 a pointer into
//! the script (`value % script length`), where names and values are; 2 a pointer into a
//! 4 KiB scratch area that out-parameters land in; 3 a small number (`value & 63`), for
//! sizes; 4 the 32-bit word at that scratch offset (what a call wrote there, e.g. a
//! returned pointer or size); 5 just below the end of linear memory (`value & 255`
//! bytes), so a range straddles it. i64 parameters take the value sign-extended.
//! Missing bytes read as 0.
//!
//! Invariant: nothing panics. Bad pointers and sizes come back as a status, or trap the
//! plugin (its VM is then not used again); the request stays well-formed HTTP/1.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use pingora_http::{RequestHeader, ResponseHeader};
use telemetry::stats::Registry;
use wasmtime::ValType;

use crate::wasm::host::{self, CallAnswer, CallRequest, CallResponse, HostState, PluginShared};
use crate::wasm::metrics::PluginMetrics;
use crate::wasm::shared::{QueueOwner, SharedSpace};
use crate::wasm::stream::{StreamInfo, StreamView};
use crate::wasm::vm::{CompiledModule, Limits, PluginVm, Runtime};

/// Where the scratch area starts in the driver's memory; the script's pointer and
/// length are written at 16 and 20, the allocator starts above the first page.
const SCRATCH: u32 = 1024;

/// A plugin with `config` as its configuration (the script).
fn plugin(config: Vec<u8>) -> Arc<PluginShared> {
    Arc::new(PluginShared {
        name: "fuzz.driver".into(),
        root_id: String::new(),
        vm_id: "fuzz.driver".into(),
        config,
        vm_config: b"{\"vm\":1}".to_vec(),
        env: vec![("FUZZ".into(), "1".into())],
        // Per input: shared data and queues do not carry over to the next one.
        shared: Arc::new(SharedSpace::default()),
        metrics: Arc::new(PluginMetrics::new(Arc::new(Registry::new()))),
        resolve: Arc::new(|cluster: &str| {
            (cluster.contains("redis") || cluster.contains("auth"))
                .then(|| SocketAddr::from(([127, 0, 0, 1], 6379)))
        }),
        max_requests_per_io_cycle: AtomicU64::new(0),
        redis: Default::default(),
    })
}

/// The functions the host's linker defines: (module, name, params, results), sorted.
fn host_functions(engine: &wasmtime::Engine) -> Vec<(String, String, Vec<ValType>, usize)> {
    let linker = host::linker(engine).expect("the host links");
    let wasi = wasmtime_wasi::WasiCtxBuilder::new().build_p1();
    let limiter = host::MemoryLimit {
        limit: 1 << 20,
        hit: false,
    };
    let mut store = wasmtime::Store::new(engine, HostState::new(wasi, limiter, plugin(Vec::new())));
    let defined: Vec<(String, String, wasmtime::Extern)> = linker
        .iter(&mut store)
        .map(|(module, name, ext)| (module.to_string(), name.to_string(), ext))
        .collect();
    let mut out: Vec<_> = defined
        .into_iter()
        .filter_map(|(module, name, ext)| {
            let ty = ext.into_func()?.ty(&store);
            let params: Vec<ValType> = ty.params().collect();
            let results = ty.results().len();
            Some((module, name, params, results))
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// The driver module's text, importing `fns`.
fn driver_wat(fns: &[(String, String, Vec<ValType>, usize)]) -> String {
    let mut w = String::from("(module\n");
    for (i, (module, name, params, results)) in fns.iter().enumerate() {
        let _ = write!(w, "  (import \"{module}\" \"{name}\" (func $f{i} (param");
        for p in params {
            w.push_str(match p {
                ValType::I64 => " i64",
                ValType::F32 => " f32",
                ValType::F64 => " f64",
                _ => " i32",
            });
        }
        w.push_str(") (result");
        for _ in 0..*results {
            w.push_str(" i32");
        }
        w.push_str(")))\n");
    }
    let get_buffer = fns
        .iter()
        .position(|f| f.0 == "env" && f.1 == "proxy_get_buffer_bytes")
        .expect("the host defines proxy_get_buffer_bytes");
    let _ = write!(
        w,
        r#"
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $pc (mut i32) (i32.const 0))
  (global $end (mut i32) (i32.const 0))
  (global $base (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func $alloc (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32) (local $need i64) (local $size i64)
    global.get $heap i32.const 7 i32.add i32.const -8 i32.and local.set $p
    local.get $p i64.extend_i32_u local.get $n i64.extend_i32_u i64.add local.set $need
    memory.size i64.extend_i32_u i64.const 16 i64.shl local.set $size
    local.get $need local.get $size i64.gt_u
    if
      local.get $need local.get $size i64.sub i64.const 65535 i64.add i64.const 16 i64.shr_u
      i32.wrap_i64 memory.grow i32.const -1 i32.eq
      if i32.const 0 return end
    end
    local.get $need i32.wrap_i64 global.set $heap
    local.get $p)
  (func $byte (result i32) (local $b i32)
    global.get $pc global.get $end i32.ge_u
    if i32.const 0 return end
    global.get $pc i32.load8_u local.set $b
    global.get $pc i32.const 1 i32.add global.set $pc
    local.get $b)
  (func $word (result i32)
    call $byte
    call $byte i32.const 8 i32.shl i32.or
    call $byte i32.const 16 i32.shl i32.or
    call $byte i32.const 24 i32.shl i32.or)
  (func $arg (result i32) (local $mode i32) (local $v i32) (local $len i32)
    call $byte i32.const 6 i32.rem_u local.set $mode
    call $word local.set $v
    block $m5 block $m4 block $m3 block $m2 block $m1 block $m0
      local.get $mode br_table $m0 $m1 $m2 $m3 $m4 $m5 $m0
    end local.get $v return
    end
      global.get $end global.get $base i32.sub local.tee $len i32.eqz
      if global.get $base return end
      global.get $base local.get $v local.get $len i32.rem_u i32.add return
    end i32.const {SCRATCH} local.get $v i32.const 4092 i32.and i32.add return
    end local.get $v i32.const 63 i32.and return
    end i32.const {SCRATCH} local.get $v i32.const 4092 i32.and i32.add i32.load return
    end memory.size i32.const 16 i32.shl local.get $v i32.const 255 i32.and i32.sub)
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    i32.const 7 i32.const 0 local.get 1 i32.const 16 i32.const 20 call $f{get_buffer} drop
    i32.const 16 i32.load global.set $base
    global.get $base global.set $pc
    global.get $base i32.const 20 i32.load i32.add global.set $end
    call $run
    i32.const 1)
  (func (export "proxy_on_context_create") (param i32 i32) call $run)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) call $run i32.const 0)
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) call $run i32.const 0)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) call $run i32.const 0)
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) call $run i32.const 0)
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32) call $run)
  (func (export "proxy_on_redis_call_response") (param i32 i32 i32 i32) call $run)
  (func (export "proxy_on_tick") (param i32) call $run)
  (func (export "proxy_on_queue_ready") (param i32 i32) call $run)
  (func (export "proxy_on_done") (param i32) (result i32) call $run i32.const 1)
  (func (export "proxy_on_log") (param i32) call $run)
  (func (export "proxy_on_delete") (param i32) call $run)
  (func $run (local $op i32)
    loop $next
      global.get $pc global.get $end i32.ge_u
      if return end
      call $byte local.tee $op i32.const 255 i32.eq
      if return end
"#
    );
    // One block per function, innermost first: br_table jumps out of block `i` to call
    // function `i`.
    let n = fns.len();
    w.push_str("      ");
    for i in (0..n).rev() {
        let _ = write!(w, "block $c{i} ");
    }
    let _ = write!(w, "\n      local.get $op i32.const {n} i32.rem_u br_table");
    for i in 0..n {
        let _ = write!(w, " $c{i}");
    }
    w.push_str(" $c0\n");
    for (i, (_, _, params, results)) in fns.iter().enumerate() {
        let _ = write!(w, "      end ");
        for p in params {
            w.push_str(match p {
                ValType::I64 => "call $arg i64.extend_i32_s ",
                ValType::F32 => "call $arg f32.convert_i32_s ",
                ValType::F64 => "call $arg f64.convert_i32_s ",
                _ => "call $arg ",
            });
        }
        let _ = write!(w, "call $f{i} ");
        for _ in 0..*results {
            w.push_str("drop ");
        }
        w.push_str("br $next\n");
    }
    w.push_str("    end))\n");
    w
}

/// The script's function numbers: `module.name` of each function the driver imports,
/// in op order (for writing seeds).
pub fn wasm_host_functions() -> Vec<String> {
    let (rt, _) = runtime();
    host_functions(&rt.engine)
        .into_iter()
        .map(|(m, n, _, _)| format!("{m}.{n}"))
        .collect()
}

/// Queues registered by the driver have no one to tell.
struct NoOwner;

impl QueueOwner for NoOwner {
    fn queue_ready(&self, _root_id: u32, _queue_id: u32) {}
}

fn runtime() -> &'static (Arc<Runtime>, Arc<CompiledModule>) {
    static RT: OnceLock<(Arc<Runtime>, Arc<CompiledModule>)> = OnceLock::new();
    RT.get_or_init(|| {
        let limits = Limits {
            deadline: Duration::from_secs(2),
            // Small enough that the allocator's growth fails instead of using the host's
            // memory (the memory-limit path).
            memory: 64 << 20,
        };
        let rt = Runtime::new(limits, None, false).expect("the Wasm runtime starts");
        let wat = driver_wat(&host_functions(&rt.engine));
        let module = rt
            .compile(wat.as_bytes())
            .expect("the driver module compiles");
        (rt, module)
    })
}

/// The request lent to the callbacks, as a client would send it.
fn request() -> RequestHeader {
    let mut req = RequestHeader::build("POST", b"/api/items?id=7&q=a%20b", None).expect("request");
    for (k, v) in [
        ("host", "fuzz.test"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("content-type", "application/json"),
        ("x-request-id", "5f2b7c1e-8d3a-4f6b-9c2d-1a2b3c4d5e6f"),
        ("cookie", "a=1; b=2"),
    ] {
        req.append_header(k, v).expect("header");
    }
    req
}

fn response() -> ResponseHeader {
    let mut resp = ResponseHeader::build(200, None).expect("response");
    for (k, v) in [
        ("content-type", "application/json"),
        ("content-length", "17"),
        ("server", "backend"),
        ("set-cookie", "s=1; Path=/"),
    ] {
        resp.append_header(k, v).expect("header");
    }
    resp
}

/// The request still serializes as HTTP/1 and parses back with as many headers.
fn check_wire(req: &RequestHeader, resp: &ResponseHeader) {
    let mut buf = Vec::new();
    buf.extend_from_slice(req.method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(req.raw_path());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    req.header_to_h1_wire(&mut buf);
    buf.extend_from_slice(b"\r\n");
    let mut headers = vec![httparse::EMPTY_HEADER; req.headers.len() + 1];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, buf.len(), "request ends early"),
        other => panic!(
            "request no longer parses ({other:?}): {:?}",
            String::from_utf8_lossy(&buf)
        ),
    }
    assert_eq!(parsed.headers.len(), req.headers.len());
    let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
    resp.header_to_h1_wire(&mut buf);
    buf.extend_from_slice(b"\r\n");
    let mut headers = vec![httparse::EMPTY_HEADER; resp.headers.len() + 1];
    let mut parsed = httparse::Response::new(&mut headers);
    assert!(
        matches!(parsed.parse(&buf), Ok(httparse::Status::Complete(_))),
        "response no longer parses: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

/// Run one script (see the module doc) through a fresh VM and one request.
pub fn wasm_host(script: &[u8]) {
    let (rt, module) = runtime();
    let owner: Weak<dyn QueueOwner> = Weak::<NoOwner>::new();
    let Ok(mut vm) = PluginVm::start(rt, module, plugin(script.to_vec()), owner) else {
        // The script trapped or exited while configuring: the plugin is refused.
        return;
    };
    let mut req = request();
    let mut resp = response();
    let mut req_body = BytesMut::from(&b"{\"name\":\"fuzz\",\"n\":1}"[..]);
    let mut resp_body = BytesMut::from(&b"{\"ok\":true,\"n\":1}"[..]);
    let info = StreamInfo {
        route_name: Some("fuzz-route".into()),
        cluster_name: Some("outbound|80||be.static".into()),
        peer: Some(SocketAddr::from(([192, 0, 2, 7], 40_000))),
        local: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
        protocol: "HTTP/1.1",
        scheme: "http",
        start: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        connection_id: Some(3),
        upstream: Some(SocketAddr::from(([127, 0, 0, 1], 9000))),
        response_code: 200,
        request_size: 22,
        response_size: 17,
        ..Default::default()
    };
    // Each view is made right before its call, from the live objects.
    macro_rules! view {
        ($response:expr, $editable:expr, $req_body:expr, $resp_body:expr) => {
            StreamView {
                request: &mut req as *mut RequestHeader,
                response: $response,
                response_editable: $editable,
                request_body: $req_body,
                response_body: $resp_body,
                info: &info as *const StreamInfo,
            }
        };
    }
    // After each callback: the calls it made, and the request still well-formed; a
    // failed callback ends the VM's use, as the data plane drops a failed VM.
    let mut calls = Vec::new();
    macro_rules! step {
        ($call:expr) => {{
            let ok = $call.is_ok();
            calls.extend(vm.take_effects().calls);
            check_wire(&req, &resp);
            if !ok {
                return;
            }
        }};
    }
    let Ok(ctx) = vm.create_context() else {
        return;
    };
    let n = req.headers.len();
    step!(vm.on_request_headers(ctx, n, false, view!(None, false, None, None)));
    let len = req_body.len();
    let body = Some(&mut req_body as *mut BytesMut);
    step!(vm.on_request_body(ctx, len, true, view!(None, false, body, None)));
    let n = resp.headers.len();
    // From a `&mut`, as the data plane lends it: the host may edit it while editable.
    let r = Some(&mut resp as *mut ResponseHeader as *const ResponseHeader);
    step!(vm.on_response_headers(ctx, n, false, view!(r, true, None, None)));
    let len = resp_body.len();
    let body = Some(&mut resp_body as *mut BytesMut);
    step!(vm.on_response_body(ctx, len, true, view!(r, false, None, body)));
    // The calls the plugin made, answered (those answers may make more: a bounded few).
    for _ in 0..4 {
        for call in std::mem::take(&mut calls) {
            let answer = match call.request {
                CallRequest::Http(_) => CallAnswer::Http(Some(CallResponse {
                    headers: vec![
                        (b":status".to_vec(), b"200".to_vec()),
                        (b"content-type".to_vec(), b"text/plain".to_vec()),
                    ],
                    body: b"allowed".to_vec(),
                    trailers: vec![(b"grpc-status".to_vec(), b"0".to_vec())],
                })),
                CallRequest::Redis { .. } => {
                    CallAnswer::Redis(Some(bytes::Bytes::from_static(b":7\r\n")))
                }
            };
            let v = view!(r, false, None, None);
            step!(vm.on_call_response(call.token, answer, call.context, Some(v)));
        }
    }
    step!(vm.on_tick());
    step!(vm.on_queue_ready(1));
    step!(vm.finish(ctx, Some(view!(r, false, None, None))));
}
