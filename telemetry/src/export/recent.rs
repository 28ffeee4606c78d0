//! The last sampled requests, kept for the admin `/debug/traces` page.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};

use super::unix_nanos;
use crate::trace::{socket_addr_text, RequestTrace, SpanKind, Tag};

/// A ring of the last `capacity` [`RequestTrace`]s. `push` is a short lock and a
/// pointer move; rendering copies the pointers out first, so it never holds up a
/// request.
#[derive(Debug)]
pub struct RecentTraces {
    capacity: usize,
    ring: Mutex<VecDeque<Arc<RequestTrace>>>,
}

impl RecentTraces {
    /// `capacity` 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        RecentTraces {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn push(&self, t: Arc<RequestTrace>) {
        if self.capacity == 0 {
            return;
        }
        let evicted = {
            let mut ring = self.lock();
            let evicted = if ring.len() >= self.capacity {
                ring.pop_front()
            } else {
                None
            };
            ring.push_back(t);
            evicted
        };
        // The last reference may free the trace: do that outside the lock.
        drop(evicted);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kept traces, newest first.
    pub fn snapshot(&self) -> Vec<Arc<RequestTrace>> {
        self.lock().iter().rev().cloned().collect()
    }

    /// `{"capacity", "count", "spans": [...]}`: every span of the kept requests, newest
    /// request first, each request's server span before its client spans.
    pub fn to_json(&self) -> Value {
        let traces = self.snapshot();
        let spans: Vec<Value> = traces.iter().flat_map(|t| spans_json(t)).collect();
        json!({
            "capacity": self.capacity,
            "count": traces.len(),
            "spans": spans,
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<RequestTrace>>> {
        // A panic elsewhere while holding it leaves a usable ring.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One request's spans as `/debug/traces` lists them: the server span first, then the
/// client spans in attempt order.
pub fn spans_json(t: &RequestTrace) -> Vec<Value> {
    let trace_id = t.trace_id.to_string();
    t.spans
        .iter()
        .map(|s| {
            let start_us = unix_nanos(s.start) / 1000;
            let end_us = unix_nanos(s.end) / 1000;
            let mut attributes = Map::new();
            t.for_each_tag(s, |k, v| {
                let v = match v {
                    Tag::Int(i) => Value::from(i),
                    Tag::Bool(b) => Value::Bool(b),
                    text => Value::String(text.text().into_owned()),
                };
                attributes.insert(k.to_string(), v);
            });
            json!({
                "trace_id": trace_id,
                "segment_id": t.segment_id,
                "span_id": s.span_id.to_string(),
                "parent_span_id": s.parent_span_id.map(|p| p.to_string()),
                "kind": match s.kind { SpanKind::Server => "server", SpanKind::Client => "client" },
                "name": t.span_name(s),
                "start": humantime::format_rfc3339_micros(s.start).to_string(),
                "end": humantime::format_rfc3339_micros(s.end).to_string(),
                "start_unix_us": start_us,
                "duration_us": end_us.saturating_sub(start_us),
                "attributes": attributes,
                "error": s.error,
                "peer": s.peer.as_ref().map(socket_addr_text),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::sample_trace;
    use super::*;

    #[test]
    fn keeps_the_last_n_newest_first() {
        let r = RecentTraces::new(3);
        for i in 0..5 {
            r.push(Arc::new(sample_trace(i, 0)));
        }
        assert_eq!(r.len(), 3);
        let ids: Vec<String> = r.snapshot().iter().map(|t| t.segment_id.clone()).collect();
        assert!(ids[0].starts_with("seg-4-") && ids[2].starts_with("seg-2-"));
        RecentTraces::new(0).push(Arc::new(sample_trace(1, 0)));
    }

    #[test]
    fn json_lists_every_span_with_its_links() {
        let r = RecentTraces::new(10);
        let t = sample_trace(7, 1);
        r.push(Arc::new(t.clone()));
        let v = r.to_json();
        assert_eq!(v["count"], 1);
        let spans = v["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);
        let s = &spans[0];
        assert_eq!(s["trace_id"], t.trace_id.to_string());
        assert_eq!(s["span_id"], t.spans[0].span_id.to_string());
        assert!(s["parent_span_id"].is_null());
        assert_eq!(s["kind"], "server");
        assert_eq!(s["name"], "GET /echo");
        assert_eq!(s["start"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(s["end"], "2023-11-14T22:13:20.025250Z");
        assert_eq!(s["start_unix_us"], 1_700_000_000_000_000u64);
        assert_eq!(s["duration_us"], 25_250);
        assert_eq!(s["attributes"]["status_code"], 503);
        assert_eq!(s["attributes"]["sampled"], true);
        assert_eq!(s["attributes"]["http.method"], "GET");
        assert_eq!(s["error"], true);
        assert_eq!(s["peer"], "10.0.0.1:5555");
        assert_eq!(spans[1]["parent_span_id"], s["span_id"]);
        assert_eq!(spans[1]["kind"], "client");
    }
}
