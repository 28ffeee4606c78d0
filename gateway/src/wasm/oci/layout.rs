//! Which layer of an image holds the Wasm, and how to get it out, as Higress's agent
//! decides (higress-group/istio `pkg/wasm/imagefetcher.go`):
//!
//! 1. Docker schema 2 manifest: the last layer, `rootfs.diff.tar.gzip`;
//! 2. otherwise the last layer if it is `application/vnd.oci.image.layer.v1.tar+gzip`
//!    (Higress's Go/Rust plugin images: docs and spec layers first, `plugin.tar.gz` last);
//! 3. otherwise exactly two layers, one `application/vnd.module.wasm.content.layer.v1+wasm`
//!    whose blob is the module itself (C++ plugin images).
//!
//! A tar layer is gunzipped and untarred (at most 256 MiB) and its first entry named
//! `plugin.wasm` (in any directory) is the module.

use std::io::Read;

use serde::Deserialize;

use super::OciError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

/// Most bytes a tar layer may unpack to.
const MAX_UNPACKED: u64 = 256 << 20;
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// A content descriptor: a blob or a manifest by digest.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
}

/// An image manifest, or an index of them (OCI index, Docker manifest list).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl Manifest {
    /// Parse `body`; `content_type` (the response's) stands in for a missing
    /// `mediaType`.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
        let mut m: Manifest =
            serde_json::from_slice(body).map_err(|e| format!("not a manifest: {e}"))?;
        if m.media_type.as_deref().unwrap_or("").is_empty() {
            m.media_type = content_type
                .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
                .filter(|c| !c.is_empty());
        }
        if m.schema_version == Some(1) {
            return Err("Docker schema 1 manifests are not supported".to_string());
        }
        Ok(m)
    }

    pub fn is_index(&self) -> bool {
        matches!(self.media_type.as_deref(), Some(OCI_INDEX | DOCKER_LIST))
            || (self.layers.is_empty() && !self.manifests.is_empty())
    }

    /// The manifest of an index to use: the first one for a WASI platform, else the
    /// first.
    pub fn pick(&self) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "wasip1" || p.os == "wasi")
            })
            .or_else(|| self.manifests.first())
    }
}

/// The layer with the module and how it is packed.
#[derive(Debug, PartialEq, Eq)]
pub enum WasmLayer<'a> {
    /// A gzipped tar with a `plugin.wasm`.
    TarGz(usize, &'a Descriptor),
    /// The blob is the module.
    Raw(usize, &'a Descriptor),
}

/// Pick the module's layer by the three layouts.
pub fn select(m: &Manifest) -> Result<WasmLayer<'_>, OciError> {
    let last = m.layers.len().checked_sub(1).map(|i| (i, &m.layers[i]));
    let docker = m.media_type.as_deref() == Some(DOCKER_MANIFEST);
    if docker {
        return match last {
            Some((i, l)) if l.media_type == DOCKER_LAYER => Ok(WasmLayer::TarGz(i, l)),
            _ => Err(OciError::Layout(format!(
                "a Docker image's last layer must be {DOCKER_LAYER}; the layers are {}",
                layer_types(m)
            ))),
        };
    }
    if let Some((i, l)) = last.filter(|(_, l)| l.media_type == OCI_LAYER) {
        return Ok(WasmLayer::TarGz(i, l));
    }
    if m.layers.len() == 2 {
        if let Some((i, l)) = m
            .layers
            .iter()
            .enumerate()
            .find(|(_, l)| l.media_type == WASM_LAYER)
        {
            return Ok(WasmLayer::Raw(i, l));
        }
    }
    Err(OciError::Layout(format!(
        "no Wasm layer: expected the last layer to be {OCI_LAYER}, or exactly two layers one of which is {WASM_LAYER}; the layers are {}",
        layer_types(m)
    )))
}

fn layer_types(m: &Manifest) -> String {
    if m.layers.is_empty() {
        return "none".to_string();
    }
    let types: Vec<&str> = m.layers.iter().map(|l| l.media_type.as_str()).collect();
    format!("[{}]", types.join(", "))
}

/// The module from a gzipped tar layer: its first `plugin.wasm`.
pub fn from_tar_gz(blob: &[u8]) -> Result<Vec<u8>, String> {
    let gz = flate2::read::GzDecoder::new(blob);
    let mut archive = tar::Archive::new(Limit {
        inner: gz,
        left: MAX_UNPACKED,
    });
    let entries = archive
        .entries()
        .map_err(|e| format!("not a gzipped tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a gzipped tar: {e}"))?;
        let path = entry.path().map_err(|e| format!("tar entry name: {e}"))?;
        let is_plugin = path.file_name().is_some_and(|n| n == "plugin.wasm");
        if is_plugin && entry.header().entry_type().is_file() {
            let mut wasm = Vec::with_capacity(entry.size().min(MAX_UNPACKED) as usize);
            entry
                .read_to_end(&mut wasm)
                .map_err(|e| format!("reading plugin.wasm: {e}"))?;
            return Ok(wasm);
        }
    }
    Err("no plugin.wasm in the layer".to_string())
}

/// Stops a decompression bomb: an error once more than `left` bytes come out.
struct Limit<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other(format!(
                "the layer unpacks to more than {} MiB",
                MAX_UNPACKED >> 20
            ))
        })?;
        Ok(n)
    }
}

