//! The stats listener (`/stats/prometheus`, `/healthz/ready`; read-only) and the admin
//! listener (`/debug/configz`, `/config_dump`, `/ready`; loopback by default).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use telemetry::stats::Registry;

use crate::config_loop::StatusCell;
use crate::snapshot::SnapshotCell;

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn ready(snapshot: &SnapshotCell) -> Response<Vec<u8>> {
    if snapshot.load().is_live() {
        reply(200, "text/plain", b"LIVE\n".to_vec())
    } else {
        reply(
            503,
            "text/plain",
            b"not ready: no config snapshot yet\n".to_vec(),
        )
    }
}

pub struct StatsApp {
    pub registry: Arc<Registry>,
    pub snapshot: SnapshotCell,
}

#[async_trait]
impl ServeHttp for StatsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/stats/prometheus" => reply(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.registry.render().into_bytes(),
            ),
            "/healthz/ready" => ready(&self.snapshot),
            _ => reply(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}

pub struct AdminApp {
    pub status: StatusCell,
    pub snapshot: SnapshotCell,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let status = self.status.load();
        let json = |v: &serde_json::Value| {
            reply(
                200,
                "application/json",
                serde_json::to_vec_pretty(v).unwrap_or_default(),
            )
        };
        match session.req_header().uri.path() {
            "/debug/configz" => json(&status.configz),
            "/config_dump" => json(&serde_json::json!({
                "configz": status.configz,
                "resources": status.resources,
            })),
            "/ready" => ready(&self.snapshot),
            _ => reply(
                404,
                "text/plain",
                b"not found; try /debug/configz, /config_dump, /ready\n".to_vec(),
            ),
        }
    }
}
