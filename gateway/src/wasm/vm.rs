//! The Wasm runtime (one wasmtime engine, its epoch ticker and the linker) and one VM: an
//! instance of a plugin's module with its root context, following Proxy-Wasm's
//! lifecycle (`_initialize`, `proxy_on_context_create(root, 0)`, `proxy_on_vm_start`,
//! `proxy_on_configure`), then stream contexts and their callbacks.
//!
//! Every guest call runs under an epoch deadline and the VM's memory limit; a trap, a
//! deadline hit, the memory limit or the guest exiting (a Go panic ends in
//! `proc_exit(2)`) is a [`Failure`], after which the VM is not used again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, Instance, InstancePre, Linker, Module, Store, TypedFunc};

use telemetry::stats::Gauge;

use super::abi::AbiVersion;
use super::host::{
    self, CallAnswer, CallResponse, HostState, MemoryLimit, PendingCall, PluginShared,
};
use super::shared::QueueOwner;
use super::stream::{Actions, StreamView};

/// How often the engine's epoch advances: the unit of callback deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The least a VM's start-up (instantiation, `_initialize`, `proxy_on_vm_start`,
/// `proxy_on_configure`) may take. Envoy puts no bound on it, and plugins compile their
/// rules there (ai-data-masking's regexes take over a second on a busy 2-core machine);
/// a loop still ends instead of holding the thread forever.
const MIN_STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// The runtime's limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest a single guest call may run.
    pub deadline: Duration,
    /// Most linear memory one VM may have (bytes).
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(1),
            memory: 1 << 30,
        }
    }
}

pub struct Runtime {
    pub engine: Engine,
    /// The engine's configuration, for the short-lived engines that compile.
    config: Config,
    linker: Linker<HostState>,
    pub limits: Limits,
}

/// A module compiled once, ready to instantiate on any thread.
pub struct CompiledModule {
    pub pre: InstancePre<HostState>,
    pub abi: AbiVersion,
    pub sha256: String,
    /// `env` functions it imports, for `/debug/configz`.
    pub env_imports: Vec<String>,
    /// It exports `proxy_on_request_body` / `proxy_on_response_body`: without them body
    /// pieces pass the plugin without entering its VM.
    pub request_body: bool,
    pub response_body: bool,
}

impl Runtime {
    /// The runtime; `cache_dir` keeps compiled modules across restarts; `perf_map` writes
    /// `/tmp/perf-<pid>.map` for `perf`.
    pub fn new(
        limits: Limits,
        cache_dir: Option<&std::path::Path>,
        perf_map: bool,
    ) -> anyhow::Result<Arc<Runtime>> {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true);
        cfg.cranelift_opt_level(wasmtime::OptLevel::Speed);
        if perf_map {
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(dir) = cache_dir {
            // A cache that cannot be had only costs compile time.
            // wasmtime's cleanup deletes every file in its directory it did not write:
            // it gets a subdirectory of its own (pulled OCI images go beside it, `oci/`).
            let dir = &dir.join("compiled");
            let cache = std::fs::create_dir_all(dir)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    let mut cc = wasmtime::CacheConfig::new();
                    cc.with_directory(dir);
                    wasmtime::Cache::new(cc).map_err(|e| format!("{e:#}"))
                });
            match cache {
                Ok(c) => {
                    cfg.cache(Some(c));
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "no Wasm module cache; modules compile at every start")
                }
            }
        }
        let engine = Engine::new(&cfg)?;
        start_ticker(&engine);
        let linker = host::linker(&engine)?;
        Ok(Arc::new(Runtime {
            engine,
            config: cfg,
            linker,
            limits,
        }))
    }

    /// Compile `bytes` (binary or WAT) and check it is a Proxy-Wasm module the host can
    /// link.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, String> {
        let module = self.compile_apart(bytes)?;
        let abi =
            AbiVersion::from_exports(module.exports().map(|e| e.name())).ok_or_else(|| {
                "missing or unknown Proxy-Wasm ABI version (no proxy_abi_version_* export)"
                    .to_string()
            })?;
        let env_imports = module
            .imports()
            .filter(|i| i.module() == "env")
            .map(|i| i.name().to_string())
            .collect();
        let exports = |name: &str| module.exports().any(|e| e.name() == name);
        let (request_body, response_body) = (
            exports("proxy_on_request_body"),
            exports("proxy_on_response_body"),
        );
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| format!("cannot link the module: {e:#}"))?;
        Ok(Arc::new(CompiledModule {
            pre,
            abi,
            sha256: sha256_hex(bytes),
            env_imports,
            request_body,
            response_body,
        }))
    }
}

