//! The socket under a downstream TLS connection, with a small write buffer.
//!
//! OpenSSL writes each TLS record to its socket at once, so a response whose head and
//! body Pingora writes separately would leave in two `send`s (and wake the client
//! twice). Pingora's own listeners put a 1460-byte write buffer under TLS; its setter is
//! crate-private, so this wrapper does the same: records collect until Pingora flushes
//! (at the end of each response write), and anything larger goes straight out.
//! OpenSSL flushes its handshake flights itself, so the handshake never waits here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::protocols::l4::stream::Stream;
use pingora_core::protocols::{
    raw_connect::ProxyDigest, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown,
    SocketDigest, Ssl, TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};

/// Pingora's default L4 write buffer: one Ethernet payload.
const WRITE_BUFFER: usize = 1460;

#[derive(Debug)]
pub struct CoalescedStream {
    inner: BufWriter<Stream>,
}

impl CoalescedStream {
    pub fn new(stream: Stream) -> Self {
        CoalescedStream {
            inner: BufWriter::with_capacity(WRITE_BUFFER, stream),
        }
    }

    fn stream(&self) -> &Stream {
        self.inner.get_ref()
    }
}

impl AsyncRead for CoalescedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for CoalescedStream {
    async fn shutdown(&mut self) {
        // What is buffered goes out before the socket closes.
        let _ = self.inner.flush().await;
        Shutdown::shutdown(self.inner.get_mut()).await
    }
}

impl UniqueID for CoalescedStream {
    fn id(&self) -> UniqueIDType {
        self.stream().id()
    }
}

impl Ssl for CoalescedStream {}

impl GetTimingDigest for CoalescedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.stream().get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.stream().get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.stream().get_write_pending_time()
    }
}

impl GetProxyDigest for CoalescedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.stream().get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.get_mut().set_proxy_digest(digest)
    }
}

impl GetSocketDigest for CoalescedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.stream().get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.get_mut().set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for CoalescedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.get_mut().try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Small writes leave together on flush; reads pass through.
    #[tokio::test]
    async fn small_writes_leave_together_on_flush() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut s = CoalescedStream::new(Stream::from(server));
        s.write_all(b"head ").await.unwrap();
        s.write_all(b"body").await.unwrap();
        let mut buf = [0u8; 16];
        // Nothing is sent before the flush.
        let early = tokio::time::timeout(Duration::from_millis(50), client.read(&mut buf)).await;
        assert!(early.is_err(), "bytes left before the flush");
        s.flush().await.unwrap();
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"head body");
        client.write_all(b"in").await.unwrap();
        let mut two = [0u8; 2];
        s.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"in");
    }
}
