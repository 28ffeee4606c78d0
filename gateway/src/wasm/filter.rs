//! How a request goes through the plugin chain, in Envoy's order: request callbacks in
//! chain order, response callbacks in reverse, `proxy_on_log`/`done`/`delete` at the
//! end.
//!
//! Request side (async phases, so HTTP calls are awaited without blocking the thread):
//! a header callback that stops waits for its HTTP calls; one that stops with a body to
//! come (`StopIteration`) holds the headers while the whole body is read (at most the
//! buffer limit, else 413 as Envoy's buffer overflow) and given to the body callbacks,
//! then the headers go on to the next plugins and upstream with the body the plugins
//! left. Without a stop the body streams: each chunk passes every plugin's body
//! callback, a plugin that buffers holds chunks until it lets them go.
//!
//! Response side: Pingora sends response headers as soon as `response_filter` returns,
//! so header callbacks cannot wait for the body; a plugin that stops them gets the body
//! buffered and `content-length` is dropped (the body may change). Body callbacks run in
//! Pingora's synchronous body filter: HTTP calls made there are sent, and their answers
//! reach the root context without the stream.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::select_all;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::abi::{data_status, headers_status};
use super::host::PendingCall;
use super::http_call::{self, InFlight};
use super::plugin::{LoadedPlugin, Ran, VmSlot};
use super::stream::{LocalResponse, StreamInfo, StreamView};
use super::vm::{Effects, Failure};
use crate::filters::{edit_parts, ChainEntry, FilterStatus};
use native::{native_reply, NativeRun};

/// The most a held request body may be: Pingora replays a body to the upstream (and to
/// retries) from a 64 KiB buffer.
pub const MAX_HELD_BODY: usize = 64 * 1024;

/// How the request phase of the chain ended.
#[derive(Debug)]
pub enum Verdict {
    Continue,
    /// A plugin answered the request itself.
    Respond(LocalResponse),
    /// A fail-closed plugin failed: 503 (Envoy's `wasm_fail_stream`).
    Fail,
    /// A held body is over the buffer limit: 413.
    TooLarge,
    /// A plugin closed the stream (`proxy_close_stream`): reset, no response.
    Reset,
}

/// The chain a request runs: native filters and Wasm plugins in one order.
pub type Chain = Arc<[ChainEntry<LoadedPlugin>]>;

/// One plugin's context for this request.
struct PluginCtx {
    /// Its position in the chain.
    index: usize,
    plugin: Arc<LoadedPlugin>,
    slot: Arc<VmSlot>,
    id: u32,
    generation: u64,
    /// Failed (fail-open) or its VM was rebuilt: skipped from here on.
    skip: bool,
    finished: bool,
    /// Request body chunks the plugin buffers (`StopIterationAndBuffer`).
    request_buffer: BytesMut,
    response_buffer: BytesMut,
}

impl PluginCtx {
    /// Body pieces go through this plugin's VM: it is not skipped and has the callback
    /// (a missing one would continue, with nothing to do, at the cost of a VM entry).
    fn request_body(&self) -> bool {
        !self.skip && self.plugin.module.request_body
    }

    fn response_body(&self) -> bool {
        !self.skip && self.plugin.module.response_body
    }
}

/// What one callback's outcome means for the chain.
enum Step {
    Next,
    /// Headers stopped until the body is in.
    WantBody,
    End(Verdict),
}

/// The state of waiting for a plugin's HTTP calls.
enum Waited {
    Continued,
    /// The calls are answered and nobody resumed the stream.
    Drained,
    End(Verdict),
}

/// What a body callback's status does to the piece it saw: `Some(piece)` passes it on to
/// the next plugin, `None` stops it here (a buffered piece is kept in `kept`, to be seen
/// again with what follows).
fn data_outcome(status: i32, eos: bool, piece: BytesMut, kept: &mut BytesMut) -> Option<BytesMut> {
    match status {
        data_status::STOP_ITERATION_AND_BUFFER | data_status::STOP_ITERATION_AND_WATERMARK
            if !eos =>
        {
            *kept = piece;
            None
        }
        data_status::STOP_ITERATION_NO_BUFFER => None,
        _ => Some(piece),
    }
}

