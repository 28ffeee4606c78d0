//! The global config in `higress-config` `data.higress`, with Higress's defaults.
//!
//! As in Higress, the YAML is read on top of a fully defaulted config: a missing key keeps
//! its default, a list replaces the default list, and an explicit `null` section means
//! "reset this item to its defaults" (the item controller treats it as a delete).
//! Validation belongs to the item controllers (`controllers/`); this file is the schema.
//! Each field's doc gives its unit and default; the checks quoted are the items'.
#![deny(missing_docs)]

use serde::{Deserialize, Deserializer};

use super::{from_yaml, FieldError};

/// The `higress` key of the `higress-config` ConfigMap. A section set to `null` is `None`:
/// its item goes back to its defaults.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HigressConfig {
    /// The `tracing` item: tracer, sampling and collector. Default: tracing off.
    #[serde(deserialize_with = "nullable")]
    pub tracing: Option<Tracing>,
    /// The `gzip` item: response compression. Default: on, as in Higress.
    #[serde(deserialize_with = "nullable")]
    pub gzip: Option<Gzip>,
    /// The `global-option` item's client side: timeouts, limits, HTTP/2 settings.
    #[serde(deserialize_with = "nullable")]
    pub downstream: Option<Downstream>,
    /// The `global-option` item's upstream side: pooled connections.
    #[serde(deserialize_with = "nullable")]
    pub upstream: Option<Upstream>,
    /// `true`: no `x-envoy-attempt-count` on upstream requests and no
    /// `x-envoy-upstream-service-time` on responses (Envoy's `suppress_envoy_headers`).
    /// Default: false.
    #[serde(rename = "disableXEnvoyHeaders")]
    pub disable_x_envoy_headers: bool,
    /// `true`: upstream requests carry `x-real-ip: <client address>`. Default: false.
    #[serde(rename = "addXRealIpHeader")]
    pub add_x_real_ip_header: bool,
    /// The `mcpServer` item, kept opaque: accepted, not enforced (the MCP server item is
    /// not built here yet). Default: none.
    #[serde(rename = "mcpServer")]
    pub mcp_server: Option<serde_yaml::Value>,
}

impl Default for HigressConfig {
    fn default() -> Self {
        HigressConfig {
            tracing: Some(Tracing::default()),
            gzip: Some(Gzip::default()),
            downstream: Some(Downstream::default()),
            upstream: Some(Upstream::default()),
            disable_x_envoy_headers: false,
            add_x_real_ip_header: false,
            mcp_server: None,
        }
    }
}

impl HigressConfig {
    /// Parse `data.higress` on top of the defaults; the error names the field at fault.
    pub fn parse(bytes: &[u8]) -> Result<HigressConfig, FieldError> {
        // An empty document is the all-defaults config, as unmarshalling "" in Go is.
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(HigressConfig::default());
        }
        from_yaml(bytes)
    }
}

/// `null` → `None`; a value → `Some`; a missing key keeps the struct default (serde
/// does not call this for missing keys).
fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// Strings that YAML may have typed as numbers or bools (`port: 11800`), converted
/// as `sigs.k8s.io/yaml` does for string-typed Go fields.
fn lenient_string<'de, D>(d: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    let v = serde_yaml::Value::deserialize(d)?;
    match v {
        serde_yaml::Value::String(s) => Ok(s),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        serde_yaml::Value::Null => Ok(String::new()),
        _ => Err(serde::de::Error::custom("expected a string")),
    }
}

/// `tracing`: the tracer and where its spans go. Provider blocks are checked even when
/// `enable` is false; when it is true exactly one of them must be set.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct Tracing {
    /// Trace requests and export their spans. Default: false.
    pub enable: bool,
    /// Percent of new traces sampled, 0..=100 (a caller's decision is honoured).
    /// Default: 100.
    pub sampling: f64,
    /// Milliseconds one export call may take, > 0. Default: 500.
    pub timeout: i32,
    /// SkyWalking collector (`sw8` propagation, gRPC export). Default: none.
    pub skywalking: Option<SkyWalking>,
    /// Zipkin collector (`b3` propagation, JSON v2 export over HTTP). Default: none.
    pub zipkin: Option<Zipkin>,
    /// OpenTelemetry collector (`traceparent` propagation, OTLP export). Default: none.
    pub opentelemetry: Option<OpenTelemetry>,
}

