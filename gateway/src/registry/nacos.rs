//! The `nacos` registry watcher: Nacos's v1 HTTP open API, polled.
//!
//! What Higress does, read in its `registry/nacos/watcher.go` (v1, nacos-sdk-go v1.0.8)
//! and `registry/nacos/v2/watcher.go` (nacos2 / nacos3, nacos-sdk-go v2.3.5):
//! - every `nacosRefreshInterval` (at least 10 s) it lists each group's services,
//!   `GetAllServicesInfo`, 50 a page until a short page, and subscribes to the new ones
//!   and unsubscribes from the gone ones; names starting with `consumers:` and empty
//!   names are never subscribed (`shouldSubscribe`);
//! - a service's host is `<service>.<group>.<namespace>.nacos` where `_` becomes `-` in
//!   the part after the service name only; the namespace there is `nacosNamespace`,
//!   defaulting to `nacosNamespaceId`, itself defaulting to `public`;
//! - a subscription callback builds one ServiceEntry: the first instance's port (or
//!   `vport`'s) and protocol (metadata `protocol`, default `http`), one endpoint per
//!   instance with the metadata as labels and weight `round(weight)`, 1 when the weight
//!   is not above 0; a callback whose first instance carries
//!   `register-resource=mcp-bridge` is ignored; an empty instance list deletes it.
//!
//! What nacos-sdk-go v1 does under `Subscribe` (its `host_reactor.go` and
//! `subscribe_callback.go`): it reads `GET /nacos/v1/ns/instance/list` with
//! `healthyOnly=false`, re-reads each subscribed service once the server's
//! `cacheMillis` (10 s by default) has passed, checking every second, also takes the
//! server's UDP pushes, and calls back only when the list changed. This watcher does
//! not subscribe: it re-reads every service's instances at each refresh interval, so
//! a change is seen within one interval.
//!
//! Where this differs, on purpose:
//! - only healthy, enabled instances become endpoints (Higress hands Envoy every
//!   instance the server returns, unhealthy ones included: the server leaves out only
//!   disabled ones);
//! - the service list is read in `nacosNamespaceId` (Higress's call passes the host
//!   label `nacosNamespace` as the namespace; both are the same unless both are set);
//! - a weight that rounds to 0 (below 0.5) is 1, as an endpoint weight must be;
//! - an instance whose address is not an IP is left out (Higress's v2 watcher makes the
//!   service DNS-resolved instead).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::{DiscoveredEndpoint, DiscoveredService, RegistryConfig, Reporter};
use crate::resources::mcpbridge::Registry;

/// Higress's page size for the service list.
pub(super) const PAGE_SIZE: usize = 50;
/// Higress's Nacos client timeout (`DefaultNacosTimeout`, 5000 ms).
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the page loop should a server ignore `pageNo`.
pub(super) const MAX_PAGES: usize = 2_000;
/// A registry's answer larger than this is refused.
const MAX_BODY: usize = 16 << 20;

/// What a Nacos watcher reads from the McpBridge entry.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Settings {
    /// `nacosNamespaceId`, default `public`.
    pub namespace_id: String,
    /// `nacosNamespace`, the label in hosts; default the id.
    pub namespace_label: String,
    /// `nacosGroups`; none, nothing is discovered.
    pub groups: Vec<String>,
    pub refresh: Duration,
}

impl Settings {
    pub fn new(cfg: &RegistryConfig) -> Self {
        let r = &cfg.registry;
        let namespace_id = r
            .nacos_namespace_id
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "public".to_string());
        let namespace_label = r
            .nacos_namespace
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| namespace_id.clone());
        Settings {
            namespace_id,
            namespace_label,
            groups: r.nacos_groups.clone().unwrap_or_default(),
            refresh: cfg.refresh_interval(r.nacos_refresh_interval),
        }
    }
}

/// Higress's `shouldSubscribe`: no empty names, no Dubbo `consumers:` entries.
pub(super) fn should_watch(service: &str) -> bool {
    !service.is_empty() && !service.starts_with("consumers:")
}

/// `<service>.<group>.<namespace>.nacos`, `_` made `-` after the service name only.
pub(super) fn service_host(service: &str, group: &str, namespace_label: &str) -> String {
    let suffix = super::dns_safe(&format!("{group}.{namespace_label}.nacos"));
    format!("{service}.{suffix}")
}

