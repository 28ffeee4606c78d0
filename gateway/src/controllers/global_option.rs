//! `global-option`: `downstream`, `upstream`, `addXRealIpHeader`, `disableXEnvoyHeaders`
//! (Higress `pkg/ingress/kube/configmap/global.go`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{ItemController, ItemResult};
use crate::model::filter_settings::{FilterSettings, GlobalOptionSettings, Http2Settings};
use crate::resources::higress_config::{Downstream, Upstream};
use crate::resources::{FieldError, HigressConfig};

/// Largest request-header limit the HTTP/1 parser under us accepts (Pingora caps a
/// request head at 1 MiB); larger configured limits are clamped and reported.
pub const PARSER_HEADER_LIMIT_KB: u32 = 1023;

/// The settings of an empty `global-option`: the sections' own defaults.
impl Default for GlobalOptionSettings {
    fn default() -> Self {
        settings_from_sections(&Downstream::default(), &Upstream::default(), false, false)
    }
}

fn settings_from_sections(
    d: &Downstream,
    u: &Upstream,
    real_ip: bool,
    no_envoy: bool,
) -> GlobalOptionSettings {
    GlobalOptionSettings {
        downstream_idle_timeout: Duration::from_secs(d.idle_timeout.into()),
        max_request_headers_bytes: d.max_request_headers_kb.min(PARSER_HEADER_LIMIT_KB) as usize
            * 1024,
        downstream_buffer_limit: d.connection_buffer_limits as usize,
        http2: d.http2.as_ref().map(|h| Http2Settings {
            max_concurrent_streams: h.max_concurrent_streams,
            initial_stream_window_size: h.initial_stream_window_size,
            initial_connection_window_size: h.initial_connection_window_size,
        }),
        route_timeout: Duration::from_secs(d.route_timeout.into()),
        upstream_idle_timeout: Duration::from_secs(u.idle_timeout.into()),
        upstream_buffer_limit: u.connection_buffer_limits as usize,
        add_x_real_ip: real_ip,
        disable_x_envoy_headers: no_envoy,
    }
}

#[derive(Default)]
pub struct GlobalOptionController {
    downstream: Downstream,
    upstream: Upstream,
    add_x_real_ip: bool,
    disable_x_envoy_headers: bool,
    settings: Arc<GlobalOptionSettings>,
}

impl ItemController for GlobalOptionController {
    fn name(&self) -> &'static str {
        "global-option"
    }

    fn validate(&self, c: &HigressConfig) -> Result<(), FieldError> {
        let Some(d) = &c.downstream else {
            return Ok(());
        };
        if d.max_request_headers_kb > 8192 {
            return Err(FieldError::new(
                "downstream.maxRequestHeadersKb",
                format!("must be at most 8192, got {}", d.max_request_headers_kb),
            ));
        }
        if let Some(h) = &d.http2 {
            let range = |v: u32, lo: u32, field: &str| {
                if v < lo || v > 2147483647 {
                    Err(FieldError::new(
                        format!("downstream.http2.{field}"),
                        format!("must be in {lo}..=2147483647, got {v}"),
                    ))
                } else {
                    Ok(())
                }
            };
            range(h.max_concurrent_streams, 1, "maxConcurrentStreams")?;
            range(
                h.initial_stream_window_size,
                65535,
                "initialStreamWindowSize",
            )?;
            range(
                h.initial_connection_window_size,
                65535,
                "initialConnectionWindowSize",
            )?;
        }
        Ok(())
    }

    fn diff(&self, old: &HigressConfig, new: &HigressConfig) -> ItemResult {
        // Higress's compareGlobal: nothing at all set means "back to defaults".
        if new.downstream.is_none()
            && new.upstream.is_none()
            && !new.add_x_real_ip_header
            && !new.disable_x_envoy_headers
        {
            return ItemResult::Delete;
        }
        let same = old.downstream == new.downstream
            && old.upstream == new.upstream
            && old.add_x_real_ip_header == new.add_x_real_ip_header
            && old.disable_x_envoy_headers == new.disable_x_envoy_headers;
        if same {
            ItemResult::Nothing
        } else {
            ItemResult::Replace
        }
    }

    fn apply(&mut self, new: &HigressConfig, result: ItemResult) {
        match result {
            ItemResult::Nothing => return,
            ItemResult::Delete => {
                self.downstream = Downstream::default();
                self.upstream = Upstream::default();
                self.add_x_real_ip = false;
                self.disable_x_envoy_headers = false;
            }
            ItemResult::Replace => {
                // A null section resets just that section, as the Go pointers do.
                self.downstream = new.downstream.clone().unwrap_or_default();
                self.upstream = new.upstream.clone().unwrap_or_default();
                self.add_x_real_ip = new.add_x_real_ip_header;
                self.disable_x_envoy_headers = new.disable_x_envoy_headers;
            }
        }
        if self.downstream.max_request_headers_kb > PARSER_HEADER_LIMIT_KB {
            tracing::warn!(
                item = "global-option",
                "downstream.maxRequestHeadersKb {} is above what the HTTP/1 parser accepts; \
                 enforcing {PARSER_HEADER_LIMIT_KB}",
                self.downstream.max_request_headers_kb
            );
        }
        self.settings = Arc::new(settings_from_sections(
            &self.downstream,
            &self.upstream,
            self.add_x_real_ip,
            self.disable_x_envoy_headers,
        ));
    }

    fn settings(&self, out: &mut FilterSettings) {
        out.global = self.settings.clone();
    }

    fn describe(&self) -> serde_json::Value {
        let d = &self.downstream;
        let u = &self.upstream;
        json!({
            "downstream": {
                "idleTimeout": d.idle_timeout,
                "maxRequestHeadersKb": d.max_request_headers_kb,
                "connectionBufferLimits": d.connection_buffer_limits,
                "http2": d.http2.as_ref().map(|h| json!({
                    "maxConcurrentStreams": h.max_concurrent_streams,
                    "initialStreamWindowSize": h.initial_stream_window_size,
                    "initialConnectionWindowSize": h.initial_connection_window_size,
                })),
                "routeTimeout": d.route_timeout,
            },
            "upstream": {
                "idleTimeout": u.idle_timeout,
                "connectionBufferLimits": u.connection_buffer_limits,
            },
            "addXRealIpHeader": self.add_x_real_ip,
            "disableXEnvoyHeaders": self.disable_x_envoy_headers,
        })
    }

    fn not_enforced(&self) -> Vec<String> {
        let mut v = vec![
            // Envoy also applies idleTimeout as the stream idle timeout (a stalled
            // request/response); we apply it to idle connections only.
            "global-option: downstream.idleTimeout as stream idle timeout (applied to idle connections only)".to_string(),
            // Envoy bounds its user-space buffers; the kernel buffers of upstream
            // connections are left to autotuning here.
            "global-option: upstream.connectionBufferLimits".to_string(),
        ];
        if self.downstream.max_request_headers_kb > PARSER_HEADER_LIMIT_KB {
            v.push(format!(
                "global-option: downstream.maxRequestHeadersKb above {PARSER_HEADER_LIMIT_KB} (clamped)"
            ));
        }
        v
    }
}
