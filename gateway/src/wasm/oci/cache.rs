//! Pulled modules on disk, so a restart does not need the registry:
//! `<dir>/<manifest hex>.wasm` holds the module of the image with that manifest digest,
//! and `<dir>/refs/<sha256 of the reference>.json` says which digest a reference
//! (`registry/repo:tag`) resolved to last. One file per reference: gateways sharing the
//! directory never rewrite each other's entries. Files are written to a temporary name
//! and renamed, so a reader sees a whole file or none.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::layout::check_magic;
use crate::wasm::vm::sha256_hex;

pub struct Cache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct RefEntry {
    reference: String,
    /// `sha256:<hex>` of the image manifest.
    digest: String,
}

impl Cache {
    pub fn new(dir: &Path) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn wasm_path(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}.wasm"))
    }

    fn ref_path(&self, reference: &str) -> PathBuf {
        self.dir
            .join("refs")
            .join(format!("{}.json", sha256_hex(reference.as_bytes())))
    }

    /// The module of the image whose manifest digest is `hex`, if pulled before.
    pub fn wasm(&self, hex: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.wasm_path(hex)).ok()?;
        // A damaged file is pulled again rather than failing the plugin.
        check_magic(&bytes).ok()?;
        Some(bytes)
    }

    /// The manifest digest hex `reference` resolved to last.
    pub fn resolve(&self, reference: &str) -> Option<String> {
        let bytes = std::fs::read(self.ref_path(reference)).ok()?;
        let e: RefEntry = serde_json::from_slice(&bytes).ok()?;
        (e.reference == reference)
            .then(|| e.digest.strip_prefix("sha256:").map(str::to_string))
            .flatten()
    }

    /// Keep the module of `reference`, whose manifest digest is `hex`.
    pub fn store(&self, reference: &str, hex: &str, wasm: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(self.dir.join("refs"))?;
        crate::atomic_file::write(&self.wasm_path(hex), wasm)?;
        let entry = RefEntry {
            reference: reference.to_string(),
            digest: format!("sha256:{hex}"),
        };
        let json = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        crate::atomic_file::write(&self.ref_path(reference), &json)
    }
}

/// Where pulled modules go: `<--wasm-cache-dir>/oci`, else `$XDG_CACHE_HOME/gateway/oci`,
/// else `$HOME/.cache/gateway/oci`, else the temporary directory's `gateway-oci-<uid>`.
pub fn default_dir(wasm_cache_dir: Option<&Path>) -> PathBuf {
    if let Some(d) = wasm_cache_dir {
        return d.join("oci");
    }
    let env_dir = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(x) = env_dir("XDG_CACHE_HOME") {
        return x.join("gateway/oci");
    }
    if let Some(h) = env_dir("HOME") {
        return h.join(".cache/gateway/oci");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("gateway-oci-{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_by_digest_and_references_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(&dir.path().join("oci"));
        let r = "127.0.0.1:5000/p/x:1";
        let hex = "ab".repeat(32);
        assert_eq!(cache.resolve(r), None);
        assert_eq!(cache.wasm(&hex), None);
        cache.store(r, &hex, b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(cache.resolve(r).as_deref(), Some(hex.as_str()));
        assert_eq!(cache.wasm(&hex).unwrap(), b"\0asm\x01\0\0\0");
        assert_eq!(cache.resolve("127.0.0.1:5000/p/x:2"), None);
        // A damaged module is a miss.
        std::fs::write(dir.path().join(format!("oci/{hex}.wasm")), b"junk").unwrap();
        assert_eq!(cache.wasm(&hex), None);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("oci/refs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].ends_with(".json"), "{names:?}");
    }

    #[test]
    fn the_default_dir_follows_the_wasm_cache_dir() {
        assert_eq!(
            default_dir(Some(Path::new("/var/cache/gw"))),
            Path::new("/var/cache/gw/oci")
        );
        assert!(default_dir(None).ends_with("oci") || default_dir(None).is_absolute());
    }
}
