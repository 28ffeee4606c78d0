//! The global config in `higress-config` `data.higress`, with Higress's defaults.
//!
//! As in Higress, the YAML is read on top of a fully defaulted config: a missing key keeps
//! its default, a list replaces the default list, and an explicit `null` section means
//! "reset this item to its defaults" (the item controller treats it as a delete).
//! Validation belongs to the item controllers (`controllers/`); this file is the schema.

use serde::{Deserialize, Deserializer};

use super::{from_yaml, FieldError};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HigressConfig {
    #[serde(deserialize_with = "nullable")]
    pub tracing: Option<Tracing>,
    #[serde(deserialize_with = "nullable")]
    pub gzip: Option<Gzip>,
    #[serde(deserialize_with = "nullable")]
    pub downstream: Option<Downstream>,
    #[serde(deserialize_with = "nullable")]
    pub upstream: Option<Upstream>,
    #[serde(rename = "disableXEnvoyHeaders")]
    pub disable_x_envoy_headers: bool,
    #[serde(rename = "addXRealIpHeader")]
    pub add_x_real_ip_header: bool,
    /// Kept opaque: the MCP server item is not built here yet.
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

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct Tracing {
    pub enable: bool,
    pub sampling: f64,
    pub timeout: i32,
    pub skywalking: Option<SkyWalking>,
    pub zipkin: Option<Zipkin>,
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

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SkyWalking {
    #[serde(deserialize_with = "lenient_string")]
    pub service: String,
    #[serde(deserialize_with = "lenient_string")]
    pub port: String,
    #[serde(deserialize_with = "lenient_string")]
    pub access_token: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Zipkin {
    #[serde(deserialize_with = "lenient_string")]
    pub service: String,
    #[serde(deserialize_with = "lenient_string")]
    pub port: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OpenTelemetry {
    #[serde(deserialize_with = "lenient_string")]
    pub service: String,
    #[serde(deserialize_with = "lenient_string")]
    pub port: String,
    /// Our extension: `grpc` (default) or `http` (OTLP/HTTP protobuf).
    #[serde(deserialize_with = "lenient_string")]
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Gzip {
    pub enable: bool,
    pub min_content_length: i32,
    pub content_type: Vec<String>,
    pub disable_on_etag_header: bool,
    pub memory_level: i32,
    pub window_bits: i32,
    pub chunk_size: i32,
    pub compression_level: String,
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

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Downstream {
    /// Seconds; 0 disables the timeout.
    pub idle_timeout: u32,
    pub max_request_headers_kb: u32,
    /// Bytes.
    pub connection_buffer_limits: u32,
    #[serde(deserialize_with = "nullable")]
    pub http2: Option<Http2>,
    /// Seconds; 0 means no route timeout.
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

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Http2 {
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: u32,
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

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Upstream {
    /// Seconds.
    pub idle_timeout: u32,
    /// Bytes.
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