/// A Nacos weight as an endpoint weight: rounded, at least 1.
pub(super) fn endpoint_weight(weight: f64) -> u32 {
    if weight.is_finite() && weight > 0.0 {
        (weight.round() as u32).max(1)
    } else {
        1
    }
}

/// One instance, as either API gives it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Instance {
    pub ip: String,
    pub port: i64,
    pub weight: f64,
    pub healthy: bool,
    pub enabled: bool,
    pub metadata: BTreeMap<String, String>,
}

/// The service the instances make, if any: none when no instance is healthy and enabled
/// (an empty list deletes the service) or when the instances are Higress's own
/// (`register-resource=mcp-bridge` on the first, as Higress checks).
pub(super) fn build_service(
    registry: &Registry,
    host: String,
    instances: &[Instance],
) -> Option<DiscoveredService> {
    let first = instances.first()?;
    if first.metadata.get("register-resource").map(String::as_str) == Some("mcp-bridge") {
        return None;
    }
    let mut kept = Vec::new();
    let mut head: Option<&Instance> = None;
    for i in instances.iter().filter(|i| i.healthy && i.enabled) {
        let Ok(ip) = i.ip.trim().parse::<IpAddr>() else {
            tracing::debug!(host = %host, ip = %i.ip, "nacos instance without an IP address left out");
            continue;
        };
        let Ok(port) = u16::try_from(i.port) else {
            continue;
        };
        if port == 0 {
            continue;
        }
        head.get_or_insert(i);
        kept.push(DiscoveredEndpoint {
            addr: SocketAddr::new(ip, port),
            weight: endpoint_weight(i.weight),
            metadata: i.metadata.clone(),
        });
    }
    let head = head?;
    let protocol = head
        .metadata
        .get("protocol")
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "http".to_string());
    let port = super::service_port(registry, &host, kept[0].addr.port());
    // A stable order, so that an unchanged registry compares equal from poll to poll.
    kept.sort_by(|a, b| a.addr.cmp(&b.addr));
    Some(DiscoveredService {
        host,
        port,
        protocol,
        endpoints: kept,
    })
}

// ---- the v1 HTTP API ----

/// `GET /nacos/v1/ns/service/list`.
#[derive(Debug, Default, Deserialize)]
struct ServiceList {
    #[serde(default)]
    count: i64,
    #[serde(default)]
    doms: Vec<String>,
}

/// An instance in `GET /nacos/v1/ns/instance/list`'s `hosts`. Nacos 1 writes `valid`
/// beside `healthy`; either says whether it is healthy.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1Instance {
    #[serde(default)]
    ip: String,
    #[serde(default)]
    port: i64,
    #[serde(default = "one")]
    weight: f64,
    healthy: Option<bool>,
    valid: Option<bool>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
struct V1InstanceList {
    #[serde(default)]
    hosts: Option<Vec<V1Instance>>,
}

/// `POST /nacos/v1/auth/login`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    access_token: String,
    /// Seconds (Nacos: 18000 by default).
    #[serde(default)]
    token_ttl: Option<u64>,
}

fn parse_service_list(body: &[u8]) -> Result<(Vec<String>, i64), String> {
    let l: ServiceList =
        serde_json::from_slice(body).map_err(|e| format!("service list: {e}"))?;
    Ok((l.doms, l.count))
}

fn parse_instances(body: &[u8]) -> Result<Vec<Instance>, String> {
    let l: V1InstanceList =
        serde_json::from_slice(body).map_err(|e| format!("instance list: {e}"))?;
    Ok(l.hosts
        .unwrap_or_default()
        .into_iter()
        .map(|h| Instance {
            ip: h.ip,
            port: h.port,
            weight: h.weight,
            healthy: h.healthy.or(h.valid).unwrap_or(true),
            enabled: h.enabled,
            metadata: h.metadata.unwrap_or_default(),
        })
        .collect())
}

/// Percent-encoding of a query or form value (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Why a call to the registry failed.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{0}")]
    Transport(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
}

