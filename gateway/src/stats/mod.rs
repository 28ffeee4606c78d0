//! The gateway's stats: Envoy's families (HTTP connection manager, clusters, server),
//! Istio's request metrics and our own `gateway_*` families.
//!
//! Every handle a request touches is resolved off the request path: per listener at
//! start-up, per cluster and per route when a snapshot is built (and kept across snapshots, so counts
//! survive reloads). A request does relaxed atomic adds; the few series whose label
//! values depend on the response (a new status code on a cluster) are created once, on
//! first use, and found again by index.

mod cluster;
mod compressor;
mod config;
mod flag_counts;
mod hcm;
mod istio;
mod listener;
mod roster;
mod route;
mod server;
mod stat_name;

use std::sync::atomic::{AtomicBool, Ordering};

pub use cluster::{ClusterStats, ClusterStatsCache};
pub use compressor::CompressorStats;
pub use config::{ConfigStats, RegistryStats};
pub use flag_counts::FlagCounts;
pub use hcm::{hcm_prefix, HcmStats};
pub use istio::{Destination, IstioFamilies, IstioStats, RequestProtocol};
pub use listener::ListenerTlsStats;
pub use roster::{Roster, RosterList};
pub use route::{RouteStats, RouteStatsCache};
pub use server::{heap_bytes, ServerStats, TracerStats, WasmStats};
pub use stat_name::{ClusterIdentity, StatNamePattern};

static RECORDING: AtomicBool = AtomicBool::new(true);

/// Whether requests record stats. Off only to measure what recording costs (the
/// benchmark's `--stats-recording off` run); families stay registered either way.
#[inline]
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

pub fn set_recording(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

/// Index of a status code's class counter (`1xx` is 0), if it has one.
#[inline]
fn class_index(status: u16) -> Option<usize> {
    match status / 100 {
        c @ 1..=5 => Some(c as usize - 1),
        _ => None,
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