impl Default for Tracing {
    fn default() -> Self {
        Tracing {
            enable: false,
            sampling: 100.0,
            timeout: 500,
            skywalking: None,
            zipkin: None,
            opentelemetry: None,
        }
    }
}

/// `tracing.skywalking`: a SkyWalking OAP's gRPC endpoint.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SkyWalking {
    /// Collector host: an McpBridge host (`oap.static`), a Service FQDN, or a host name or
    /// IP. Required.
    #[serde(deserialize_with = "lenient_string")]
    pub service: String,
    /// Collector port, 1..=65535 (a string; a YAML number is read as one). Required.
    #[serde(deserialize_with = "lenient_string")]
    pub port: String,
    /// Sent as the gRPC metadata `authentication`. Default: empty, none sent.
    #[serde(deserialize_with = "lenient_string")]
    pub access_token: String,
}

/// `tracing.zipkin`: a Zipkin collector's HTTP endpoint.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Zipkin {
    /// Collector host, as for SkyWalking. Required.
    #[serde(deserialize_with = "lenient_string")]
    pub service: String,
    /// Collector port, 1..=65535 (a string; a YAML number is read as one). Required.
    #[serde(deserialize_with = "lenient_string")]
    pub port: String,
}

/// `tracing.opentelemetry`: an OTLP collector.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OpenTelemetry {
    /// Collector host, as for SkyWalking. Required.
    #[serde(deserialize_with = "lenient_string")]
    pub service: String,
    /// Collector port, 1..=65535 (a string; a YAML number is read as one). Required.
    #[serde(deserialize_with = "lenient_string")]
    pub port: String,
    /// Our extension: `grpc` (OTLP/gRPC) or `http` (OTLP/HTTP protobuf). Default: empty,
    /// read as `grpc`.
    #[serde(deserialize_with = "lenient_string")]
    pub protocol: String,
}

/// `gzip`: response compression as Envoy's compressor filter does it with the zlib
/// settings Higress gives it. Every field is checked even when `enable` is false.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Gzip {
    /// Compress responses the client accepts gzip for. Default: true.
    pub enable: bool,
    /// Bytes: a response whose `Content-Length` is smaller is sent as it is, > 0.
    /// Default: 1024.
    pub min_content_length: i32,
    /// Media types compressed (case-insensitive, parameters ignored); not empty. Default:
    /// `text/html`, `text/css`, `text/plain`, `text/xml`, `application/json`,
    /// `application/javascript`, `application/xhtml+xml`, `image/svg+xml`.
    pub content_type: Vec<String>,
    /// `true`: a response with an `ETag` is sent as it is. Default: true.
    pub disable_on_etag_header: bool,
    /// zlib `memLevel`, 1..=9: memory for the compressor's state. Default: 5.
    pub memory_level: i32,
    /// zlib window, 9..=15 (a window of 2^n bytes). Default: 12.
    pub window_bits: i32,
    /// Bytes the compressor's output buffer grows by, > 0. Default: 4096.
    pub chunk_size: i32,
    /// `BEST_COMPRESSION` (level 9), `BEST_SPEED` (1) or `COMPRESSION_LEVEL_1` to `_9`.
    /// Default: `BEST_COMPRESSION`.
    pub compression_level: String,
    /// zlib strategy: `DEFAULT_STRATEGY`, `FILTERED`, `HUFFMAN_ONLY`, `RLE` or `FIXED`.
    /// Default: `DEFAULT_STRATEGY`.
    pub compression_strategy: String,
}

