//! The HTTPS listener. As Higress creates port 443 only once some Ingress or domain
//! enables TLS, this listener is bound only while the snapshot has certificates, and
//! unbound (new connections refused, open ones kept) when the last one goes.
//!
//! Each handshake picks its certificate by SNI from the snapshot current at that moment,
//! so a rotated certificate serves the next handshake while established connections
//! keep theirs; nothing restarts. ALPN offers `h2` and `http/1.1`, as Higress's
//! listeners do. A connection then runs the same [`GatewayListener`] as plain HTTP,
//! with its own stats prefix.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openssl::ssl::{select_next_proto, AlpnError, NameType, SslAcceptor, SslMethod};
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::l4::listener::Listener;
use pingora_core::protocols::tls::server::handshake_with_callback;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::Service;
use pingora_core::tls::ext;
use tokio::sync::watch;

use super::app::GatewayListener;
use crate::snapshot::SnapshotCell;
use crate::stats::ListenerTlsStats;

/// How long a client has to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a failed bind is tried again, at first and at most.
const REBIND: Duration = Duration::from_secs(1);
const REBIND_MAX: Duration = Duration::from_secs(30);
/// ALPN: `h2` first, then `http/1.1` (wire format).
const ALPN: &[u8] = b"\x02h2\x08http/1.1";

/// The server name a TLS connection asked for, kept with its TLS digest (for the access
/// log's `requested_server_name`).
#[derive(Debug)]
pub struct ServerName(pub Box<str>);

/// The SNI of the request's connection, when it came over TLS with one.
pub fn server_name(session: &pingora_proxy::Session) -> Option<&str> {
    let digest = session.digest()?.ssl_digest.as_ref()?;
    digest.extension.get::<ServerName>().map(|s| &*s.0)
}

/// Whether a request on a TLS connection names a TLS domain other than the one its
/// SNI selected (domain fronting, or HTTP/2 connection reuse across certificates):
/// Envoy's filter chain then serves only the SNI's routes. A host without a
/// certificate of its own is not misdirected.
pub fn misdirected(
    session: &pingora_proxy::Session,
    certs: &crate::model::certs::CertStore,
) -> bool {
    let host = crate::model::strip_port(super::request_host(session.req_header()));
    let Some(served) = certs.find(Some(host)) else {
        return false;
    };
    certs
        .find(server_name(session))
        .is_none_or(|selected| selected.secret != served.secret)
}

/// Picks the certificate of one connection's handshake from the current snapshot.
struct CertSelector<'a> {
    snapshot: &'a SnapshotCell,
    /// No certificate serves the server name (the handshake then fails).
    unmatched: AtomicBool,
}

#[async_trait]
impl TlsAccept for CertSelector<'_> {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let snap = self.snapshot.load();
        let sni = ssl.servername(NameType::HOST_NAME);
        let Some(cert) = snap.certs.find(sni) else {
            // No certificate: OpenSSL fails the handshake.
            self.unmatched.store(true, Ordering::Relaxed);
            tracing::debug!(sni = ?sni, "no certificate serves this server name");
            return;
        };
        let chain = &cert.key_pair.chain;
        let set = ext::ssl_use_certificate(ssl, &chain[0])
            .and_then(|()| ext::ssl_use_private_key(ssl, &cert.key_pair.key))
            .and_then(|()| {
                chain[1..]
                    .iter()
                    .try_for_each(|c| ext::ssl_add_chain_cert(ssl, c))
            });
        if let Err(e) = set {
            tracing::warn!(secret = %cert.secret, error = %e, "could not use the certificate");
        }
    }

    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let name = ssl.servername(NameType::HOST_NAME)?;
        Some(Arc::new(ServerName(name.into())))
    }
}

/// The acceptor every handshake starts from: Mozilla's intermediate settings (TLS 1.2
/// and 1.3), ALPN, no certificate until the SNI is known.
fn acceptor() -> anyhow::Result<SslAcceptor> {
    // Intermediate means TLS 1.2 and 1.3 already.
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    b.set_alpn_select_callback(|_, client| select_next_proto(ALPN, client).ok_or(AlpnError::NOACK));
    // OpenSSL reads whole socket buffers instead of a record header and then its body.
    b.set_read_ahead(true);
    Ok(b.build())
}

/// The HTTPS listener as a Pingora service: its own runtime and threads.
pub struct HttpsService {
    addr: String,
    app: Arc<GatewayListener>,
    snapshot: SnapshotCell,
    published: watch::Receiver<u64>,
    stats: ListenerTlsStats,
    threads: usize,
}

