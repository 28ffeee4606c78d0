//! `downstream.idleTimeout` for HTTP/1 connections, kept per connection rather than per
//! request. Pingora's keep-alive timeout arms a timer for every wait between requests;
//! here each connection has a watchdog task that wakes a few times per timeout period
//! and, once the connection has seen no bytes and no request for the whole period,
//! ends it by making the pending read return end-of-stream, as Envoy's idle timeout
//! does (never while a request is in progress). The request path pays a counter bump.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::task::AtomicWaker;
use pingora_core::protocols::{
    raw_connect::ProxyDigest, GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest,
    TimingDigest,
};
use pingora_core::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use telemetry::stats::Counter;

use super::head_guard;
use crate::snapshot::SnapshotCell;
use crate::stats::HcmStats;

/// How often the watchdog re-reads the config when there is no idle timeout.
const RECHECK: Duration = Duration::from_secs(5);

/// What the watchdog watches: requests in progress and a count of events (reads,
/// finished requests) that it compares between wake-ups.
#[derive(Debug, Default)]
pub struct ConnActivity {
    /// Unique per connection for the process's life (Envoy's `connection.id`).
    pub id: u64,
    active: AtomicU32,
    events: AtomicU64,
    /// When the first byte of the next request arrived, as nanoseconds after
    /// [`clock_base`] plus one; 0: not seen yet.
    first_byte: AtomicU64,
    /// Set by the watchdog: the next read reports end-of-stream.
    closing: AtomicBool,
    /// The current request's head passed `head_guard` (cleared when the request ends).
    head_checked: AtomicBool,
    /// The connection's pending read, woken when `closing` is set.
    reader: AtomicWaker,
    /// Signalled when the connection's stream is dropped: the watchdog ends with it.
    gone: tokio::sync::Notify,
}

impl ConnActivity {
    fn bump(&self) {
        // Only the connection's own task writes here (reads and request ends are
        // sequential on an HTTP/1 connection), so a plain load + store is enough.
        self.events
            .store(self.events.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// The activity of the connection a request arrived on (HTTP/1 only).
    pub fn of(session: &pingora_proxy::Session) -> Option<&Arc<ConnActivity>> {
        let stream = session.downstream_session.stream()?;
        let tracked = stream.as_any().downcast_ref::<TrackedStream>()?;
        Some(&tracked.activity)
    }

    /// When the current request's first byte arrived, if it arrived between requests
    /// (Envoy's request time starts there; Pingora starts a request once its head is read).
    pub fn take_first_byte(&self) -> Option<std::time::Instant> {
        match self.first_byte.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Some(clock_base() + Duration::from_nanos(n - 1)),
        }
    }

    /// When the bytes of a request whose head is not read yet started arriving.
    fn head_started(&self) -> Option<std::time::Instant> {
        match self.first_byte.load(Ordering::Relaxed) {
            0 => None,
            n => Some(clock_base() + Duration::from_nanos(n - 1)),
        }
    }

    /// Mark a request in progress until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub struct ActiveRequest(Arc<ConnActivity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.head_checked.store(false, Ordering::Relaxed);
        self.0.bump();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The instant first-byte times are kept relative to.
fn clock_base() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}

/// `--request-headers-timeout`: how long a request's head may take to arrive, from its
/// first byte (0: no limit), and the counter of connections it closed.
#[derive(Clone)]
pub struct HeadersTimeout {
    pub limit: Duration,
    pub closed: Counter,
}

/// Watch a connection until it closes, ending it after the configured idle time, or
/// when a request head takes longer than `headers.limit` (a slowloris client).
pub fn spawn_watchdog(
    activity: &Arc<ConnActivity>,
    snapshot: SnapshotCell,
    headers: &HeadersTimeout,
) {
    let activity = activity.clone();
    let headers = headers.clone();
    tokio::spawn(async move { watch(&activity, snapshot, headers).await });
}

/// How often the watchdog looks for a limit of `d` (0: none).
fn tick_for(d: Duration) -> Duration {
    if d.is_zero() {
        RECHECK
    } else {
        (d / 8).clamp(Duration::from_millis(50), RECHECK)
    }
}

async fn watch(conn: &ConnActivity, snapshot: SnapshotCell, headers: HeadersTimeout) {
    let mut seen = None;
    let mut quiet_since = Instant::now();
    loop {
        let idle = snapshot.load().filters.global.downstream_idle_timeout;
        let tick = tick_for(idle).min(tick_for(headers.limit));
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            // The connection closed on its own: nothing left to watch.
            () = conn.gone.notified() => return,
        }
        if !headers.limit.is_zero() && conn.active.load(Ordering::Relaxed) == 0 {
            if let Some(started) = conn.head_started() {
                if started.elapsed() >= headers.limit {
                    // Envoy answers 408 first; a client this slow is closed on.
                    tracing::debug!("closing an HTTP/1 connection: request headers timed out");
                    headers.closed.inc();
                    conn.closing.store(true, Ordering::Release);
                    conn.reader.wake();
                    return;
                }
            }
        }
        let now = Instant::now();
        let events = conn.events.load(Ordering::Relaxed);
        if seen != Some(events) || conn.active.load(Ordering::Relaxed) > 0 {
            seen = Some(events);
            quiet_since = now;
        } else if !idle.is_zero() && now.duration_since(quiet_since) >= idle {
            tracing::debug!("closing an idle HTTP/1 connection");
            conn.closing.store(true, Ordering::Release);
            conn.reader.wake();
            return;
        }
    }
}

