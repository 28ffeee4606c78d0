//! The `eureka` registry watcher, after Higress's `registry/eureka/watcher.go` and
//! `registry/eureka/client/{http_client.go,plan.go}` (read at alibaba/higress 4e0d691).
//!
//! What was checked there, and is done here:
//! - a full refresh, `GET http://<domain>:<port>/eureka/apps` with
//!   `Accept: application/json`, at start and every 30 s (`--eureka-poll` here); an
//!   application any of whose instances has an `ipAddr` that is not an IP address is
//!   skipped whole; new applications are watched, each by its own poll of
//!   `/eureka/apps/<name>` every 30 s (`--eureka-poll`) from then on;
//! - an application leaving the listing stops being polled but keeps its entry (Higress
//!   deletes entries only when the watcher stops), and so does one that comes back with
//!   no instance (`updateCacheWhenEmpty` is never set for Eureka);
//! - host `<name>.eureka` with the name exactly as Eureka returns it: nothing in
//!   Higress's registry, its memory cache or the destination annotation lower-cases it,
//!   and Eureka servers upper-case application names, so hosts read `ECHO.eureka`;
//! - the cluster port is `vport`'s, else the first instance's; each endpoint is
//!   `ipAddr` : `port.$` (`port.@enabled` and `securePort` are not read); its labels are
//!   the instance's string metadata; weight 1; protocol from the first instance's
//!   `protocol` metadata (`http` by default), and any instance naming an unsupported one
//!   fails that application's update.
//!
//! Where this differs: only instances whose `status` is `UP` become endpoints (Higress
//! takes every instance, `DOWN` and `OUT_OF_SERVICE` included, which defeats taking an
//! instance out of traffic); an application with no `UP` instance keeps its last entry,
//! as an empty one does. A full refresh that fails is reported ([`Reporter::failed`]);
//! Higress retries it 3 times 100 ns apart and logs.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::rest::{self, RestError};
use super::{service_port, DiscoveredEndpoint, DiscoveredService, RegistryConfig, Reporter};
use crate::resources::mcpbridge::Registry;

/// Bound of one request (Higress's client: 10 s to connect).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One instance, as far as it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub ip_addr: String,
    pub port: u16,
    pub status: String,
    pub metadata: BTreeMap<String, String>,
}

/// One application and its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub instances: Vec<Instance>,
}

/// Eureka's JSON writes a list of one either as that list or as its single item.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

/// A number that Eureka may write as a string.
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn parse_instance(v: &Value) -> Instance {
    let port = match &v["port"] {
        Value::Object(o) => o.get("$").and_then(number),
        other => number(other),
    };
    let metadata = match &v["metadata"] {
        Value::Object(o) => o
            .iter()
            // `@class` is Jackson's type tag of an empty map, not metadata.
            .filter(|(k, _)| k.as_str() != "@class")
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    };
    Instance {
        ip_addr: v["ipAddr"].as_str().unwrap_or("").to_string(),
        port: port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
        status: v["status"].as_str().unwrap_or("").to_string(),
        metadata,
    }
}

fn parse_app(v: &Value) -> Result<App, String> {
    let name = v["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("application without a name")?;
    Ok(App {
        name: name.to_string(),
        instances: one_or_many(&v["instance"])
            .into_iter()
            .map(parse_instance)
            .collect(),
    })
}

/// The body of `GET /eureka/apps`.
pub fn parse_apps(body: &[u8]) -> Result<Vec<App>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let apps = v.get("applications").ok_or("no \"applications\" object")?;
    one_or_many(&apps["application"])
        .into_iter()
        .map(parse_app)
        .collect()
}

/// The body of `GET /eureka/apps/<name>`.
pub fn parse_one_app(body: &[u8]) -> Result<App, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    parse_app(v.get("application").ok_or("no \"application\" object")?)
}

/// Higress's host for an application.
pub fn host(app: &str) -> String {
    format!("{app}.eureka")
}

/// The `protocol` metadata as Higress's `ParseProtocol` accepts it (lower-cased), `http`
/// when absent, or an error naming an unsupported one.
fn protocol_of(i: &Instance) -> Result<String, String> {
    match i.metadata.get("protocol").map(|p| p.trim()) {
        None | Some("") => Ok("http".into()),
        Some(p) => {
            let lower = p.to_ascii_lowercase();
            match lower.as_str() {
                "tcp" | "http" | "https" | "http2" | "grpc" | "triple" | "tri" | "grpcs"
                | "dubbo" => Ok(lower),
                _ => Err(format!("unsupported protocol {p:?}")),
            }
        }
    }
}

