//! The proxy-wasm host: real Higress plugins (Go, Rust, C++ SDKs) on wasmtime.
//!
//! - `vm.rs`: the runtime (engine, epoch deadlines, memory limits) and one VM's lifecycle;
//! - `host/`: the `env` host functions and WASI, one file per area of the ABI (see
//!   `host/mod.rs`), and the store data they work on (`host/state.rs`);
//! - `plugin.rs`: a loaded plugin, its per-thread VMs, and the HTTP calls no stream
//!   waits for;
//! - `module_store.rs`: fetching and compiling modules, once per content hash;
//! - `oci/`: pulling modules from OCI registries, and their on-disk cache;
//! - `filter.rs`: how the data plane runs a request through the plugin chain;
//! - `stream.rs`, `properties.rs`: what callbacks see of the request;
//! - `http_call.rs`, `shared.rs`, `metrics.rs`: calls to clusters, shared data and
//!   queues, plugin-defined metrics;
//! - `abi.rs`: the ABI's numbers and encodings.
//!
//! `WasmPlugin` objects become [`LoadedPlugin`]s in `translate/wasm_plugins.rs`; the
//! chain's order is `model::plugin_chain`'s. Of the rest of the gateway this module
//! imports `model` only (and the `telemetry` crate), never the config types
//! (`resources`, `translate`, `controllers`). Inside it imports run one way: `filter` ->
//! `plugin` -> `http_call`, `vm` -> `host` -> `stream`, `shared`, `metrics`,
//! `properties` -> `abi`; `module_store` -> `oci`, `vm`, `download`; `oci` -> `download`.

pub mod abi;
mod download;
pub mod filter;
pub mod host;
pub mod http_call;
pub mod metrics;
pub mod module_store;
pub mod oci;
pub mod plugin;
pub mod properties;
pub mod shared;
pub mod stream;
pub mod vm;

pub use plugin::LoadedPlugin;
pub use vm::{CompiledModule, Limits, Runtime};