/// A callback stopped with nothing left that could resume it: the body is wanted
/// (headers that may wait for it), else the chain goes on rather than hang.
fn stopped(status: i32, wants_body: bool) -> (i32, Step) {
    if wants_body && status == headers_status::STOP_ITERATION {
        (status, Step::WantBody)
    } else {
        (status, Step::Next)
    }
}

/// Which callback `after` follows: its side, headers or body, and whether the plugin
/// may hold the headers for the body.
#[derive(Clone, Copy)]
struct Callback {
    side: Side,
    headers: bool,
    wants_body: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Request,
    Response,
}

pub struct WasmRequest {
    chain: Chain,
    info: StreamInfo,
    ctxs: Vec<PluginCtx>,
    /// The native filters that ran on the request headers, for the body and the
    /// response side.
    natives: Vec<NativeRun>,
    /// The request's authority as native filters match it, read once.
    authority: Option<http::HeaderValue>,
    /// The body the plugins left when it was held (sent upstream, and to retries).
    held_body: Option<Bytes>,
    /// A request header was edited by a plugin, and none asked to keep the route.
    pub reroute: bool,
    /// Among those edits, one of what every route lookup reads.
    route_keys: bool,
    keep_route: bool,
    /// Streaming request body: what went upstream so far (for a retry's replay), while
    /// it fits Pingora's replay buffer.
    sent: Option<BytesMut>,
    body_attempt: u32,
    /// A plugin's local reply replaces the upstream response: its body.
    replacement_body: Option<Bytes>,
    /// A local reply from a streaming request body callback, sent by `fail_to_proxy`.
    pub pending_reply: Option<LocalResponse>,
    /// A plugin closed the stream after its headers went upstream.
    pub reset: bool,
    /// The request headers ended the stream: no body callbacks.
    no_request_body: bool,
    no_response_body: bool,
}

/// The response being filtered, lent to the callbacks that may edit it (HTTP call
/// answers during its header phase), across the awaits of that phase.
#[derive(Clone, Copy)]
struct Editable(*mut ResponseHeader);

// SAFETY: it points into the `response_filter` call that awaits these callbacks; the
// response outlives them and nothing else touches it meanwhile.
unsafe impl Send for Editable {}

fn view(info: &StreamInfo, req: &mut RequestHeader) -> StreamView {
    StreamView {
        request: req,
        response: None,
        response_editable: false,
        request_body: None,
        response_body: None,
        info,
    }
}

impl WasmRequest {
    pub fn new(chain: &Chain, info: StreamInfo) -> Box<WasmRequest> {
        Box::new(WasmRequest {
            chain: chain.clone(),
            info,
            // Allocated with the first Wasm context (a chain of native filters has none).
            ctxs: Vec::new(),
            natives: Vec::new(),
            authority: None,
            held_body: None,
            reroute: false,
            route_keys: false,
            keep_route: false,
            sent: Some(BytesMut::new()),
            body_attempt: 0,
            replacement_body: None,
            pending_reply: None,
            reset: false,
            no_request_body: false,
            no_response_body: false,
        })
    }

    pub fn info_mut(&mut self) -> &mut StreamInfo {
        &mut self.info
    }

    /// Record plugin `i`'s context (`made`: its id and VM generation; `None`: it could
    /// not be made, and the plugin is skipped from here on).
    fn add_context(
        &mut self,
        i: usize,
        plugin: Arc<LoadedPlugin>,
        slot: Arc<VmSlot>,
        made: Option<(u32, u64)>,
    ) -> usize {
        let (id, generation) = made.unwrap_or_default();
        self.ctxs.push(PluginCtx {
            index: i,
            plugin,
            slot,
            id,
            generation,
            // Recorded as skipped so the fail strategy is applied once.
            skip: made.is_none(),
            finished: made.is_none(),
            request_buffer: BytesMut::new(),
            response_buffer: BytesMut::new(),
        });
        self.ctxs.len() - 1
    }