/// The listener's byte counters (`downstream_cx_rx/tx_bytes_total`).
#[derive(Clone, Debug)]
pub struct ByteCounters {
    pub rx: Counter,
    pub tx: Counter,
}

/// HTTP/1 only: request heads checked by [`head_guard`] before Pingora parses them,
/// refusals counted in the listener's stats.
pub struct HeadCheck {
    buffer: head_guard::HeadBuffer,
    stats: Arc<HcmStats>,
}

impl std::fmt::Debug for HeadCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadCheck")
            .field("buffer", &self.buffer)
            .finish()
    }
}

impl HeadCheck {
    pub fn new(stats: Arc<HcmStats>) -> Self {
        HeadCheck {
            buffer: head_guard::HeadBuffer::default(),
            stats,
        }
    }
}

/// The downstream stream with its activity, handed to Pingora in place of the socket.
#[derive(Debug)]
pub struct TrackedStream {
    inner: Stream,
    activity: Arc<ConnActivity>,
    /// `None` while stats recording is off.
    bytes: Option<ByteCounters>,
    head: Option<Box<HeadCheck>>,
}

impl TrackedStream {
    /// `head`: check HTTP/1 request heads (`None` for HTTP/2).
    pub fn with_head_check(
        inner: Stream,
        bytes: Option<ByteCounters>,
        head: Option<HeadCheck>,
    ) -> (Self, Arc<ConnActivity>) {
        let (mut s, a) = Self::new(inner, bytes);
        s.head = head.map(Box::new);
        (s, a)
    }

    pub fn new(inner: Stream, bytes: Option<ByteCounters>) -> (Self, Arc<ConnActivity>) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let activity = Arc::new(ConnActivity {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ..ConnActivity::default()
        });
        (
            TrackedStream {
                inner,
                activity: activity.clone(),
                bytes,
                head: None,
            },
            activity,
        )
    }
}

impl TrackedStream {
    /// Feed new head bytes to the check; on a refusal answer it, close, and say so.
    fn check_head(&mut self, bytes: &[u8], cx: &mut Context<'_>) -> Option<head_guard::Refusal> {
        let check = self.head.as_mut()?;
        match check.buffer.feed(bytes) {
            head_guard::Verdict::Incomplete => None,
            head_guard::Verdict::Accept => {
                self.activity.head_checked.store(true, Ordering::Relaxed);
                None
            }
            head_guard::Verdict::Refuse(r) => {
                check.stats.rq_total.inc();
                check.stats.request_done(r.status(), Duration::ZERO, None);
                // Best effort: a fresh connection takes a short reply without waiting.
                let _ = Pin::new(&mut self.inner).poll_write(cx, r.response());
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
                self.activity.closing.store(true, Ordering::Release);
                Some(r)
            }
        }
    }

    fn count_sent(&self, r: &Poll<std::io::Result<usize>>) {
        if let (Some(b), Poll::Ready(Ok(n))) = (&self.bytes, r) {
            b.tx.add(*n as u64);
        }
    }
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        // `notify_one` keeps a permit if the watchdog is not waiting at this moment.
        self.activity.gone.notify_one();
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.activity.closing.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending => {
                self.activity.reader.register(cx.waker());
                if self.activity.closing.load(Ordering::Acquire) {
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
            ready => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    let a = &self.activity;
                    if a.active.load(Ordering::Relaxed) == 0
                        && a.first_byte.load(Ordering::Relaxed) == 0
                    {
                        let since = clock_base().elapsed().as_nanos() as u64;
                        a.first_byte.store(since + 1, Ordering::Relaxed);
                    }
                    self.activity.bump();
                    if let Some(b) = &self.bytes {
                        b.rx.add(n as u64);
                    }
                    let new_head = self.head.is_some()
                        && self.activity.active.load(Ordering::Relaxed) == 0
                        && !self.activity.head_checked.load(Ordering::Relaxed);
                    if new_head {
                        if let Some(refusal) = self.check_head(&buf.filled()[before..], cx) {
                            // Pingora never sees the head: to it the client went away.
                            buf.set_filled(before);
                            tracing::debug!(status = refusal.status(), "refused a request head");
                        }
                    }
                }
                ready
            }
        }
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count_sent(&r);
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count_sent(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for TrackedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for TrackedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for TrackedStream {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for TrackedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for TrackedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for TrackedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for TrackedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watchdog ends as soon as its connection's stream is dropped, not at its next
    /// tick, so closed connections leave no sleeping tasks behind.
    #[tokio::test]
    async fn watchdog_ends_with_its_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(server));
        let (tracked, activity) = TrackedStream::new(stream, None);
        // No idle timeout in the default config: the watchdog would sleep RECHECK (5 s).
        let headers = HeadersTimeout {
            limit: Duration::ZERO,
            closed: Counter::default(),
        };
        let task =
            tokio::spawn(
                async move { watch(&activity, crate::snapshot::new_cell(), headers).await },
            );
        tokio::task::yield_now().await;
        drop(tracked);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the watchdog outlived its connection")
            .unwrap();
        drop(client);
    }
}
