//! Managing the config from the console (placeholder until the writes land).

use std::path::PathBuf;

use http::Response;

use crate::admin::AdminRequest;

use super::auth::Session;

/// Where the config lives, and so where the console writes.
pub enum Store {
    /// The config directory (Higress standalone layout).
    Files(PathBuf),
    /// The Kubernetes API (the client inferred as the config source's is); objects in
    /// the gateway's namespace.
    Kube { namespace: String },
}

pub struct Manager {
    _store: std::sync::Arc<Store>,
}

impl Manager {
    pub fn new(store: std::sync::Arc<Store>) -> Self {
        Manager { _store: store }
    }

    /// Whether writes are possible at all.
    pub fn writable(&self) -> bool {
        false
    }

    pub async fn read(&self, _req: &AdminRequest) -> Option<Response<Vec<u8>>> {
        None
    }

    pub async fn write(
        &self,
        _req: &AdminRequest,
        _session: &Session,
    ) -> Option<Response<Vec<u8>>> {
        None
    }
}
