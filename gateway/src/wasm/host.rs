//! The host side of the Proxy-Wasm ABI: the store data of a VM ([`HostState`]) and every
//! `env` function a Higress plugin (Go, Rust or C++ SDK) imports, plus WASI preview 1.
//!
//! WASI comes from `wasmtime-wasi`, except the functions whose wasmtime-wasi versions
//! run a tokio `block_on` (file and poll operations): guest calls run on the data plane's
//! tokio threads, where that panics, so those are defined here without tokio. Plugins
//! have no files: stdout and stderr go to the gateway log, everything else is `EBADF`;
//! `poll_oneoff` returns at once (Go's `usleep` needs success, not sleep), as Higress's
//! host does.
//!
//! Host functions the gateway does not support yet (gRPC calls, Redis, data injection,
//! upstream host override) are linked and return `Unimplemented` (12), logged once per
//! VM, so modules of every SDK instantiate. See `docs/wasm.md`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use http::{HeaderName, HeaderValue};
use wasmtime::{Caller, Linker, Memory, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::abi::{self, buffer, map, Status};
use super::metrics::PluginMetrics;
use super::properties::{self, PluginFacts};
use super::shared::{QueueOwner, SharedSpace};
use super::stream::{Actions, LocalResponse, StreamView};

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
    pub max_requests_per_io_cycle: std::sync::atomic::AtomicU64,
}

/// Finds an endpoint of a cluster by name in the current config.
pub type Resolver = Arc<dyn Fn(&str) -> Option<std::net::SocketAddr> + Send + Sync>;

/// An HTTP call a plugin made, to be sent once its callback has returned.
#[derive(Debug)]
pub struct PendingCall {
    pub token: u32,
    /// The context that made it (effective context at the time).
    pub context: u32,
    pub cluster: String,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub timeout: Option<Duration>,
}