impl Runtime {
    /// Compile on an engine of its own, then load the result into the runtime's engine.
    /// Cranelift keeps its compile contexts in the engine for reuse, each as large as
    /// the largest function it compiled: for a Go plugin (6 MB of Wasm, some huge
    /// functions) that held about 30 MiB for good. A throw-away engine takes them with
    /// it; loading the compiled image costs a few milliseconds.
    fn compile_apart(&self, bytes: &[u8]) -> Result<Module, String> {
        let compiled =
            Engine::new(&self.config).and_then(|engine| Module::new(&engine, bytes)?.serialize());
        let image = match compiled {
            Ok(image) => image,
            // The runtime's engine says what is wrong with the module.
            Err(_) => {
                return Module::new(&self.engine, bytes)
                    .map_err(|e| format!("not a Wasm module: {e:#}"))
            }
        };
        // mimalloc returns a thread's freed pages when that thread next allocates; the
        // compile threads (rayon's pool) sit idle from now on, so ask them now.
        // SAFETY: mi_collect only tidies the calling thread's own heap.
        unsafe { libmimalloc_sys::mi_collect(true) };
        rayon::broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
        // SAFETY: `image` was serialized a moment ago by an engine of the same config.
        match unsafe { Module::deserialize(&self.engine, &image) } {
            Ok(m) => Ok(m),
            Err(e) => {
                tracing::warn!(error = %e, "a compiled module did not load; compiling it again");
                Module::new(&self.engine, bytes).map_err(|e| format!("not a Wasm module: {e:#}"))
            }
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    openssl::sha::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn start_ticker(engine: &Engine) {
    // One ticker per process is enough; engines created later (tests) share it through
    // their own weak handles.
    static ENGINES: OnceLock<std::sync::Mutex<Vec<wasmtime::EngineWeak>>> = OnceLock::new();
    static STARTED: AtomicBool = AtomicBool::new(false);
    ENGINES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(engine.weak());
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(|| loop {
            std::thread::sleep(EPOCH_TICK);
            let mut engines = ENGINES
                .get()
                .expect("set before the thread starts")
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            engines.retain(|w| match w.upgrade() {
                Some(e) => {
                    e.increment_epoch();
                    true
                }
                None => false,
            });
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "no epoch ticker: Wasm callback deadlines are off");
    }
}

/// Why a guest call failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The call ran past the deadline.
    Deadline,
    /// The VM wanted more memory than its limit.
    Memory,
    /// The guest exited (`proc_exit`), e.g. a Go panic.
    Exit(i32),
    /// Any other trap (unreachable, out-of-bounds access, ...).
    Trap(String),
}

impl Failure {
    /// The `reason` label of `gateway_wasm_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Deadline => "deadline",
            Failure::Memory => "memory",
            Failure::Exit(_) => "exit",
            Failure::Trap(_) => "trap",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Deadline => f.write_str("callback ran past its deadline"),
            Failure::Memory => f.write_str("VM hit its memory limit"),
            Failure::Exit(c) => write!(f, "guest exited with code {c}"),
            Failure::Trap(m) => write!(f, "trap: {m}"),
        }
    }
}

macro_rules! export {
    ($store:expr, $inst:expr, $name:literal) => {
        $inst.get_typed_func(&mut *$store, $name).ok().map(Arc::new)
    };
}

/// An export, shared: each call takes a handle while it lends the store. Cloning a
/// `TypedFunc` itself clones its registered type (two atomics and a registry check on
/// clone and drop, ~100 instructions per call).
type Export<P, R> = Arc<TypedFunc<P, R>>;

