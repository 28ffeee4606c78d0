//! The stats listener (`/stats/prometheus`, `/healthz/ready`; read-only) and the admin
//! listener (`/debug/configz`, `/config_dump`, `/ready`; loopback by default).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use telemetry::export::RecentTraces;
use telemetry::stats::{negotiate, Registry, RenderOptions};

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

fn percent_decode(s: &str) -> Option<String> {
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

pub struct StatsApp {
    pub registry: Arc<Registry>,
    pub snapshot: SnapshotCell,
}

#[async_trait]
impl ServeHttp for StatsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        match req.uri.path() {
            "/stats/prometheus" => {
                // A header that is not visible ASCII is as good as none: text format.
                let accept = req
                    .headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                prometheus_stats(&self.registry, req.uri.query(), accept)
            }
            "/healthz/ready" => ready(&self.snapshot),
            _ => reply(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}

pub struct AdminApp {
    pub status: StatusCell,
    pub snapshot: SnapshotCell,
    /// Recent sampled requests, for `/debug/traces`.
    pub recent: Arc<RecentTraces>,
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
            "/debug/configz" => json(&status.configz()),
            "/config_dump" => json(&serde_json::json!({
                "configz": status.configz(),
                "resources": status.resources(),
            })),
            "/ready" => ready(&self.snapshot),
            "/debug/traces" => json(&self.recent.to_json()),
            _ => reply(
                404,
                "text/plain",
                b"not found; try /debug/configz, /config_dump, /debug/traces, /ready\n".to_vec(),
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