impl Default for Gzip {
    fn default() -> Self {
        Gzip {
            enable: true,
            min_content_length: 1024,
            content_type: [
                "text/html",
                "text/css",
                "text/plain",
                "text/xml",
                "application/json",
                "application/javascript",
                "application/xhtml+xml",
                "image/svg+xml",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            disable_on_etag_header: true,
            memory_level: 5,
            window_bits: 12,
            chunk_size: 4096,
            compression_level: "BEST_COMPRESSION".into(),
            compression_strategy: "DEFAULT_STRATEGY".into(),
        }
    }
}

/// `downstream`: the client side of the `global-option` item.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Downstream {
    /// Seconds a client connection may sit idle (before its first request, between
    /// requests, an HTTP/2 connection without streams) before it is closed; 0: never.
    /// Default: 180. Envoy also applies it to idle streams; here it does not (reported as
    /// not enforced).
    pub idle_timeout: u32,
    /// KiB of request headers (names and values) above which a request gets 431; at most
    /// 8192, and the HTTP/1 parser caps it at 1023 (reported). Default: 60.
    pub max_request_headers_kb: u32,
    /// Bytes: the kernel send buffer of each client connection. Default: 32768.
    pub connection_buffer_limits: u32,
    /// HTTP/2 settings of client connections; `null`: the HTTP/2 library's own defaults.
    #[serde(deserialize_with = "nullable")]
    pub http2: Option<Http2>,
    /// Seconds a request may take on a route without a `higress.io/timeout` (then 504);
    /// 0: no limit. Default: 0.
    pub route_timeout: u32,
}

impl Default for Downstream {
    fn default() -> Self {
        Downstream {
            idle_timeout: 180,
            max_request_headers_kb: 60,
            connection_buffer_limits: 32768,
            http2: Some(Http2::default()),
            route_timeout: 0,
        }
    }
}

/// `downstream.http2`: what the gateway announces on client HTTP/2 connections.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Http2 {
    /// Streams a client may open at once on a connection (SETTINGS
    /// `MAX_CONCURRENT_STREAMS`), 1..=2147483647. Default: 100.
    pub max_concurrent_streams: u32,
    /// Bytes: each stream's flow-control window (SETTINGS `INITIAL_WINDOW_SIZE`),
    /// 65535..=2147483647. Default: 65535.
    pub initial_stream_window_size: u32,
    /// Bytes: the connection's flow-control window, 65535..=2147483647. Default: 1048576.
    pub initial_connection_window_size: u32,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            max_concurrent_streams: 100,
            initial_stream_window_size: 65535,
            initial_connection_window_size: 1048576,
        }
    }
}

/// `upstream`: the upstream side of the `global-option` item.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Upstream {
    /// Seconds a pooled upstream connection may sit idle before it is closed. Default: 10.
    pub idle_timeout: u32,
    /// Bytes: Envoy's per-connection buffer limit. Default: 10485760. Accepted, not
    /// enforced (reported).
    pub connection_buffer_limits: u32,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            idle_timeout: 10,
            connection_buffer_limits: 10485760,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_all_defaults() {
        assert_eq!(HigressConfig::parse(b"").unwrap(), HigressConfig::default());
    }

    #[test]
    fn missing_nested_keys_keep_defaults() {
        let c = HigressConfig::parse(b"downstream:\n  idleTimeout: 5\n").unwrap();
        let d = c.downstream.unwrap();
        assert_eq!(d.idle_timeout, 5);
        assert_eq!(d.max_request_headers_kb, 60);
        assert_eq!(d.http2.unwrap().max_concurrent_streams, 100);
        assert!(c.gzip.unwrap().enable);
    }

    #[test]
    fn explicit_null_clears_a_section() {
        let c = HigressConfig::parse(b"gzip: null\ndownstream:\n  http2: null\n").unwrap();
        assert!(c.gzip.is_none());
        assert!(c.downstream.unwrap().http2.is_none());
    }

    #[test]
    fn lists_replace_defaults() {
        let c = HigressConfig::parse(b"gzip:\n  contentType: [text/plain]\n").unwrap();
        assert_eq!(c.gzip.unwrap().content_type, vec!["text/plain"]);
    }

    #[test]
    fn numeric_port_is_a_string() {
        let c = HigressConfig::parse(
            b"tracing:\n  enable: true\n  skywalking:\n    service: oap.static\n    port: 11800\n",
        )
        .unwrap();
        assert_eq!(c.tracing.unwrap().skywalking.unwrap().port, "11800");
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = HigressConfig::parse(b"downstream:\n  idleTimeout: soon\n").unwrap_err();
        assert_eq!(e.path, "downstream.idleTimeout");
        let e = HigressConfig::parse(b"gzip:\n  contentType: [1, {a: b}]\n").unwrap_err();
        assert_eq!(e.path, "gzip.contentType[1]");
    }
}