/// Whether `bytes` start as a Wasm binary does.
pub fn check_magic(bytes: &[u8]) -> Result<(), OciError> {
    if bytes.starts_with(WASM_MAGIC) {
        Ok(())
    } else {
        Err(OciError::NotWasm(
            bytes.iter().take(4).map(|b| format!("{b:02x}")).collect(),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *body).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn layer(media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: None,
            platform: None,
        }
    }

    fn manifest(media_type: &str, layers: &[&str]) -> Manifest {
        Manifest {
            schema_version: Some(2),
            media_type: Some(media_type.into()),
            layers: layers.iter().map(|t| layer(t)).collect(),
            manifests: vec![],
        }
    }

    #[test]
    fn the_three_layouts() {
        // Higress Go plugins: docs, spec, then plugin.tar.gz last.
        let m = manifest(
            OCI_MANIFEST,
            &[
                "application/vnd.module.wasm.doc.v1+markdown",
                "application/vnd.module.wasm.spec.v1+yaml",
                OCI_LAYER,
            ],
        );
        assert!(matches!(select(&m), Ok(WasmLayer::TarGz(2, _))));
        let m = manifest(DOCKER_MANIFEST, &[DOCKER_LAYER, DOCKER_LAYER]);
        assert!(matches!(select(&m), Ok(WasmLayer::TarGz(1, _))));
        // C++ plugins: config.json and the raw module, in either order.
        let m = manifest(
            OCI_MANIFEST,
            &["application/vnd.module.wasm.config.v1+json", WASM_LAYER],
        );
        assert!(matches!(select(&m), Ok(WasmLayer::Raw(1, _))));
        let m = manifest(OCI_MANIFEST, &[WASM_LAYER, "x"]);
        assert!(matches!(select(&m), Ok(WasmLayer::Raw(0, _))));
    }

    #[test]
    fn other_layouts_are_refused_with_their_layers() {
        // A Docker image must end in its own layer type.
        let m = manifest(DOCKER_MANIFEST, &[OCI_LAYER]);
        let e = select(&m).unwrap_err().to_string();
        assert!(e.contains("Docker image's last layer"), "{e}");
        // plugin.tar.gz not last.
        let m = manifest(
            OCI_MANIFEST,
            &[OCI_LAYER, "application/vnd.module.wasm.doc.v1+markdown"],
        );
        let e = select(&m).unwrap_err().to_string();
        assert!(e.contains("the layers are [application/vnd.oci"), "{e}");
        // A raw module needs exactly two layers.
        let m = manifest(OCI_MANIFEST, &[WASM_LAYER]);
        assert!(select(&m).is_err());
        let m = manifest(OCI_MANIFEST, &["a", WASM_LAYER, "b"]);
        assert!(select(&m).is_err());
        let m = manifest(OCI_MANIFEST, &[]);
        assert!(select(&m).unwrap_err().to_string().contains("none"));
    }

    #[test]
    fn manifests_and_indexes() {
        let m = Manifest::parse(
            br#"{"schemaVersion":2,"layers":[{"mediaType":"x","digest":"sha256:00","size":3}]}"#,
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.media_type.as_deref(), Some(OCI_MANIFEST));
        assert!(!m.is_index());
        let i = Manifest::parse(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
                {"mediaType":"m","digest":"sha256:aa","platform":{"os":"linux","architecture":"amd64"}},
                {"mediaType":"m","digest":"sha256:bb","platform":{"os":"wasip1","architecture":"wasm"}}]}"#,
            None,
        )
        .unwrap();
        assert!(i.is_index());
        assert_eq!(i.pick().unwrap().digest, "sha256:bb");
        let i = Manifest::parse(
            br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:aa"},{"digest":"sha256:bb"}]}"#,
            Some(DOCKER_LIST),
        )
        .unwrap();
        assert_eq!(i.pick().unwrap().digest, "sha256:aa");
        assert!(Manifest::parse(br#"{"schemaVersion":1}"#, None)
            .unwrap_err()
            .contains("schema 1"));
        assert!(Manifest::parse(b"<html>", None).is_err());
    }

    #[test]
    fn tar_layers_give_their_first_plugin_wasm() {
        let blob = tar_gz(&[
            ("README.md", b"docs"),
            ("out/plugin.wasm", b"\0asm\x01\0\0\0first"),
            ("plugin.wasm", b"\0asm\x01\0\0\0second"),
        ]);
        assert_eq!(from_tar_gz(&blob).unwrap(), b"\0asm\x01\0\0\0first");
        let blob = tar_gz(&[("other.wasm", b"\0asm")]);
        assert!(from_tar_gz(&blob).unwrap_err().contains("no plugin.wasm"));
        assert!(from_tar_gz(b"\0asm raw, not gzip")
            .unwrap_err()
            .contains("not a gzipped tar"));
    }

    #[test]
    fn unpacking_stops_at_the_limit() {
        // Zeros compress ~1000:1: a 300 MiB entry is a small blob.
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let size = MAX_UNPACKED + (44 << 20);
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "plugin.wasm", std::io::repeat(0).take(size))
            .unwrap();
        let blob = b.into_inner().unwrap().finish().unwrap();
        let e = from_tar_gz(&blob).unwrap_err();
        assert!(e.contains("more than 256 MiB"), "{e}");
    }

    #[test]
    fn the_wasm_magic_is_checked() {
        assert!(check_magic(b"\0asm\x01\0\0\0").is_ok());
        let e = check_magic(b"PK\x03\x04...").unwrap_err().to_string();
        assert!(e.contains("504b0304"), "{e}");
    }
}
