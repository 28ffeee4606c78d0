//! Where plugin modules come from: `file://` paths (absolute, or relative to the config
//! directory) and `http(s)://` downloads, checked against `spec.sha256` when it is set,
//! compiled once per content hash (and kept compiled on disk by wasmtime's cache across
//! restarts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use super::vm::{sha256_hex, CompiledModule, Runtime};

/// Longest a module download may take, redirects included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest module accepted.
const MAX_MODULE: usize = 256 << 20;
const MAX_REDIRECTS: usize = 5;
/// Debian's bundle of the system's trusted CAs.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where a module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleSource {
    /// An absolute path, or one relative to the config directory.
    File(String),
    /// An `http://` or `https://` URL.
    Http(String),
    /// An OCI image reference, without `oci://`.
    Oci(String),
}

/// Compiled modules by content hash, while some plugin uses them.
#[derive(Default)]
pub struct ModuleStore {
    compiled: HashMap<String, Weak<CompiledModule>>,
}

/// Why a module could not be had; the message names the field it comes from.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("spec.url: {0}")]
    Fetch(String),
    #[error("spec.sha256: the module's sha256 is {actual}, expected {expected}")]
    Sha256 { actual: String, expected: String },
    #[error("spec.url: {0}")]
    Compile(String),
}

impl ModuleStore {
    /// The compiled module `source` names; `config_dir` anchors relative paths.
    pub fn load(
        &mut self,
        runtime: &Runtime,
        source: &ModuleSource,
        sha256: Option<&str>,
        config_dir: &Path,
    ) -> Result<Arc<CompiledModule>, ModuleError> {
        // A known hash needs no download.
        if let Some(m) = sha256.and_then(|h| self.cached(&h.to_ascii_lowercase())) {
            return Ok(m);
        }
        let bytes = match source {
            ModuleSource::File(path) => {
                let p = resolve_path(path, config_dir);
                std::fs::read(&p)
                    .map_err(|e| ModuleError::Fetch(format!("reading {}: {e}", p.display())))?
            }
            ModuleSource::Http(url) => fetch(url).map_err(ModuleError::Fetch)?,
            ModuleSource::Oci(image) => {
                return Err(ModuleError::Fetch(format!(
                    "oci://{image}: pulling OCI images is not supported yet; use file:// or http(s):// with sha256"
                )))
            }
        };
        let actual = sha256_hex(&bytes);
        if let Some(expected) = sha256 {
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(ModuleError::Sha256 {
                    actual,
                    expected: expected.to_string(),
                });
            }
        }
        if let Some(m) = self.cached(&actual) {
            return Ok(m);
        }
        let module = runtime.compile(&bytes).map_err(ModuleError::Compile)?;
        self.compiled.retain(|_, w| w.strong_count() > 0);
        self.compiled.insert(actual, Arc::downgrade(&module));
        Ok(module)
    }

    fn cached(&self, sha256: &str) -> Option<Arc<CompiledModule>> {
        self.compiled.get(sha256).and_then(Weak::upgrade)
    }
}

fn resolve_path(path: &str, config_dir: &Path) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_dir.join(p)
    }
}

/// Download `url` (following redirects). Runs on its own thread and runtime: the config
/// loop's thread is the caller and keeps its own runtime.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let url = url.to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("runtime: {e}"))?;
            rt.block_on(async {
                tokio::time::timeout(FETCH_TIMEOUT, fetch_following(url))
                    .await
                    .map_err(|_| format!("download timed out after {}s", FETCH_TIMEOUT.as_secs()))?
            })
        })
        .join()
        .map_err(|_| "the download thread panicked".to_string())?
    })
}

async fn fetch_following(mut url: String) -> Result<Vec<u8>, String> {
    for _ in 0..=MAX_REDIRECTS {
        match get(&url).await? {
            Fetched::Body(b) => return Ok(b),
            Fetched::Redirect(to) => {
                tracing::debug!(from = %url, to = %to, "module download redirected");
                url = to;
            }
        }
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

enum Fetched {
    Body(Vec<u8>),
    Redirect(String),
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn get(url: &str) -> Result<Fetched, String> {
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
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "gateway-wasm-fetch")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    if status.is_redirection() {
        let to = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("GET {url}: {status} without a location"))?;
        let next = if to.starts_with("http://") || to.starts_with("https://") {
            to.to_string()
        } else {
            format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |a| a.as_str()),
                to
            )
        };
        return Ok(Fetched::Redirect(next));
    }
    if status != http::StatusCode::OK {
        return Err(format!("GET {url}: {status}"));
    }
    let body = Limited::new(resp.into_body(), MAX_MODULE)
        .collect()
        .await
        .map_err(|e| format!("GET {url}: body: {e}"))?;
    Ok(Fetched::Body(body.to_bytes().to_vec()))
}
