//! `tracing` item (Higress `pkg/ingress/kube/configmap/tracing.go`): validated and
//! diffed here so the whole-config rule holds, and turned into [`TracingSettings`]: the
//! config loop starts (or swaps) the exporter they name, the data plane samples and
//! propagates by them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use telemetry::export::Provider;

use super::{apply_section, diff_section, ItemController, ItemResult};
use crate::model::filter_settings::{Collector, FilterSettings, TracingSettings};
use crate::resources::higress_config::Tracing;
use crate::resources::{FieldError, HigressConfig};

#[derive(Default)]
pub struct TracingController {
    current: Tracing,
}

fn provider(service: &str, port: &str, at: &str) -> Result<(), FieldError> {
    if service.is_empty() {
        return Err(FieldError::new(
            format!("tracing.{at}.service"),
            "must not be empty",
        ));
    }
    if port.is_empty() {
        return Err(FieldError::new(
            format!("tracing.{at}.port"),
            "must not be empty",
        ));
    }
    // Higress pastes the port into a cluster name; a port that is not one could never
    // name a cluster or an address.
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(FieldError::new(
            format!("tracing.{at}.port"),
            format!("must be a port number (1..65535), got {port:?}"),
        )),
    }
}

impl TracingController {
    /// The collector of the enabled config (validation left exactly one provider).
    fn collector(t: &Tracing) -> Option<Collector> {
        let port = |p: &str| p.parse::<u16>().unwrap_or(0);
        if let Some(p) = &t.skywalking {
            return Some(Collector {
                kind: Provider::SkyWalking,
                service: p.service.clone(),
                port: port(&p.port),
                access_token: (!p.access_token.is_empty()).then(|| p.access_token.clone()),
                otlp_http: false,
            });
        }
        if let Some(p) = &t.zipkin {
            return Some(Collector {
                kind: Provider::Zipkin,
                service: p.service.clone(),
                port: port(&p.port),
                access_token: None,
                otlp_http: false,
            });
        }
        t.opentelemetry.as_ref().map(|p| Collector {
            kind: Provider::OpenTelemetry,
            service: p.service.clone(),
            port: port(&p.port),
            access_token: None,
            otlp_http: p.protocol == "http",
        })
    }
}

impl ItemController for TracingController {
    fn name(&self) -> &'static str {
        "tracing"
    }

    fn validate(&self, c: &HigressConfig) -> Result<(), FieldError> {
        let Some(t) = &c.tracing else { return Ok(()) };
        if t.timeout <= 0 {
            return Err(FieldError::new(
                "tracing.timeout",
                format!("must be greater than 0, got {}", t.timeout),
            ));
        }
        if !(0.0..=100.0).contains(&t.sampling) {
            return Err(FieldError::new(
                "tracing.sampling",
                format!("must be within 0..100, got {}", t.sampling),
            ));
        }
        // Provider blocks are checked even when tracing is off, as Higress does.
        if let Some(p) = &t.skywalking {
            provider(&p.service, &p.port, "skywalking")?;
        }
        if let Some(p) = &t.zipkin {
            provider(&p.service, &p.port, "zipkin")?;
        }
        if let Some(p) = &t.opentelemetry {
            provider(&p.service, &p.port, "opentelemetry")?;
            if !matches!(p.protocol.as_str(), "" | "grpc" | "http") {
                return Err(FieldError::new(
                    "tracing.opentelemetry.protocol",
                    format!("must be grpc or http, got {:?}", p.protocol),
                ));
            }
        }
        if t.enable {
            let n = [
                t.skywalking.is_some(),
                t.zipkin.is_some(),
                t.opentelemetry.is_some(),
            ]
            .iter()
            .filter(|&&b| b)
            .count();
            if n != 1 {
                return Err(FieldError::new(
                    "tracing",
                    "exactly one of skywalking, zipkin and opentelemetry must be set when enable is true",
                ));
            }
        }
        Ok(())
    }

    fn diff(&self, old: &HigressConfig, new: &HigressConfig) -> ItemResult {
        diff_section(&old.tracing, &new.tracing)
    }

    fn apply(&mut self, new: &HigressConfig, result: ItemResult) {
        apply_section(&mut self.current, &new.tracing, result);
    }

    fn settings(&self, out: &mut FilterSettings) {
        let t = &self.current;
        out.tracing = if t.enable {
            Self::collector(t).map(|collector| {
                Arc::new(TracingSettings {
                    sampling: t.sampling,
                    timeout: Duration::from_millis(t.timeout.max(1) as u64),
                    collector,
                })
            })
        } else {
            None
        };
    }

    fn describe(&self) -> serde_json::Value {
        let t = &self.current;
        json!({
            "enable": t.enable,
            "sampling": t.sampling,
            "timeout": t.timeout,
            "provider": if t.skywalking.is_some() { "skywalking" } else if t.zipkin.is_some() { "zipkin" } else if t.opentelemetry.is_some() { "opentelemetry" } else { "" },
            "collector": Self::collector(t).map(|c| format!("{}:{}", c.service, c.port)),
        })
    }

    fn not_enforced(&self) -> Vec<String> {
        Vec::new()
    }
}
