//! `gzip` item (Higress `pkg/ingress/kube/configmap/gzip.go`): validates the section and
//! turns it into the response compressor's settings (Envoy's compressor filter with the
//! gzip library Higress configures).

use std::sync::Arc;

use serde_json::json;

use super::{apply_section, diff_section, ItemController, ItemResult};
use crate::model::filter_settings::{DeflateParams, FilterSettings, GzipSettings};
use crate::resources::higress_config::Gzip;
use crate::resources::{FieldError, HigressConfig};

/// The compressor's settings, resolved from the (validated) section.
fn gzip_settings(g: &Gzip) -> GzipSettings {
    let level = match g.compression_level.as_str() {
        "BEST_COMPRESSION" => 9,
        "BEST_SPEED" => 1,
        // COMPRESSION_LEVEL_1..9 (validated).
        l => l
            .strip_prefix("COMPRESSION_LEVEL_")
            .and_then(|n| n.parse().ok())
            .unwrap_or(6),
    };
    GzipSettings {
        min_content_length: g.min_content_length.max(0) as u64,
        content_types: g
            .content_type
            .iter()
            .map(|t| t.trim().to_ascii_lowercase())
            .collect(),
        disable_on_etag_header: g.disable_on_etag_header,
        deflate: DeflateParams {
            level,
            window_bits: g.window_bits,
            mem_level: g.memory_level,
            // zlib's numbering is the order of the names.
            strategy: STRATEGIES
                .iter()
                .position(|s| *s == g.compression_strategy)
                .unwrap_or(0) as i32,
            chunk_size: g.chunk_size.max(1) as usize,
        },
    }
}

const LEVELS: [&str; 11] = [
    "BEST_COMPRESSION",
    "BEST_SPEED",
    "COMPRESSION_LEVEL_1",
    "COMPRESSION_LEVEL_2",
    "COMPRESSION_LEVEL_3",
    "COMPRESSION_LEVEL_4",
    "COMPRESSION_LEVEL_5",
    "COMPRESSION_LEVEL_6",
    "COMPRESSION_LEVEL_7",
    "COMPRESSION_LEVEL_8",
    "COMPRESSION_LEVEL_9",
];
const STRATEGIES: [&str; 5] = [
    "DEFAULT_STRATEGY",
    "FILTERED",
    "HUFFMAN_ONLY",
    "RLE",
    "FIXED",
];

#[derive(Default)]
pub struct GzipController {
    current: Gzip,
}

impl ItemController for GzipController {
    fn name(&self) -> &'static str {
        "gzip"
    }

    fn validate(&self, c: &HigressConfig) -> Result<(), FieldError> {
        // Checked even when `enable: false`, as Higress does.
        let Some(g) = &c.gzip else { return Ok(()) };
        let err = |f: &str, m: String| Err(FieldError::new(format!("gzip.{f}"), m));
        if g.min_content_length <= 0 {
            return err(
                "minContentLength",
                format!("must be greater than 0, got {}", g.min_content_length),
            );
        }
        if g.content_type.is_empty() {
            return err("contentType", "must not be empty".into());
        }
        if !(1..=9).contains(&g.memory_level) {
            return err(
                "memoryLevel",
                format!("must be within 1..9, got {}", g.memory_level),
            );
        }
        if !(9..=15).contains(&g.window_bits) {
            return err(
                "windowBits",
                format!("must be within 9..15, got {}", g.window_bits),
            );
        }
        if g.chunk_size <= 0 {
            return err(
                "chunkSize",
                format!("must be greater than 0, got {}", g.chunk_size),
            );
        }
        if !LEVELS.contains(&g.compression_level.as_str()) {
            return err(
                "compressionLevel",
                format!(
                    "must be one of {}, got {:?}",
                    LEVELS.join(", "),
                    g.compression_level
                ),
            );
        }
        if !STRATEGIES.contains(&g.compression_strategy.as_str()) {
            return err(
                "compressionStrategy",
                format!(
                    "must be one of {}, got {:?}",
                    STRATEGIES.join(", "),
                    g.compression_strategy
                ),
            );
        }
        Ok(())
    }

    fn diff(&self, old: &HigressConfig, new: &HigressConfig) -> ItemResult {
        diff_section(&old.gzip, &new.gzip)
    }

    fn apply(&mut self, new: &HigressConfig, result: ItemResult) {
        apply_section(&mut self.current, &new.gzip, result);
    }

    fn settings(&self, out: &mut FilterSettings) {
        out.gzip = self
            .current
            .enable
            .then(|| Arc::new(gzip_settings(&self.current)));
    }

    fn describe(&self) -> serde_json::Value {
        let g = &self.current;
        json!({
            "enable": g.enable,
            "minContentLength": g.min_content_length,
            "contentType": g.content_type,
            "disableOnEtagHeader": g.disable_on_etag_header,
            "memoryLevel": g.memory_level,
            "windowBits": g.window_bits,
            "chunkSize": g.chunk_size,
            "compressionLevel": g.compression_level,
            "compressionStrategy": g.compression_strategy,
        })
    }

    fn not_enforced(&self) -> Vec<String> {
        Vec::new()
    }
}