/// `proxy_on_{request,response}_{headers,body}(context, size, end_of_stream)`.
type StreamFn = Export<(i32, i32, i32), i32>;

/// `proxy_on_http_call_response(root, token, headers, body, trailers)`.
type CallResponseFn = Export<(i32, i32, i32, i32, i32), ()>;

struct Exports {
    on_context_create: Option<Export<(i32, i32), ()>>,
    on_vm_start: Option<Export<(i32, i32), i32>>,
    on_configure: Option<Export<(i32, i32), i32>>,
    on_request_headers: Option<StreamFn>,
    on_request_body: Option<StreamFn>,
    on_response_headers: Option<StreamFn>,
    on_response_body: Option<StreamFn>,
    on_log: Option<Export<i32, ()>>,
    on_done: Option<Export<i32, i32>>,
    on_delete: Option<Export<i32, ()>>,
    on_http_call_response: Option<CallResponseFn>,
    /// `proxy_on_redis_call_response(root, token, status, response_size)`.
    on_redis_call_response: Option<Export<(i32, i32, i32, i32), ()>>,
    on_tick: Option<Export<i32, ()>>,
    on_queue_ready: Option<Export<(i32, i32), ()>>,
}

/// What one guest call left for the host to carry out.
#[derive(Debug, Default)]
pub struct Effects {
    pub actions: Actions,
    pub calls: Vec<PendingCall>,
}

pub struct PluginVm {
    store: Store<HostState>,
    f: Exports,
    abi: AbiVersion,
    root: u32,
    next_id: u32,
    deadline_ticks: u64,
    /// Linear memory size last added to the plugin's memory gauge (bytes).
    reported_memory: u64,
}

