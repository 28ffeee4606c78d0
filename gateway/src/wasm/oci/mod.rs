//! Plugin modules from OCI images (`oci://<registry>/<repository>[:<tag>|@sha256:<hex>]`),
//! as Higress's agent pulls them: the manifest (an index resolved to one of its
//! manifests), the layer that holds the Wasm by the three layouts Higress publishes
//! (`layout.rs`), each blob checked against its digest.
//!
//! - `reference.rs`: parsing the image reference;
//! - `client.rs`: the registry API, with auth challenges (`auth.rs`), redirects, bounded
//!   retries; HTTPS with the system trust store, plain HTTP for the registries named in
//!   `--wasm-insecure-registries`;
//! - `cache.rs`: modules by manifest digest and references by name on disk, so a restart
//!   works with the registry down.
//!
//! `imagePullPolicy` as Istio: `IfNotPresent` (and no policy) uses the cache when the
//! reference is in it; `Always` (and no policy with the tag `latest`) asks the registry
//! and falls back to the cache, with a warning, when the registry cannot be had (not
//! when it refuses). An image
//! named by digest, or with `spec.sha256`, is taken from the cache whenever its module is
//! there: the digest pins the content.

mod auth;
mod cache;
mod client;
mod layout;
mod reference;

use std::path::PathBuf;
use std::time::Duration;

pub use cache::default_dir;
pub use reference::Reference;

/// Longest one pull may take, every request and retry included.
const PULL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why an image could not be pulled; messages say which step and what failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{image:?} is not an image reference: {why}")]
    Reference { image: String, why: String },
    #[error("registry {registry} unreachable: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("registry {registry} refused access: {why}")]
    Unauthorized { registry: String, why: String },
    #[error("token from {realm}: {why}")]
    Token { realm: String, why: String },
    #[error("manifest {reference}: {why}")]
    Manifest { reference: String, why: String },
    #[error("layer {index} ({digest}): {why}")]
    Layer {
        index: usize,
        digest: String,
        why: String,
    },
    #[error("{0}")]
    Layout(String),
    #[error("the extracted module is not Wasm (it starts with {0}, not 0061736d)")]
    NotWasm(String),
    /// The pull secret's content; the caller names the field.
    #[error("{0}")]
    PullSecret(String),
    /// `spec.sha256` against the manifest digest; the caller names the field.
    #[error("the image's manifest digest is sha256:{actual}, expected sha256:{expected}")]
    Digest { actual: String, expected: String },
    #[error("the pull did not finish within {}s", PULL_TIMEOUT.as_secs())]
    Timeout,
}

impl OciError {
    /// Whether the error is about `spec.imagePullSecret`'s content.
    pub fn is_pull_secret(&self) -> bool {
        matches!(self, OciError::PullSecret(_))
    }

    /// Whether the registry could not be had at all (down, timing out, failing).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, OciError::Unreachable { .. } | OciError::Timeout)
    }

    /// Whether the error is a `spec.sha256` mismatch.
    pub fn is_digest_mismatch(&self) -> bool {
        matches!(self, OciError::Digest { .. })
    }
}

/// What every pull shares: from the command line.
#[derive(Clone, Debug, Default)]
pub struct OciOptions {
    /// Registries (`host[:port]`, or a host for any of its ports, `*` for all) spoken to
    /// over plain HTTP.
    pub insecure: Vec<String>,
    /// Where pulled modules are kept (`cache::default_dir`).
    pub cache_dir: PathBuf,
}

impl OciOptions {
    fn insecure(&self, registry: &str) -> bool {
        let host = registry
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(registry, |(h, _)| h);
        self.insecure
            .iter()
            .map(|s| s.trim())
            .any(|i| i == "*" || i.eq_ignore_ascii_case(registry) || i.eq_ignore_ascii_case(host))
    }
}

/// `spec.imagePullPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    #[default]
    Unspecified,
    IfNotPresent,
    Always,
}

impl PullPolicy {
    /// `IfNotPresent`, `Always`, anything else (`UNSPECIFIED_POLICY`, unset) unspecified.
    pub fn parse(s: Option<&str>) -> PullPolicy {
        match s {
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            Some("Always") => PullPolicy::Always,
            _ => PullPolicy::Unspecified,
        }
    }
}

/// One plugin's pull.
#[derive(Clone, Copy, Debug, Default)]
pub struct PullRequest<'a> {
    pub policy: PullPolicy,
    /// `.dockerconfigjson` of the pull secret.
    pub docker_config: Option<&'a [u8]>,
    /// `spec.sha256`: the manifest digest's hex.
    pub sha256: Option<&'a str>,
}

