//! What a snapshot holds and how the data plane looks things up in it: routes,
//! clusters and their endpoints, upstream TLS, certificates, filter settings and the
//! order of the plugin chain. Only `translate/` and `controllers/` build these;
//! `proxy/`, `filters/` and `wasm/` read them.

pub mod certs;
pub mod cidr;
pub mod cluster;
pub mod cookie;
pub mod filter_settings;
pub mod header_control;
pub mod host;
pub mod http_filter;
pub mod load_balancer;
pub mod matcher;
pub mod mirror;
pub mod outlier;
pub mod path_regex;
pub mod plugin_chain;
pub mod protocol;
pub mod retry;
pub mod rewrite;
pub mod route;
pub mod route_index;
pub mod route_policy;
pub mod upstream_tls;

pub use certs::{CertStore, ServerCert};
pub use cluster::{cluster_name, Cluster};
pub use host::strip_port;
pub use load_balancer::{CookiePolicy, HashPolicy, LbPolicy, LoadBalancer};
pub use protocol::Protocol;
pub use route::{PathMatch, PathRegex, Route, RouteTable, WeightedCluster};
pub use route_policy::RoutePolicy;
pub use upstream_tls::{sni_from_host, Sni, UpstreamTls};