    /// A failed call: skip the plugin (fail-open) or end the request (fail-close).
    fn failed(&mut self, c: usize, f: &Failure) -> Step {
        let ctx = &mut self.ctxs[c];
        ctx.skip = true;
        ctx.finished = true;
        if ctx.plugin.fail_open {
            tracing::debug!(plugin = %ctx.plugin.name(), error = %f, "fail-open plugin skipped for this request");
            Step::Next
        } else {
            Step::End(Verdict::Fail)
        }
    }

    /// Carry out what a callback left: flags, a local reply, HTTP calls. Returns the
    /// calls still to send, or how the request ends.
    fn effects(&mut self, e: Effects) -> Result<Vec<PendingCall>, Verdict> {
        if e.actions.request_headers_changed {
            self.reroute = true;
        }
        if e.actions.route_keys_changed {
            self.route_keys = true;
        }
        if e.actions.keep_route {
            self.keep_route = true;
        }
        if e.actions.close {
            return Err(Verdict::Reset);
        }
        if let Some(lr) = e.actions.local_response {
            return Err(Verdict::Respond(lr));
        }
        Ok(e.calls)
    }

    /// Whether routing must be looked up again (a plugin edited request headers).
    /// `headers_matter`: a lookup could differ when only other headers changed. If not,
    /// and the plugins left the host, path and method alone, it would find the same
    /// route, and is skipped (a weighted destination keeps its first draw).
    pub fn needs_reroute(&self, headers_matter: bool) -> bool {
        self.reroute && !self.keep_route && (self.route_keys || headers_matter)
    }

    /// Wait for context `c`'s HTTP calls, handing each answer to its root context with
    /// the stream lent, until one of them resumes the stream or ends it.
    async fn wait(
        &mut self,
        c: usize,
        session: &mut Session,
        calls: Vec<PendingCall>,
        side: Side,
        response: Option<Editable>,
    ) -> Waited {
        let resolve = self.ctxs[c].plugin.shared.resolve.clone();
        let mut inflight: Vec<InFlight> = http_call::dispatch(calls, resolve.as_ref());
        while !inflight.is_empty() {
            let (answer, index) = {
                let (answer, index, _) =
                    select_all(inflight.iter_mut().map(|f| &mut f.response)).await;
                (answer, index)
            };
            let call = inflight.swap_remove(index);
            let answer = answer.unwrap_or_else(|_| call.lost());
            let ctx = &self.ctxs[c];
            let (id, slot, generation) = (ctx.id, ctx.slot.clone(), ctx.generation);
            let mut v = view(&self.info, session.req_header_mut());
            v.response = response.map(|r| r.0 as *const ResponseHeader);
            v.response_editable = response.is_some();
            let r = slot.run(Some(generation), |vm| {
                vm.on_call_response(call.token, answer, id, Some(v))?;
                Ok(vm.take_effects())
            });
            let e = match r {
                Ran::Done(e) => e,
                Ran::Stale => {
                    self.ctxs[c].skip = true;
                    return Waited::Drained;
                }
                Ran::Failed(f) => {
                    return match self.failed(c, &f) {
                        Step::End(v) => Waited::End(v),
                        _ => Waited::Drained,
                    };
                }
            };
            let resumed = match side {
                Side::Request => e.actions.continue_request,
                Side::Response => e.actions.continue_response,
            };
            match self.effects(e) {
                Ok(more) => inflight.extend(http_call::dispatch(more, resolve.as_ref())),
                Err(v) => return Waited::End(v),
            }
            if resumed {
                // Answers still to come go to the root context without the stream.
                slot.detach(inflight, generation);
                return Waited::Continued;
            }
        }
        Waited::Drained
    }

