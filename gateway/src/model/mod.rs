//! What a snapshot holds and how the data plane looks things up in it: routes,
//! clusters and their endpoints, upstream TLS, certificates, filter settings and the
//! order of the plugin chain. Only `translate/` and `controllers/` build these;
//! `proxy/`, `filters/` and `wasm/` read them.

pub mod certs;
pub mod cluster;
pub mod filter_settings;
pub mod host;
pub mod plugin_chain;
pub mod protocol;
pub mod route;
pub mod upstream_tls;

pub use certs::{CertStore, ServerCert};
pub use cluster::{cluster_name, Cluster};
pub use host::strip_port;
pub use protocol::Protocol;
pub use route::{PathMatch, Route, RouteTable, WeightedCluster};
pub use upstream_tls::{sni_from_host, Sni, UpstreamTls};