/// The response of an HTTP call, readable while its callback runs.
#[derive(Debug, Default, Clone)]
pub struct CallResponse {
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The store data of one VM.
pub struct HostState {
    pub wasi: WasiP1Ctx,
    pub limiter: super::vm::MemoryLimit,
    pub plugin: Arc<PluginShared>,
    pub memory: Option<Memory>,
    pub malloc: Option<TypedFunc<i32, i32>>,
    pub root_id: u32,
    /// The context host calls act on (reset at every guest call).
    pub effective: u32,
    /// The stream lent for this call, and its context.
    pub stream: Option<StreamView>,
    pub stream_ctx: u32,
    /// Live context ids (root included).
    pub contexts: HashSet<u32>,
    /// Values set with `proxy_set_property`, per context, by raw path.
    pub props: HashMap<u32, HashMap<Vec<u8>, Vec<u8>>>,
    pub actions: Actions,
    pub pending_calls: Vec<PendingCall>,
    pub next_token: u32,
    pub call_response: Option<CallResponse>,
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
}

impl HostState {
    pub fn new(
        wasi: WasiP1Ctx,
        limiter: super::vm::MemoryLimit,
        plugin: Arc<PluginShared>,
    ) -> Self {
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
            contexts: HashSet::new(),
            props: HashMap::new(),
            actions: Actions::default(),
            pending_calls: Vec::new(),
            next_token: 0,
            call_response: None,
            last_status: (0, Vec::new()),
            tick_ms: 0,
            queue_owner: None,
            unimplemented: HashSet::new(),
            done: false,
            awaiting_done: HashSet::new(),
            done_later: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The stream the effective context names, if it is lent to this call.
    fn view(&self) -> Option<StreamView> {
        self.stream
            .filter(|_| self.effective == self.stream_ctx && self.stream_ctx != 0)
    }
}

type Ret = wasmtime::Result<i32>;

fn ok(s: Status) -> Ret {
    Ok(s as i32)
}

fn mem(caller: &Caller<'_, HostState>) -> Result<Memory, Status> {
    caller.data().memory.ok_or(Status::InvalidMemoryAccess)
}

/// A copy of guest memory `[ptr, ptr+len)`; `(0, 0)` is empty.
fn read(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
    let (p, l) = (ptr as u32 as usize, len as u32 as usize);
    if l == 0 {
        return Ok(Vec::new());
    }
    let m = mem(caller)?;
    m.data(caller)
        .get(p..p.checked_add(l).ok_or(Status::InvalidMemoryAccess)?)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

fn read_str(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Result<String, Status> {
    String::from_utf8(read(caller, ptr, len)?).map_err(|_| Status::BadArgument)
}

fn write(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> Result<(), Status> {
    let m = mem(caller)?;
    let p = ptr as u32 as usize;
    m.data_mut(caller)
        .get_mut(p..p + bytes.len())
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

fn write_u32(caller: &mut Caller<'_, HostState>, ptr: i32, v: u32) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

fn write_u64(caller: &mut Caller<'_, HostState>, ptr: i32, v: u64) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Hand `bytes` to the guest: its allocator gives the buffer (never for 0 bytes), then
/// the pointer and size go to `ptr_ptr` and `size_ptr`. The allocator may run the guest's
/// GC and WASI calls; a trap in it is the caller's trap.
fn give(caller: &mut Caller<'_, HostState>, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> Ret {
    if bytes.is_empty() {
        return Ok(
            match write_u32(caller, ptr_ptr, 0).and(write_u32(caller, size_ptr, 0)) {
                Ok(()) => Status::Ok as i32,
                Err(s) => s as i32,
            },
        );
    }
    let Some(malloc) = caller.data().malloc.clone() else {
        return ok(Status::InvalidMemoryAccess);
    };
    let addr = malloc.call(&mut *caller, bytes.len() as i32)?;
    if addr == 0 {
        return ok(Status::InvalidMemoryAccess);
    }
    // Memory may have grown (and moved) during the allocator: write through a fresh view.
    let r = write(caller, addr, bytes)
        .and_then(|()| write_u32(caller, ptr_ptr, addr as u32))
        .and_then(|()| write_u32(caller, size_ptr, bytes.len() as u32));
    Ok(match r {
        Ok(()) => Status::Ok as i32,
        Err(s) => s as i32,
    })
}

/// `Result<T, Status>` to a status code, for host functions without returned data.
fn code(r: Result<(), Status>) -> Ret {
    Ok(match r {
        Ok(()) => Status::Ok as i32,
        Err(s) => s as i32,
    })
}

fn unimplemented(caller: &mut Caller<'_, HostState>, name: &'static str) -> Ret {
    if caller.data_mut().unimplemented.insert(name) {
        tracing::warn!(plugin = %caller.data().plugin.name, function = name, "Wasm host function not supported yet; it returns Unimplemented");
    }
    ok(Status::Unimplemented)
}

/// The host's log level as the ABI numbers it (0 trace .. 4 error).
pub fn host_log_level() -> u32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        _ => 4,
    }
}

fn log(plugin: &str, level: i32, msg: &str) {
    match level {
        0 => tracing::trace!(target: "wasm_plugin", plugin, "{msg}"),
        1 => tracing::debug!(target: "wasm_plugin", plugin, "{msg}"),
        2 => tracing::info!(target: "wasm_plugin", plugin, "{msg}"),
        3 => tracing::warn!(target: "wasm_plugin", plugin, "{msg}"),
        _ => tracing::error!(target: "wasm_plugin", plugin, "{msg}"),
    }
}

// ---------------------------------------------------------------- header maps

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

/// A request pseudo-header's value.
fn request_pseudo(v: &StreamView, name: &[u8]) -> Option<Vec<u8>> {
    // SAFETY: inside the guest call the view was lent for.
    let (req, info) = unsafe { (v.request(), v.info()) };
    match name {
        b":method" => Some(req.method.as_str().as_bytes().to_vec()),
        b":path" => Some(
            req.uri
                .path_and_query()
                .map_or(req.uri.path(), |p| p.as_str())
                .as_bytes()
                .to_vec(),
        ),
        b":authority" => req
            .headers
            .get(http::header::HOST)
            .map(|h| h.as_bytes().to_vec())
            .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes().to_vec())),
        b":scheme" => Some(info.scheme.as_bytes().to_vec()),
        _ => None,
    }
}

fn set_request_pseudo(v: &StreamView, name: &[u8], value: &[u8]) -> Result<(), Status> {
    // SAFETY: as above.
    let req = unsafe { v.request() };
    match name {
        b":method" => {
            let m = http::Method::from_bytes(value).map_err(|_| Status::BadArgument)?;
            req.set_method(m);
        }
        b":path" => {
            let pq = http::uri::PathAndQuery::try_from(value).map_err(|_| Status::BadArgument)?;
            let mut parts = req.uri.clone().into_parts();
            parts.path_and_query = Some(pq);
            let uri = http::Uri::from_parts(parts).map_err(|_| Status::BadArgument)?;
            req.set_uri(uri);
        }
        b":authority" => {
            let hv = HeaderValue::from_bytes(value).map_err(|_| Status::BadArgument)?;
            if req.uri.authority().is_some() {
                let mut parts = req.uri.clone().into_parts();
                parts.authority =
                    Some(http::uri::Authority::try_from(value).map_err(|_| Status::BadArgument)?);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    req.set_uri(uri);
                }
            }
            req.insert_header(http::header::HOST, hv)
                .map_err(|_| Status::BadArgument)?;
        }
        // `:scheme` is the listener's; other pseudo names are not ours to set.
        _ => {}
    }
    Ok(())
}

/// The first value of `key` (lowercase) in a map, without building the whole map.
fn map_value(state: &HostState, map_type: i32, key: &[u8]) -> Result<Option<Vec<u8>>, Status> {
    match map_type {
        map::REQUEST_HEADERS => {
            let v = state.view().ok_or(Status::BadArgument)?;
            if key.starts_with(b":") {
                return Ok(request_pseudo(&v, key));
            }
            if key == b"host" {
                return Ok(None);
            }
            let Ok(name) = HeaderName::from_bytes(key) else {
                return Ok(None);
            };
            // SAFETY: inside the lent call.
            let req = unsafe { v.request() };
            Ok(req.headers.get(name).map(|h| h.as_bytes().to_vec()))
        }
        map::RESPONSE_HEADERS => {
            let v = state.view().ok_or(Status::BadArgument)?;
            // SAFETY: as above.
            let resp = unsafe { v.response() }.ok_or(Status::BadArgument)?;
            if key == b":status" {
                return Ok(Some(resp.status.as_str().as_bytes().to_vec()));
            }
            let Ok(name) = HeaderName::from_bytes(key) else {
                return Ok(None);
            };
            Ok(resp.headers.get(name).map(|h| h.as_bytes().to_vec()))
        }
        _ => Ok(map_pairs(state, map_type)?
            .into_iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, v)| v)),
    }
}

/// Pingora's request and response headers, edited alike.
trait HeaderEdits {
    fn add(&mut self, name: HeaderName, value: HeaderValue) -> bool;
    fn put(&mut self, name: HeaderName, value: HeaderValue) -> bool;
    fn drop_header(&mut self, name: &HeaderName);
}

impl HeaderEdits for pingora_http::RequestHeader {
    fn add(&mut self, name: HeaderName, value: HeaderValue) -> bool {
        self.append_header(name, value).is_ok()
    }
    fn put(&mut self, name: HeaderName, value: HeaderValue) -> bool {
        self.insert_header(name, value).is_ok()
    }
    fn drop_header(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

impl HeaderEdits for pingora_http::ResponseHeader {
    fn add(&mut self, name: HeaderName, value: HeaderValue) -> bool {
        self.append_header(name, value).is_ok()
    }
    fn put(&mut self, name: HeaderName, value: HeaderValue) -> bool {
        self.insert_header(name, value).is_ok()
    }
    fn drop_header(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

fn apply_edit(h: &mut impl HeaderEdits, name: HeaderName, edit: Edit) -> Result<(), Status> {
    let value = |v: &[u8]| HeaderValue::from_bytes(v).map_err(|_| Status::BadArgument);
    let ok = match edit {
        Edit::Add(v) => h.add(name, value(v)?),
        Edit::Replace(v) => h.put(name, value(v)?),
        Edit::Remove => {
            h.drop_header(&name);
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Status::BadArgument)
    }
}

/// The entries of a map, pseudo-headers first, as `(name, value)`.
fn map_pairs(state: &HostState, map_type: i32) -> Result<super::abi::Pairs, Status> {
    let header_pairs = |h: &http::HeaderMap| -> Vec<(Vec<u8>, Vec<u8>)> {
        h.iter()
            .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    };
    match map_type {
        map::REQUEST_HEADERS => {
            let v = state.view().ok_or(Status::BadArgument)?;
            let mut out = Vec::new();
            for p in [&b":authority"[..], b":path", b":method", b":scheme"] {
                if let Some(val) = request_pseudo(&v, p) {
                    out.push((p.to_vec(), val));
                }
            }
            // SAFETY: inside the lent call.
            let req = unsafe { v.request() };
            out.extend(
                header_pairs(&req.headers)
                    .into_iter()
                    .filter(|(k, _)| k.as_slice() != b"host"),
            );
            Ok(out)
        }
        map::RESPONSE_HEADERS => {
            let v = state.view().ok_or(Status::BadArgument)?;
            // SAFETY: as above.
            let resp = unsafe { v.response() }.ok_or(Status::BadArgument)?;
            let mut out = vec![(
                b":status".to_vec(),
                resp.status.as_str().as_bytes().to_vec(),
            )];
            out.extend(header_pairs(&resp.headers));
            Ok(out)
        }
        map::HTTP_CALL_RESPONSE_HEADERS => Ok(state
            .call_response
            .as_ref()
            .ok_or(Status::BadArgument)?
            .headers
            .clone()),
        map::HTTP_CALL_RESPONSE_TRAILERS => Ok(state
            .call_response
            .as_ref()
            .ok_or(Status::BadArgument)?
            .trailers
            .clone()),
        // No trailers or gRPC metadata reach plugins yet: empty maps.
        map::REQUEST_TRAILERS
        | map::RESPONSE_TRAILERS
        | map::GRPC_INITIAL_METADATA
        | map::GRPC_TRAILING_METADATA => Ok(Vec::new()),
        _ => Err(Status::BadArgument),
    }
}

enum Edit<'a> {
    Add(&'a [u8]),
    Replace(&'a [u8]),
    Remove,
}

fn edit_header(
    state: &mut HostState,
    map_type: i32,
    key: &[u8],
    edit: Edit<'_>,
) -> Result<(), Status> {
    let key = lower(key);
    let v = match map_type {
        map::REQUEST_HEADERS | map::RESPONSE_HEADERS => state.view().ok_or(Status::BadArgument)?,
        map::REQUEST_TRAILERS | map::RESPONSE_TRAILERS => return Err(Status::NotFound),
        map::HTTP_CALL_RESPONSE_HEADERS | map::HTTP_CALL_RESPONSE_TRAILERS => {
            return Err(Status::BadArgument)
        }
        _ => return Err(Status::BadArgument),
    };
    if map_type == map::REQUEST_HEADERS {
        state.actions.request_headers_changed = true;
        if key.starts_with(b":") {
            return match edit {
                Edit::Add(val) | Edit::Replace(val) => set_request_pseudo(&v, &key, val),
                Edit::Remove => Ok(()),
            };
        }
    }
    if map_type == map::RESPONSE_HEADERS && key == b":status" {
        if let Edit::Add(val) | Edit::Replace(val) = edit {
            let code: u16 = std::str::from_utf8(val)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Status::BadArgument)?;
            // SAFETY: inside the lent call.
            let resp = unsafe { v.response_mut() }.ok_or(Status::BadArgument)?;
            resp.set_status(code).map_err(|_| Status::BadArgument)?;
        }
        return Ok(());
    }
    let name = HeaderName::from_bytes(&key).map_err(|_| Status::BadArgument)?;
    // SAFETY: inside the lent call.
    unsafe {
        match map_type {
            map::REQUEST_HEADERS => apply_edit(v.request(), name, edit),
            _ => apply_edit(v.response_mut().ok_or(Status::BadArgument)?, name, edit),
        }
    }
}

fn set_pairs(
    state: &mut HostState,
    map_type: i32,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), Status> {
    let v = match map_type {
        map::REQUEST_HEADERS | map::RESPONSE_HEADERS => state.view().ok_or(Status::BadArgument)?,
        _ => return Err(Status::BadArgument),
    };
    // SAFETY: inside the lent call.
    let names: Vec<HeaderName> = unsafe {
        match map_type {
            map::REQUEST_HEADERS => v.request().headers.keys().cloned().collect(),
            _ => v
                .response_mut()
                .ok_or(Status::BadArgument)?
                .headers
                .keys()
                .cloned()
                .collect(),
        }
    };
    for n in names {
        // The authority lives on as `:authority` if the new map has it.
        if map_type == map::REQUEST_HEADERS && n == http::header::HOST {
            continue;
        }
        edit_header(state, map_type, n.as_str().as_bytes(), Edit::Remove)?;
    }
    for (k, val) in pairs {
        edit_header(state, map_type, &k, Edit::Add(&val))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- buffers

fn buffer_bytes(state: &HostState, which: i32) -> Result<Vec<u8>, Status> {
    match which {
        buffer::REQUEST_BODY | buffer::RESPONSE_BODY => {
            let v = state.view().ok_or(Status::NotFound)?;
            // SAFETY: inside the lent call.
            unsafe { v.body(which) }
                .map(|b| b.to_vec())
                .ok_or(Status::NotFound)
        }
        buffer::HTTP_CALL_RESPONSE_BODY => state
            .call_response
            .as_ref()
            .map(|r| r.body.clone())
            .ok_or(Status::NotFound),
        buffer::PLUGIN_CONFIGURATION => Ok(state.plugin.config.clone()),
        buffer::VM_CONFIGURATION => Ok(state.plugin.vm_config.clone()),
        buffer::DOWNSTREAM_DATA
        | buffer::UPSTREAM_DATA
        | buffer::GRPC_RECEIVE
        | buffer::CALL_DATA
        | buffer::REDIS_CALL_RESPONSE => Err(Status::NotFound),
        _ => Err(Status::BadArgument),
    }
}

/// Envoy's `Buffer::copyFrom` rules: prepend, replace all, or append.
fn set_buffer(
    state: &mut HostState,
    which: i32,
    start: u32,
    size: u32,
    data: &[u8],
) -> Result<(), Status> {
    let body: &mut BytesMut = match which {
        buffer::REQUEST_BODY | buffer::RESPONSE_BODY => {
            let v = state.view().ok_or(Status::NotFound)?;
            // SAFETY: inside the lent call.
            unsafe { v.body(which) }.ok_or(Status::NotFound)?
        }
        buffer::HTTP_CALL_RESPONSE_BODY
        | buffer::PLUGIN_CONFIGURATION
        | buffer::VM_CONFIGURATION => return Err(Status::BadArgument),
        0..=9 => return Err(Status::NotFound),
        _ => return Err(Status::BadArgument),
    };
    let len = body.len() as u32;
    if start == 0 && size == 0 {
        let mut next = BytesMut::with_capacity(data.len() + body.len());
        next.extend_from_slice(data);
        next.extend_from_slice(body);
        *body = next;
    } else if start == 0 && size >= len {
        body.clear();
        body.extend_from_slice(data);
    } else if start >= len {
        body.extend_from_slice(data);
    } else {
        return Err(Status::BadArgument);
    }
    Ok(())
}

// ---------------------------------------------------------------- WASI without tokio

mod wasi_errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
}

/// `fd_write` to stdout/stderr: the gateway log (stdout at info, stderr at error, one
/// trailing newline dropped); other descriptors do not exist.
fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> i32 {
    if fd != 1 && fd != 2 {
        return wasi_errno::BADF;
    }
    let mut out = Vec::new();
    for i in 0..iovs_len.max(0) {
        let Ok(iov) = read(&caller, iovs + i * 8, 8) else {
            return wasi_errno::FAULT;
        };
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        match read(&caller, ptr, len) {
            Ok(b) => out.extend_from_slice(&b),
            Err(_) => return wasi_errno::FAULT,
        }
    }
    let text = String::from_utf8_lossy(&out);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if !text.is_empty() {
        log(
            &caller.data().plugin.name,
            if fd == 1 { 2 } else { 4 },
            text,
        );
    }
    match write_u32(&mut caller, nwritten, out.len() as u32) {
        Ok(()) => wasi_errno::SUCCESS,
        Err(_) => wasi_errno::FAULT,
    }
}

/// `fd_fdstat_get`: stdin/stdout/stderr are character devices; nothing else exists.
fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: i32, buf: i32) -> i32 {
    if !(0..=2).contains(&fd) {
        return wasi_errno::BADF;
    }
    let mut stat = [0u8; 24];
    stat[0] = 2; // filetype: character device
    let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 }; // fd_read / fd_write
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    match write(&mut caller, buf, &stat) {
        Ok(()) => wasi_errno::SUCCESS,
        Err(_) => wasi_errno::FAULT,
    }
}

/// `poll_oneoff`: every subscription is ready now (clocks without sleeping).
fn poll_oneoff(
    mut caller: Caller<'_, HostState>,
    input: i32,
    output: i32,
    n: i32,
    nevents: i32,
) -> i32 {
    for i in 0..n.max(0) {
        let Ok(sub) = read(&caller, input + i * 48, 48) else {
            return wasi_errno::FAULT;
        };
        let mut ev = [0u8; 32];
        ev[0..8].copy_from_slice(&sub[0..8]); // userdata
        ev[10] = sub[8]; // event type = subscription tag
        if write(&mut caller, output + i * 32, &ev).is_err() {
            return wasi_errno::FAULT;
        }
    }
    match write_u32(&mut caller, nevents, n.max(0) as u32) {
        Ok(()) => wasi_errno::SUCCESS,
        Err(_) => wasi_errno::FAULT,
    }
}

/// Define the WASI functions whose wasmtime-wasi versions need tokio's `block_on`.
fn add_wasi_overrides(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const W: &str = "wasi_snapshot_preview1";
    linker.func_wrap(W, "fd_write", fd_write)?;
    linker.func_wrap(W, "fd_fdstat_get", fd_fdstat_get)?;
    linker.func_wrap(W, "poll_oneoff", poll_oneoff)?;
    linker.func_wrap(
        W,
        "fd_read",
        |_: Caller<'_, HostState>, fd: i32, _: i32, _: i32, _: i32| {
            if fd == 0 {
                wasi_errno::SUCCESS
            } else {
                wasi_errno::BADF
            }
        },
    )?;
    linker.func_wrap(W, "fd_close", |_: Caller<'_, HostState>, fd: i32| {
        if (0..=2).contains(&fd) {
            wasi_errno::SUCCESS
        } else {
            wasi_errno::BADF
        }
    })?;
    let badf1 = |_: Caller<'_, HostState>, _: i32| wasi_errno::BADF;
    let badf2 = |_: Caller<'_, HostState>, _: i32, _: i32| wasi_errno::BADF;
    let badf3 = |_: Caller<'_, HostState>, _: i32, _: i32, _: i32| wasi_errno::BADF;
    linker.func_wrap(W, "fd_datasync", badf1)?;
    linker.func_wrap(W, "fd_sync", badf1)?;
    linker.func_wrap(W, "fd_filestat_get", badf2)?;
    linker.func_wrap(W, "fd_renumber", badf2)?;
    linker.func_wrap(W, "path_create_directory", badf3)?;
    linker.func_wrap(W, "path_remove_directory", badf3)?;
    linker.func_wrap(W, "path_unlink_file", badf3)?;
    linker.func_wrap(
        W,
        "fd_advise",
        |_: Caller<'_, HostState>, _: i32, _: i64, _: i64, _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "fd_filestat_set_size",
        |_: Caller<'_, HostState>, _: i32, _: i64| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "fd_filestat_set_times",
        |_: Caller<'_, HostState>, _: i32, _: i64, _: i64, _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "fd_pread",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i64, _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "fd_pwrite",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i64, _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "fd_seek",
        |_: Caller<'_, HostState>, _: i32, _: i64, _: i32, _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "fd_readdir",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i64, _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "path_filestat_get",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32, _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "path_filestat_set_times",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32| {
            wasi_errno::BADF
        },
    )?;
    linker.func_wrap(
        W,
        "path_link",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            wasi_errno::BADF
        },
    )?;
    linker.func_wrap(
        W,
        "path_open",
        |_: Caller<'_, HostState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i64,
         _: i64,
         _: i32,
         _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "path_readlink",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "path_rename",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| wasi_errno::BADF,
    )?;
    linker.func_wrap(
        W,
        "path_symlink",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32, _: i32| wasi_errno::BADF,
    )?;
    Ok(())
}

