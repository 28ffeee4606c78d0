//! One HTTP(S) GET on a new connection, for module downloads (`module_store.rs`) and
//! OCI pulls (`oci/`): HTTPS verified against the system's trust store, the body read
//! up to the module size limit, redirects left to the caller.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

/// Largest body accepted: the largest module (or image layer).
pub const MAX_BODY: usize = 256 << 20;
/// Debian's bundle of the system's trusted CAs.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where a `Location` header sends a request to `url` next: absolute, or relative to
/// `url`'s scheme and authority.
pub fn redirect_target(url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let uri: http::Uri = url.parse().unwrap_or_default();
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str()),
        location
    )
}

/// A response with its body read (up to the module size limit).
pub struct Response {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One `GET url` with `headers`.
pub async fn request(
    url: &str,
    headers: &[(http::header::HeaderName, String)],
) -> Result<Response, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url:?}: only http:// and https:// downloads")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?} has no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare, port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let io: Box<dyn Io> = if tls {
        let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
            .map_err(|e| format!("TLS: {e}"))?;
        // A vendored OpenSSL's default paths may not be the system's trust store.
        for bundle in [
            std::env::var("SSL_CERT_FILE").ok(),
            Some(SYSTEM_CA_BUNDLE.to_string()),
        ]
        .into_iter()
        .flatten()
        {
            if Path::new(&bundle).exists() {
                let _ = builder.set_ca_file(&bundle);
            }
        }
        let connector = builder.build();
        let ssl = connector
            .configure()
            .and_then(|c| c.into_ssl(bare))
            .map_err(|e| format!("TLS: {e}"))?;
        let mut stream =
            tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| format!("TLS: {e}"))?;
        std::pin::Pin::new(&mut stream)
            .connect()
            .await
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "gateway-wasm-fetch");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("GET {url}: body: {e}"))?;
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body: body.to_bytes().to_vec(),
    })
}
