//! Where plugin modules come from: `file://` paths (absolute, or relative to the config
//! directory) and `http(s)://` downloads, checked against `spec.sha256` when it is set,
//! and OCI images (`oci/`, where `spec.sha256` is the manifest digest); compiled once
//! per content hash (and kept compiled on disk by wasmtime's cache across restarts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::download::{redirect_target, request};
use super::oci::{self, OciError, OciOptions, PullRequest};
use super::vm::{sha256_hex, CompiledModule, Runtime};

/// Longest a module download may take, redirects included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;

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
    oci: OciOptions,
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
    #[error("spec.url: oci://{image}: {error}")]
    Oci { image: String, error: OciError },
    #[error("spec.sha256: oci://{image}: {error}")]
    OciDigest { image: String, error: OciError },
    #[error("spec.imagePullSecret: {0}")]
    PullSecret(OciError),
}

impl ModuleStore {
    /// A store whose OCI pulls use `oci`.
    pub fn new(oci: OciOptions) -> ModuleStore {
        ModuleStore {
            compiled: HashMap::new(),
            oci,
        }
    }

    /// The compiled module `source` names; `config_dir` anchors relative paths; `pull`
    /// says how an OCI image is pulled (its `sha256` is `spec.sha256`).
    pub fn load(
        &mut self,
        runtime: &Runtime,
        source: &ModuleSource,
        pull: &PullRequest<'_>,
        config_dir: &Path,
    ) -> Result<Arc<CompiledModule>, ModuleError> {
        let oci = matches!(source, ModuleSource::Oci(_));
        // For an image `sha256` is the manifest's digest, not the module's.
        let sha256 = pull.sha256.filter(|_| !oci);
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
                oci::pull(&self.oci, image, pull)
                    .map_err(|error| {
                        if error.is_pull_secret() {
                            ModuleError::PullSecret(error)
                        } else if error.is_digest_mismatch() {
                            ModuleError::OciDigest {
                                image: image.clone(),
                                error,
                            }
                        } else {
                            ModuleError::Oci {
                                image: image.clone(),
                                error,
                            }
                        }
                    })?
                    .wasm
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

async fn get(url: &str) -> Result<Fetched, String> {
    let resp = request(url, &[]).await?;
    let status = resp.status;
    if status.is_redirection() {
        let to = resp
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("GET {url}: {status} without a location"))?;
        return Ok(Fetched::Redirect(redirect_target(url, to)));
    }
    if status != http::StatusCode::OK {
        return Err(format!("GET {url}: {status}"));
    }
    Ok(Fetched::Body(resp.body))
}
