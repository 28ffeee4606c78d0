//! The stats listener (`/stats/prometheus`, `/healthz/ready`; read-only) and the admin
//! listener (`/debug/configz`, `/config_dump`, `/clusters`, `/ready`, and the writes
//! `/healthcheck/fail|ok`, `/quitquitquit`; loopback by default).
//!
//! Both run on a thread of their own ([`listener`]), outside Pingora's services, so they
//! keep answering while the proxy listeners drain after SIGTERM, as Envoy's admin does:
//! `envoy_server_state` and `/ready` then say so.

mod clusters;
pub mod listener;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Method, Response};
use telemetry::export::RecentTraces;
use telemetry::stats::{negotiate, Gauge, Registry, RenderOptions};

use crate::config_loop::StatusCell;
use crate::snapshot::SnapshotCell;

/// The process's serving state, shared by the drain, the admin writes and the
/// readiness answers.
pub struct Lifecycle {
    draining: AtomicBool,
    /// `/healthcheck/fail` was called (and no `/healthcheck/ok` since).
    health_failed: AtomicBool,
    /// `envoy_server_state`.
    state: Gauge,
}

impl Lifecycle {
    pub fn new(state: Gauge) -> Arc<Self> {
        state.set(0);
        Arc::new(Lifecycle {
            draining: AtomicBool::new(false),
            health_failed: AtomicBool::new(false),
            state,
        })
    }

    /// SIGTERM: `envoy_server_state` 1 (draining); readiness fails from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.state.set(1);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// What a handler sees of a request: its head, its body (read whole, bounded by
/// [`listener::MAX_BODY`]) and the peer it came from.
pub struct AdminRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    pub peer: std::net::SocketAddr,
}

impl AdminRequest {
    /// A request with no headers or body, from loopback (unit tests, internal calls).
    pub fn get(path_and_query: &str) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path_and_query.to_string(), None),
        };
        AdminRequest {
            method: Method::GET,
            path,
            query,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, percent-decoded (`+` stays `+`).
    pub fn param(&self, key: &str) -> Option<String> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k == key).then_some(v)
            })
            .next()
            .and_then(percent_decode)
    }
}

/// A listener's request handler.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn respond(&self, req: &AdminRequest) -> Response<Vec<u8>>;
}

pub(crate) fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn ready(snapshot: &SnapshotCell, life: &Lifecycle) -> Response<Vec<u8>> {
    if life.is_draining() {
        reply(503, "text/plain", b"DRAINING\n".to_vec())
    } else if life.health_failed.load(Ordering::Relaxed) {
        reply(503, "text/plain", b"health check failed\n".to_vec())
    } else if snapshot.load().is_live() {
        reply(200, "text/plain", b"LIVE\n".to_vec())
    } else {
        reply(
            503,
            "text/plain",
            b"not ready: no config snapshot yet\n".to_vec(),
        )
    }
}

/// Envoy admin's `?usedonly` and `?filter=<regex>` (percent-decoded; `+` stays `+`, as
/// regexes need it).
fn render_options(query: Option<&str>) -> Result<RenderOptions, String> {
    let mut opts = RenderOptions::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "usedonly" => opts.used_only = true,
            "filter" if !value.is_empty() => {
                let pattern = percent_decode(value)
                    .ok_or_else(|| "filter: invalid percent-encoding".to_string())?;
                let re = regex::Regex::new(&pattern)
                    .map_err(|e| format!("filter: invalid regex {pattern:?}: {e}"))?;
                opts.filter = Some(re);
            }
            _ => {}
        }
    }
    Ok(opts)
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `/stats/prometheus`: text format 0.0.4, or OpenMetrics when the scraper's `Accept`
/// prefers it (Prometheus does by default; it then gets exemplars).
pub(crate) fn prometheus_stats(
    registry: &Registry,
    query: Option<&str>,
    accept: Option<&str>,
) -> Response<Vec<u8>> {
    match render_options(query) {
        Ok(mut opts) => {
            opts.format = negotiate(accept);
            reply(
                200,
                opts.format.content_type(),
                registry.render_with(&opts).into_bytes(),
            )
        }
        Err(e) => reply(400, "text/plain", format!("{e}\n").into_bytes()),
    }
}

/// Only `GET` and `HEAD` read.
pub(crate) fn method_not_allowed(allowed: &str) -> Response<Vec<u8>> {
    let mut r = reply(
        405,
        "text/plain",
        format!("method not allowed; use {allowed}\n").into_bytes(),
    );
    if let Ok(v) = http::HeaderValue::from_str(allowed) {
        r.headers_mut().insert(http::header::ALLOW, v);
    }
    r
}

pub(crate) fn is_read(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD
}

pub struct StatsApp {
    pub registry: Arc<Registry>,
    pub snapshot: SnapshotCell,
    pub lifecycle: Arc<Lifecycle>,
}