/// Whether the application may be used at all: every `ipAddr` is an IP address.
pub fn addresses_are_ips(app: &App) -> bool {
    app.instances
        .iter()
        .all(|i| i.ip_addr.trim().parse::<IpAddr>().is_ok())
}

/// The application's entry: `Ok(None)` when it has no `UP` instance (the last entry
/// stays), an error when an instance names an unsupported protocol.
pub fn service_from(app: &App, registry: &Registry) -> Result<Option<DiscoveredService>, String> {
    let mut protocols = Vec::with_capacity(app.instances.len());
    for i in &app.instances {
        protocols.push(protocol_of(i)?);
    }
    let host = host(&app.name);
    let mut first: Option<(u16, String)> = None;
    let mut endpoints = Vec::new();
    for (i, protocol) in app.instances.iter().zip(protocols) {
        if i.status != "UP" {
            continue;
        }
        let Ok(ip) = i.ip_addr.trim().parse::<IpAddr>() else {
            continue;
        };
        if first.is_none() {
            first = Some((i.port, protocol));
        }
        endpoints.push(DiscoveredEndpoint {
            addr: SocketAddr::new(ip, i.port),
            weight: 1,
            metadata: i.metadata.clone(),
        });
    }
    let Some((port, protocol)) = first else {
        return Ok(None);
    };
    Ok(Some(DiscoveredService {
        port: service_port(registry, &host, port),
        host,
        protocol,
        endpoints,
    }))
}

async fn get(authority: &str, path: &str) -> Result<rest::Answer, RestError> {
    rest::get(
        authority,
        path,
        &[
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ],
        REQUEST_TIMEOUT,
    )
    .await
}

async fn fetch_apps(authority: &str) -> Result<Vec<App>, RestError> {
    let path = "/eureka/apps";
    let answer = get(authority, path).await?;
    parse_apps(&answer.body).map_err(|reason| RestError::Decode {
        path: path.into(),
        reason,
    })
}

/// A task aborted when dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One application's poll, every `every` from one period after it starts (Higress's
/// plan ticks first after a period too).
async fn poll_app(authority: String, name: String, every: Duration, tx: mpsc::Sender<App>) {
    let path = format!("/eureka/apps/{}", rest::segment(&name));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let app = match get(&authority, &path).await {
            Ok(a) => parse_one_app(&a.body),
            Err(e) => Err(e.to_string()),
        };
        match app {
            Ok(app) => {
                if tx.send(app).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(app = %name, error = %e, "eureka application poll failed"),
        }
    }
}

/// Put `app`'s entry in `entries` when it has one; what went wrong otherwise.
fn apply(app: &App, registry: &Registry, entries: &mut BTreeMap<String, DiscoveredService>) {
    if !addresses_are_ips(app) {
        tracing::warn!(app = %app.name, "eureka application with a non-IP ipAddr skipped");
        return;
    }
    match service_from(app, registry) {
        Ok(Some(s)) => {
            entries.insert(s.host.clone(), s);
        }
        Ok(None) => {
            tracing::info!(app = %app.name, "no UP eureka instance: last endpoints kept");
        }
        Err(e) => tracing::warn!(app = %app.name, error = %e, "eureka application not updated"),
    }
}

