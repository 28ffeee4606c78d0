//! Envoy's compressor filter stats for the gzip library Higress configures
//! (`http.<prefix>.compressor.text_optimized.gzip.*`), labelled like the other HCM
//! stats. Envoy still emits these undirected names beside the `response.` ones, and they
//! are the ones dashboards query.

use telemetry::stats::{Counter, Kind, Registry};

/// Higress names its compressor library `text_optimized`.
const PREFIX: &str = "envoy_http_compressor_text_optimized_gzip_";

#[derive(Clone)]
pub struct CompressorStats {
    pub compressed: Counter,
    pub not_compressed: Counter,
    pub total_uncompressed_bytes: Counter,
    pub total_compressed_bytes: Counter,
    pub content_length_too_small: Counter,
    pub no_accept_header: Counter,
    pub header_identity: Counter,
    pub header_compressor_used: Counter,
    pub header_wildcard: Counter,
    pub header_not_valid: Counter,
    pub not_compressed_etag: Counter,
}

impl CompressorStats {
    pub fn register(r: &Registry, labels: &[(&str, &str)]) -> Self {
        let c = |name: &str, help: &str| {
            r.family(&format!("{PREFIX}{name}"), help, Kind::Counter)
                .counter(labels)
        };
        CompressorStats {
            compressed: c("compressed", "Responses compressed with gzip."),
            not_compressed: c("not_compressed", "Responses not compressed."),
            total_uncompressed_bytes: c(
                "total_uncompressed_bytes",
                "Body bytes of compressed responses before compression.",
            ),
            total_compressed_bytes: c(
                "total_compressed_bytes",
                "Body bytes of compressed responses after compression.",
            ),
            content_length_too_small: c(
                "content_length_too_small",
                "Responses below minContentLength.",
            ),
            no_accept_header: c("no_accept_header", "Requests without Accept-Encoding."),
            header_identity: c("header_identity", "Requests that chose identity."),
            header_compressor_used: c("header_compressor_used", "Requests that chose gzip."),
            header_wildcard: c("header_wildcard", "Requests that chose gzip through '*'."),
            header_not_valid: c(
                "header_not_valid",
                "Requests whose Accept-Encoding allows no coding we have.",
            ),
            not_compressed_etag: c(
                "not_compressed_etag",
                "Responses not compressed because of an ETag (disableOnEtagHeader).",
            ),
        }
    }
}
