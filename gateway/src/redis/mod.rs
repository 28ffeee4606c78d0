//! Redis for the data plane: the RESP2 codec and a pipelined async client. A leaf: it
//! knows nothing of the gateway, so native filters (cluster-key-rate-limit) and the
//! Wasm host's `proxy_redis_*` calls can both use it.

pub mod client;
pub mod resp;

pub use client::{RedisClient, RedisError, RedisOptions};
pub use resp::{Reply, RespError};