impl HttpsService {
    pub fn new(
        addr: String,
        app: GatewayListener,
        snapshot: SnapshotCell,
        published: watch::Receiver<u64>,
        stats: ListenerTlsStats,
        threads: usize,
    ) -> Self {
        HttpsService {
            addr,
            app: Arc::new(app),
            snapshot,
            published,
            stats,
            threads,
        }
    }
}

/// A bound listener and the signal that stops its accept loop.
struct Bound {
    stop: watch::Sender<bool>,
}

#[async_trait]
impl Service for HttpsService {
    async fn start_service(
        &mut self,
        _fds: Option<pingora_core::server::ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let acceptor = match acceptor() {
            Ok(a) => Arc::new(a),
            Err(e) => {
                tracing::error!(error = %e, "HTTPS listener unavailable: TLS set-up failed");
                return;
            }
        };
        let mut bound: Option<Bound> = None;
        // Whether snapshots still arrive: once the config loop has ended the last
        // snapshot stays, and so does the listener's state.
        let mut following = true;
        let mut rebind = REBIND;
        loop {
            let wanted = !self.snapshot.load().certs.is_empty();
            let mut retry = false;
            match (wanted, &bound) {
                (true, None) => match bind(&self.addr).await {
                    Ok(listener) => {
                        tracing::info!(addr = %self.addr, "HTTPS listener bound (TLS is configured)");
                        rebind = REBIND;
                        let (stop, stopped) = watch::channel(false);
                        tokio::spawn(accept_loop(
                            listener,
                            self.app.clone(),
                            acceptor.clone(),
                            self.snapshot.clone(),
                            self.stats.clone(),
                            shutdown.clone(),
                            stopped,
                        ));
                        bound = Some(Bound { stop });
                    }
                    Err(e) => {
                        tracing::error!(addr = %self.addr, error = %e, retry_in = ?rebind, "cannot bind the HTTPS listener");
                        retry = true;
                    }
                },
                (false, Some(_)) => {
                    if let Some(b) = bound.take() {
                        let _ = b.stop.send(true);
                    }
                    tracing::info!(addr = %self.addr, "HTTPS listener closed: no certificate is configured; open connections stay");
                }
                _ => {}
            }
            tokio::select! {
                changed = self.published.changed(), if following => if changed.is_err() {
                    tracing::warn!("the config loop has ended: the HTTPS listener keeps its state");
                    following = false;
                },
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break },
                () = tokio::time::sleep(rebind), if retry => {
                    rebind = (rebind * 2).min(REBIND_MAX);
                }
            }
        }
        if let Some(b) = bound {
            let _ = b.stop.send(true);
        }
    }

    fn name(&self) -> &str {
        "gateway https"
    }

    fn threads(&self) -> Option<usize> {
        Some(self.threads)
    }
}

async fn bind(addr: &str) -> std::io::Result<Listener> {
    let addr: std::net::SocketAddr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(Listener::from(socket.listen(65535)?))
}

async fn accept_loop(
    listener: Listener,
    app: Arc<GatewayListener>,
    acceptor: Arc<SslAcceptor>,
    snapshot: SnapshotCell,
    stats: ListenerTlsStats,
    mut shutdown: ShutdownWatch,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return } else { continue },
        };
        let mut stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "HTTPS accept failed");
                // Out of file descriptors: let others close some first.
                if e.raw_os_error() == Some(libc::EMFILE) {
                    tokio::time::sleep(REBIND).await;
                }
                continue;
            }
        };
        // Over the listener's connection limit: closed before the handshake costs anything.
        let Some(admitted) = app.admit() else {
            continue;
        };
        let _ = stream.set_nodelay();
        let (app, acceptor, snapshot, stats, shutdown) = (
            app.clone(),
            acceptor.clone(),
            snapshot.clone(),
            stats.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _admitted = admitted;
            let selector = CertSelector {
                snapshot: &snapshot,
                unmatched: AtomicBool::new(false),
            };
            let stream = super::coalesce::CoalescedStream::new(stream);
            let handshake = handshake_with_callback(&acceptor, stream, &selector);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    // Envoy counts a server name without a filter chain apart.
                    if selector.unmatched.load(Ordering::Relaxed) {
                        stats.no_filter_chain_match.inc();
                    } else {
                        stats.connection_error.inc();
                    }
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    stats.connection_error.inc();
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            stats.handshake.inc();
            let mut next =
                pingora_core::apps::ServerApp::process_new(&app, Box::new(tls), &shutdown).await;
            while let Some(s) = next {
                next = pingora_core::apps::ServerApp::process_new(&app, s, &shutdown).await;
            }
        });
    }
}
