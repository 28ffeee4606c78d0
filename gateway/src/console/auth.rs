//! Console login (placeholder until the login lands): no password, no session.

use http::Response;

use crate::admin::AdminRequest;

use super::manage::Store;

/// Who is logged in.
#[derive(Clone, Debug)]
pub struct Session {
    pub username: String,
}

pub struct Auth {
    _store: std::sync::Arc<Store>,
}

impl Auth {
    pub fn new(store: std::sync::Arc<Store>) -> Self {
        Auth { _store: store }
    }

    /// The session a request carries, if it is valid.
    pub fn session(&self, _req: &AdminRequest) -> Option<Session> {
        None
    }

    /// Whether the console password was set.
    pub fn password_set(&self) -> bool {
        false
    }

    /// `/api/console/login`, `/logout`, `/init`, `/session`.
    pub async fn respond(&self, _req: &AdminRequest) -> Option<Response<Vec<u8>>> {
        None
    }
}
