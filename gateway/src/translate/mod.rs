//! Resources → what the data plane runs: McpBridge registries and Services become clusters, Ingresses
//! become a route table, `spec.tls`, domains and Secrets become the certificate
//! store, WasmPlugins an ordered plugin chain. Pure functions of their inputs, run in the
//! config loop.

pub mod certificates;
pub mod clusters;
pub mod destination;
pub mod plugin_chain;
pub mod route_table;
pub mod services;
pub mod upstream_tls;
pub mod wasm_plugins;

pub use clusters::{cluster_name, Cluster};
pub use destination::Destination;
pub use route_table::{PathMatch, Route, RouteTable, WeightedCluster};