pub async fn run(cfg: RegistryConfig, reporter: Reporter) {
    let authority = cfg.address();
    let every = cfg.timing.poll;
    let (tx, mut rx) = mpsc::channel::<App>(256);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut entries: BTreeMap<String, DiscoveredService> = BTreeMap::new();
    let mut polls: HashMap<String, Task> = HashMap::new();
    // The set last reported; `None` before the first report and after a failure.
    let mut reported: Option<Vec<DiscoveredService>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => match fetch_apps(&authority).await {
                Err(e) => {
                    tracing::warn!(registry = %cfg.id(), error = %e, "eureka applications not read");
                    reported = None;
                    reporter.failed(e).await;
                    continue;
                }
                Ok(apps) => {
                    let apps: Vec<App> = apps.into_iter().filter(addresses_are_ips).collect();
                    polls.retain(|name, _| apps.iter().any(|a| &a.name == name));
                    for app in &apps {
                        apply(app, &cfg.registry, &mut entries);
                        if let Entry::Vacant(v) = polls.entry(app.name.clone()) {
                            let t = tokio::spawn(poll_app(authority.clone(), app.name.clone(), every, tx.clone()));
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
                for app in batch {
                    if polls.contains_key(&app.name) {
                        apply(&app, &cfg.registry, &mut entries);
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
    use crate::resources::mcpbridge::{RegistryVport, VportService};

    /// As a Eureka server writes `/eureka/apps` in JSON (Jackson codec).
    const APPS: &str = r#"{"applications": {"versions__delta": "1", "apps__hashcode": "UP_3_",
      "application": [
        {"name": "ECHO", "instance": [
          {"instanceId": "e1", "app": "ECHO", "ipAddr": "10.0.0.1", "status": "UP",
           "port": {"$": 8080, "@enabled": "true"}, "securePort": {"$": 443, "@enabled": "false"},
           "metadata": {"@class": "java.util.Collections$EmptyMap"}},
          {"instanceId": "e2", "app": "ECHO", "ipAddr": "10.0.0.2", "status": "DOWN",
           "port": {"$": "8081", "@enabled": "true"}, "metadata": {"zone": "b"}},
          {"instanceId": "e3", "app": "ECHO", "ipAddr": "10.0.0.3", "status": "UP",
           "port": {"$": 8082, "@enabled": "false"}, "metadata": {"zone": "c", "protocol": "HTTP2"}}
        ]},
        {"name": "NAMED", "instance": {"instanceId": "n1", "app": "NAMED", "ipAddr": "app.local",
           "status": "UP", "port": {"$": 80, "@enabled": "true"}}}
      ]}}"#;

    #[test]
    fn parses_the_listing_and_keeps_up_instances() {
        let apps = parse_apps(APPS.as_bytes()).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].instances[1].port, 8081);
        assert_eq!(apps[1].instances.len(), 1, "a single instance as an object");
        let s = service_from(&apps[0], &Registry::default())
            .unwrap()
            .unwrap();
        assert_eq!(s.host, "ECHO.eureka");
        assert_eq!((s.port, s.protocol.as_str()), (8080, "http"));
        let addrs: Vec<String> = s.endpoints.iter().map(|e| e.addr.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:8080", "10.0.0.3:8082"]);
        assert!(s.endpoints[0].metadata.is_empty(), "@class is not a label");
        assert_eq!(s.endpoints[1].metadata["zone"], "c");
        assert!(s.endpoints.iter().all(|e| e.weight == 1));
        assert!(!addresses_are_ips(&apps[1]), "app.local is skipped");
    }

    #[test]
    fn vport_overrides_the_cluster_port() {
        let apps = parse_apps(APPS.as_bytes()).unwrap();
        let reg = Registry {
            vport: Some(RegistryVport {
                default: Some(9000),
                services: vec![VportService {
                    name: "ECHO.eureka".into(),
                    value: 7000,
                }],
            }),
            ..Default::default()
        };
        let s = service_from(&apps[0], &reg).unwrap().unwrap();
        assert_eq!(s.port, 7000);
        assert_eq!(
            s.endpoints[0].addr.port(),
            8080,
            "endpoints keep their own port"
        );
    }

    #[test]
    fn single_application_and_edge_cases() {
        let one = parse_one_app(
            br#"{"application": {"name": "SVC", "instance": [
                {"ipAddr": "::1", "status": "OUT_OF_SERVICE", "port": {"$": 1}}]}}"#,
        )
        .unwrap();
        assert_eq!(one.name, "SVC");
        assert_eq!(service_from(&one, &Registry::default()), Ok(None));
        let bad = parse_one_app(
            br#"{"application": {"name": "SVC", "instance": [
                {"ipAddr": "10.0.0.1", "status": "UP", "port": {"$": 1},
                 "metadata": {"protocol": "carrier-pigeon"}}]}}"#,
        )
        .unwrap();
        assert!(service_from(&bad, &Registry::default()).is_err());
        assert!(parse_apps(b"{}").is_err());
        assert_eq!(
            parse_apps(br#"{"applications": {"application": []}}"#),
            Ok(vec![])
        );
        assert_eq!(host("my_app"), "my_app.eureka");
    }
}