    /// After a callback returned `status` with effects `e`: what the chain does next,
    /// when that needs no waiting (most callbacks continue and make no calls; deciding
    /// it outside an async fn spares building and polling one). `Err`: the status and
    /// the calls to wait for, with [`Self::after_calls`].
    fn after(
        &mut self,
        c: usize,
        r: Ran<(i32, Effects)>,
        at: Callback,
    ) -> Result<(i32, Step), (i32, Vec<PendingCall>)> {
        let Callback {
            side,
            headers,
            wants_body,
        } = at;
        let (status, e) = match r {
            Ran::Done(x) => x,
            Ran::Stale => {
                self.ctxs[c].skip = true;
                return Ok((0, Step::Next));
            }
            Ran::Failed(f) => return Ok((0, self.failed(c, &f))),
        };
        tracing::trace!(plugin = %self.ctxs[c].plugin.name(), ?side, headers, status, calls = e.calls.len(), "Wasm callback returned");
        let resumed = match side {
            Side::Request => e.actions.continue_request,
            Side::Response => e.actions.continue_response,
        };
        let calls = match self.effects(e) {
            Ok(calls) => calls,
            Err(v) => return Ok((status, Step::End(v))),
        };
        let go_on = if headers {
            status == headers_status::CONTINUE
                || status == headers_status::CONTINUE_AND_DONT_END_STREAM
        } else {
            status == data_status::CONTINUE
        };
        if go_on || resumed {
            self.ctxs[c].slot.detach(
                http_call::dispatch(calls, self.ctxs[c].plugin.shared.resolve.as_ref()),
                self.ctxs[c].generation,
            );
            return Ok((0, Step::Next));
        }
        if !calls.is_empty() {
            return Err((status, calls));
        }
        Ok(stopped(status, wants_body))
    }

    /// The rest of [`Self::after`]: a stopped callback's calls are waited for.
    async fn after_calls(
        &mut self,
        c: usize,
        session: &mut Session,
        (status, calls): (i32, Vec<PendingCall>),
        at: Callback,
        response: Option<Editable>,
    ) -> (i32, Step) {
        match self.wait(c, session, calls, at.side, response).await {
            Waited::Continued => (0, Step::Next),
            Waited::End(v) => (status, Step::End(v)),
            Waited::Drained => stopped(status, at.wants_body),
        }
    }

    async fn request_headers(&mut self, i: usize, session: &mut Session, eos: bool) -> Step {
        if let ChainEntry::Native(f) = &self.chain[i] {
            let f = f.clone();
            return self
                .native_request_headers(i, &f, session.req_header_mut(), eos)
                .await;
        }
        let ChainEntry::Plugin(plugin) = &self.chain[i] else {
            return Step::Next;
        };
        let plugin = plugin.clone();
        let slot = plugin.slot();
        let s = slot.clone();
        let req = session.req_header_mut();
        let n = req.headers.len() + 4;
        let v = view(&self.info, req);
        // The context is made and sees its headers in one turn on the VM (one lock,
        // one timing: most of what a callback costs beside the guest's own work).
        let mut made = None;
        let r = slot.run(None, |vm| {
            let id = vm.create_context()?;
            made = Some((id, s.generation()));
            let status = vm.on_request_headers(id, n, eos, v)?;
            Ok((status, vm.take_effects()))
        });
        if made.is_none() {
            // The VM would not start or the context not be made (or the plugin is gone).
            if matches!(r, Ran::Failed(_)) {
                self.add_context(i, plugin, slot, None);
            }
            return self.created_failed(i);
        }
        let c = self.add_context(i, plugin, slot, made);
        let at = Callback {
            side: Side::Request,
            headers: true,
            wants_body: !eos,
        };
        match self.after(c, r, at) {
            Ok(done) => done.1,
            Err(wait) => self.after_calls(c, session, wait, at, None).await.1,
        }
    }

