//! The proxy-wasm host: real Higress plugins (Go, Rust, C++ SDKs) on wasmtime.
//!
//! - `vm.rs`: the runtime (engine, epoch deadlines, memory limits) and one VM's lifecycle;
//! - `host.rs`: the `env` host functions and WASI;
//! - `plugin.rs`: a loaded plugin and its per-thread VMs;
//! - `filter.rs`: how the data plane runs a request through the plugin chain;
//! - `stream.rs`, `properties.rs`: what callbacks see of the request;
//! - `http_call.rs`, `shared.rs`, `metrics.rs`: calls to clusters, shared data and
//!   queues, plugin-defined metrics;
//! - `abi.rs`: the ABI's numbers and encodings.

pub mod abi;
pub mod filter;
pub mod host;
pub mod http_call;
pub mod metrics;
pub mod module_store;
pub mod plugin;
pub mod plugin_set;
pub mod properties;
pub mod shared;
pub mod stream;
pub mod vm;

pub use plugin::LoadedPlugin;
pub use vm::{CompiledModule, Limits, Runtime};
