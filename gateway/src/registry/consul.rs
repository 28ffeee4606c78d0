//! The `consul` registry watcher, after Higress's `registry/consul/watcher.go` (read at
//! alibaba/higress 4e0d691) and the Consul API client's `watch` plan it uses.
//!
//! What was checked there, and is done here:
//! - every `consulRefreshInterval` (at least 10 s) the catalog is listed
//!   (`/v1/catalog/services`, `dc` = `consulDatacenter`); a service is kept when
//!   `consulServiceTag` (trimmed, lower-cased) is empty or one of its tags equals it
//!   lower-cased;
//! - each kept service is watched with a `service` watch plan: blocking queries on
//!   `/v1/health/service/<name>` (`index` = the last `X-Consul-Index`, no `passing`, no
//!   `tag`, `dc`); the answer is used only when the index moved. Higress sets no `wait`,
//!   so Consul's default of 5 minutes applies; it is sent explicitly here;
//! - an instance counts when its checks' aggregated status (maintenance > critical >
//!   warning > passing; no check is passing) is `passing`; no such instance leaves the
//!   service's last entry in place, and so does a service leaving the catalog (Higress
//!   stops watching it but deletes its entry only when the watcher stops);
//! - host `<service>.<consulDatacenter>.consul`, `_` -> `-` over the whole host; the
//!   port and protocol (`protocol` metadata, `http` by default) of the first counted
//!   instance; `vport` is not applied (Higress passes it to Nacos and Eureka only);
//!   each endpoint its own port, metadata as labels, weight 1 (Consul's `Weights` are not
//!   read);
//! - token `consulToken` of the auth secret, sent as `X-Consul-Token`.
//!
//! Where this differs: an instance without a service address is reached at its node's
//! address (Consul's documented meaning; Higress writes an empty endpoint address), and
//! one whose address is a host name is left out (endpoints are IP addresses here). A
//! catalog that cannot be read is reported ([`Reporter::failed`]) and the blocking queries
//! are restarted once it can be read again (Higress only logs).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::rest::{self, RestError};
use super::{dns_safe, DiscoveredEndpoint, DiscoveredService, RegistryConfig, Reporter};

/// How long Consul holds a blocking query when nothing changes (its own default).
const BLOCKING_WAIT: Duration = Duration::from_secs(300);
/// Bound of a plain (non-blocking) request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause before a failed blocking query is sent again (Consul's watch plan
/// backs off to 20 s; here it is the refresh interval, at most this).
const MAX_RETRY: Duration = Duration::from_secs(5);

/// One entry of `/v1/health/service/<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthEntry {
    pub node: Node,
    pub service: AgentService,
    #[serde(default)]
    pub checks: Option<Vec<HealthCheck>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(default)]
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    #[serde(rename = "CheckID", default)]
    pub check_id: String,
    #[serde(default)]
    pub status: String,
}

/// The checks' status as Consul's API client aggregates it: any maintenance check wins,
/// then critical, warning, passing; an unknown status gives "" and no check `passing`.
pub fn aggregated_status(checks: &[HealthCheck]) -> &'static str {
    // A list of passing checks and an empty one are both `passing`.
    let (mut warning, mut critical, mut maintenance) = (false, false, false);
    for c in checks {
        if c.check_id == "_node_maintenance" || c.check_id.starts_with("_service_maintenance:") {
            maintenance = true;
            continue;
        }
        match c.status.as_str() {
            "passing" => {}
            "warning" => warning = true,
            "critical" => critical = true,
            _ => return "",
        }
    }
    if maintenance {
        "maintenance"
    } else if critical {
        "critical"
    } else if warning {
        "warning"
    } else {
        "passing"
    }
}

/// Higress's host for `service` in `datacenter`.
pub fn host(service: &str, datacenter: &str) -> String {
    dns_safe(&format!("{service}.{datacenter}.consul"))
}

/// Whether a service with `tags` is discovered under `want` (already lower-cased).
pub fn carries_tag(want: &str, tags: &[String]) -> bool {
    want.is_empty() || tags.iter().any(|t| t.to_lowercase() == want)
}

/// The service's entry from its health answer; `None` when no instance is passing.
pub fn service_from(host: &str, entries: &[HealthEntry]) -> Option<DiscoveredService> {
    let mut first: Option<(u16, String)> = None;
    let mut endpoints = Vec::new();
    for e in entries {
        if aggregated_status(e.checks.as_deref().unwrap_or(&[])) != "passing" {
            continue;
        }
        let addr = match e.service.address.trim() {
            "" => e.node.address.trim(),
            a => a,
        };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            tracing::warn!(
                host,
                address = addr,
                "consul instance without an IP address left out"
            );
            continue;
        };
        let meta = e.service.meta.clone().unwrap_or_default();
        if first.is_none() {
            first = Some((e.service.port, protocol_of(&meta)));
        }
        endpoints.push(DiscoveredEndpoint {
            addr: SocketAddr::new(ip, e.service.port),
            weight: 1,
            metadata: meta,
        });
    }
    let (port, protocol) = first?;
    Some(DiscoveredService {
        host: host.to_string(),
        port,
        protocol,
        endpoints,
    })
}