// ---------------------------------------------------------------- the linker

/// The linker every VM is instantiated from: `env` (Proxy-Wasm) and WASI preview 1.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut l: Linker<HostState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut l, |s: &mut HostState| &mut s.wasi)?;
    l.allow_shadowing(true);
    add_wasi_overrides(&mut l)?;
    l.allow_shadowing(false);
    add_env(&mut l)?;
    Ok(l)
}

fn add_env(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const E: &str = "env";

    // ---- logging, time, ticks, contexts
    l.func_wrap(
        E,
        "proxy_log",
        |mut c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_log");
            if !(0..=abi::LOG_CRITICAL).contains(&level) {
                return ok(Status::BadArgument);
            }
            let msg = match read(&c, ptr, len) {
                Ok(m) => m,
                Err(s) => return ok(s),
            };
            let text = String::from_utf8_lossy(&msg).into_owned();
            log(&c.data().plugin.name, level, &text);
            let problems = &mut c.data_mut().problems;
            if level >= 3 && problems.len() < 4 {
                problems.push(text);
            }
            ok(Status::Ok)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_get_log_level",
        |mut c: Caller<'_, HostState>, ptr: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_log_level");
            code(write_u32(&mut c, ptr, host_log_level()))
        },
    )?;
    l.func_wrap(
        E,
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, HostState>, ptr: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_current_time_nanoseconds");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            code(write_u64(&mut c, ptr, now))
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, HostState>, ms: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_set_tick_period_milliseconds");
            c.data_mut().tick_ms = ms as u32;
            ok(Status::Ok)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_effective_context",
        |mut c: Caller<'_, HostState>, id: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_set_effective_context");
            let id = id as u32;
            if id == c.data().root_id || c.data().contexts.contains(&id) {
                c.data_mut().effective = id;
                ok(Status::Ok)
            } else {
                ok(Status::BadArgument)
            }
        },
    )?;
    l.func_wrap(E, "proxy_done", |mut c: Caller<'_, HostState>| -> Ret {
        tracing::trace!(target: "wasm_host", "proxy_done");
        let st = c.data_mut();
        let ctx = st.effective;
        if st.awaiting_done.remove(&ctx) {
            st.done_later.push(ctx);
        } else {
            st.done = true;
        }
        ok(Status::Ok)
    })?;

    // ---- header maps
    l.func_wrap(E, "proxy_get_header_map_value", |mut c: Caller<'_, HostState>, mt: i32, kp: i32, kl: i32, vpp: i32, vsp: i32| -> Ret {
        tracing::trace!(target: "wasm_host", "proxy_get_header_map_value");
        let key = match read(&c, kp, kl) {
            Ok(k) => lower(&k),
            Err(s) => return ok(s),
        };
        let found = match map_value(c.data(), mt, &key) {
            Ok(v) => v,
            Err(s) => return ok(s),
        };
        tracing::trace!(map = mt, key = %String::from_utf8_lossy(&key), found = found.is_some(), "proxy_get_header_map_value");
        match found {
            Some(v) => give(&mut c, &v, vpp, vsp),
            None => ok(Status::NotFound),
        }
    })?;
    l.func_wrap(
        E,
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, HostState>, mt: i32, pp: i32, sp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_header_map_pairs");
            let pairs = match map_pairs(c.data(), mt) {
                Ok(p) => p,
                // Envoy answers Ok with nothing when the map is not available.
                Err(Status::BadArgument) if (0..=7).contains(&mt) => Vec::new(),
                Err(s) => return ok(s),
            };
            if pairs.is_empty() {
                return give(&mut c, &[], pp, sp);
            }
            let bytes =
                abi::serialize_pairs(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
            give(&mut c, &bytes, pp, sp)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_get_header_map_size",
        |mut c: Caller<'_, HostState>, mt: i32, sp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_header_map_size");
            match map_pairs(c.data(), mt) {
                Ok(p) => {
                    let size: usize = p.iter().map(|(k, v)| k.len() + v.len()).sum();
                    code(write_u32(&mut c, sp, size as u32))
                }
                Err(s) => ok(s),
            }
        },
    )?;
    for (name, which) in [
        ("proxy_add_header_map_value", 0),
        ("proxy_replace_header_map_value", 1),
    ] {
        l.func_wrap(
            E,
            name,
            move |mut c: Caller<'_, HostState>,
                  mt: i32,
                  kp: i32,
                  kl: i32,
                  vp: i32,
                  vl: i32|
                  -> Ret {
                let (key, val) = match (read(&c, kp, kl), read(&c, vp, vl)) {
                    (Ok(k), Ok(v)) => (k, v),
                    (Err(s), _) | (_, Err(s)) => return ok(s),
                };
                tracing::trace!(target: "wasm_host", "{}", if which == 0 { "proxy_add_header_map_value" } else { "proxy_replace_header_map_value" });
            let edit = if which == 0 {
                    Edit::Add(&val)
                } else {
                    Edit::Replace(&val)
                };
                code(edit_header(c.data_mut(), mt, &key, edit))
            },
        )?;
    }
    l.func_wrap(
        E,
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, HostState>, mt: i32, kp: i32, kl: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_remove_header_map_value");
            let key = match read(&c, kp, kl) {
                Ok(k) => k,
                Err(s) => return ok(s),
            };
            code(edit_header(c.data_mut(), mt, &key, Edit::Remove))
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, HostState>, mt: i32, p: i32, len: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_set_header_map_pairs");
            let raw = match read(&c, p, len) {
                Ok(r) => r,
                Err(s) => return ok(s),
            };
            let Some(pairs) = abi::deserialize_pairs(&raw) else {
                return ok(Status::BadArgument);
            };
            code(set_pairs(c.data_mut(), mt, pairs))
        },
    )?;

    // ---- buffers
    l.func_wrap(
        E,
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, HostState>, bt: i32, start: i32, max: i32, pp: i32, sp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_buffer_bytes");
            let data = match buffer_bytes(c.data(), bt) {
                Ok(d) => d,
                Err(s) => return ok(s),
            };
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            if start.checked_add(max).is_none() {
                return ok(Status::BadArgument);
            }
            let from = start.min(data.len());
            let to = (start + max).min(data.len());
            give(&mut c, &data[from..to], pp, sp)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, HostState>, bt: i32, start: i32, size: i32, dp: i32, dl: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_set_buffer_bytes");
            let data = match read(&c, dp, dl) {
                Ok(d) => d,
                Err(s) => return ok(s),
            };
            code(set_buffer(
                c.data_mut(),
                bt,
                start as u32,
                size as u32,
                &data,
            ))
        },
    )?;
    l.func_wrap(
        E,
        "proxy_get_buffer_status",
        |mut c: Caller<'_, HostState>, bt: i32, lp: i32, fp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_buffer_status");
            match buffer_bytes(c.data(), bt) {
                Ok(d) => code(write_u32(&mut c, lp, d.len() as u32).and(write_u32(&mut c, fp, 0))),
                Err(s) => ok(s),
            }
        },
    )?;

    // ---- stream control
    l.func_wrap(
        E,
        "proxy_continue_stream",
        |mut c: Caller<'_, HostState>, st: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_continue_stream");
            match st {
                0 => c.data_mut().actions.continue_request = true,
                1 => c.data_mut().actions.continue_response = true,
                // Downstream and upstream (TCP) streams: plugins here filter HTTP.
                2 | 3 => {
                    return unimplemented(&mut c, "proxy_continue_stream(downstream/upstream)")
                }
                _ => return ok(Status::BadArgument),
            }
            ok(Status::Ok)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_continue_request",
        |mut c: Caller<'_, HostState>| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_continue_request");
            c.data_mut().actions.continue_request = true;
            ok(Status::Ok)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_continue_response",
        |mut c: Caller<'_, HostState>| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_continue_response");
            c.data_mut().actions.continue_response = true;
            ok(Status::Ok)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_close_stream",
        |mut c: Caller<'_, HostState>, st: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_close_stream");
            if !(0..=3).contains(&st) {
                return ok(Status::BadArgument);
            }
            c.data_mut().actions.close = true;
            ok(Status::Ok)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_clear_route_cache",
        |mut c: Caller<'_, HostState>| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_clear_route_cache");
            c.data_mut().actions.request_headers_changed = true;
            ok(Status::Ok)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_send_local_response",
        |mut c: Caller<'_, HostState>,
         status: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         _grpc: i32|
         -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_send_local_response");
            let (details, body, raw) = match (read(&c, dp, dl), read(&c, bp, bl), read(&c, hp, hl))
            {
                (Ok(d), Ok(b), Ok(h)) => (d, b, h),
                (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return ok(s),
            };
            let Some(headers) = abi::deserialize_pairs(&raw) else {
                return ok(Status::BadArgument);
            };
            let status = match u16::try_from(status) {
                Ok(s) if (100..=999).contains(&s) => s,
                _ => return ok(Status::BadArgument),
            };
            let st = c.data_mut();
            if st.view().is_none() || st.actions.local_response.is_some() {
                return ok(Status::BadArgument);
            }
            st.actions.local_response = Some(LocalResponse {
                status,
                details: String::from_utf8_lossy(&details).replace(' ', "_"),
                body,
                headers,
            });
            ok(Status::Ok)
        },
    )?;

    // ---- HTTP calls
    l.func_wrap(E, "proxy_http_call", |mut c: Caller<'_, HostState>, up: i32, ul: i32, hp: i32, hl: i32, bp: i32, bl: i32, _tp: i32, _tl: i32, timeout: i32, tokp: i32| -> Ret {
        tracing::trace!(target: "wasm_host", "proxy_http_call");
        let (cluster, raw, body) = match (read_str(&c, up, ul), read(&c, hp, hl), read(&c, bp, bl)) {
            (Ok(u), Ok(h), Ok(b)) => (u, h, b),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return ok(s),
        };
        let Some(headers) = abi::deserialize_pairs(&raw) else {
            return ok(Status::BadArgument);
        };
        let has = |n: &[u8]| headers.iter().any(|(k, _)| k.as_slice() == n);
        if !(has(b":path") && has(b":method") && has(b":authority")) {
            return ok(Status::BadArgument);
        }
        if (c.data().plugin.resolve)(&cluster).is_none() {
            tracing::debug!(plugin = %c.data().plugin.name, cluster = %cluster, "proxy_http_call to a cluster with no endpoint: BadArgument");
            return ok(Status::BadArgument);
        }
        let st = c.data_mut();
        st.next_token += 1;
        let token = st.next_token;
        let context = st.effective;
        st.pending_calls.push(PendingCall {
            token,
            context,
            cluster,
            headers,
            body,
            timeout: (timeout > 0).then(|| Duration::from_millis(timeout as u32 as u64)),
        });
        code(write_u32(&mut c, tokp, token))
    })?;
    l.func_wrap(
        E,
        "proxy_get_status",
        |mut c: Caller<'_, HostState>, cp: i32, mpp: i32, msp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_status");
            let (status, msg) = c.data().last_status.clone();
            if let Err(s) = write_u32(&mut c, cp, status) {
                return ok(s);
            }
            give(&mut c, &msg, mpp, msp)
        },
    )?;

    // ---- foreign functions
    l.func_wrap(E, "proxy_call_foreign_function", |mut c: Caller<'_, HostState>, np: i32, nl: i32, ap: i32, al: i32, rpp: i32, rsp: i32| -> Ret {
        tracing::trace!(target: "wasm_host", "proxy_call_foreign_function");
        let (name, args) = match (read_str(&c, np, nl), read(&c, ap, al)) {
            (Ok(n), Ok(a)) => (n, a),
            (Err(s), _) | (_, Err(s)) => return ok(s),
        };
        match name.as_str() {
            "get_log_level" => give(&mut c, &host_log_level().to_le_bytes(), rpp, rsp),
            "set_global_max_requests_per_io_cycle" => {
                let mut b = [0u8; 8];
                let n = args.len().min(8);
                b[..n].copy_from_slice(&args[..n]);
                let v = u64::from_le_bytes(b);
                let p = &c.data().plugin;
                p.max_requests_per_io_cycle
                    .store(v, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(plugin = %p.name, value = v, "set_global_max_requests_per_io_cycle recorded (Pingora has no per-IO-cycle request limit)");
                give(&mut c, &[], rpp, rsp)
            }
            _ => ok(Status::NotFound),
        }
    })?;

    // ---- properties
    l.func_wrap(E, "proxy_get_property", |mut c: Caller<'_, HostState>, pp: i32, pl: i32, rpp: i32, rsp: i32| -> Ret {
        tracing::trace!(target: "wasm_host", "proxy_get_property");
        let raw = match read(&c, pp, pl) {
            Ok(r) => r,
            Err(s) => return ok(s),
        };
        let raw = raw.strip_suffix(&[0]).map(<[u8]>::to_vec).unwrap_or(raw);
        let st = c.data();
        let set = st.props.get(&st.effective).and_then(|m| m.get(&raw)).cloned();
        let value = set.or_else(|| {
            let memory = st.memory.map_or(0, |m| m.data_size(&c) as u64);
            let facts = PluginFacts {
                plugin_name: &st.plugin.name,
                root_id: &st.plugin.root_id,
                vm_id: &st.plugin.vm_id,
                memory_bytes: memory,
            };
            properties::get(&abi::property_path(&raw), st.view().as_ref(), &facts)
        });
        tracing::trace!(path = %String::from_utf8_lossy(&raw).replace('\0', "."), found = value.is_some(), "proxy_get_property");
        match value {
            Some(v) => give(&mut c, &v, rpp, rsp),
            None => ok(Status::NotFound),
        }
    })?;
    l.func_wrap(
        E,
        "proxy_set_property",
        |mut c: Caller<'_, HostState>, pp: i32, pl: i32, vp: i32, vl: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_set_property");
            let (raw, value) = match (read(&c, pp, pl), read(&c, vp, vl)) {
                (Ok(p), Ok(v)) => (p, v),
                (Err(s), _) | (_, Err(s)) => return ok(s),
            };
            let raw = raw.strip_suffix(&[0]).map(<[u8]>::to_vec).unwrap_or(raw);
            let st = c.data_mut();
            if st.view().is_none() {
                // Envoy keeps properties in the stream's filter state: none without a stream.
                return ok(Status::NotFound);
            }
            if raw == b"clear_route_cache" {
                st.actions.keep_route = value == b"off";
            }
            st.props.entry(st.effective).or_default().insert(raw, value);
            ok(Status::Ok)
        },
    )?;

    // ---- shared data and queues
    l.func_wrap(
        E,
        "proxy_get_shared_data",
        |mut c: Caller<'_, HostState>, kp: i32, kl: i32, vpp: i32, vsp: i32, casp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_shared_data");
            let key = match read(&c, kp, kl) {
                Ok(k) => k,
                Err(s) => return ok(s),
            };
            match c.data().plugin.shared.get(&key) {
                None => ok(Status::NotFound),
                Some((v, cas)) => {
                    if let Err(s) = write_u32(&mut c, casp, cas) {
                        return ok(s);
                    }
                    give(&mut c, &v, vpp, vsp)
                }
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_shared_data",
        |c: Caller<'_, HostState>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_set_shared_data");
            match (read(&c, kp, kl), read(&c, vp, vl)) {
                (Ok(k), Ok(v)) => ok(c.data().plugin.shared.set(&k, &v, cas as u32)),
                (Err(s), _) | (_, Err(s)) => ok(s),
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_register_shared_queue",
        |mut c: Caller<'_, HostState>, np: i32, nl: i32, idp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_register_shared_queue");
            let name = match read_str(&c, np, nl) {
                Ok(n) => n,
                Err(s) => return ok(s),
            };
            let st = c.data();
            let Some(owner) = st.queue_owner.clone() else {
                return ok(Status::InternalFailure);
            };
            let id = st.plugin.shared.register_queue(&name, owner, st.root_id);
            code(write_u32(&mut c, idp, id))
        },
    )?;
    l.func_wrap(
        E,
        "proxy_resolve_shared_queue",
        |mut c: Caller<'_, HostState>, vp: i32, vl: i32, np: i32, nl: i32, idp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_resolve_shared_queue");
            let (vm, name) = match (read_str(&c, vp, vl), read_str(&c, np, nl)) {
                (Ok(v), Ok(n)) => (v, n),
                (Err(s), _) | (_, Err(s)) => return ok(s),
            };
            let space = if vm.is_empty() || vm == c.data().plugin.vm_id {
                c.data().plugin.shared.clone()
            } else {
                SharedSpace::of(&vm)
            };
            match space.resolve_queue(&name) {
                Some(id) => code(write_u32(&mut c, idp, id)),
                None => ok(Status::NotFound),
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_enqueue_shared_queue",
        |c: Caller<'_, HostState>, id: i32, vp: i32, vl: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_enqueue_shared_queue");
            match read(&c, vp, vl) {
                Ok(v) => ok(c.data().plugin.shared.enqueue(id as u32, &v)),
                Err(s) => ok(s),
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_dequeue_shared_queue",
        |mut c: Caller<'_, HostState>, id: i32, pp: i32, sp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_dequeue_shared_queue");
            let item = c.data().plugin.shared.dequeue(id as u32);
            match item {
                Ok(v) => give(&mut c, &v, pp, sp),
                Err(s) => ok(s),
            }
        },
    )?;

    // ---- metrics
    l.func_wrap(
        E,
        "proxy_define_metric",
        |mut c: Caller<'_, HostState>, kind: i32, np: i32, nl: i32, idp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_define_metric");
            let name = match read_str(&c, np, nl) {
                Ok(n) => n,
                Err(s) => return ok(s),
            };
            let p = c.data().plugin.clone();
            match p.metrics.define(kind, &name, &p.name) {
                Ok(id) => code(write_u32(&mut c, idp, id)),
                Err(s) => ok(s),
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_increment_metric",
        |c: Caller<'_, HostState>, id: i32, delta: i64| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_increment_metric");
            ok(c.data().plugin.metrics.increment(id as u32, delta))
        },
    )?;
    l.func_wrap(
        E,
        "proxy_record_metric",
        |c: Caller<'_, HostState>, id: i32, value: i64| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_record_metric");
            ok(c.data().plugin.metrics.record(id as u32, value))
        },
    )?;
    l.func_wrap(
        E,
        "proxy_get_metric",
        |mut c: Caller<'_, HostState>, id: i32, rp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_metric");
            match c.data().plugin.metrics.get(id as u32) {
                Ok(v) => code(write_u64(&mut c, rp, v)),
                Err(s) => ok(s),
            }
        },
    )?;

    // ---- ABI 0.1.0
    l.func_wrap(
        E,
        "proxy_get_configuration",
        |mut c: Caller<'_, HostState>, pp: i32, sp: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_configuration");
            let cfg = c.data().plugin.config.clone();
            give(&mut c, &cfg, pp, sp)
        },
    )?;

    // ---- not supported yet: Unimplemented, logged once
    l.func_wrap(
        E,
        "proxy_grpc_call",
        |mut c: Caller<'_, HostState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> Ret { unimplemented(&mut c, "proxy_grpc_call") },
    )?;
    l.func_wrap(
        E,
        "proxy_grpc_stream",
        |mut c: Caller<'_, HostState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> Ret { unimplemented(&mut c, "proxy_grpc_stream") },
    )?;
    l.func_wrap(
        E,
        "proxy_grpc_send",
        |mut c: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_grpc_send");
            unimplemented(&mut c, "proxy_grpc_send")
        },
    )?;
    l.func_wrap(
        E,
        "proxy_grpc_cancel",
        |mut c: Caller<'_, HostState>, _: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_grpc_cancel");
            unimplemented(&mut c, "proxy_grpc_cancel")
        },
    )?;
    l.func_wrap(
        E,
        "proxy_grpc_close",
        |mut c: Caller<'_, HostState>, _: i32| -> Ret { unimplemented(&mut c, "proxy_grpc_close") },
    )?;
    l.func_wrap(
        E,
        "proxy_redis_init",
        |mut c: Caller<'_, HostState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> Ret { unimplemented(&mut c, "proxy_redis_init") },
    )?;
    l.func_wrap(
        E,
        "proxy_redis_call",
        |mut c: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32, _: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_redis_call");
            unimplemented(&mut c, "proxy_redis_call")
        },
    )?;
    l.func_wrap(
        E,
        "proxy_inject_encoded_data_to_filter_chain",
        |mut c: Caller<'_, HostState>, _: i32, _: i32, _: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_inject_encoded_data_to_filter_chain");
            unimplemented(&mut c, "proxy_inject_encoded_data_to_filter_chain")
        },
    )?;
    l.func_wrap(
        E,
        "proxy_get_upstream_hosts",
        |mut c: Caller<'_, HostState>, _: i32, _: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_get_upstream_hosts");
            unimplemented(&mut c, "proxy_get_upstream_hosts")
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_upstream_override_host",
        |mut c: Caller<'_, HostState>, _: i32, _: i32| -> Ret {
            tracing::trace!(target: "wasm_host", "proxy_set_upstream_override_host");
            unimplemented(&mut c, "proxy_set_upstream_override_host")
        },
    )?;
    Ok(())
}