#[async_trait::async_trait]
impl Handler for StatsApp {
    async fn respond(&self, req: &AdminRequest) -> Response<Vec<u8>> {
        match req.path.as_str() {
            "/stats/prometheus" | "/healthz/ready" if !is_read(&req.method) => {
                method_not_allowed("GET, HEAD")
            }
            "/stats/prometheus" => prometheus_stats(
                &self.registry,
                req.query.as_deref(),
                req.header(http::header::ACCEPT),
            ),
            "/healthz/ready" => ready(&self.snapshot, &self.lifecycle),
            _ => reply(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}

pub struct AdminApp {
    pub status: StatusCell,
    pub snapshot: SnapshotCell,
    /// Recent sampled requests, for `/debug/traces`.
    pub recent: Arc<RecentTraces>,
    pub lifecycle: Arc<Lifecycle>,
    /// Whether `POST /healthcheck/fail|ok` and `/quitquitquit` are served: always on a
    /// loopback admin address, elsewhere only with `--admin-allow-writes`.
    pub writes: bool,
    /// `/ui` and `/api/console/...`, unless the console has its own `--console-addr`.
    pub console: Option<Arc<crate::console::Console>>,
}

impl AdminApp {
    fn write(&self, path: &str) -> Response<Vec<u8>> {
        if !self.writes {
            return reply(
                403,
                "text/plain",
                b"admin writes are off on a non-loopback admin address; start with --admin-allow-writes\n"
                    .to_vec(),
            );
        }
        match path {
            "/healthcheck/fail" => {
                self.lifecycle.health_failed.store(true, Ordering::Relaxed);
                tracing::warn!("admin: /healthcheck/fail; readiness fails until /healthcheck/ok");
            }
            "/healthcheck/ok" => {
                self.lifecycle.health_failed.store(false, Ordering::Relaxed);
                tracing::info!("admin: /healthcheck/ok");
            }
            _ => {
                tracing::info!("admin: /quitquitquit; draining as on SIGTERM");
                // The same path as a SIGTERM: Pingora stops accepting, the drain follows.
                // A moment later, so this answer is written before an idle gateway exits.
                std::thread::spawn(|| {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    // SAFETY: kill on our own pid has no memory effects.
                    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
                });
            }
        }
        reply(200, "text/plain", b"OK\n".to_vec())
    }
}

const WRITES: [&str; 3] = ["/healthcheck/fail", "/healthcheck/ok", "/quitquitquit"];

#[async_trait::async_trait]
impl Handler for AdminApp {
    async fn respond(&self, req: &AdminRequest) -> Response<Vec<u8>> {
        if let Some(console) = &self.console {
            if crate::console::serves(&req.path) {
                return console.respond(req).await;
            }
        }
        if WRITES.contains(&req.path.as_str()) {
            return if req.method == Method::POST {
                self.write(&req.path)
            } else {
                method_not_allowed("POST")
            };
        }
        if !is_read(&req.method) {
            return method_not_allowed("GET, HEAD");
        }
        let json = |v: &serde_json::Value| {
            reply(
                200,
                "application/json",
                serde_json::to_vec_pretty(v).unwrap_or_default(),
            )
        };
        match req.path.as_str() {
            "/debug/configz" => json(&self.status.load().configz()),
            "/config_dump" => {
                let status = self.status.load();
                json(&serde_json::json!({
                    "configz": status.configz(),
                    "resources": status.resources(),
                }))
            }
            "/clusters" => reply(
                200,
                "text/plain",
                clusters::render(&self.snapshot.load()).into_bytes(),
            ),
            "/ready" => ready(&self.snapshot, &self.lifecycle),
            "/debug/traces" => json(&self.recent.to_json()),
            _ => reply(
                404,
                "text/plain",
                b"not found; try /ui, /debug/configz, /config_dump, /clusters, /debug/traces, /ready\n"
                    .to_vec(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_options() {
        let o = render_options(Some("usedonly&filter=cluster%7Cx.%2B")).unwrap();
        assert!(o.used_only);
        assert_eq!(o.filter.unwrap().as_str(), "cluster|x.+");
        let o = render_options(None).unwrap();
        assert!(!o.used_only && o.filter.is_none());
        let o = render_options(Some("filter=upstream_rq.+total")).unwrap();
        assert_eq!(o.filter.unwrap().as_str(), "upstream_rq.+total");
        let e = render_options(Some("filter=(")).unwrap_err();
        assert!(e.starts_with("filter: invalid regex \"(\""), "{e}");
        assert!(render_options(Some("filter=%zz")).is_err());
    }

    #[test]
    fn prometheus_stats_follow_the_accept_header() {
        use telemetry::stats::Kind;
        let r = Registry::new();
        r.family("envoy_cluster_upstream_rq", "by code", Kind::Counter)
            .counter(&[("response_code", "200")])
            .inc();
        let content_type = |resp: &Response<Vec<u8>>| {
            resp.headers()[http::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_string()
        };
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let om = prometheus_stats(&r, None, Some(prometheus));
        assert_eq!(om.status(), 200);
        assert_eq!(
            content_type(&om),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let body = String::from_utf8(om.body().clone()).unwrap();
        assert!(
            body.contains("# TYPE envoy_cluster_upstream_rq unknown\n"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");

        for accept in [None, Some("*/*"), Some("text/plain")] {
            let text = prometheus_stats(&r, Some("usedonly"), accept);
            assert_eq!(
                content_type(&text),
                "text/plain; version=0.0.4; charset=utf-8"
            );
            let body = String::from_utf8(text.body().clone()).unwrap();
            assert!(body.contains("# TYPE envoy_cluster_upstream_rq counter\n"));
            assert!(!body.contains("EOF"));
        }
        let bad = prometheus_stats(&r, Some("filter=("), Some(prometheus));
        assert_eq!(bad.status(), 400);
    }
}