/// A v1 API client: one request per connection, an access token when credentials are
/// given (logged in again before it expires and on a 403).
struct Client {
    address: String,
    credentials: Option<(String, String)>,
    token: Option<(String, Instant)>,
}

impl Client {
    fn new(cfg: &RegistryConfig) -> Self {
        let c = &cfg.credentials;
        let credentials = match (&c.nacos_username, &c.nacos_password) {
            (Some(u), p) if !u.is_empty() => Some((u.clone(), p.clone().unwrap_or_default())),
            _ => None,
        };
        Client {
            address: cfg.address(),
            credentials,
            token: None,
        }
    }

    async fn exchange(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), String> {
        let call = async {
            let tcp = tokio::net::TcpStream::connect(self.address.as_str())
                .await
                .map_err(|e| format!("connect {}: {e}", self.address))?;
            let _ = tcp.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut req = http::Request::builder()
                .method(method)
                .uri(path_and_query)
                .header(http::header::HOST, self.address.as_str())
                .header(http::header::USER_AGENT, "gateway-nacos-watcher");
            if body.is_some() {
                req = req.header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                );
            }
            let req = req
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| format!("request: {e}"))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| format!("{} did not answer within {TIMEOUT:?}", self.address))?
    }

    async fn login(&mut self) -> Result<(), CallError> {
        let Some((user, pass)) = self.credentials.clone() else {
            return Ok(());
        };
        let form = format!("username={}&password={}", encode(&user), encode(&pass));
        let (status, body) = self
            .exchange(http::Method::POST, "/nacos/v1/auth/login", Some(form))
            .await
            .map_err(CallError::Transport)?;
        if status != 200 {
            return Err(CallError::Status {
                status,
                body: format!("login: {}", String::from_utf8_lossy(&body)),
            });
        }
        let l: Login = serde_json::from_slice(&body)
            .map_err(|e| CallError::Transport(format!("login answer: {e}")))?;
        // Log in again once 90% of the token's life has passed, as the Nacos SDKs do.
        let ttl = Duration::from_secs(l.token_ttl.unwrap_or(18_000).max(1));
        self.token = Some((l.access_token, Instant::now() + ttl.mul_f64(0.9)));
        Ok(())
    }

    /// `GET path?pairs`, with the access token; a 403 logs in again and retries once.
    async fn get(&mut self, path: &str, pairs: &[(&str, &str)]) -> Result<Bytes, CallError> {
        for attempt in 0..2 {
            if self.credentials.is_some()
                && (attempt == 1 || self.token.as_ref().is_none_or(|t| Instant::now() >= t.1))
            {
                self.login().await?;
            }
            let mut q = query(pairs);
            if let Some((token, _)) = &self.token {
                q.push_str("&accessToken=");
                q.push_str(&encode(token));
            }
            let (status, body) = self
                .exchange(http::Method::GET, &format!("{path}?{q}"), None)
                .await
                .map_err(CallError::Transport)?;
            if status == 403 && self.credentials.is_some() && attempt == 0 {
                self.token = None;
                continue;
            }
            if status != 200 {
                let text = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
                return Err(CallError::Status { status, body: text });
            }
            return Ok(body);
        }
        unreachable!("the second attempt returns")
    }

    /// Every service of `group` in the namespace, page by page.
    async fn services(&mut self, namespace: &str, group: &str) -> Result<Vec<String>, String> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let page_no = page.to_string();
            let size = PAGE_SIZE.to_string();
            let body = self
                .get(
                    "/nacos/v1/ns/service/list",
                    &[
                        ("pageNo", &page_no),
                        ("pageSize", &size),
                        ("groupName", group),
                        ("namespaceId", namespace),
                    ],
                )
                .await
                .map_err(|e| format!("service list of group {group}: {e}"))?;
            let (names, count) = parse_service_list(&body)?;
            let short = names.len() < PAGE_SIZE;
            all.extend(names);
            if short || (count > 0 && all.len() as i64 >= count) {
                break;
            }
        }
        Ok(all)
    }

    async fn instances(
        &mut self,
        namespace: &str,
        group: &str,
        service: &str,
    ) -> Result<Vec<Instance>, String> {
        let grouped = format!("{group}@@{service}");
        let body = self
            .get(
                "/nacos/v1/ns/instance/list",
                &[
                    ("serviceName", &grouped),
                    ("groupName", group),
                    ("namespaceId", namespace),
                    ("clusters", ""),
                    ("healthyOnly", "false"),
                ],
            )
            .await
            .map_err(|e| format!("instances of {grouped}: {e}"))?;
        parse_instances(&body)
    }
}

