//! The listener-facing apps: Pingora's `HttpProxy` with per-connection settings read
//! from the current snapshot, so `downstream.idleTimeout`, `downstream.http2.*` and
//! `downstream.connectionBufferLimits` apply to the next connection without restarting
//! the listener.
//!
//! HTTP/1 connections go straight to the `HttpProxy`; only HTTP/2 connections pass
//! through [`GatewayApp`], which supplies live SETTINGS. That keeps an extra boxed
//! future per request off the HTTP/1 path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora_core::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;

use super::idle::{self, ByteCounters, TrackedStream};
use super::Gateway;
use crate::snapshot::SnapshotCell;
use crate::stats::HcmStats;

/// HTTP/2 connections: the proxy with SETTINGS and idle timeout from the snapshot.
pub struct GatewayApp {
    proxy: Arc<HttpProxy<Gateway>>,
    snapshot: SnapshotCell,
    /// Server options for the current h2 idle timeout (interned, see `options_for`).
    options: AtomicPtr<HttpServerOptions>,
    options_idle: AtomicU64,
}

impl GatewayApp {
    pub fn new(proxy: Arc<HttpProxy<Gateway>>, snapshot: SnapshotCell) -> Self {
        let idle = snapshot
            .load()
            .filters
            .global
            .downstream_idle_timeout
            .as_secs();
        GatewayApp {
            proxy,
            snapshot,
            options: AtomicPtr::new(options_for(idle) as *const _ as *mut _),
            options_idle: AtomicU64::new(idle),
        }
    }
}

/// Pingora hands out server options by reference for the life of the app; keep one
/// leaked, immutable copy per distinct idle timeout ever configured (a handful).
fn options_for(idle_secs: u64) -> &'static HttpServerOptions {
    static INTERNED: OnceLock<Mutex<HashMap<u64, &'static HttpServerOptions>>> = OnceLock::new();
    let mut map = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(idle_secs).or_insert_with(|| {
        let mut o = HttpServerOptions::default();
        o.h2c = true;
        o.h2_idle_timeout = (idle_secs > 0).then(|| Duration::from_secs(idle_secs));
        Box::leak(Box::new(o))
    })
}

#[async_trait]
impl HttpServerApp for GatewayApp {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.proxy.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<H2Options> {
        let snap = self.snapshot.load();
        let mut o = default_h2_options();
        if let Some(h2) = &snap.filters.global.http2 {
            o.max_concurrent_streams(h2.max_concurrent_streams);
            o.initial_window_size(h2.initial_stream_window_size);
            o.initial_connection_window_size(h2.initial_connection_window_size);
        }
        Some(o)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        let idle = self
            .snapshot
            .load()
            .filters
            .global
            .downstream_idle_timeout
            .as_secs();
        if self.options_idle.load(Ordering::Relaxed) != idle {
            let o = options_for(idle);
            self.options
                .store(o as *const _ as *mut _, Ordering::Release);
            self.options_idle.store(idle, Ordering::Relaxed);
        }
        // SAFETY: the pointer always comes from `options_for`, which leaks a 'static
        // value that is never freed or mutated.
        Some(unsafe { &*self.options.load(Ordering::Acquire) })
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

/// What the listener runs for each new connection: the connection-level settings, then
/// the HTTP app.
pub struct GatewayListener {
    h2: Arc<GatewayApp>,
    h1: Arc<HttpProxy<Gateway>>,
    stats: HcmStats,
    /// The same, shared by the request-head checks of its HTTP/1 connections.
    guard_stats: Arc<HcmStats>,
    limit: Arc<ConnectionLimit>,
    headers_timeout: idle::HeadersTimeout,
}

impl GatewayListener {
    /// `max_connections`: connections kept open at most (`--max-connections`; 0: no
    /// limit); `headers_timeout`: `--request-headers-timeout` (0: none).
    pub fn new(
        proxy: HttpProxy<Gateway>,
        snapshot: SnapshotCell,
        stats: HcmStats,
        max_connections: usize,
        headers_timeout: Duration,
    ) -> Self {
        let h1 = Arc::new(proxy);
        GatewayListener {
            headers_timeout: idle::HeadersTimeout {
                limit: headers_timeout,
                closed: stats.rq_header_timeout.clone(),
            },
            h2: Arc::new(GatewayApp::new(h1.clone(), snapshot)),
            h1,
            guard_stats: Arc::new(stats.clone()),
            stats,
            limit: Arc::new(ConnectionLimit {
                max: max_connections,
                open: AtomicUsize::new(0),
            }),
        }
    }