impl PluginVm {
    /// Instantiate `module` and bring its root context up with the plugin's config.
    /// Errors say which step failed (a config the plugin refuses among them). `queues`:
    /// who hears of items on the queues this VM registers.
    pub fn start(
        rt: &Runtime,
        module: &CompiledModule,
        plugin: Arc<PluginShared>,
        queues: std::sync::Weak<dyn QueueOwner>,
    ) -> Result<PluginVm, String> {
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .envs(&plugin.env)
            .build_p1();
        let limiter = MemoryLimit {
            limit: rt.limits.memory,
            hit: false,
        };
        let mut store = Store::new(&rt.engine, HostState::new(wasi, limiter, plugin.clone()));
        store.limiter(|h| &mut h.limiter);
        // Plugins register their queues while they configure.
        store.data_mut().queue_owner = Some(queues);
        let ticks = |d: Duration| (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        let deadline_ticks = ticks(rt.limits.deadline);
        let startup_ticks = ticks(rt.limits.deadline.max(MIN_STARTUP_DEADLINE));
        store.set_epoch_deadline(startup_ticks);
        store.epoch_deadline_trap();
        let instance: Instance = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("instantiating: {e:#}"))?;
        let memory = instance.get_memory(&mut store, "memory");
        let malloc = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"))
            .ok();
        let missing = memory.is_none() || malloc.is_none();
        {
            let h = store.data_mut();
            h.memory = memory;
            h.malloc = malloc;
        }
        if missing {
            return Err(
                "the module exports no memory or no proxy_on_memory_allocate/malloc".into(),
            );
        }
        // Reactor modules (Go, Rust) initialize; command modules (TinyGo) run `_start`.
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ())
                .map_err(|e| format!("_initialize: {}", classify(&e, &store)))?;
        } else if let Ok(start) = instance.get_typed_func::<(), ()>(&mut store, "_start") {
            if let Err(e) = start.call(&mut store, ()) {
                if !matches!(e.downcast_ref::<wasmtime_wasi::I32Exit>(), Some(x) if x.0 == 0) {
                    return Err(format!("_start: {}", classify(&e, &store)));
                }
            }
        }
        let f = Exports {
            on_context_create: export!(&mut store, instance, "proxy_on_context_create"),
            on_vm_start: export!(&mut store, instance, "proxy_on_vm_start"),
            on_configure: export!(&mut store, instance, "proxy_on_configure"),
            on_request_headers: export!(&mut store, instance, "proxy_on_request_headers"),
            on_request_body: export!(&mut store, instance, "proxy_on_request_body"),
            on_response_headers: export!(&mut store, instance, "proxy_on_response_headers"),
            on_response_body: export!(&mut store, instance, "proxy_on_response_body"),
            on_log: export!(&mut store, instance, "proxy_on_log"),
            on_done: export!(&mut store, instance, "proxy_on_done"),
            on_delete: export!(&mut store, instance, "proxy_on_delete"),
            on_http_call_response: export!(&mut store, instance, "proxy_on_http_call_response"),
            on_redis_call_response: export!(&mut store, instance, "proxy_on_redis_call_response"),
            on_tick: export!(&mut store, instance, "proxy_on_tick"),
            on_queue_ready: export!(&mut store, instance, "proxy_on_queue_ready"),
        };
        let mut vm = PluginVm {
            store,
            f,
            abi: module.abi,
            root: 1,
            next_id: 2,
            deadline_ticks: startup_ticks,
            reported_memory: 0,
        };
        vm.store.data_mut().root_id = 1;
        vm.store.data_mut().contexts.insert(1);
        if let Some(create) = vm.f.on_context_create.clone() {
            vm.call(1, None, |s| create.call(s, (1, 0)))
                .map_err(|e| format!("proxy_on_context_create(root): {e}"))?;
        }
        if let Some(start) = vm.f.on_vm_start.clone() {
            let n = plugin.vm_config.len() as i32;
            let ok = vm
                .call(1, None, |s| start.call(s, (1, n)))
                .map_err(|e| format!("proxy_on_vm_start: {e}"))?;
            if ok == 0 {
                return Err(
                    "the plugin refused to start (proxy_on_vm_start returned false)".into(),
                );
            }
        }
        if let Some(configure) = vm.f.on_configure.clone() {
            let n = plugin.config.len() as i32;
            let ok = vm
                .call(1, None, |s| configure.call(s, (1, n)))
                .map_err(|e| format!("proxy_on_configure: {e}"))?;
            if ok == 0 {
                let problems = std::mem::take(&mut vm.store.data_mut().problems);
                return Err(if problems.is_empty() {
                    "the plugin rejected its configuration (proxy_on_configure returned false)"
                        .into()
                } else {
                    format!(
                        "the plugin rejected its configuration: {}",
                        problems.join("; ")
                    )
                });
            }
        }
        // Later warnings are the requests', not the configuration's.
        vm.store.data_mut().problems.clear();
        vm.deadline_ticks = deadline_ticks;
        Ok(vm)
    }

    pub fn abi(&self) -> AbiVersion {
        self.abi
    }

    pub fn root_id(&self) -> u32 {
        self.root
    }

    /// The tick period the plugin asked for (0: none).
    pub fn tick_ms(&self) -> u32 {
        self.store.data().tick_ms
    }

    /// Run one guest call for context `ctx`, with `view` lent for its length.
    fn call<R>(
        &mut self,
        ctx: u32,
        view: Option<StreamView>,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, Failure> {
        {
            let h = self.store.data_mut();
            h.effective = ctx;
            h.stream = view;
            h.stream_ctx = if view.is_some() { ctx } else { 0 };
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        let r = f(&mut self.store);
        self.store.data_mut().stream = None;
        let r = r.map_err(|e| classify(&e, &self.store))?;
        // Contexts that called `proxy_done` during this call are deleted now.
        for done in std::mem::take(&mut self.store.data_mut().done_later) {
            self.delete(done)?;
        }
        Ok(r)
    }

    /// The plugin asked for a new VM (`wasm_need_rebuild`).
    pub fn wants_rebuild(&self) -> bool {
        self.store.data().need_rebuild
    }

    /// Bring `gauge` up to date with this VM's linear memory size (it only grows).
    pub fn report_memory(&mut self, gauge: &Gauge) {
        let now = self
            .store
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.store) as u64);
        let before = std::mem::replace(&mut self.reported_memory, now);
        if now != before {
            gauge.add(now as i64 - before as i64);
        }
    }

    /// What [`Self::report_memory`] last reported.
    pub fn reported_memory(&self) -> u64 {
        self.reported_memory
    }

    /// Stream contexts not deleted yet (those waiting for `proxy_done` included).
    pub fn live_streams(&self) -> usize {
        let h = self.store.data();
        h.contexts.iter().filter(|&&c| c != h.root_id).count()
    }

    /// What the last calls asked for (actions and HTTP calls), taken.
    pub fn take_effects(&mut self) -> Effects {
        let h = self.store.data_mut();
        Effects {
            actions: std::mem::take(&mut h.actions),
            calls: std::mem::take(&mut h.pending_calls),
        }
    }

    /// A new stream context.
    pub fn create_context(&mut self) -> Result<u32, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        self.store.data_mut().contexts.insert(id);
        let root = self.root as i32;
        if let Some(create) = self.f.on_context_create.clone() {
            self.call(id, None, |s| create.call(s, (id as i32, root)))?;
        }
        Ok(id)
    }

    /// A stream callback `(context, size, end_of_stream) -> action`; headers callbacks'
    /// results are read through the ABI version.
    fn stream_call(
        &mut self,
        f: Option<StreamFn>,
        ctx: u32,
        size: usize,
        eos: bool,
        view: StreamView,
        headers: bool,
    ) -> Result<i32, Failure> {
        let Some(f) = f else {
            return Ok(0);
        };
        let abi = self.abi;
        self.call(ctx, Some(view), |s| {
            f.call(s, (ctx as i32, size as i32, eos as i32))
        })
        .map(|r| if headers { abi.headers_result(r) } else { r })
    }

    pub fn on_request_headers(
        &mut self,
        ctx: u32,
        n: usize,
        eos: bool,
        view: StreamView,
    ) -> Result<i32, Failure> {
        let f = self.f.on_request_headers.clone();
        self.stream_call(f, ctx, n, eos, view, true)
    }

    pub fn on_request_body(
        &mut self,
        ctx: u32,
        len: usize,
        eos: bool,
        view: StreamView,
    ) -> Result<i32, Failure> {
        let f = self.f.on_request_body.clone();
        self.stream_call(f, ctx, len, eos, view, false)
    }

    pub fn on_response_headers(
        &mut self,
        ctx: u32,
        n: usize,
        eos: bool,
        view: StreamView,
    ) -> Result<i32, Failure> {
        let f = self.f.on_response_headers.clone();
        self.stream_call(f, ctx, n, eos, view, true)
    }

    pub fn on_response_body(
        &mut self,
        ctx: u32,
        len: usize,
        eos: bool,
        view: StreamView,
    ) -> Result<i32, Failure> {
        let f = self.f.on_response_body.clone();
        self.stream_call(f, ctx, len, eos, view, false)
    }

    /// A call's answer, to the root context (`view` lent when the calling stream still
    /// waits).
    pub fn on_call_response(
        &mut self,
        token: u32,
        answer: CallAnswer,
        ctx: u32,
        view: Option<StreamView>,
    ) -> Result<(), Failure> {
        match answer {
            CallAnswer::Http(response) => self.on_http_call_response(token, response, ctx, view),
            CallAnswer::Redis(reply) => self.on_redis_call_response(token, reply, ctx, view),
        }
    }

    /// An HTTP call's response; `None` is a failed call.
    fn on_http_call_response(
        &mut self,
        token: u32,
        response: Option<CallResponse>,
        ctx: u32,
        view: Option<StreamView>,
    ) -> Result<(), Failure> {
        let Some(f) = self.f.on_http_call_response.clone() else {
            return Ok(());
        };
        let (nh, nb, nt, status) = match &response {
            Some(r) => {
                let status = r
                    .headers
                    .iter()
                    .find(|(k, _)| k.as_slice() == b":status")
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
                    .unwrap_or(0);
                (r.headers.len(), r.body.len(), r.trailers.len(), status)
            }
            None => (0, 0, 0, 0),
        };
        {
            let h = self.store.data_mut();
            h.call_response = Some(response.unwrap_or_default());
            h.last_status = (status, Vec::new());
        }
        let root = self.root as i32;
        let r = self.root_callback(ctx, view, |store| {
            f.call(store, (root, token as i32, nh as i32, nb as i32, nt as i32))
        });
        self.store.data_mut().call_response = None;
        r
    }

    /// A Redis call's reply, readable as buffer 9 during the callback: status 0 and its
    /// size, or 1 (`NetworkError`) and 0 for a failed call, as Higress's Envoy.
    fn on_redis_call_response(
        &mut self,
        token: u32,
        reply: Option<bytes::Bytes>,
        ctx: u32,
        view: Option<StreamView>,
    ) -> Result<(), Failure> {
        let Some(f) = self.f.on_redis_call_response.clone() else {
            return Ok(());
        };
        let (status, size) = match &reply {
            Some(r) => (0, r.len()),
            None => (1, 0),
        };
        self.store.data_mut().redis_response = reply;
        let root = self.root as i32;
        let r = self.root_callback(ctx, view, |store| {
            f.call(store, (root, token as i32, status, size as i32))
        });
        self.store.data_mut().redis_response = None;
        r
    }

    /// Runs `call` on the root context, with the stream's view lent under its own id.
    fn root_callback(
        &mut self,
        ctx: u32,
        view: Option<StreamView>,
        call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<()>,
    ) -> Result<(), Failure> {
        let h = self.store.data_mut();
        h.effective = self.root;
        h.stream = view;
        h.stream_ctx = if view.is_some() { ctx } else { 0 };
        self.store.set_epoch_deadline(self.deadline_ticks);
        let r = call(&mut self.store);
        self.store.data_mut().stream = None;
        r.map_err(|e| classify(&e, &self.store))
    }

    pub fn on_tick(&mut self) -> Result<(), Failure> {
        let Some(f) = self.f.on_tick.clone() else {
            return Ok(());
        };
        let root = self.root;
        self.call(root, None, |s| f.call(s, root as i32))
    }

    pub fn on_queue_ready(&mut self, queue: u32) -> Result<(), Failure> {
        let Some(f) = self.f.on_queue_ready.clone() else {
            return Ok(());
        };
        let root = self.root;
        self.call(root, None, |s| f.call(s, (root as i32, queue as i32)))
    }

    /// The stream is over: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    pub fn finish(&mut self, ctx: u32, view: Option<StreamView>) -> Result<(), Failure> {
        if let Some(f) = self.f.on_log.clone() {
            self.call(ctx, view, |s| f.call(s, ctx as i32))?;
        }
        if let Some(f) = self.f.on_done.clone() {
            self.store.data_mut().done = false;
            let finished = self.call(ctx, None, |s| f.call(s, ctx as i32))?;
            if finished == 0 && !self.store.data().done {
                // The plugin finishes later and says so with `proxy_done`.
                self.store.data_mut().awaiting_done.insert(ctx);
                return Ok(());
            }
        }
        self.delete(ctx)
    }

    fn delete(&mut self, ctx: u32) -> Result<(), Failure> {
        if let Some(f) = self.f.on_delete.clone() {
            self.call(ctx, None, |s| f.call(s, ctx as i32))?;
        }
        let h = self.store.data_mut();
        h.contexts.remove(&ctx);
        h.props.remove(&ctx);
        Ok(())
    }
}

fn classify(e: &wasmtime::Error, store: &Store<HostState>) -> Failure {
    if store.data().limiter.hit {
        return Failure::Memory;
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Failure::Exit(exit.0);
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => Failure::Deadline,
        // The trap's one-line reason; the backtrace goes to the debug log.
        Some(trap) => {
            tracing::debug!(error = ?e, "Wasm trap");
            Failure::Trap(trap.to_string())
        }
        None => Failure::Trap(e.root_cause().to_string()),
    }
}
