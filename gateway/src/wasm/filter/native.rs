//! Native filters in the chain: the configuration a filter's rules select, run on the
//! request headers (waiting when it asks to), on the held body, and what it leaves for
//! the response side.

use std::sync::Arc;

use pingora_http::RequestHeader;

use super::{Step, Verdict, WasmRequest};
use crate::filters::{ChainEntry, FilterStatus, HttpFilter, LocalReply, MatchInput};
use crate::wasm::stream::LocalResponse;

/// A native filter that ran on this request.
pub(super) struct NativeRun {
    /// Its chain position.
    pub index: usize,
    /// The configuration its rules selected.
    pub filter: Arc<dyn HttpFilter>,
    /// Headers it asked to set on the upstream's response.
    pub response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl WasmRequest {
    /// Native filter `i` on the request headers: the configuration its rules select for
    /// this request, if any, runs; a reply ends the chain as a plugin's local reply does,
    /// a wait (Redis, an HTTP call) holds the request, not the thread.
    pub(super) async fn native_request_headers(
        &mut self,
        i: usize,
        f: &crate::filters::NativeFilter,
        req: &mut RequestHeader,
        eos: bool,
    ) -> Step {
        if self.authority.is_none() {
            // A clone (of HTTP/1's Host, refcounted), so filters may then edit the
            // request. Read once: a filter that rewrites the host does not move the
            // request to other rules of the filters after it.
            let from_uri = req.uri.authority().map(|a| a.as_str());
            self.authority = Some(match from_uri {
                Some(a) => {
                    http::HeaderValue::from_str(a).unwrap_or(http::HeaderValue::from_static(""))
                }
                None => req
                    .headers
                    .get(http::header::HOST)
                    .cloned()
                    .unwrap_or(http::HeaderValue::from_static("")),
            });
        }
        let (filter, status) = {
            let authority = self
                .authority
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let input = MatchInput {
                route: self.info.route_name.as_deref(),
                authority,
                cluster: self.info.cluster_name.as_deref(),
                peer: self.info.peer.map(|a| a.ip()),
            };
            let Some(filter) = f.select(&input) else {
                return Step::Next;
            };
            let filter = filter.clone();
            let status = filter.on_request_headers(req, &input);
            (filter, status)
        };
        let wants_body = !eos && filter.wants_request_body();
        self.natives.push(NativeRun {
            index: i,
            filter,
            response_headers: Vec::new(),
        });
        let reply = match status {
            FilterStatus::Continue => None,
            FilterStatus::Reply(reply) => Some(reply),
            FilterStatus::Wait(pending) => {
                let decision = pending.0.await;
                if let Some(run) = self.natives.last_mut() {
                    run.response_headers = decision.response_headers;
                }
                decision.reply
            }
        };
        match reply {
            Some(reply) => {
                f.stats.local_replies.inc();
                Step::End(Verdict::Respond(native_reply(&f.name, reply)))
            }
            None if wants_body => Step::WantBody,
            None => Step::Next,
        }
    }

    /// The held request body for native filter `i`, if it ran and reads bodies.
    pub(super) fn native_request_body(&self, i: usize, req: &RequestHeader, body: &[u8]) -> Step {
        let Some(run) = self.natives.iter().find(|r| r.index == i) else {
            return Step::Next;
        };
        if !run.filter.wants_request_body() {
            return Step::Next;
        }
        match run.filter.on_request_body(req, body) {
            FilterStatus::Reply(reply) => {
                let ChainEntry::Native(f) = &self.chain[i] else {
                    return Step::Next;
                };
                f.stats.local_replies.inc();
                Step::End(Verdict::Respond(native_reply(&f.name, reply)))
            }
            // A body callback cannot wait: go on.
            FilterStatus::Continue | FilterStatus::Wait(_) => Step::Next,
        }
    }
}

/// A native filter's reply as a plugin's local reply.
pub(super) fn native_reply(name: &str, reply: LocalReply) -> LocalResponse {
    LocalResponse {
        status: reply.status,
        details: format!("native_filter:{name}"),
        body: reply.body,
        headers: reply
            .headers
            .into_iter()
            .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
            .collect(),
    }
}