    /// The context of plugin `i` could not be made: its VM would not start.
    fn created_failed(&mut self, i: usize) -> Step {
        if matches!(&self.chain[i], ChainEntry::Plugin(p) if p.fail_open) {
            Step::Next
        } else {
            Step::End(Verdict::Fail)
        }
    }

    async fn request_body(
        &mut self,
        c: usize,
        session: &mut Session,
        body: &mut BytesMut,
        eos: bool,
    ) -> (i32, Step) {
        let ctx = &self.ctxs[c];
        if ctx.skip {
            return (0, Step::Next);
        }
        let (id, slot, generation) = (ctx.id, ctx.slot.clone(), ctx.generation);
        let mut v = view(&self.info, session.req_header_mut());
        v.request_body = Some(body as *mut BytesMut);
        let len = body.len();
        let r = slot.run(Some(generation), |vm| {
            let s = vm.on_request_body(id, len, eos, v)?;
            Ok((s, vm.take_effects()))
        });
        let at = Callback {
            side: Side::Request,
            headers: false,
            wants_body: false,
        };
        match self.after(c, r, at) {
            Ok(done) => done,
            Err(wait) => self.after_calls(c, session, wait, at, None).await,
        }
    }

    /// The request phase: header callbacks in chain order, the held body if one of them
    /// wants it. `limit`: the most body that may be held.
    pub async fn on_request(
        &mut self,
        session: &mut Session,
        limit: usize,
    ) -> pingora_error::Result<Verdict> {
        let eos = session.as_mut().is_body_empty();
        self.no_request_body = eos;
        let n = self.chain.len();
        let (mut next_header, mut next_body) = (0, 0);
        let mut body: Option<BytesMut> = None;
        loop {
            let mut stopped = false;
            while next_header < n {
                let step = self
                    .request_headers(next_header, session, eos && body.is_none())
                    .await;
                next_header += 1;
                match step {
                    Step::Next => {}
                    Step::WantBody => {
                        stopped = true;
                        break;
                    }
                    Step::End(v) => return Ok(v),
                }
            }
            if !stopped && body.is_none() {
                return Ok(Verdict::Continue);
            }
            let buf = match &mut body {
                Some(b) => b,
                None => {
                    let limit = limit.min(MAX_HELD_BODY);
                    match read_body(session, limit).await? {
                        Some(b) => body.insert(b),
                        None => return Ok(Verdict::TooLarge),
                    }
                }
            };
            let mut buf = std::mem::take(buf);
            // Plugins that have seen the headers get the body, up to the one that stopped.
            while next_body < next_header {
                let Some(c) = self.ctx_of(next_body) else {
                    if let Step::End(v) =
                        self.native_request_body(next_body, session.req_header(), &buf)
                    {
                        return Ok(v);
                    }
                    next_body += 1;
                    continue;
                };
                next_body += 1;
                let (status, step) = self.request_body(c, session, &mut buf, true).await;
                if status == data_status::STOP_ITERATION_NO_BUFFER {
                    buf.clear();
                }
                if let Step::End(v) = step {
                    return Ok(v);
                }
            }
            body = Some(buf);
            if next_header >= n {
                break;
            }
        }
        let body = body.unwrap_or_default();
        // The request headers as the plugins left them: the body's real length.
        let req = session.req_header_mut();
        req.remove_header(&http::header::TRANSFER_ENCODING);
        let _ = req.insert_header(http::header::CONTENT_LENGTH, body.len());
        self.held_body = Some(body.freeze());
        Ok(Verdict::Continue)
    }

    /// The index in `ctxs` of chain plugin `i`, if it has a context.
    fn ctx_of(&self, i: usize) -> Option<usize> {
        self.ctxs.iter().position(|c| c.index == i)
    }

