//! The console: `/ui` (one page, embedded) and the JSON endpoints behind it
//! (`/api/console/...`, documented in docs/console.md), served by the admin listener or,
//! with `--console-addr`, by a listener of its own.
//!
//! Reads need no login from a loopback peer on the loopback admin listener; every write
//! does, and on `--console-addr` every endpoint but the page and the login does.

pub mod assets;
pub mod auth;
pub mod config_view;
pub mod manage;
pub mod metrics_quantile;
pub mod metrics_ring;
pub mod series;
pub mod traces;

use std::sync::Arc;

use http::{Method, Response};
use telemetry::export::RecentTraces;

use crate::admin::{is_read, method_not_allowed, reply, AdminRequest, Handler};
use crate::config_loop::StatusCell;
use crate::snapshot::SnapshotCell;

/// Whether a path is the console's.
pub fn serves(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/") || path.starts_with("/api/console/")
}

/// Where the console's data comes from and how it is guarded.
pub struct Console {
    pub status: StatusCell,
    pub snapshot: SnapshotCell,
    pub recent: Arc<RecentTraces>,
    /// The last 15 minutes per route and cluster.
    pub series: Arc<series::Series>,
    /// `--trace-ui-url`: a link per trace (`{trace_id}` replaced), or none.
    pub trace_ui_url: Option<String>,
    /// Every endpoint but the page and the login needs a session (`--console-addr`).
    pub login_for_reads: bool,
    pub auth: Arc<auth::Auth>,
    pub manage: Arc<manage::Manager>,
}

/// The JSON answer of a console endpoint.
pub(crate) fn json(status: u16, v: &serde_json::Value) -> Response<Vec<u8>> {
    let mut r = reply(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// A JSON error: `{"error": message}`.
pub(crate) fn error(status: u16, message: impl Into<String>) -> Response<Vec<u8>> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

impl Console {
    fn settings(&self, req: &AdminRequest) -> serde_json::Value {
        serde_json::json!({
            "trace_ui_url": self.trace_ui_url,
            "login_for_reads": self.login_for_reads,
            "session": self.auth.session(req).map(|s| s.username),
            "password_set": self.auth.password_set(),
            "writable": self.manage.writable(),
        })
    }

    async fn read(&self, req: &AdminRequest) -> Response<Vec<u8>> {
        let path = req.path.as_str();
        if let Some(asset) = assets::get(path) {
            return asset;
        }
        match path {
            "/api/console/settings" => json(200, &self.settings(req)),
            "/api/console/config" => json(
                200,
                &config_view::describe(&self.status.load(), &self.snapshot.load()),
            ),
            "/api/console/traces" => {
                json(200, &traces::list(&self.recent, req, &self.trace_ui_url))
            }
            "/api/console/metrics" => json(200, &self.series.overview()),
            "/api/console/series" => {
                let (kind, name) = (req.param("kind").unwrap_or_default(), req.param("name"));
                match name.and_then(|n| self.series.series(&kind, &n)) {
                    Some(v) => json(200, &v),
                    None => error(404, "no such route or cluster in the last 15 minutes"),
                }
            }
            "/api/console/exemplars" => {
                let (kind, name) = (req.param("kind").unwrap_or_default(), req.param("name"));
                let ms = |k: &str| req.param(k).and_then(|v| v.parse::<u64>().ok());
                let (from, to) = (ms("from_ms").unwrap_or(0), ms("to_ms").unwrap_or(u64::MAX));
                match name.and_then(|n| self.series.exemplars(&kind, &n, from, to)) {
                    Some(v) => json(200, &v),
                    None => error(404, "no such route or cluster in the last 15 minutes"),
                }
            }
            _ => {
                if let Some(id) = path.strip_prefix("/api/console/traces/") {
                    return match traces::one(&self.recent, id, &self.trace_ui_url) {
                        Some(v) => json(200, &v),
                        None => error(404, format!("no recent trace {id}")),
                    };
                }
                error(404, format!("no console endpoint {path}"))
            }
        }
    }
}

#[async_trait::async_trait]
impl Handler for Console {
    async fn respond(&self, req: &AdminRequest) -> Response<Vec<u8>> {
        if !serves(&req.path) {
            return reply(
                404,
                "text/plain",
                b"not found; the console is at /ui\n".to_vec(),
            );
        }
        // Login, logout, first password, session: open to anyone (rate limited there).
        if let Some(r) = self.auth.respond(req).await {
            return r;
        }
        let session = self.auth.session(req);
        let is_page = req.path == "/ui" || req.path.starts_with("/ui/");
        if is_read(&req.method) {
            // The config items carry credentials (plugin configs, registry secrets):
            // they are for the logged-in editor, wherever the console listens.
            let needs_login = req.path.starts_with("/api/console/resources")
                || (self.login_for_reads && !is_page && req.path != "/api/console/settings");
            if needs_login && session.is_none() {
                return error(401, "log in first");
            }
            if let Some(r) = self.manage.read(req).await {
                return r;
            }
            return self.read(req).await;
        }
        if req.method != Method::POST && req.method != Method::PUT && req.method != Method::DELETE {
            return method_not_allowed("GET, HEAD, POST, PUT, DELETE");
        }
        let Some(session) = session else {
            return error(401, "log in first: every change needs a session");
        };
        match self.manage.write(req, &session).await {
            Some(r) => r,
            None => error(404, format!("no console endpoint {}", req.path)),
        }
    }
}
