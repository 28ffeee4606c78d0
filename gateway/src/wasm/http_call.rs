//! The calls plugins make to clusters (`outbound|<port>||<host>`), sent once the
//! callback that made them has returned: `proxy_http_call` over HTTP/1.1 to one endpoint
//! of the cluster, `proxy_redis_call` through the plugin's Redis client. The answer (or
//! a failure) goes back to the plugin's `proxy_on_http_call_response` or
//! `proxy_on_redis_call_response` on its root context, exactly once per token: by the
//! request that waits for it (`filter.rs`), or else by the VM's slot (`plugin.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::oneshot;

use super::host::{CallAnswer, CallRequest, CallResponse, HttpRequest, PendingCall};

/// Envoy's default for a call without a timeout is none; ours is bounded.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body a plugin gets.
const MAX_BODY: usize = 16 << 20;

/// A call on its way: its token, the context that made it, and where its response comes.
pub struct InFlight {
    pub token: u32,
    pub context: u32,
    pub response: oneshot::Receiver<CallAnswer>,
    redis: bool,
}

impl InFlight {
    /// The answer of a call whose task ended without one (its runtime shut down).
    pub fn lost(&self) -> CallAnswer {
        if self.redis {
            CallAnswer::Redis(None)
        } else {
            CallAnswer::Http(None)
        }
    }
}

/// Send `calls`: HTTP ones to the endpoints `resolve` gives for their clusters, Redis
/// ones to the address resolved when the plugin made them.
#[inline]
pub fn dispatch(
    calls: Vec<PendingCall>,
    resolve: &(dyn Fn(&str) -> Option<SocketAddr> + Send + Sync),
) -> Vec<InFlight> {
    // Most callbacks make none: decided where it is called, without a call.
    if calls.is_empty() {
        return Vec::new();
    }
    send_all(calls, resolve)
}

fn send_all(
    calls: Vec<PendingCall>,
    resolve: &(dyn Fn(&str) -> Option<SocketAddr> + Send + Sync),
) -> Vec<InFlight> {
    calls
        .into_iter()
        .map(|call| {
            let (tx, rx) = oneshot::channel();
            let (token, context) = (call.token, call.context);
            let redis = matches!(call.request, CallRequest::Redis { .. });
            match call.request {
                CallRequest::Http(request) => send_http(request, resolve, tx),
                CallRequest::Redis {
                    client,
                    addr,
                    query,
                } => {
                    tokio::spawn(async move {
                        // The client bounds the call by its timeout.
                        let reply = match client.call(addr, query).await {
                            Ok(reply) => Some(reply),
                            Err(e) => {
                                tracing::debug!(%addr, error = %e, "plugin Redis call failed");
                                None
                            }
                        };
                        let _ = tx.send(CallAnswer::Redis(reply));
                    });
                }
            }
            InFlight {
                token,
                context,
                response: rx,
                redis,
            }
        })
        .collect()
}

fn send_http(
    call: HttpRequest,
    resolve: &(dyn Fn(&str) -> Option<SocketAddr> + Send + Sync),
    tx: oneshot::Sender<CallAnswer>,
) {
    let timeout = call.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let endpoint = resolve(&call.cluster);
    tokio::spawn(async move {
        let r = match endpoint {
            Some(addr) => tokio::time::timeout(timeout, send(addr, call)).await,
            None => Ok(Err(format!("cluster {} has no endpoint", call.cluster))),
        };
        let r = match r {
            Ok(Ok(resp)) => Some(resp),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "plugin HTTP call failed");
                None
            }
            // Envoy answers a timed-out call with its router's local reply.
            Err(_) => Some(CallResponse {
                headers: vec![
                    (b":status".to_vec(), b"504".to_vec()),
                    (b"content-type".to_vec(), b"text/plain".to_vec()),
                ],
                body: b"upstream request timeout".to_vec(),
                trailers: Vec::new(),
            }),
        };
        let _ = tx.send(CallAnswer::Http(r));
    });
}

async fn send(addr: SocketAddr, call: HttpRequest) -> Result<CallResponse, String> {
    let mut builder = http::Request::builder();
    let mut path = "/".to_string();
    let mut method = "GET".to_string();
    for (k, v) in &call.headers {
        let value = String::from_utf8_lossy(v);
        match k.as_slice() {
            b":path" => path = value.into_owned(),
            b":method" => method = value.into_owned(),
            b":authority" => builder = builder.header(http::header::HOST, value.as_ref()),
            k if k.starts_with(b":") => {}
            _ => builder = builder.header(k.as_slice(), v.as_slice()),
        }
    }
    if !call.body.is_empty() {
        builder = builder.header(http::header::CONTENT_LENGTH, call.body.len());
    }
    let req = builder
        .method(method.as_str())
        .uri(path)
        .body(Full::new(Bytes::from(call.body)))
        .map_err(|e| format!("request: {e}"))?;
    let (parts, collected) = crate::http1::exchange(addr, req, MAX_BODY).await?;
    let mut headers = vec![(
        b":status".to_vec(),
        parts.status.as_str().as_bytes().to_vec(),
    )];
    headers.extend(
        parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec())),
    );
    let trailers = collected
        .trailers()
        .map(|t| {
            t.iter()
                .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Ok(CallResponse {
        headers,
        body: collected.to_bytes().to_vec(),
        trailers,
    })
}
