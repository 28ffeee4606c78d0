//! Istio's `DestinationRule` (`networking/v1beta1/destination_rule.proto`): the
//! traffic policy of a host's clusters (load balancing, connection pool, outlier
//! detection, TLS) and its subsets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    check_api_version, check_duration, check_header_name, check_host, check_port, from_yaml,
    FieldError, PortSelector,
};
use crate::resources::ObjectMeta;

/// An Istio `DestinationRule`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct DestinationRule {
    pub metadata: ObjectMeta,
    pub spec: DestinationRuleSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DestinationRuleSpec {
    /// The host whose clusters take the policy: a Service name (without dots: of the
    /// rule's namespace), an FQDN or `*.suffix` (required).
    pub host: String,
    /// Boxed: the policy is large and most rules have few of its parts.
    pub traffic_policy: Option<Box<TrafficPolicy>>,
    /// Named subsets by endpoint labels.
    pub subsets: Vec<Subset>,
    /// Visibility (not read).
    pub export_to: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TrafficPolicy {
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPool>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTls>,
    /// Per-port overrides of the policy.
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortTrafficPolicy {
    /// The port the settings apply to (required).
    pub port: Option<PortSelector>,
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPool>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTls>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerSettings {
    /// A simple policy; absent: round robin (unless `consistentHash`).
    pub simple: Option<SimpleLb>,
    pub consistent_hash: Option<ConsistentHash>,
    /// Locality settings (not read).
    pub locality_lb_setting: Option<serde_json::Value>,
    /// Slow start (not read).
    pub warmup_duration_secs: Option<String>,
}

/// Istio's simple load balancing policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    Unspecified,
    RoundRobin,
    LeastConn,
    LeastRequest,
    Random,
    Passthrough,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsistentHash {
    /// Hash by this request header.
    pub http_header_name: Option<String>,
    /// Hash by this cookie (made by the gateway with `ttl` when missing).
    pub http_cookie: Option<HttpCookie>,
    /// Hash by the client's IP address.
    pub use_source_ip: Option<bool>,
    /// Hash by this query parameter.
    pub http_query_parameter_name: Option<String>,
    /// Ring sizes (not read: the gateway's ring is Envoy's default size).
    pub ring_hash: Option<serde_json::Value>,
    pub maglev: Option<serde_json::Value>,
    pub minimum_ring_size: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpCookie {
    /// The cookie's name (required).
    pub name: String,
    /// Its `Path`; empty: none.
    pub path: String,
    /// Its lifetime (a duration); absent or 0: a session cookie.
    pub ttl: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ConnectionPool {
    pub tcp: Option<TcpSettings>,
    pub http: Option<HttpSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpSettings {
    /// Most connections to the host (>= 0).
    pub max_connections: Option<i64>,
    /// Connect timeout (a duration).
    pub connect_timeout: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpSettings {
    pub http1_max_pending_requests: Option<i64>,
    pub http2_max_requests: Option<i64>,
    pub max_requests_per_connection: Option<i64>,
    pub max_retries: Option<i64>,
    /// Idle timeout of upstream connections (a duration).
    pub idle_timeout: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutlierDetection {
    /// 5xx responses in a row that eject an endpoint (0: none); default 5.
    pub consecutive_5xx_errors: Option<i64>,
    /// 502/503/504 in a row that eject an endpoint (0 or absent: none).
    pub consecutive_gateway_errors: Option<i64>,
    /// Istio's deprecated name for `consecutiveGatewayErrors`.
    pub consecutive_errors: Option<i64>,
    /// Sweep interval (a duration); default 10s.
    pub interval: Option<String>,
    /// Minimum ejection (a duration); default 30s.
    pub base_ejection_time: Option<String>,
    /// Percent of endpoints that may be ejected (0..100; 0 or absent: 10).
    pub max_ejection_percent: Option<i64>,
    /// Panic threshold (not read: the gateway has no panic routing, as Istio's default 0).
    pub min_health_percent: Option<i64>,
    /// Local-origin failures counted apart (not read).
    pub split_external_local_origin_errors: Option<bool>,
    pub consecutive_local_origin_failures: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientTls {
    /// `DISABLE` (default), `SIMPLE`, `MUTUAL` or `ISTIO_MUTUAL`.
    pub mode: ClientTlsMode,
    /// The Secret in the rule's namespace: `ca.crt` (trust anchors), and for `MUTUAL`
    /// `tls.crt`/`tls.key` (the client certificate).
    pub credential_name: String,
    /// File paths (not read: the gateway takes Secrets only).
    pub ca_certificates: String,
    pub client_certificate: String,
    pub private_key: String,
    /// The SNI sent (and the name a verified certificate must carry).
    pub sni: String,
    /// Names the server certificate may carry (not read).
    pub subject_alt_names: Vec<String>,
    /// Skip verifying the server's certificate (default false).
    pub insecure_skip_verify: Option<bool>,
}

/// TLS towards the upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    #[default]
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Subset {
    /// The subset's name (required), as a destination's `subset` names it.
    pub name: String,
    /// Endpoint labels.
    pub labels: BTreeMap<String, String>,
    pub traffic_policy: Option<Box<TrafficPolicy>>,
}

impl DestinationRule {
    pub fn parse(bytes: &[u8]) -> Result<DestinationRule, FieldError> {
        check_api_version(bytes)?;
        let d: DestinationRule = from_yaml(bytes)?;
        d.validate()?;
        Ok(d)
    }

    fn validate(&self) -> Result<(), FieldError> {
        let spec = &self.spec;
        if spec.host.is_empty() {
            return Err(FieldError::new("spec.host", "required"));
        }
        check_host(&spec.host, "spec.host")?;
        if let Some(p) = &spec.traffic_policy {
            p.validate("spec.trafficPolicy")?;
        }
        for (i, s) in spec.subsets.iter().enumerate() {
            let at = format!("spec.subsets[{i}]");
            if s.name.is_empty() {
                return Err(FieldError::new(format!("{at}.name"), "required"));
            }
            if let Some(p) = &s.traffic_policy {
                p.validate(&format!("{at}.trafficPolicy"))?;
            }
        }
        Ok(())
    }
}

fn non_negative(v: Option<i64>, at: &str) -> Result<(), FieldError> {
    match v {
        Some(n) if n < 0 => Err(FieldError::new(at, format!("{n} is negative"))),
        _ => Ok(()),
    }
}

fn check_parts(
    lb: &Option<LoadBalancerSettings>,
    pool: &Option<ConnectionPool>,
    outlier: &Option<OutlierDetection>,
    tls: &Option<ClientTls>,
    at: &str,
) -> Result<(), FieldError> {
    if let Some(lb) = lb {
        let at = format!("{at}.loadBalancer");
        if lb.simple.is_some() && lb.consistent_hash.is_some() {
            return Err(FieldError::new(
                at,
                "only one of simple and consistentHash may be set",
            ));
        }
        if let Some(h) = &lb.consistent_hash {
            let at = format!("{at}.consistentHash");
            let keys = [
                h.http_header_name.is_some(),
                h.http_cookie.is_some(),
                h.use_source_ip == Some(true),
                h.http_query_parameter_name.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if keys != 1 {
                return Err(FieldError::new(
                    at,
                    "exactly one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName is required",
                ));
            }
            if let Some(n) = &h.http_header_name {
                check_header_name(n, &format!("{at}.httpHeaderName"))?;
            }
            if let Some(q) = &h.http_query_parameter_name {
                if q.is_empty() {
                    return Err(FieldError::new(
                        format!("{at}.httpQueryParameterName"),
                        "must not be empty",
                    ));
                }
            }
            if let Some(c) = &h.http_cookie {
                if c.name.is_empty() || c.name.contains([';', '=', ' ', ',']) {
                    return Err(FieldError::new(
                        format!("{at}.httpCookie.name"),
                        format!("{:?} is not a cookie name", c.name),
                    ));
                }
                check_duration(&c.ttl, &format!("{at}.httpCookie.ttl"))?;
            }
        }
    }
    if let Some(p) = pool {
        let at = format!("{at}.connectionPool");
        if let Some(t) = &p.tcp {
            non_negative(t.max_connections, &format!("{at}.tcp.maxConnections"))?;
            check_duration(&t.connect_timeout, &format!("{at}.tcp.connectTimeout"))?;
        }
        if let Some(h) = &p.http {
            let at = format!("{at}.http");
            non_negative(
                h.http1_max_pending_requests,
                &format!("{at}.http1MaxPendingRequests"),
            )?;
            non_negative(h.http2_max_requests, &format!("{at}.http2MaxRequests"))?;
            non_negative(
                h.max_requests_per_connection,
                &format!("{at}.maxRequestsPerConnection"),
            )?;
            non_negative(h.max_retries, &format!("{at}.maxRetries"))?;
            check_duration(&h.idle_timeout, &format!("{at}.idleTimeout"))?;
        }
    }
    if let Some(o) = outlier {
        let at = format!("{at}.outlierDetection");
        non_negative(
            o.consecutive_5xx_errors,
            &format!("{at}.consecutive5xxErrors"),
        )?;
        non_negative(
            o.consecutive_gateway_errors,
            &format!("{at}.consecutiveGatewayErrors"),
        )?;
        non_negative(o.consecutive_errors, &format!("{at}.consecutiveErrors"))?;
        check_duration(&o.interval, &format!("{at}.interval"))?;
        check_duration(&o.base_ejection_time, &format!("{at}.baseEjectionTime"))?;
        if let Some(m) = o.max_ejection_percent {
            if !(0..=100).contains(&m) {
                return Err(FieldError::new(
                    format!("{at}.maxEjectionPercent"),
                    format!("{m} is not within 0..100"),
                ));
            }
        }
    }
    if let Some(t) = tls {
        if t.mode == ClientTlsMode::Mutual
            && t.credential_name.is_empty()
            && t.client_certificate.is_empty()
        {
            return Err(FieldError::new(
                format!("{at}.tls.credentialName"),
                "required for MUTUAL TLS",
            ));
        }
    }
    Ok(())
}

impl TrafficPolicy {
    fn validate(&self, at: &str) -> Result<(), FieldError> {
        check_parts(
            &self.load_balancer,
            &self.connection_pool,
            &self.outlier_detection,
            &self.tls,
            at,
        )?;
        for (i, p) in self.port_level_settings.iter().enumerate() {
            let at = format!("{at}.portLevelSettings[{i}]");
            match &p.port {
                None => return Err(FieldError::new(format!("{at}.port"), "required")),
                Some(port) => check_port(port.number, &format!("{at}.port.number"))?,
            }
            check_parts(
                &p.load_balancer,
                &p.connection_pool,
                &p.outlier_detection,
                &p.tls,
                &at,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: apps}
spec:
  host: web
  exportTo: ["."]
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms}
      http: {http1MaxPendingRequests: 10, idleTimeout: 1m}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
    tls: {mode: SIMPLE, sni: web.example.com}
    portLevelSettings:
    - port: {number: 8080}
      loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - name: v1
    labels: {version: v1}
"#;

    #[test]
    fn parses() {
        let d = DestinationRule::parse(DR.as_bytes()).unwrap();
        let tp = d.spec.traffic_policy.as_ref().unwrap();
        assert_eq!(
            tp.load_balancer
                .as_ref()
                .unwrap()
                .consistent_hash
                .as_ref()
                .unwrap()
                .http_header_name
                .as_deref(),
            Some("x-user")
        );
        assert_eq!(
            tp.port_level_settings[0]
                .load_balancer
                .as_ref()
                .unwrap()
                .simple,
            Some(SimpleLb::LeastRequest)
        );
        assert_eq!(tp.tls.as_ref().unwrap().mode, ClientTlsMode::Simple);
    }

    #[test]
    fn bad_fields_are_named() {
        let err = |from: &str, to: &str| {
            DestinationRule::parse(DR.replace(from, to).as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("connectTimeout: 30ms", "connectTimeout: 5x"),
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout: \"5x\" is not a duration (e.g. 1.5s, 300ms, 1m)"
        );
        assert_eq!(
            err("maxConnections: 100", "maxConnections: -1"),
            "spec.trafficPolicy.connectionPool.tcp.maxConnections: -1 is negative"
        );
        assert_eq!(
            err("httpHeaderName: x-user", "httpHeaderName: \"x user\""),
            "spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName: \"x user\" is not a valid header name"
        );
        assert!(err("simple: LEAST_REQUEST", "simple: FASTEST")
            .starts_with("spec.trafficPolicy.portLevelSettings[0].loadBalancer.simple: unknown variant `FASTEST`"));
        assert_eq!(
            err("maxEjectionPercent: 50", "maxEjectionPercent: 150"),
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent: 150 is not within 0..100"
        );
        assert_eq!(err("host: web", "host: \"\""), "spec.host: required");
        assert_eq!(
            err("- name: v1", "- name: \"\""),
            "spec.subsets[0].name: required"
        );
    }
}
