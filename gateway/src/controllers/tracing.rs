//! `tracing` item (Higress `pkg/ingress/kube/configmap/tracing.go`): validated and
//! diffed here so the whole-config rule holds; spans and exporters come with the
//! tracing work, so its settings are listed as not enforced until then.

use serde_json::json;

use super::{apply_section, diff_section, FilterSettings, ItemController, ItemResult};
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
    Ok(())
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

    fn settings(&self, _out: &mut FilterSettings) {}

    fn describe(&self) -> serde_json::Value {
        let t = &self.current;
        json!({
            "enable": t.enable,
            "sampling": t.sampling,
            "timeout": t.timeout,
            "provider": if t.skywalking.is_some() { "skywalking" } else if t.zipkin.is_some() { "zipkin" } else if t.opentelemetry.is_some() { "opentelemetry" } else { "" },
        })
    }

    fn not_enforced(&self) -> Vec<String> {
        vec!["tracing: all fields (validated and accepted; tracing is not built yet)".into()]
    }
}