    /// A request body chunk on its way upstream (Pingora's `request_body_filter`);
    /// `attempt` is the upstream attempt it goes to.
    pub async fn on_request_body(
        &mut self,
        session: &mut Session,
        data: &mut Option<Bytes>,
        eos: bool,
        attempt: u32,
    ) -> Result<(), Verdict> {
        if let Some(held) = &self.held_body {
            // The whole body is this replay of Pingora's buffer (also on retries).
            *data = Some(held.clone());
            return Ok(());
        }
        if attempt != self.body_attempt {
            let replay = self.body_attempt != 0;
            self.body_attempt = attempt;
            if replay {
                // Pingora replays what it read for the earlier attempt: send what the
                // plugins made of it instead of filtering it again.
                if let Some(sent) = &self.sent {
                    *data = Some(sent.clone().freeze());
                }
                return Ok(());
            }
        }
        if self.no_request_body || self.ctxs.iter().all(|c| !c.request_body()) {
            return Ok(());
        }
        let had_data = data.is_some();
        let mut chunk = data.take().map(BytesMut::from).unwrap_or_default();
        for c in 0..self.ctxs.len() {
            if !self.ctxs[c].request_body() {
                continue;
            }
            let mut buf = std::mem::take(&mut self.ctxs[c].request_buffer);
            buf.extend_from_slice(&chunk);
            let (status, step) = self.request_body(c, session, &mut buf, eos).await;
            if let Step::End(v) = step {
                return Err(v);
            }
            match data_outcome(status, eos, buf, &mut self.ctxs[c].request_buffer) {
                Some(next) => chunk = next,
                None => {
                    chunk = BytesMut::new();
                    break;
                }
            }
        }
        if let Some(sent) = &mut self.sent {
            if sent.len() + chunk.len() <= MAX_HELD_BODY {
                sent.extend_from_slice(&chunk);
            } else {
                self.sent = None;
            }
        }
        // Pingora's end of body without data stays that.
        *data = (had_data || !chunk.is_empty()).then(|| chunk.freeze());
        Ok(())
    }

    /// Response header callbacks, in reverse chain order. `no_body`: the headers end
    /// the response. A local reply replaces the response in place.
    pub async fn on_response_headers(
        &mut self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        no_body: bool,
    ) -> Result<(), Verdict> {
        self.no_response_body = no_body;
        // Wasm contexts and native filters that saw the request, last first (by chain
        // position, without allocating).
        for index in (0..self.chain.len()).rev() {
            let wasm = self.ctx_of(index);
            let Some(c) = wasm else {
                let Some(run) = self.natives.iter().find(|r| r.index == index) else {
                    continue;
                };
                if run.response_headers.is_empty() && !run.filter.acts_on_response() {
                    continue;
                }
                let req = session.req_header();
                let set = &run.response_headers;
                if let FilterStatus::Reply(reply) = edit_parts(resp, |p| {
                    for (name, value) in set {
                        p.headers.insert(name.clone(), value.clone());
                    }
                    run.filter.on_response_headers(req, p)
                }) {
                    if let ChainEntry::Native(f) = &self.chain[index] {
                        f.stats.local_replies.inc();
                        let lr = native_reply(&f.name, reply);
                        *resp = local_header(&lr);
                        self.replacement_body = Some(Bytes::from(lr.body));
                        self.info.response_code = lr.status;
                    }
                }
                continue;
            };
            if self.ctxs[c].skip {
                continue;
            }
            let ctx = &self.ctxs[c];
            let (id, slot, generation) = (ctx.id, ctx.slot.clone(), ctx.generation);
            let n = resp.headers.len() + 1;
            let ptr: *mut ResponseHeader = resp;
            let mut v = view(&self.info, session.req_header_mut());
            v.response = Some(ptr);
            v.response_editable = true;
            let r = slot.run(Some(generation), |vm| {
                let s = vm.on_response_headers(id, n, no_body, v)?;
                Ok((s, vm.take_effects()))
            });
            // Answers to HTTP calls made here may still edit this response.
            let at = Callback {
                side: Side::Response,
                headers: true,
                wants_body: false,
            };
            let (status, step) = match self.after(c, r, at) {
                Ok(done) => done,
                Err(wait) => {
                    self.after_calls(c, session, wait, at, Some(Editable(ptr)))
                        .await
                }
            };
            match step {
                Step::End(Verdict::Respond(lr)) => {
                    *resp = local_header(&lr);
                    self.replacement_body = Some(Bytes::from(lr.body));
                    self.info.response_code = lr.status;
                }
                Step::End(v) => return Err(v),
                _ => {}
            }
            if status == headers_status::STOP_ITERATION && !no_body {
                // The body is buffered for the plugin and may change length.
                resp.remove_header(&http::header::CONTENT_LENGTH);
            }
        }
        Ok(())
    }