    /// Take a place for a new connection, or count the overflow when the listener is
    /// full (the caller then closes the connection, as Envoy does at accept).
    pub fn admit(&self) -> Option<Admitted> {
        let limit = &self.limit;
        if limit.max == 0 {
            return Some(Admitted(None));
        }
        if limit.open.fetch_add(1, Ordering::Relaxed) >= limit.max {
            limit.open.fetch_sub(1, Ordering::Relaxed);
            self.stats.cx_overflow.inc();
            return None;
        }
        Some(Admitted(Some(limit.clone())))
    }
}

/// `--max-connections` of one listener.
struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
}

/// A connection's place under its listener's limit, given back when dropped.
pub struct Admitted(Option<Arc<ConnectionLimit>>);

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(limit) = &self.0 {
            limit.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Counts a downstream connection open while it lives.
struct ActiveConnection<'a>(&'a HcmStats);

impl<'a> ActiveConnection<'a> {
    fn open(stats: &'a HcmStats) -> Self {
        stats.cx_total.inc();
        stats.cx_active.add(1);
        ActiveConnection(stats)
    }

    /// The listener's byte counters, unless recording is off.
    fn bytes(&self) -> Option<ByteCounters> {
        crate::stats::recording().then(|| ByteCounters {
            rx: self.0.cx_rx_bytes.clone(),
            tx: self.0.cx_tx_bytes.clone(),
        })
    }
}

impl Drop for ActiveConnection<'_> {
    fn drop(&mut self) {
        self.0.cx_active.add(-1);
    }
}

/// Counts a downstream TLS connection open while it lives.
struct ActiveTls<'a>(&'a HcmStats);

impl<'a> ActiveTls<'a> {
    fn open(stats: &'a HcmStats) -> Self {
        stats.cx_ssl_total.inc();
        stats.cx_ssl_active.add(1);
        ActiveTls(stats)
    }
}

impl Drop for ActiveTls<'_> {
    fn drop(&mut self) {
        self.0.cx_ssl_active.add(-1);
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[async_trait]
impl ServerApp for GatewayListener {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // TLS connections took their place before the handshake (`https.rs`).
        let _admitted = if stream.get_ssl_digest().is_some() {
            None
        } else {
            Some(self.admit()?)
        };
        let open = ActiveConnection::open(&self.stats);
        let global = self.h2.snapshot.load().filters.global.clone();
        // Bound what the kernel buffers for a slow reader (Envoy's per-connection
        // buffer limit is the nearest equivalent).
        if global.downstream_buffer_limit > 0 {
            let _ = pingora_core::protocols::l4::ext::set_snd_buf(
                stream.id(),
                global.downstream_buffer_limit,
            );
        }
        // TLS (the HTTPS listener did the handshake): ALPN says which HTTP.
        if stream.get_ssl_digest().is_some() {
            let _tls = ActiveTls::open(&self.stats);
            let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
            let check = (!h2).then(|| idle::HeadCheck::new(self.guard_stats.clone()));
            let (stream, activity) = TrackedStream::with_head_check(stream, open.bytes(), check);
            if h2 {
                self.stats.cx_http2_total.inc();
                drop(activity);
                return ServerApp::process_new(&self.h2, Box::new(stream), shutdown).await;
            }
            self.stats.cx_http1_total.inc();
            idle::spawn_watchdog(&activity, self.h2.snapshot.clone(), &self.headers_timeout);
            drop(activity);
            return ServerApp::process_new(&self.h1, Box::new(stream), shutdown).await;
        }
        // A connection that never sends a byte is idle too (0: no timeout).
        let mut head = [0u8; H2_PREFACE.len()];
        let peek = stream.try_peek(&mut head);
        let peeked = if global.downstream_idle_timeout.is_zero() {
            peek.await
        } else {
            match tokio::time::timeout(global.downstream_idle_timeout, peek).await {
                Ok(r) => r,
                Err(_) => return None,
            }
        };
        if peeked.is_err() {
            return None;
        }
        // h2c prior knowledge starts with the preface; its first bytes are enough.
        if head[..4] == H2_PREFACE[..4] {
            self.stats.cx_http2_total.inc();
            // Wrapped for its byte counts only: HTTP/2 has its own idle timeout.
            let (stream, _) = TrackedStream::new(stream, open.bytes());
            return ServerApp::process_new(&self.h2, Box::new(stream), shutdown).await;
        }
        self.stats.cx_http1_total.inc();
        // HTTP/1: the idle timeout is this connection's watchdog, not a timer per wait.
        let check = idle::HeadCheck::new(self.guard_stats.clone());
        let (stream, activity) = TrackedStream::with_head_check(stream, open.bytes(), Some(check));
        idle::spawn_watchdog(&activity, self.h2.snapshot.clone(), &self.headers_timeout);
        drop(activity);
        ServerApp::process_new(&self.h1, Box::new(stream), shutdown).await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(self.h1.as_ref()).await;
    }
}