/// One poll: every group's services and their instances.
async fn poll(
    client: &mut Client,
    cfg: &RegistryConfig,
    s: &Settings,
) -> Result<Vec<DiscoveredService>, String> {
    let mut out = Vec::new();
    for group in &s.groups {
        let names = client.services(&s.namespace_id, group).await?;
        for name in names.iter().filter(|n| should_watch(n)) {
            let instances = client.instances(&s.namespace_id, group, name).await?;
            let host = service_host(name, group, &s.namespace_label);
            out.extend(build_service(&cfg.registry, host, &instances));
        }
    }
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out.dedup_by(|a, b| a.host == b.host);
    Ok(out)
}

pub async fn run(cfg: RegistryConfig, reporter: Reporter) {
    let s = Settings::new(&cfg);
    if s.groups.is_empty() {
        // Higress discovers nothing without groups.
        reporter.services(Vec::new()).await;
        return std::future::pending().await;
    }
    let mut client = Client::new(&cfg);
    let mut last: Option<Vec<DiscoveredService>> = None;
    loop {
        match poll(&mut client, &cfg, &s).await {
            Ok(services) => {
                if last.as_ref() != Some(&services) {
                    tracing::debug!(registry = %cfg.id(), services = services.len(), "nacos services changed");
                    reporter.services(services.clone()).await;
                    last = Some(services);
                }
            }
            Err(e) => {
                tracing::warn!(registry = %cfg.id(), error = %e, "nacos registry not read");
                reporter.failed(e).await;
                // Report the set again once the registry answers.
                last = None;
            }
        }
        tokio::time::sleep(s.refresh).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::mcpbridge::{RegistryVport, VportService};

    fn instance(ip: &str, port: i64, weight: f64) -> Instance {
        Instance {
            ip: ip.into(),
            port,
            weight,
            healthy: true,
            enabled: true,
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn host_makes_the_suffix_dns_safe_but_not_the_service() {
        assert_eq!(
            service_host("my_svc", "DEFAULT_GROUP", "public"),
            "my_svc.DEFAULT-GROUP.public.nacos"
        );
        assert_eq!(
            service_host("a", "g_1", "ns_x"),
            "a.g-1.ns-x.nacos"
        );
    }

    #[test]
    fn weights_round_and_are_at_least_one() {
        assert_eq!(endpoint_weight(1.0), 1);
        assert_eq!(endpoint_weight(3.0), 3);
        assert_eq!(endpoint_weight(2.5), 3);
        assert_eq!(endpoint_weight(5.4), 5);
        assert_eq!(endpoint_weight(0.4), 1);
        assert_eq!(endpoint_weight(0.0), 1);
        assert_eq!(endpoint_weight(-2.0), 1);
        assert_eq!(endpoint_weight(f64::NAN), 1);
    }

    #[test]
    fn consumers_and_empty_names_are_not_watched() {
        assert!(should_watch("orders"));
        assert!(!should_watch(""));
        assert!(!should_watch("consumers:com.foo.Demo::"));
        assert!(should_watch("providers:com.foo.Demo::"));
    }

    #[test]
    fn settings_default_namespace_public_and_label_the_id() {
        let mut cfg = RegistryConfig {
            registry: Registry::default(),
            credentials: Default::default(),
            timing: Default::default(),
        };
        let s = Settings::new(&cfg);
        assert_eq!((s.namespace_id.as_str(), s.namespace_label.as_str()), ("public", "public"));
        assert!(s.groups.is_empty());
        cfg.registry.nacos_namespace_id = Some("4b1c".into());
        assert_eq!(Settings::new(&cfg).namespace_label, "4b1c");
        cfg.registry.nacos_namespace = Some("dev".into());
        assert_eq!(Settings::new(&cfg).namespace_label, "dev");
        assert_eq!(Settings::new(&cfg).namespace_id, "4b1c");
    }

    #[test]
    fn parses_the_v1_service_list() {
        let (names, count) = parse_service_list(br#"{"count":3,"doms":["a","b","c"]}"#).unwrap();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(count, 3);
        let (names, _) = parse_service_list(br#"{"count":0,"doms":[]}"#).unwrap();
        assert!(names.is_empty());
        assert!(parse_service_list(b"<html>").is_err());
    }

    #[test]
    fn parses_the_v1_instance_list() {
        let body = br#"{"name":"DEFAULT_GROUP@@echo","groupName":"DEFAULT_GROUP","clusters":"",
            "cacheMillis":10000,"hosts":[
              {"instanceId":"x","ip":"127.0.0.1","port":8081,"weight":2.0,"healthy":true,
               "enabled":true,"ephemeral":true,"clusterName":"DEFAULT",
               "serviceName":"DEFAULT_GROUP@@echo","metadata":{"protocol":"grpc","zone":"a"}},
              {"ip":"127.0.0.2","port":8082,"valid":false,"marked":false,"metadata":{}},
              {"ip":"127.0.0.3","port":8083,"weight":1.0,"healthy":true,"enabled":false}
            ],"lastRefTime":1,"checksum":"","allIPs":false,"reachProtectionThreshold":false,
            "valid":true}"#;
        let got = parse_instances(body).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].weight, 2.0);
        assert_eq!(got[0].metadata["zone"], "a");
        assert!(got[0].healthy && got[0].enabled);
        assert!(!got[1].healthy, "Nacos 1's `valid` says unhealthy");
        assert_eq!(got[1].weight, 1.0, "weight defaults to 1");
        assert!(!got[2].enabled);
        assert!(parse_instances(br#"{"hosts":null}"#).unwrap().is_empty());
    }

    #[test]
    fn service_keeps_healthy_enabled_instances_with_the_first_ones_port_and_protocol() {
        let r = Registry::default();
        let mut a = instance("127.0.0.1", 8081, 1.0);
        a.healthy = false;
        let mut b = instance("127.0.0.2", 9000, 3.0);
        b.metadata.insert("protocol".into(), "gRPC".into());
        let c = instance("127.0.0.3", 9001, 0.2);
        let mut d = instance("127.0.0.4", 9002, 1.0);
        d.enabled = false;
        let e = instance("not-an-ip", 9003, 1.0);
        let s = build_service(&r, "h".into(), &[a, b, c, d, e]).unwrap();
        assert_eq!(s.port, 9000);
        assert_eq!(s.protocol, "grpc");
        let got: Vec<(String, u32)> = s
            .endpoints
            .iter()
            .map(|e| (e.addr.to_string(), e.weight))
            .collect();
        assert_eq!(got, [("127.0.0.2:9000".into(), 3), ("127.0.0.3:9001".into(), 1)]);
        assert_eq!(s.endpoints[0].metadata["protocol"], "gRPC");
    }

    #[test]
    fn no_usable_instance_means_no_service_and_vport_names_the_port() {
        let mut r = Registry::default();
        let mut a = instance("127.0.0.1", 8081, 1.0);
        a.healthy = false;
        assert!(build_service(&r, "h".into(), &[a]).is_none());
        assert!(build_service(&r, "h".into(), &[]).is_none());
        r.vport = Some(RegistryVport {
            default: Some(80),
            services: vec![VportService {
                name: "h".into(),
                value: 8080,
            }],
        });
        let s = build_service(&r, "h".into(), &[instance("127.0.0.1", 1234, 1.0)]).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.protocol, "http");
        assert_eq!(s.endpoints[0].addr.port(), 1234, "endpoints keep their own port");
        let s = build_service(&r, "other".into(), &[instance("::1", 1234, 1.0)]).unwrap();
        assert_eq!(s.port, 80);
    }

    #[test]
    fn mcp_bridge_registrations_are_ignored() {
        let mut a = instance("127.0.0.1", 8081, 1.0);
        a.metadata
            .insert("register-resource".into(), "mcp-bridge".into());
        assert!(build_service(&Registry::default(), "h".into(), &[a]).is_none());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query(&[("serviceName", "G@@a b"), ("x", "é")]),
            "serviceName=G%40%40a%20b&x=%C3%A9"
        );
    }
}
