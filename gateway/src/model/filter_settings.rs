//! The typed filter settings the item controllers make of `higress-config`
//! (`controllers/`), as the data plane reads them from the snapshot: global options,
//! gzip and tracing. Plain data; how a section becomes these lives with its controller.

use std::sync::Arc;
use std::time::Duration;

use telemetry::export::Provider;

/// Typed settings every item controller contributes to a snapshot.
#[derive(Clone, Debug, Default)]
pub struct FilterSettings {
    pub global: Arc<GlobalOptionSettings>,
    /// `None` while tracing is off.
    pub tracing: Option<Arc<TracingSettings>>,
    /// `None` while gzip is off.
    pub gzip: Option<Arc<GzipSettings>>,
}

/// `global-option`: what the data plane reads on every request or connection.
///
/// `Default` (an empty `higress-config`) is implemented in
/// `controllers/global_option.rs`, beside the section defaults it is made from.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalOptionSettings {
    /// Zero: no idle timeout.
    pub downstream_idle_timeout: Duration,
    pub max_request_headers_bytes: usize,
    pub downstream_buffer_limit: usize,
    /// `None` when `downstream.http2` is null: the HTTP/2 library's own defaults apply.
    pub http2: Option<Http2Settings>,
    /// Zero: no route timeout.
    pub route_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub upstream_buffer_limit: usize,
    pub add_x_real_ip: bool,
    pub disable_x_envoy_headers: bool,
}

/// `downstream.http2`: the HTTP/2 SETTINGS a downstream connection starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http2Settings {
    pub max_concurrent_streams: u32,
    /// Bytes.
    pub initial_stream_window_size: u32,
    /// Bytes.
    pub initial_connection_window_size: u32,
}

/// `gzip`: what the response compressor needs, resolved from the section.
#[derive(Clone, Debug, PartialEq)]
pub struct GzipSettings {
    pub min_content_length: u64,
    /// Lower case media types (no parameters).
    pub content_types: Vec<String>,
    pub disable_on_etag_header: bool,
    pub deflate: DeflateParams,
}

/// Settings as zlib takes them (already validated by the gzip item controller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// 0..=9 (Envoy's `DEFAULT_COMPRESSION` is 6).
    pub level: i32,
    /// 9..=15; the gzip wrapper is added here (Envoy ORs 16, as zlib wants).
    pub window_bits: i32,
    /// 1..=9.
    pub mem_level: i32,
    /// zlib's `Z_DEFAULT_STRATEGY` (0), `Z_FILTERED` (1), `Z_HUFFMAN_ONLY` (2), `Z_RLE` (3),
    /// `Z_FIXED` (4).
    pub strategy: i32,
    /// Output grows by this much at a time (Envoy's `chunk_size`).
    pub chunk_size: usize,
}

/// `tracing`: effective settings; `None` in [`FilterSettings`] when tracing is off.
#[derive(Clone, Debug, PartialEq)]
pub struct TracingSettings {
    /// Percent of new traces sampled (an incoming decision is honoured).
    pub sampling: f64,
    /// Bound on each export call.
    pub timeout: Duration,
    pub collector: Collector,
}

/// The collector: `service`/`port` as `higress-config` names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collector {
    /// Which tracer, and so which propagation format and collector protocol.
    pub kind: Provider,
    /// An McpBridge host (`oap.static`), a service FQDN, or a plain host name / IP.
    pub service: String,
    pub port: u16,
    pub access_token: Option<String>,
    /// OpenTelemetry: OTLP/HTTP protobuf instead of gRPC (`protocol: http`).
    pub otlp_http: bool,
}
