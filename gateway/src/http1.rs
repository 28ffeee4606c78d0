//! One HTTP/1.1 exchange on a new connection to an endpoint: what a Wasm plugin's
//! `proxy_http_call` and a native filter's call (chatgpt-proxy) both send. A leaf: the
//! data plane's callers import it, it imports nothing of the gateway.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Collected, Full, Limited};
use hyper_util::rt::TokioIo;

/// Send `req` to `addr` and read the whole answer, its body at most `max_body` bytes.
/// Errors say which step failed.
pub async fn exchange(
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<(http::response::Parts, Collected<Bytes>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let collected = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok((parts, collected))
}