    /// A response body chunk (Pingora's synchronous `response_body_filter`).
    pub fn on_response_body(
        &mut self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        eos: bool,
    ) -> Result<(), Verdict> {
        if let Some(replacement) = &self.replacement_body {
            *body = if eos { Some(replacement.clone()) } else { None };
            return Ok(());
        }
        if self.no_response_body || self.ctxs.iter().all(|c| !c.response_body()) {
            return Ok(());
        }
        let had_data = body.is_some();
        let mut chunk = body.take().map(BytesMut::from).unwrap_or_default();
        for c in (0..self.ctxs.len()).rev() {
            if !self.ctxs[c].response_body() {
                continue;
            }
            let ctx = &mut self.ctxs[c];
            let (id, slot, generation) = (ctx.id, ctx.slot.clone(), ctx.generation);
            let mut buf = std::mem::take(&mut ctx.response_buffer);
            buf.extend_from_slice(&chunk);
            let len = buf.len();
            // The headers are sent: plugins read them, as written, and cannot edit them.
            let sent = session
                .response_written()
                .map(|r| r as *const ResponseHeader);
            let mut v = view(&self.info, session.req_header_mut());
            v.response = sent;
            v.response_body = Some(&mut buf as *mut BytesMut);
            let r = slot.run(Some(generation), |vm| {
                let s = vm.on_response_body(id, len, eos, v)?;
                Ok((s, vm.take_effects()))
            });
            let (status, e) = match r {
                Ran::Done(x) => x,
                Ran::Stale => {
                    self.ctxs[c].skip = true;
                    chunk = buf;
                    continue;
                }
                Ran::Failed(f) => match self.failed(c, &f) {
                    Step::End(v) => return Err(v),
                    _ => {
                        chunk = buf;
                        continue;
                    }
                },
            };
            let calls = match self.effects(e) {
                Ok(calls) => calls,
                // Headers are gone: a local reply here can only end the stream.
                Err(Verdict::Respond(lr)) => {
                    tracing::debug!(plugin = %self.ctxs[c].plugin.name(), status = lr.status, "local reply after the response headers were sent; the stream is reset");
                    return Err(Verdict::Reset);
                }
                Err(v) => return Err(v),
            };
            slot.detach(
                http_call::dispatch(calls, self.ctxs[c].plugin.shared.resolve.as_ref()),
                self.ctxs[c].generation,
            );
            match data_outcome(status, eos, buf, &mut self.ctxs[c].response_buffer) {
                Some(next) => chunk = next,
                None => {
                    chunk = BytesMut::new();
                    break;
                }
            }
        }
        *body = (had_data || !chunk.is_empty()).then(|| chunk.freeze());
        Ok(())
    }