/// A pulled module.
pub struct Pulled {
    pub wasm: Vec<u8>,
    /// Hex of the image's manifest digest.
    pub digest: String,
    pub from_cache: bool,
}

impl std::fmt::Debug for Pulled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The module's size, not its bytes.
        f.debug_struct("Pulled")
            .field("bytes", &self.wasm.len())
            .field("digest", &self.digest)
            .field("from_cache", &self.from_cache)
            .finish()
    }
}

/// Pull the module of `image` (without `oci://`). Blocks: runs on a thread of its own
/// with its own runtime, as the caller (the config loop) keeps one of its own.
pub fn pull(opts: &OciOptions, image: &str, req: &PullRequest<'_>) -> Result<Pulled, OciError> {
    let r = Reference::parse(image)?;
    let expected = req
        .sha256
        .map(str::to_ascii_lowercase)
        .or_else(|| r.digest.clone());
    let check = |p: Pulled| match &expected {
        Some(e) if *e != p.digest => Err(OciError::Digest {
            actual: p.digest,
            expected: e.clone(),
        }),
        _ => Ok(p),
    };
    let cache = cache::Cache::new(&opts.cache_dir);
    let key = r.to_string();
    let cached = |hex: &str| {
        cache.wasm(hex).map(|wasm| Pulled {
            wasm,
            digest: hex.to_string(),
            from_cache: true,
        })
    };
    // A pinned digest names the content: the cache has it or not.
    if let Some(p) = expected.as_deref().and_then(cached) {
        tracing::debug!(image = %key, digest = %p.digest, "module from the cache (pinned digest)");
        return Ok(p);
    }
    let by_name = cache.resolve(&key).and_then(|hex| cached(&hex));
    let always = req.policy == PullPolicy::Always
        || (req.policy == PullPolicy::Unspecified && r.is_latest());
    let by_name = match by_name {
        Some(p) if !always => {
            tracing::debug!(image = %key, digest = %p.digest, "module from the cache");
            return check(p);
        }
        other => other,
    };
    let credentials = match req.docker_config {
        Some(json) => auth::from_docker_config(json, &r.registry)?,
        None => None,
    };
    let insecure = opts.insecure(&r.registry);
    match from_registry(&r, insecure, credentials) {
        Ok((digest, wasm)) => {
            tracing::info!(image = %key, digest = %format!("sha256:{digest}"), bytes = wasm.len(), "Wasm module pulled");
            if let Err(e) = cache.store(&key, &digest, &wasm) {
                tracing::warn!(image = %key, dir = %cache.dir().display(), error = %e, "the pulled module could not be cached");
            }
            check(Pulled {
                wasm,
                digest,
                from_cache: false,
            })
        }
        // Only a registry that cannot be had falls back: a refusal or a missing image is
        // the registry's answer.
        Err(e) => match by_name.filter(|_| e.is_unreachable()) {
            Some(p) => {
                tracing::warn!(image = %key, digest = %p.digest, error = %e, "pull failed; using the module pulled before");
                check(p)
            }
            None => Err(e),
        },
    }
}

/// The manifest digest hex and the module, from the registry.
fn from_registry(
    r: &Reference,
    insecure: bool,
    credentials: Option<auth::Credentials>,
) -> Result<(String, Vec<u8>), OciError> {
    let work = async {
        let mut registry = client::Registry::new(r, insecure, credentials);
        let (digest, manifest) = registry.manifest().await?;
        let wasm = match layout::select(&manifest)? {
            layout::WasmLayer::TarGz(i, layer) => {
                let blob = registry.blob(i, layer).await?;
                layout::from_tar_gz(&blob).map_err(|why| OciError::Layer {
                    index: i,
                    digest: layer.digest.clone(),
                    why,
                })?
            }
            layout::WasmLayer::Raw(i, layer) => registry.blob(i, layer).await?,
        };
        layout::check_magic(&wasm)?;
        Ok((digest, wasm))
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| OciError::Unreachable {
                    registry: r.registry.clone(),
                    detail: format!("no runtime for the pull: {e}"),
                })?;
            rt.block_on(async {
                tokio::time::timeout(PULL_TIMEOUT, work)
                    .await
                    .map_err(|_| OciError::Timeout)?
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(OciError::Unreachable {
                registry: r.registry.clone(),
                detail: "the pull thread panicked".into(),
            })
        })
    })
}

#[cfg(test)]
mod tests;
