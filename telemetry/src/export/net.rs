//! Connections to a collector: dialling (the name resolved on every dial), a gRPC
//! channel over that dialler, and a one-connection HTTP/1.1 client.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::codec::{Codec, EncodeBuf, ProstCodec};
use tonic::transport::{Channel, Endpoint};

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// The collector answered, but not with a success: an HTTP status other than 2xx.
#[derive(Debug, thiserror::Error)]
#[error("collector answered {status}: {text}")]
pub(crate) struct StatusError {
    pub status: http::StatusCode,
    /// The start of its body, for the log.
    pub text: String,
}

/// The `host:port` to dial, from an endpoint that may carry a scheme or a trailing `/`.
pub(crate) fn authority(endpoint: &str) -> Arc<str> {
    let e = endpoint.trim();
    let e = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("grpc://"))
        .unwrap_or(e);
    e.trim_end_matches('/').into()
}

/// Resolve `authority` now (so a collector that moved is found on reconnect) and
/// connect to the first address that answers.
pub(crate) async fn dial(authority: &str) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host(authority).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                // Reports are small writes that should leave at once.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{authority}: no address"))
    }))
}

/// tonic's connector: our `dial`, so gRPC reconnects resolve the name again too.
#[derive(Clone)]
struct Dialer(Arc<str>);

impl tonic::codegen::Service<http::Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let a = self.0.clone();
        Box::pin(async move { dial(&a).await.map(TokioIo::new) })
    }
}

/// A connected gRPC (HTTP/2, cleartext) channel; `:authority` is the configured name.
pub(crate) async fn grpc_channel(authority: &Arc<str>) -> Result<Channel, Error> {
    let ep = Endpoint::from_shared(format!("http://{authority}"))?;
    Ok(ep.connect_with_connector(Dialer(authority.clone())).await?)
}

/// The gRPC codec for requests already in protobuf form (the exporters' `wire`
/// encoders): each message goes out as it is; the answer `U` is decoded by prost.
pub(crate) struct Encoded<U>(PhantomData<fn() -> U>);

impl<U> Default for Encoded<U> {
    fn default() -> Self {
        Encoded(PhantomData)
    }
}

type Prost<U> = ProstCodec<U, U>;

impl<U: prost::Message + Default + Send + 'static> Codec for Encoded<U> {
    type Encode = Bytes;
    type Decode = U;
    type Encoder = AsIs;
    type Decoder = <Prost<U> as Codec>::Decoder;

    fn encoder(&mut self) -> AsIs {
        AsIs
    }

    fn decoder(&mut self) -> Self::Decoder {
        Prost::<U>::default().decoder()
    }
}

/// Copies a message into tonic's frame buffer, as prost's encoder would write it
/// there.
pub(crate) struct AsIs;

impl tonic::codec::Encoder for AsIs {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

/// One kept-alive HTTP/1.1 connection to the collector.
pub(crate) struct HttpClient {
    authority: Arc<str>,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl HttpClient {
    pub(crate) fn new(authority: Arc<str>) -> Self {
        HttpClient {
            authority,
            sender: None,
        }
    }

    /// Up and not closed by the collector (an idle keep-alive timeout, say).
    pub(crate) fn connected(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| !s.is_closed())
    }

    pub(crate) async fn connect(&mut self) -> Result<(), Error> {
        self.sender = None;
        let io = TokioIo::new(dial(&self.authority).await?);
        let (sender, conn) = http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "trace collector connection ended");
            }
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Dropping the sender ends the connection task.
    pub(crate) fn disconnect(&mut self) {
        self.sender = None;
    }

    /// POST `body`; the response body on a 2xx, an error otherwise.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Bytes, Error> {
        let sender = self.sender.as_mut().ok_or("not connected")?;
        sender.ready().await?;
        let req = http::Request::post(path)
            .header(http::header::HOST, &*self.authority)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::USER_AGENT, "higress-gateway")
            .body(Full::new(body))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        // Read to the end so the connection can carry the next report.
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(Box::new(StatusError { status, text }));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_strips_scheme_and_slash() {
        assert_eq!(&*authority("http://zipkin:9411/"), "zipkin:9411");
        assert_eq!(&*authority(" 127.0.0.1:11800 "), "127.0.0.1:11800");
        assert_eq!(&*authority("[::1]:4317"), "[::1]:4317");
    }

    #[tokio::test]
    async fn dial_refuses_an_endpoint_without_a_port() {
        assert!(dial("not an address").await.is_err());
    }
}
