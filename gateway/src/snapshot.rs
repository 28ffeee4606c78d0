//! The immutable, versioned view of the config that the data plane serves from.
//!
//! The config loop builds a new [`Snapshot`] on every applied change and publishes it
//! with one atomic swap; a request loads it once and keeps its `Arc` to the end, so a
//! reload never changes a request (or an open WebSocket) mid-flight.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::filters::ChainEntry;
use crate::model::filter_settings::FilterSettings;
use crate::model::{CertStore, Cluster, RouteTable};
use crate::tracer::Tracer;
use crate::wasm::LoadedPlugin;

#[derive(Debug, Default)]
pub struct Snapshot {
    /// 0 only for the empty snapshot before the first config is live.
    pub version: u64,
    /// What the gateway's listeners (`--http-addr`, `--https-addr`) route by.
    pub routes: RouteTable,
    /// What the cluster-local listener (`--local-http-addr`) routes by: KIngress rules
    /// of `ClusterLocal` visibility and Istio Gateway servers on its port.
    pub local_routes: RouteTable,
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    pub filters: FilterSettings,
    /// The tracer of `filters.tracing` (or the demo's); `None` while tracing is off.
    pub tracer: Option<Arc<Tracer>>,
    /// Certificates the HTTPS listener serves, by SNI; empty: no HTTPS listener.
    pub certs: CertStore,
    /// The filter chain, native filters and Wasm plugins, in run order (shared by each
    /// request's runner without a copy).
    pub plugins: Arc<[ChainEntry<LoadedPlugin>]>,
    /// Some entry of `plugins` is a Wasm plugin (requests then copy what its properties
    /// read; native filters need less).
    pub wasm_plugins: bool,
}

impl Snapshot {
    pub fn is_live(&self) -> bool {
        self.version > 0
    }
}

/// Where the current snapshot lives; the config loop is the only writer.
pub type SnapshotCell = Arc<ArcSwap<Snapshot>>;

pub fn new_cell() -> SnapshotCell {
    Arc::new(ArcSwap::from_pointee(Snapshot::default()))
}
