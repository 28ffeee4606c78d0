//! The host side of the Proxy-Wasm ABI: every `env` function a Higress plugin (Go, Rust
//! or C++ SDK) imports, plus WASI preview 1, one file per area of the ABI:
//!
//! - `state.rs`: the store data of a VM ([`HostState`]) and what a plugin's VMs share;
//! - `memory.rs`: reading and writing guest memory, handing the guest buffers;
//! - `logging.rs`: `proxy_log`, the log level, foreign functions;
//! - `context.rs`: effective context, `proxy_done`, stream control, local replies;
//! - `headers.rs`: header maps (pseudo-headers included);
//! - `buffers.rs`: bodies, HTTP call bodies, plugin and VM configuration;
//! - `properties.rs`: `proxy_get_property` / `proxy_set_property`;
//! - `http_call.rs`: `proxy_http_call`, its status, the clock and tick timer;
//! - `redis.rs`: `proxy_redis_init` and `proxy_redis_call` (Higress's extension);
//! - `shared.rs`: shared data and shared queues;
//! - `metrics.rs`: plugin-defined metrics;
//! - `unsupported.rs`: functions linked but not supported yet;
//! - `wasi.rs`: the WASI functions defined here instead of by `wasmtime-wasi`.
//!
//! Each file declares its functions with `host_fns!`, which writes the export's name
//! once and makes every call visible at trace level (`RUST_LOG=wasm_host=trace`).
//!
//! WASI comes from `wasmtime-wasi`, except the functions whose wasmtime-wasi versions
//! run a tokio `block_on` (file and poll operations): guest calls run on the data plane's
//! tokio threads, where that panics, so those are defined here without tokio. Plugins
//! have no files: stdout and stderr go to the gateway log, everything else is `EBADF`;
//! `poll_oneoff` returns at once (Go's `usleep` needs success, not sleep), as Higress's
//! host does.
//!
//! Host functions the gateway does not support yet (gRPC calls, data injection,
//! upstream host override) are linked and return `Unimplemented` (12), logged once per
//! VM, so modules of every SDK instantiate. See `docs/wasm.md`.

/// Host functions of one Wasm import module, and the `add` that links them:
///
/// ```text
/// host_fns! { "env" -> Ret;
///     /// What it does.
///     fn proxy_done(mut c) { ... }
///     fn proxy_get_metric(mut c, id: i32, rp: i32) { ... }
/// }
/// ```
///
/// The first parameter is the `Caller<'_, HostState>`; the export is named as the
/// function, and its body sees that name as `NAME`. Every call emits a trace event
/// (target `wasm_host`): a callsite of its own per function, so with that target off it
/// costs the one level check of any disabled `tracing` event.
macro_rules! host_fns {
    ($module:literal -> $ret:ty; $(
        $(#[$meta:meta])*
        fn $name:ident($caller:pat_param $(, $arg:tt: $ty:ty)* $(,)?) $body:block
    )*) => {
        $(
            $(#[$meta])*
            // The ABI fixes the parameters.
            #[allow(clippy::too_many_arguments)]
            fn $name(
                $caller: wasmtime::Caller<'_, $crate::wasm::host::state::HostState>
                $(, $arg: $ty)*
            ) -> $ret {
                const NAME: &str = stringify!($name);
                tracing::trace!(target: "wasm_host", "{}", NAME);
                $body
            }
        )*

        /// Link this file's functions.
        pub(super) fn add(
            l: &mut wasmtime::Linker<$crate::wasm::host::state::HostState>,
        ) -> wasmtime::Result<()> {
            $(l.func_wrap($module, stringify!($name), $name)?;)*
            Ok(())
        }
    };
}

mod buffers;
mod context;
mod headers;
mod http_call;
mod logging;
mod memory;
mod metrics;
mod properties;
mod redis;
mod shared;
mod state;
mod unsupported;
mod wasi;

use wasmtime::Linker;

pub use state::{
    CallAnswer, CallRequest, CallResponse, HostState, HttpRequest, MemoryLimit, PendingCall,
    PluginShared, RedisClients, Resolver,
};

/// The linker every VM is instantiated from: `env` (Proxy-Wasm) and WASI preview 1.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut l: Linker<HostState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut l, |s: &mut HostState| &mut s.wasi)?;
    l.allow_shadowing(true);
    wasi::add(&mut l)?;
    l.allow_shadowing(false);
    logging::add(&mut l)?;
    context::add(&mut l)?;
    headers::add(&mut l)?;
    buffers::add(&mut l)?;
    properties::add(&mut l)?;
    http_call::add(&mut l)?;
    redis::add(&mut l)?;
    shared::add(&mut l)?;
    metrics::add(&mut l)?;
    unsupported::add(&mut l)?;
    Ok(l)
}
