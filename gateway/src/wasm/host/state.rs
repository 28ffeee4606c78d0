//! What a VM's host functions work on: the store data of one VM ([`HostState`]), what
//! every VM of a plugin shares ([`PluginShared`]), and the HTTP and Redis calls a plugin
//! makes.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::{Memory, ResourceLimiter, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::redis::{RedisClient, RedisOptions};
use crate::wasm::metrics::PluginMetrics;
use crate::wasm::shared::{QueueOwner, SharedSpace};
use crate::wasm::stream::{Actions, StreamView};

/// What every VM of one plugin (one config version) shares.
pub struct PluginShared {
    /// `<namespace>.<name>`: the `plugin_name` property and the log's plugin field.
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    /// The plugin configuration (JSON), buffer 7.
    pub config: Vec<u8>,
    /// The VM configuration, buffer 6.
    pub vm_config: Vec<u8>,
    /// The VM's WASI environment (`vmConfig.env`).
    pub env: Vec<(String, String)>,
    pub shared: Arc<SharedSpace>,
    pub metrics: Arc<PluginMetrics>,
    /// An endpoint of cluster `outbound|…` now (for `proxy_http_call`).
    pub resolve: Resolver,
    /// The value of `set_global_max_requests_per_io_cycle`, recorded (Pingora has no
    /// per-IO-cycle request limit to set).
    pub max_requests_per_io_cycle: AtomicU64,
    /// The Redis clients of `proxy_redis_init`, one per set of options, shared by the
    /// plugin's VMs (so by every worker thread): their connections are too.
    pub redis: RedisClients,
}

/// Redis clients by the options they were made with.
#[derive(Default)]
pub struct RedisClients(Mutex<HashMap<RedisOptions, RedisClient>>);

impl RedisClients {
    /// The client for `options`, made on first use.
    pub fn get(&self, options: RedisOptions) -> RedisClient {
        let mut clients = self.0.lock().unwrap();
        clients
            .entry(options)
            .or_insert_with_key(|o| RedisClient::new(o.clone()))
            .clone()
    }
}

/// Finds an endpoint of a cluster by name in the current config.
pub type Resolver = Arc<dyn Fn(&str) -> Option<SocketAddr> + Send + Sync>;

/// A call a plugin made (HTTP or Redis), to be sent once its callback has returned.
#[derive(Debug)]
pub struct PendingCall {
    pub token: u32,
    /// The context that made it (effective context at the time).
    pub context: u32,
    pub request: CallRequest,
}

#[derive(Debug)]
pub enum CallRequest {
    /// `proxy_http_call`.
    Http(HttpRequest),
    /// `proxy_redis_call`: one RESP-encoded command for `addr`.
    Redis {
        client: RedisClient,
        addr: SocketAddr,
        query: Bytes,
    },
}

#[derive(Debug)]
pub struct HttpRequest {
    pub cluster: String,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub timeout: Option<Duration>,
}

/// What comes back for a call; `None` is a failed call.
#[derive(Debug)]
pub enum CallAnswer {
    Http(Option<CallResponse>),
    /// The raw bytes of the one reply (an error reply included).
    Redis(Option<Bytes>),
}

/// The response of an HTTP call, readable while its callback runs.
#[derive(Debug, Default, Clone)]
pub struct CallResponse {
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The VM's memory limit; it records whether the limit was hit.
pub struct MemoryLimit {
    pub limit: usize,
    pub hit: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// The store data of one VM.
pub struct HostState {
    pub wasi: WasiP1Ctx,
    pub limiter: MemoryLimit,
    pub plugin: Arc<PluginShared>,
    pub memory: Option<Memory>,
    pub malloc: Option<TypedFunc<i32, i32>>,
    pub root_id: u32,
    /// The context host calls act on (reset at every guest call).
    pub effective: u32,
    /// The stream lent for this call, and its context.
    pub stream: Option<StreamView>,
    pub stream_ctx: u32,
    /// Live context ids (root included). Ids are the host's own: a fast hash (SipHash
    /// was a few hundred instructions per request here).
    pub contexts: HashSet<u32, foldhash::fast::RandomState>,
    /// Values set with `proxy_set_property`, per context, by raw path.
    pub props: HashMap<u32, HashMap<Vec<u8>, Vec<u8>>, foldhash::fast::RandomState>,
    pub actions: Actions,
    pub pending_calls: Vec<PendingCall>,
    pub next_token: u32,
    pub call_response: Option<CallResponse>,
    /// The Redis reply being delivered (buffer 9).
    pub redis_response: Option<Bytes>,
    /// The client `proxy_redis_init` chose for each cluster (its name without `?...`).
    pub redis_clusters: HashMap<String, RedisClient>,
    /// `proxy_get_status` of the last HTTP call: code and message.
    pub last_status: (u32, Vec<u8>),
    pub tick_ms: u32,
    pub queue_owner: Option<Weak<dyn QueueOwner>>,
    /// Host functions called that are not supported, each logged once.
    pub unimplemented: HashSet<&'static str>,
    /// `proxy_done` was called during the current `proxy_on_done`.
    pub done: bool,
    /// Contexts whose `proxy_on_done` returned false: deleted once they call `proxy_done`.
    pub awaiting_done: HashSet<u32>,
    /// Contexts that called `proxy_done` since, to delete after the current call.
    pub done_later: Vec<u32>,
    /// The first warnings and errors the plugin logged (why it refused its config, often).
    pub problems: Vec<String>,
    /// The plugin set `wasm_need_rebuild` to `true` (Higress's SDK does at a request count
    /// or a `plugin_vm_memory` threshold): new streams go to a new VM.
    pub need_rebuild: bool,
    /// Header names this VM edited lately (see `headers.rs`).
    pub(super) header_names: Vec<super::headers::KnownHeader>,
}

impl HostState {
    pub fn new(wasi: WasiP1Ctx, limiter: MemoryLimit, plugin: Arc<PluginShared>) -> Self {
        HostState {
            wasi,
            limiter,
            plugin,
            memory: None,
            malloc: None,
            root_id: 0,
            effective: 0,
            stream: None,
            stream_ctx: 0,
            contexts: HashSet::default(),
            props: HashMap::default(),
            actions: Actions::default(),
            pending_calls: Vec::new(),
            next_token: 0,
            call_response: None,
            redis_response: None,
            redis_clusters: HashMap::new(),
            last_status: (0, Vec::new()),
            tick_ms: 0,
            queue_owner: None,
            unimplemented: HashSet::new(),
            done: false,
            awaiting_done: HashSet::new(),
            done_later: Vec::new(),
            problems: Vec::new(),
            need_rebuild: false,
            header_names: Vec::new(),
        }
    }

    /// The stream the effective context names, if it is lent to this call.
    pub(super) fn view(&self) -> Option<StreamView> {
        self.stream
            .filter(|_| self.effective == self.stream_ctx && self.stream_ctx != 0)
    }
}
