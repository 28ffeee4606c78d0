//! What a snapshot holds and how the data plane looks things up in it: routes,
//! clusters and their endpoints, upstream TLS, certificates, filter settings and the
//! order of the plugin chain. Only `translate/` and `controllers/` build these;
//! `proxy/`, `filters/` and `wasm/` read them.

pub mod filter_settings;
pub mod plugin_chain;
