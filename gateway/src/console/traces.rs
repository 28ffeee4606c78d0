//! `/api/console/traces` (the recent sampled requests, filtered) and
//! `/api/console/traces/<trace_id>` (one trace's spans, laid out for a waterfall).
//!
//! Both read the ring behind `/debug/traces`: nothing is kept for the console alone.

use std::sync::Arc;

use serde_json::{json, Value};
use telemetry::export::{spans_json, RecentTraces};
use telemetry::trace::RequestTrace;

use crate::admin::AdminRequest;

/// Most traces one list answer carries.
const MAX_LIST: usize = 500;

/// A trace's link in the user's tracing UI.
fn link(template: &Option<String>, trace_id: &str) -> Value {
    match template {
        Some(t) => Value::String(t.replace("{trace_id}", trace_id)),
        None => Value::Null,
    }
}

/// Which statuses a `status` filter keeps: a code (`503`), a class (`5xx`) or `error`
/// (5xx, or no response at all).
fn status_matches(filter: &str, status: u16) -> bool {
    let f = filter.trim().to_ascii_lowercase();
    if f.is_empty() {
        return true;
    }
    if f == "error" {
        return status >= 500 || status == 0;
    }
    if let Some(class) = f.strip_suffix("xx") {
        return class.parse::<u16>().is_ok_and(|c| status / 100 == c);
    }
    f.parse::<u16>().is_ok_and(|c| c == status)
}

fn duration_ms(t: &RequestTrace) -> f64 {
    t.spans.first().map_or(0.0, |s| {
        s.end
            .duration_since(s.start)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    })
}

fn unix_us(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn start_unix_us(t: &RequestTrace) -> u64 {
    t.spans.first().map_or(0, |s| unix_us(s.start))
}

fn summary(t: &RequestTrace, template: &Option<String>) -> Value {
    let id = t.trace_id.to_string();
    let http = t.http.as_ref();
    let attempts = t.spans.len().saturating_sub(1);
    json!({
        "trace_id": id,
        "start_unix_us": start_unix_us(t),
        "duration_ms": (duration_ms(t) * 1000.0).round() / 1000.0,
        "method": http.map(|h| h.method.as_str().to_string()),
        "url": http.map(|h| h.url.to_string()),
        "path": http.map(|h| h.path().to_string()),
        "status": http.map_or(0, |h| h.status),
        "flags": http.map(|h| h.flags.to_string()),
        "route": http.and_then(|h| h.route_name.as_deref()),
        "cluster": http.and_then(|h| h.cluster.as_deref()),
        "attempts": attempts,
        "retries": attempts.saturating_sub(1),
        "error": t.spans.first().is_some_and(|s| s.error),
        "link": link(template, &id),
    })
}

/// `?route=&status=&min_ms=&max_ms=&limit=`, newest first.
pub fn list(recent: &RecentTraces, req: &AdminRequest, template: &Option<String>) -> Value {
    let route = req.param("route").filter(|r| !r.is_empty());
    let status = req.param("status").unwrap_or_default();
    let min_ms = req.param("min_ms").and_then(|v| v.parse::<f64>().ok());
    let max_ms = req.param("max_ms").and_then(|v| v.parse::<f64>().ok());
    let from_us = req
        .param("from_ms")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|v| v * 1000);
    let to_us = req
        .param("to_ms")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|v| v * 1000);
    let limit = req
        .param("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100)
        .min(MAX_LIST);
    let all = recent.snapshot();
    let traces: Vec<Value> = all
        .iter()
        .filter(|t| {
            let http = t.http.as_ref();
            let ms = duration_ms(t);
            let start = start_unix_us(t);
            route
                .as_deref()
                .is_none_or(|r| http.and_then(|h| h.route_name.as_deref()) == Some(r))
                && status_matches(&status, http.map_or(0, |h| h.status))
                && min_ms.is_none_or(|m| ms >= m)
                && max_ms.is_none_or(|m| ms <= m)
                && from_us.is_none_or(|f| start >= f)
                && to_us.is_none_or(|t| start <= t)
        })
        .take(limit)
        .map(|t| summary(t, template))
        .collect();
    json!({
        "capacity": recent.capacity(),
        "held": all.len(),
        "count": traces.len(),
        "traces": traces,
    })
}

/// Every recent request of a trace, its spans with their start offsets from the
/// earliest span (microseconds) and depth in the parent/child tree.
pub fn one(recent: &RecentTraces, trace_id: &str, template: &Option<String>) -> Option<Value> {
    let requests: Vec<Arc<RequestTrace>> = recent
        .snapshot()
        .into_iter()
        .filter(|t| t.trace_id.to_string() == trace_id)
        .collect();
    if requests.is_empty() {
        return None;
    }
    let mut spans: Vec<Value> = Vec::new();
    for t in requests.iter().rev() {
        let mut own = spans_json(t);
        // The plugin chain's phases, as children of the request's server span.
        let server = own
            .first()
            .and_then(|s| s["span_id"].as_str())
            .map(str::to_string);
        for (i, p) in t.phases.iter().enumerate() {
            let start_us = unix_us(p.start);
            own.push(json!({
                "trace_id": trace_id,
                "span_id": format!("{}-phase{i}", server.as_deref().unwrap_or("")),
                "parent_span_id": server,
                "kind": "plugin",
                "name": p.name,
                "start_unix_us": start_us,
                "duration_us": unix_us(p.end).saturating_sub(start_us),
                "error": false,
                "attributes": {},
            }));
        }
        spans.extend(own);
    }
    let t0 = spans
        .iter()
        .filter_map(|s| s["start_unix_us"].as_u64())
        .min()
        .unwrap_or(0);
    let ids: Vec<(String, Option<String>)> = spans
        .iter()
        .map(|s| {
            (
                s["span_id"].as_str().unwrap_or("").to_string(),
                s["parent_span_id"].as_str().map(str::to_string),
            )
        })
        .collect();
    let depth = |i: usize| {
        let mut d = 0;
        let mut parent = ids[i].1.clone();
        while let Some(p) = parent {
            match ids.iter().find(|(id, _)| *id == p) {
                Some((_, pp)) if d < 32 => {
                    d += 1;
                    parent = pp.clone();
                }
                _ => break,
            }
        }
        d
    };
    let mut attempt = 0;
    for (i, s) in spans.iter_mut().enumerate() {
        let start = s["start_unix_us"].as_u64().unwrap_or(t0);
        s["offset_us"] = json!(start - t0);
        s["depth"] = json!(depth(i));
        if s["kind"] == "client" {
            attempt += 1;
            s["attempt"] = json!(attempt);
            s["retry"] = json!(attempt > 1);
        } else {
            attempt = 0;
        }
    }
    let total_us = spans
        .iter()
        .map(|s| s["offset_us"].as_u64().unwrap_or(0) + s["duration_us"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    Some(json!({
        "trace_id": trace_id,
        "link": link(template, trace_id),
        "requests": requests.iter().map(|t| summary(t, template)).collect::<Vec<_>>(),
        "total_us": total_us,
        "spans": spans,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters() {
        assert!(status_matches("", 200));
        assert!(status_matches("5xx", 503));
        assert!(!status_matches("5xx", 404));
        assert!(status_matches("error", 0));
        assert!(status_matches("error", 502));
        assert!(!status_matches("error", 404));
        assert!(status_matches("404", 404));
        assert!(!status_matches("nonsense", 404));
    }
}
