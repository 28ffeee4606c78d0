//! Resources → what the data plane runs: McpBridge registries become clusters, Ingresses
//! become a route table. Pure functions of their inputs, run in the config loop.

pub mod clusters;
pub mod destination;
pub mod route_table;

pub use clusters::{cluster_name, Cluster};
pub use destination::Destination;
pub use route_table::{PathMatch, Route, RouteTable, WeightedCluster};