/// The `protocol` metadata, lower-cased; `http` when absent.
fn protocol_of(meta: &BTreeMap<String, String>) -> String {
    match meta.get("protocol").map(|p| p.trim()) {
        Some(p) if !p.is_empty() => p.to_ascii_lowercase(),
        _ => "http".into(),
    }
}

/// What the watcher needs of its config, ready to use.
#[derive(Clone)]
struct Api {
    authority: String,
    datacenter: String,
    token: Option<String>,
}

impl Api {
    fn query(&self, mut q: Vec<(&'static str, String)>) -> String {
        if !self.datacenter.is_empty() {
            q.push(("dc", self.datacenter.clone()));
        }
        q.iter()
            .map(|(k, v)| format!("{k}={}", rest::segment(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    async fn get(&self, path: &str, timeout: Duration) -> Result<rest::Answer, RestError> {
        let headers: Vec<(&str, &str)> = match &self.token {
            Some(t) => vec![("X-Consul-Token", t.as_str())],
            None => vec![],
        };
        rest::get(&self.authority, path, &headers, timeout).await
    }

    /// The catalog's services and their tags.
    async fn services(&self) -> Result<BTreeMap<String, Vec<String>>, RestError> {
        let q = self.query(vec![]);
        let path = match q.is_empty() {
            true => "/v1/catalog/services".to_string(),
            false => format!("/v1/catalog/services?{q}"),
        };
        let answer = self.get(&path, REQUEST_TIMEOUT).await?;
        let tags: BTreeMap<String, Option<Vec<String>>> = answer.json(&path)?;
        Ok(tags
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect())
    }

    /// One blocking query for `service`'s health: its index and entries.
    async fn health(
        &self,
        service: &str,
        index: u64,
    ) -> Result<(u64, Vec<HealthEntry>), RestError> {
        let mut q = vec![];
        if index > 0 {
            q.push(("index", index.to_string()));
            q.push(("wait", format!("{}s", BLOCKING_WAIT.as_secs())));
        }
        let q = self.query(q);
        let mut path = format!("/v1/health/service/{}", rest::segment(service));
        if !q.is_empty() {
            path = format!("{path}?{q}");
        }
        // Consul adds up to wait/16 of jitter to the wait.
        let bound = BLOCKING_WAIT + BLOCKING_WAIT / 16 + REQUEST_TIMEOUT;
        let answer = self.get(&path, bound).await?;
        let index = answer
            .headers
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| RestError::Decode {
                path: path.clone(),
                reason: "no X-Consul-Index header".into(),
            })?;
        let entries: Option<Vec<HealthEntry>> = answer.json(&path)?;
        Ok((index, entries.unwrap_or_default()))
    }
}

/// A task aborted when dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A blocking-query loop for one service: sends its entries each time the index moves.
async fn watch_service(
    api: Api,
    service: String,
    retry: Duration,
    tx: mpsc::Sender<(String, Vec<HealthEntry>)>,
) {
    let mut index = 0u64;
    loop {
        match api.health(&service, index).await {
            Ok((new, entries)) => {
                let moved = index == 0 || new != index;
                // An index going back (a restored or new server) starts over, as the
                // watch plan does.
                index = if new < index { 0 } else { new };
                if moved && tx.send((service.clone(), entries)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(service = %service, error = %e, "consul health query failed");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

pub async fn run(cfg: RegistryConfig, reporter: Reporter) {
    let reg = &cfg.registry;
    let api = Api {
        authority: cfg.address(),
        datacenter: reg.consul_datacenter.clone().unwrap_or_default(),
        token: cfg
            .credentials
            .consul_token
            .clone()
            .filter(|t| !t.is_empty()),
    };
    let tag = reg
        .consul_service_tag
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_lowercase();
    let refresh = cfg.refresh_interval(reg.consul_refresh_interval);
    let retry = refresh.min(MAX_RETRY);
    let (tx, mut rx) = mpsc::channel::<(String, Vec<HealthEntry>)>(256);
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Entries by host, kept while a service has no passing instance or left the catalog.
    let mut entries: BTreeMap<String, DiscoveredService> = BTreeMap::new();
    let mut watches: HashMap<String, Task> = HashMap::new();
    // The set last reported; `None` before the first report and after a failure.
    let mut reported: Option<Vec<DiscoveredService>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => match api.services().await {
                Err(e) => {
                    tracing::warn!(registry = %cfg.id(), error = %e, "consul catalog not read");
                    watches.clear();
                    reported = None;
                    reporter.failed(e).await;
                    continue;
                }
                Ok(services) => {
                    let wanted: Vec<String> = services
                        .into_iter()
                        .filter(|(_, tags)| carries_tag(&tag, tags))
                        .map(|(name, _)| name)
                        .collect();
                    watches.retain(|name, _| wanted.contains(name));
                    for name in wanted {
                        if let Entry::Vacant(v) = watches.entry(name) {
                            let t = tokio::spawn(watch_service(api.clone(), v.key().clone(), retry, tx.clone()));
                            v.insert(Task(t));
                        }
                    }
                }
            },
            Some(first) = rx.recv() => {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                for (service, list) in batch {
                    // Answers of a service no longer watched are stale.
                    if !watches.contains_key(&service) {
                        continue;
                    }
                    let h = host(&service, &api.datacenter);
                    match service_from(&h, &list) {
                        Some(s) => {
                            entries.insert(h, s);
                        }
                        None => tracing::info!(host = %h, "no passing consul instance: last endpoints kept"),
                    }
                }
            }
        }
        let now: Vec<DiscoveredService> = entries.values().cloned().collect();
        reporter.services_if_changed(&mut reported, now).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(json: &str) -> Vec<HealthEntry> {
        serde_json::from_str(json).unwrap()
    }

    const HEALTH: &str = r#"[
      {"Node": {"Node": "n1", "Address": "10.0.0.9", "Datacenter": "dc1"},
       "Service": {"ID": "web-1", "Service": "web", "Tags": ["Blue"], "Address": "10.0.0.1",
                   "Port": 8080, "Meta": {"protocol": "GRPC", "zone": "a"},
                   "Weights": {"Passing": 5, "Warning": 1}},
       "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
                  {"CheckID": "service:web-1", "Status": "passing"}]},
      {"Node": {"Node": "n1", "Address": "10.0.0.9"},
       "Service": {"ID": "web-2", "Service": "web", "Address": "", "Port": 9090, "Meta": null},
       "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]},
      {"Node": {"Node": "n2", "Address": "10.0.0.8"},
       "Service": {"ID": "web-3", "Service": "web", "Address": "10.0.0.3", "Port": 8080},
       "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
                  {"CheckID": "service:web-3", "Status": "warning"}]},
      {"Node": {"Node": "n2", "Address": "10.0.0.8"},
       "Service": {"ID": "web-4", "Service": "web", "Address": "web4.local", "Port": 8080},
       "Checks": []}
    ]"#;

    #[test]
    fn passing_instances_become_endpoints_with_weight_one() {
        let s = service_from("web.dc1.consul", &entries(HEALTH)).unwrap();
        assert_eq!(s.host, "web.dc1.consul");
        assert_eq!((s.port, s.protocol.as_str()), (8080, "grpc"));
        let addrs: Vec<String> = s.endpoints.iter().map(|e| e.addr.to_string()).collect();
        // web-2 has no service address: its node's; web-3 warns; web-4 is a host name.
        assert_eq!(addrs, ["10.0.0.1:8080", "10.0.0.9:9090"]);
        assert!(s.endpoints.iter().all(|e| e.weight == 1));
        assert_eq!(s.endpoints[0].metadata["zone"], "a");
        assert!(s.endpoints[1].metadata.is_empty());
    }

    #[test]
    fn no_passing_instance_gives_no_entry() {
        let e = entries(
            r#"[{"Node": {"Address": "10.0.0.9"},
                 "Service": {"Address": "10.0.0.1", "Port": 80},
                 "Checks": [{"CheckID": "service:x", "Status": "critical"}]}]"#,
        );
        assert!(service_from("x..consul", &e).is_none());
        assert!(service_from("x..consul", &[]).is_none());
    }

    #[test]
    fn aggregated_status_order() {
        let c = |id: &str, st: &str| HealthCheck {
            check_id: id.into(),
            status: st.into(),
        };
        assert_eq!(aggregated_status(&[]), "passing");
        assert_eq!(
            aggregated_status(&[c("a", "passing"), c("b", "warning")]),
            "warning"
        );
        assert_eq!(
            aggregated_status(&[c("a", "critical"), c("b", "warning")]),
            "critical"
        );
        assert_eq!(
            aggregated_status(&[
                c("_service_maintenance:web-1", "critical"),
                c("b", "passing")
            ]),
            "maintenance"
        );
        assert_eq!(
            aggregated_status(&[c("_node_maintenance", "critical")]),
            "maintenance"
        );
        assert_eq!(aggregated_status(&[c("a", "bogus")]), "");
    }

    #[test]
    fn host_replaces_underscores_everywhere() {
        assert_eq!(host("my_svc", "dc_east"), "my-svc.dc-east.consul");
        assert_eq!(host("svc", ""), "svc..consul");
    }

    #[test]
    fn tag_filter_is_case_insensitive() {
        let tags = vec!["Gateway".to_string(), "v1".to_string()];
        assert!(carries_tag("", &[]));
        assert!(carries_tag("gateway", &tags));
        assert!(!carries_tag("gateway", &[]));
        assert!(!carries_tag("edge", &tags));
    }
}