    /// A plugin's local reply to the request: through the response callbacks of the
    /// plugins that saw the request, then to the client. Returns the status sent.
    pub async fn respond(
        &mut self,
        session: &mut Session,
        lr: LocalResponse,
    ) -> pingora_error::Result<u16> {
        let mut header = local_header(&lr);
        let body = Bytes::from(lr.body);
        let no_body = body.is_empty();
        if let Err(v) = self
            .on_response_headers(session, &mut header, no_body)
            .await
        {
            // A plugin failed on its own reply: Envoy's 503 for a failed stream.
            tracing::debug!(verdict = ?v, "plugin failed while answering; 503");
            header = local_header(&LocalResponse {
                status: 503,
                details: "wasm_fail_stream".into(),
                body: Vec::new(),
                headers: Vec::new(),
            });
            self.replacement_body = Some(Bytes::new());
        }
        let mut out = Some(body);
        if self.replacement_body.is_none() {
            if let Err(v) = self.on_response_body(session, &mut out, true) {
                tracing::debug!(verdict = ?v, "plugin failed on its reply's body");
            }
        } else {
            out = self.replacement_body.clone();
        }
        let out = out.unwrap_or_default();
        // The whole body is known: its length frames it.
        header.insert_header(http::header::CONTENT_LENGTH, out.len())?;
        let status = header.status.as_u16();
        self.info.response_code = status;
        session
            .write_response_header(Box::new(header), out.is_empty())
            .await?;
        if !out.is_empty() {
            session.write_response_body(Some(out), true).await?;
        }
        Ok(status)
    }

    /// The stream is over: `proxy_on_log`, `proxy_on_done` and `proxy_on_delete` for every
    /// context, in chain order.
    pub fn on_log(&mut self, session: &mut Session) {
        for c in 0..self.ctxs.len() {
            let ctx = &mut self.ctxs[c];
            if ctx.finished {
                continue;
            }
            ctx.finished = true;
            let (id, slot, generation) = (ctx.id, ctx.slot.clone(), ctx.generation);
            let sent = session
                .response_written()
                .map(|r| r as *const ResponseHeader);
            let mut v = view(&self.info, session.req_header_mut());
            v.response = sent;
            let r = slot.run(Some(generation), |vm| {
                vm.finish(id, Some(v))?;
                Ok(vm.take_effects())
            });
            if let Ran::Done(e) = r {
                slot.detach(
                    http_call::dispatch(e.calls, self.ctxs[c].plugin.shared.resolve.as_ref()),
                    generation,
                );
            }
        }
    }
}

impl Drop for WasmRequest {
    fn drop(&mut self) {
        // A request that ended without its log phase still frees its contexts.
        for ctx in &mut self.ctxs {
            if ctx.finished {
                continue;
            }
            ctx.finished = true;
            let id = ctx.id;
            let _ = ctx.slot.run(Some(ctx.generation), |vm| vm.finish(id, None));
        }
    }
}

/// Read the whole request body, retained by Pingora for the upstream; `None` if it is
/// over `limit`.
async fn read_body(session: &mut Session, limit: usize) -> pingora_error::Result<Option<BytesMut>> {
    session.as_mut().enable_retry_buffering();
    let mut buf = BytesMut::new();
    while let Some(chunk) = session.as_mut().read_request_body().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf))
}

/// The response header of a plugin's local reply, as Envoy makes it: the plugin's
/// headers added to `:status`, `content-type: text/plain` when a body has none.
pub fn local_header(lr: &LocalResponse) -> ResponseHeader {
    let mut h = ResponseHeader::build(lr.status, Some(lr.headers.len() + 2))
        .unwrap_or_else(|_| ResponseHeader::build(500, None).expect("500 is a status"));
    for (k, v) in &lr.headers {
        if k.starts_with(b":") {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k),
            http::HeaderValue::from_bytes(v),
        ) {
            let _ = h.append_header(name, value);
        }
    }
    if lr.body.is_empty() {
        h.remove_header(&http::header::CONTENT_TYPE);
    } else if h.headers.get(http::header::CONTENT_TYPE).is_none() {
        let _ = h.insert_header(http::header::CONTENT_TYPE, "text/plain");
    }
    let _ = h.insert_header(http::header::CONTENT_LENGTH, lr.body.len());
    h
}

mod native;
#[cfg(test)]
mod tests;
