//! The console: live per-route and per-cluster metrics and their JSON.

pub mod metrics_quantile;
pub mod metrics_ring;
pub mod series;
