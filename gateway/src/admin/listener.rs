//! The stats and admin listeners: plain HTTP/1.1 on a thread and runtime of their own,
//! so neither the proxy's load nor its drain stops them.
//!
//! An admin address on loopback (the default) only ever talks to loopback peers: a
//! connection from elsewhere (an IPv4-mapped or forwarded one included) is closed at
//! accept. Bound elsewhere, anyone may read, and writes need `--admin-allow-writes`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::{AdminRequest, Handler};

/// How long a client has to send a request head (a slow one is closed).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body read (a console write carries one YAML object).
pub const MAX_BODY: usize = 1 << 20;
/// How often and how long a busy address is tried again at start-up.
const BIND_RETRY: Duration = Duration::from_millis(500);
const BIND_ATTEMPTS: u32 = 10;

/// Which peers a listener answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peers {
    Any,
    /// The listener is bound to loopback: so must its peers be.
    LoopbackOnly,
}

impl Peers {
    /// Loopback-only when `bound` is a loopback address.
    pub fn for_address(bound: &SocketAddr) -> Self {
        if bound.ip().is_loopback() {
            Peers::LoopbackOnly
        } else {
            Peers::Any
        }
    }

    pub fn allows(self, peer: &SocketAddr) -> bool {
        match self {
            Peers::Any => true,
            Peers::LoopbackOnly => match peer.ip() {
                IpAddr::V4(ip) => ip.is_loopback(),
                IpAddr::V6(ip) => {
                    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            },
        }
    }
}

/// One listener to run: its socket, its handler, its peers.
pub struct Endpoint {
    pub name: &'static str,
    pub listener: TcpListener,
    pub handler: Arc<dyn Handler>,
    pub peers: Peers,
}

/// Bind `addr`, trying again for a while when it is in use (the message is Pingora's,
/// so a supervisor that watches for it treats both alike).
pub fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let mut attempt = 0;
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => {
                l.set_nonblocking(true)?;
                return Ok(l);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < BIND_ATTEMPTS => {
                tracing::error!("{addr} is in use, will try again");
                attempt += 1;
                std::thread::sleep(BIND_RETRY);
            }
            Err(e) => return Err(e).with_context(|| format!("binding {addr}")),
        }
    }
}

/// Serve the endpoints on a new thread until the process exits.
pub fn spawn(endpoints: Vec<Endpoint>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the admin listeners' runtime")?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for ep in endpoints {
                    tasks.spawn(serve(ep));
                }
                while tasks.join_next().await.is_some() {}
            });
        })
        .context("the admin listeners' thread")?;
    Ok(())
}

async fn serve(ep: Endpoint) {
    let listener = match tokio::net::TcpListener::from_std(ep.listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = ep.name, error = %e, "cannot serve this listener");
            return;
        }
    };
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = ep.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !ep.peers.allows(&peer) {
            tracing::warn!(listener = ep.name, %peer, "refused a non-loopback peer");
            continue;
        }
        let handler = ep.handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let handler = handler.clone();
                async move {
                    let (head, body) = req.into_parts();
                    let body = match Limited::new(body, MAX_BODY).collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => {
                            let mut r = hyper::Response::new(Full::new(Bytes::from_static(
                                b"request body too large or cut\n",
                            )));
                            *r.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
                            return Ok::<_, Infallible>(r);
                        }
                    };
                    let resp = handler
                        .respond(&AdminRequest {
                            method: head.method,
                            path: head.uri.path().to_string(),
                            query: head.uri.query().map(str::to_string),
                            headers: head.headers,
                            body,
                            peer,
                        })
                        .await;
                    Ok::<_, Infallible>(resp.map(|b| Full::new(Bytes::from(b))))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_admin_answers_only_loopback_peers() {
        let bound: SocketAddr = "127.0.0.1:15000".parse().unwrap();
        let p = Peers::for_address(&bound);
        assert_eq!(p, Peers::LoopbackOnly);
        for ok in [
            "127.0.0.1:1",
            "127.9.9.9:2",
            "[::1]:3",
            "[::ffff:127.0.0.1]:4",
        ] {
            assert!(p.allows(&ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "10.0.0.1:1",
            "[2001:db8::1]:2",
            "[::ffff:10.0.0.1]:3",
            "0.0.0.0:4",
        ] {
            assert!(!p.allows(&no.parse().unwrap()), "{no}");
        }
        let any = Peers::for_address(&"0.0.0.0:15000".parse().unwrap());
        assert_eq!(any, Peers::Any);
        assert!(any.allows(&"10.0.0.1:1".parse().unwrap()));
        assert_eq!(
            Peers::for_address(&"[::1]:15000".parse().unwrap()),
            Peers::LoopbackOnly
        );
    }
}
