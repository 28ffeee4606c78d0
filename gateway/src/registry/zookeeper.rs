//! The `zookeeper` registry watcher: Dubbo providers and Spring Cloud services.
//!
//! What Higress does, read in its `registry/zookeeper/watcher.go`, `types.go` and
//! `watcher_test.go` (and `pkg/common/protocol.go` for protocol names):
//! - one session to `domain:port`, session timeout 10 s; a full rescan every 30 s besides
//!   the child watches (here `--eureka-poll`, [`super::Timing::poll`]);
//! - Dubbo: the children of `/dubbo` are interfaces (`config`, `mapping` and `metadata`
//!   skipped); each child of `/dubbo/<interface>/providers` is a URL-encoded
//!   `dubbo://ip:port/<path>?k=v&...`. Host `providers:<interface>:<version>:<group>`, the
//!   interface being the directory's name, `version` the URL's (`0.0.0` when absent),
//!   `group` the URL's (empty when absent). Protocol `dubbo`; the URL's single-valued
//!   parameters become the endpoint's metadata, plus `protocol=dubbo`. The `weight`
//!   parameter is only metadata: every endpoint weighs 1;
//! - Spring Cloud (Curator's service discovery): roots `/services` and each
//!   `zkServicesPath` (a trailing `/` trimmed; `/dubbo` and `/services` dropped from the
//!   list); each child of a root is a service whose children are instance ids holding a
//!   Curator `ServiceInstance` JSON (`address`, `port`, `payload.metadata`). Host
//!   `<service>.<root without its leading '/', '/' -> '-'>` (the root `/` gives just
//!   `<service>`): `/services/orders` is `orders.services`, as Higress's test expects.
//!   Protocol from the first instance's `payload.metadata.protocol`, `http` by default;
//! - every host ends in `.zookeeper`; a service with no instance left is dropped.
//!
//! Here the whole tree is rescanned on each child watch event, each poll and each
//! reconnection, and the resulting set is reported when it differs from the last one.
//! While the session is disconnected the watcher reports a failure (once, then once per
//! poll), so the config loop keeps the last endpoints; the client library reconnects
//! within the session by itself, and a new session is opened after expiry.
//!
//! Differences, on purpose: endpoints whose address is not an IP (Higress would write a
//! STATIC endpoint Envoy cannot use) or whose port is 0 are skipped; non-string values in
//! Spring Cloud metadata are skipped instead of failing the instance; two nodes for one
//! `ip:port` give one endpoint.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use serde::Deserialize;
use zookeeper_client as zk;

use super::{service_port, DiscoveredEndpoint, DiscoveredService, RegistryConfig, Reporter};

/// Higress's `DEFAULT_REG_TIMEOUT`.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Where Dubbo writes its providers.
pub const DUBBO_ROOT: &str = "/dubbo";
/// Spring Cloud Zookeeper's default root.
pub const SPRING_CLOUD_ROOT: &str = "/services";
/// The most a failed connection attempt waits before the next (Higress's `ConnDelay`).
const RECONNECT_DELAY: Duration = Duration::from_secs(3);
/// Children of a root that are not services (Dubbo's config and metadata centres).
const NOT_SERVICES: [&str; 3] = ["config", "mapping", "metadata"];

#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    #[error("cannot connect to zookeeper {address}: {source}")]
    Connect { address: String, source: zk::Error },
    #[error("zookeeper {op} {path}: {source}")]
    Op {
        op: &'static str,
        path: String,
        source: zk::Error,
    },
    #[error("zookeeper session {0:?}")]
    Session(zk::SessionState),
    #[error("disconnected from zookeeper")]
    Disconnected,
}

impl ZkError {
    /// The session cannot be used any more: a new one is needed.
    fn ends_session(&self) -> bool {
        match self {
            ZkError::Op { source, .. } => matches!(
                source,
                zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed
            ),
            ZkError::Session(_) => true,
            ZkError::Connect { .. } | ZkError::Disconnected => false,
        }
    }
}

/// The Spring Cloud roots scanned: `/services` first, then `zkServicesPath` as Higress
/// keeps it (trailing `/` trimmed, `/dubbo` and `/services` dropped).
pub fn spring_cloud_roots(zk_services_path: Option<&[String]>) -> Vec<String> {
    let mut roots = vec![SPRING_CLOUD_ROOT.to_string()];
    for p in zk_services_path.unwrap_or_default() {
        let p = p.trim_end_matches('/');
        if p == DUBBO_ROOT || p == SPRING_CLOUD_ROOT || roots.iter().any(|r| r == p) {
            continue;
        }
        roots.push(p.to_string());
    }
    roots
}

/// `<service>.<root as a label>.zookeeper`, as Higress names a Spring Cloud service.
pub fn spring_cloud_host(root: &str, service: &str) -> String {
    let root = root.trim_start_matches('/');
    match root.is_empty() {
        true => format!("{service}.zookeeper"),
        false => format!("{service}.{}.zookeeper", root.replace('/', "-")),
    }
}

/// A Dubbo provider from its node name under `/dubbo/<interface>/providers`: the host of
/// its service and the endpoint. `None` for what is not a `dubbo://ip:port` URL.
pub fn dubbo_provider(interface: &str, node: &str) -> Option<(String, DiscoveredEndpoint)> {
    // Dubbo writes `URLEncoder.encode(url.toFullString())`: one form decoding undoes it.
    let url = crate::admin::percent_decode(&node.replace('+', " "))?;
    let rest = url.strip_prefix("dubbo://")?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = location.split('/').next().unwrap_or_default();
    let addr: SocketAddr = authority.parse().ok()?;
    if addr.port() == 0 {
        return None;
    }
    let mut params: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(k).or_default().push(v);
    }
    let first = |k: &str| params.get(k).and_then(|v| v.first()).copied();
    let version = first("version").unwrap_or("0.0.0");
    let group = first("group").unwrap_or("");
    let host = format!("providers:{interface}:{version}:{group}.zookeeper");
    // Repeated parameters are left out, as Higress keeps single values only.
    let mut metadata: BTreeMap<String, String> = params
        .iter()
        .filter(|(_, v)| v.len() == 1)
        .map(|(k, v)| (k.to_string(), v[0].to_string()))
        .collect();
    metadata.insert("protocol".into(), "dubbo".into());
    let endpoint = DiscoveredEndpoint {
        addr,
        weight: 1,
        metadata,
    };
    Some((host, endpoint))
}

/// Curator's `ServiceInstance`, the fields Higress reads.
#[derive(Deserialize)]
struct ServiceInstance {
    address: String,
    #[serde(default)]
    port: Option<u32>,
    #[serde(default)]
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    metadata: Option<BTreeMap<String, serde_json::Value>>,
}

/// A Spring Cloud instance from its node's JSON: the endpoint and its `protocol`
/// metadata, normalised (`http` when absent).
pub fn spring_cloud_instance(json: &[u8]) -> Result<(DiscoveredEndpoint, String), String> {
    let inst: ServiceInstance = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let ip: std::net::IpAddr = inst
        .address
        .parse()
        .map_err(|_| format!("address {:?} is not an IP", inst.address))?;
    let port = match inst.port {
        Some(p @ 1..=65535) => p as u16,
        other => return Err(format!("port {other:?} is not a port")),
    };
    let metadata: BTreeMap<String, String> = inst
        .payload
        .and_then(|p| p.metadata)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect();
    let protocol = protocol_name(metadata.get("protocol").map(String::as_str));
    let endpoint = DiscoveredEndpoint {
        addr: SocketAddr::new(ip, port),
        weight: 1,
        metadata,
    };
    Ok((endpoint, protocol))
}

/// The McpBridge spelling of an instance's `protocol` (Higress's `ParseProtocol`
/// accepts `triple` and `tri` as gRPC); `http` when unset.
fn protocol_name(p: Option<&str>) -> String {
    match p.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => "http".into(),
        Some("triple") | Some("tri") => "grpc".into(),
        Some(other) => other.to_string(),
    }
}

type Fired = Pin<Box<dyn Future<Output = (String, zk::WatchedEvent)> + Send>>;

/// One session's scans, and the watches they left armed (each path at most once, so a
/// rescan does not pile up watches ZooKeeper would fire all at once).
struct Scanner<'a> {
    client: &'a zk::Client,
    armed: HashSet<String>,
    fired: FuturesUnordered<Fired>,
}

impl<'a> Scanner<'a> {
    fn new(client: &'a zk::Client) -> Self {
        Scanner {
            client,
            armed: HashSet::new(),
            fired: FuturesUnordered::new(),
        }
    }

    fn arm(&mut self, key: String, watcher: zk::OneshotWatcher) {
        self.armed.insert(key.clone());
        self.fired
            .push(Box::pin(async move { (key, watcher.changed().await) }));
    }

    /// The children of each path (none for a path that does not exist), watching those
    /// not watched yet; a missing root gets an existence watch so its creation is seen.
    async fn list(&mut self, paths: &[String], roots: bool) -> Result<Vec<Vec<String>>, ZkError> {
        let client = self.client;
        let calls = paths.iter().map(|p| {
            let watched = self.armed.contains(p);
            async move {
                match watched {
                    true => client.list_children(p).await.map(|c| (c, None)),
                    false => client
                        .list_and_watch_children(p)
                        .await
                        .map(|(c, w)| (c, Some(w))),
                }
            }
        });
        let results = futures_util::future::join_all(calls).await;
        let mut out = Vec::with_capacity(paths.len());
        for (path, result) in paths.iter().zip(results) {
            match result {
                Ok((mut children, watcher)) => {
                    if let Some(w) = watcher {
                        self.arm(path.clone(), w);
                    }
                    children.sort();
                    out.push(children);
                }
                Err(zk::Error::NoNode) => {
                    let key = format!("exists {path}");
                    if roots && !self.armed.contains(&key) {
                        match client.check_and_watch_stat(path).await {
                            Ok((_, w)) => self.arm(key, w),
                            Err(source) => return Err(op_error("exists", path, source)),
                        }
                    }
                    out.push(Vec::new());
                }
                Err(source) => return Err(op_error("list", path, source)),
            }
        }
        Ok(out)
    }

    /// The registry's whole set of services now.
    async fn scan(&mut self, cfg: &RegistryConfig) -> Result<Vec<DiscoveredService>, ZkError> {
        let mut services: BTreeMap<String, (String, Vec<DiscoveredEndpoint>)> = BTreeMap::new();
        let mut add = |host: String, protocol: String, ep: DiscoveredEndpoint| {
            let entry = services.entry(host).or_insert((protocol, Vec::new()));
            if !entry.1.iter().any(|e| e.addr == ep.addr) {
                entry.1.push(ep);
            }
        };

        // Dubbo.
        let interfaces = self.list(&[DUBBO_ROOT.to_string()], true).await?.remove(0);
        let interfaces: Vec<String> = interfaces
            .into_iter()
            .filter(|c| !NOT_SERVICES.contains(&c.as_str()))
            .collect();
        let paths: Vec<String> = interfaces
            .iter()
            .map(|i| format!("{DUBBO_ROOT}/{i}/providers"))
            .collect();
        let providers = self.list(&paths, false).await?;
        for (interface, nodes) in interfaces.iter().zip(providers) {
            for node in nodes {
                match dubbo_provider(interface, &node) {
                    Some((host, ep)) => add(host, "dubbo".into(), ep),
                    None => tracing::debug!(%interface, %node, "not a dubbo provider URL"),
                }
            }
        }

        // Spring Cloud.
        let roots = spring_cloud_roots(cfg.registry.zk_services_path.as_deref());
        // Higress trims the root `/` to ``; ZooKeeper names it `/`.
        let root_paths: Vec<String> = roots
            .iter()
            .map(|r| match r.is_empty() {
                true => "/".to_string(),
                false => r.clone(),
            })
            .collect();
        let per_root = self.list(&root_paths, true).await?;
        let mut named: Vec<(String, String)> = Vec::new(); // (root, service)
        for (root, children) in roots.iter().zip(per_root) {
            for service in children {
                if !NOT_SERVICES.contains(&service.as_str()) {
                    named.push((root.clone(), service));
                }
            }
        }
        let paths: Vec<String> = named.iter().map(|(root, s)| join(root, s)).collect();
        let instances = self.list(&paths, false).await?;
        let client = self.client;
        for ((root, service), (dir, ids)) in named.iter().zip(paths.iter().zip(instances)) {
            let reads = ids.iter().map(|id| {
                let path = join(dir, id);
                async move { (client.get_data(&path).await, path) }
            });
            for (result, path) in futures_util::future::join_all(reads).await {
                match result {
                    Ok((data, _)) => match spring_cloud_instance(&data) {
                        Ok((ep, protocol)) => add(spring_cloud_host(root, service), protocol, ep),
                        Err(e) => tracing::debug!(%path, error = %e, "not a service instance"),
                    },
                    // Gone between the listing and the read: the next scan agrees.
                    Err(zk::Error::NoNode) => {}
                    Err(source) => return Err(op_error("get", &path, source)),
                }
            }
        }

        Ok(services
            .into_iter()
            .filter(|(_, (_, eps))| !eps.is_empty())
            .map(|(host, (protocol, endpoints))| DiscoveredService {
                port: service_port(&cfg.registry, &host, endpoints[0].addr.port()),
                host,
                protocol,
                endpoints,
            })
            .collect())
    }

    /// Waits for the first armed watch to fire, then takes the others that fired too.
    /// Never resolves while nothing is armed.
    async fn next_fired(&mut self) {
        match self.fired.next().await {
            Some((key, event)) => {
                tracing::debug!(path = %key, event = ?event.event_type, "zookeeper watch fired");
                self.armed.remove(&key);
                while let Some(Some((key, _))) = self.fired.next().now_or_never() {
                    self.armed.remove(&key);
                }
            }
            None => std::future::pending().await,
        }
    }
}

fn join(dir: &str, child: &str) -> String {
    match dir.ends_with('/') {
        true => format!("{dir}{child}"),
        false => format!("{dir}/{child}"),
    }
}

fn op_error(op: &'static str, path: &str, source: zk::Error) -> ZkError {
    ZkError::Op {
        op,
        path: path.to_string(),
        source,
    }
}

/// Watch the registry until aborted: one session at a time, a new one after expiry.
pub async fn run(cfg: RegistryConfig, reporter: Reporter) {
    let address = cfg.address();
    let retry = cfg.timing.poll.min(RECONNECT_DELAY);
    loop {
        let connect = zk::Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .with_fail_eagerly()
            .connect(&address);
        let client = match connect.await {
            Ok(c) => c,
            Err(source) => {
                let e = ZkError::Connect {
                    address: address.clone(),
                    source,
                };
                tracing::warn!(registry = %cfg.id(), error = %e, "zookeeper registry unreachable");
                reporter.failed(&e).await;
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        tracing::info!(registry = %cfg.id(), session = ?client.session_id(), "zookeeper session opened");
        let e = watch_session(&cfg, &client, &reporter).await;
        tracing::warn!(registry = %cfg.id(), error = %e, "zookeeper session ended");
        reporter.failed(&e).await;
    }
}

/// Scan, report and wait for a change, for as long as the session lives.
async fn watch_session(cfg: &RegistryConfig, client: &zk::Client, reporter: &Reporter) -> ZkError {
    let mut state = client.state_watcher();
    let mut scanner = Scanner::new(client);
    let poll = cfg.timing.poll;
    // The last set reported; `None` after a failure so that recovery reports again.
    let mut last: Option<Vec<DiscoveredService>> = None;
    loop {
        match scanner.scan(cfg).await {
            Ok(services) => {
                if last.as_ref() != Some(&services) {
                    tracing::debug!(registry = %cfg.id(), services = services.len(), "zookeeper services changed");
                    reporter.services(services.clone()).await;
                    last = Some(services);
                }
            }
            Err(e) if e.ends_session() => return e,
            Err(e) => {
                // Most likely the connection dropped: the state change below says so.
                tracing::debug!(registry = %cfg.id(), error = %e, "zookeeper scan failed");
                if last.take().is_some() {
                    reporter.failed(&e).await;
                }
            }
        }
        let rescan = tokio::time::sleep(poll);
        tokio::pin!(rescan);
        tokio::select! {
            _ = &mut rescan => {}
            _ = scanner.next_fired() => {}
            s = state.changed() => match s {
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {}
                zk::SessionState::Disconnected => {
                    if last.take().is_some() {
                        reporter.failed(ZkError::Disconnected).await;
                    }
                    if let Some(end) = until_reconnected(&mut state, poll, reporter).await {
                        return end;
                    }
                }
                end => return ZkError::Session(end),
            },
        }
    }
}

/// While disconnected: a failure each poll, until the session is back (`None`) or over.
async fn until_reconnected(
    state: &mut zk::StateWatcher,
    poll: Duration,
    reporter: &Reporter,
) -> Option<ZkError> {
    loop {
        tokio::select! {
            s = state.changed() => match s {
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => return None,
                zk::SessionState::Disconnected => {}
                end => return Some(ZkError::Session(end)),
            },
            _ = tokio::time::sleep(poll) => reporter.failed(ZkError::Disconnected).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A provider URL as Dubbo 3 registers it (URL-encoded once, `,` in `methods`).
    const PROVIDER: &str = "dubbo%3A%2F%2F10.0.0.7%3A20880%2Fcom.example.DemoService%3Fanyhost%3Dtrue%26application%3Ddemo-provider%26dubbo%3D2.0.2%26interface%3Dcom.example.DemoService%26methods%3DsayHello%2CsayHelloAsync%26side%3Dprovider%26weight%3D50";

    #[test]
    fn dubbo_provider_host_defaults_version_and_group() {
        let (host, ep) = dubbo_provider("com.example.DemoService", PROVIDER).unwrap();
        assert_eq!(host, "providers:com.example.DemoService:0.0.0:.zookeeper");
        assert_eq!(ep.addr, "10.0.0.7:20880".parse().unwrap());
        // `weight` is metadata only: Higress writes every endpoint with weight 1.
        assert_eq!(ep.weight, 1);
        assert_eq!(ep.metadata["weight"], "50");
        assert_eq!(ep.metadata["methods"], "sayHello,sayHelloAsync");
        assert_eq!(ep.metadata["protocol"], "dubbo");
        assert_eq!(ep.metadata["side"], "provider");
    }

    #[test]
    fn dubbo_provider_host_takes_version_and_group() {
        let node = format!("{PROVIDER}%26version%3D1.0.0%26group%3Dgray");
        let (host, ep) = dubbo_provider("com.example.DemoService", &node).unwrap();
        assert_eq!(
            host,
            "providers:com.example.DemoService:1.0.0:gray.zookeeper"
        );
        assert_eq!(ep.metadata["version"], "1.0.0");
        assert_eq!(ep.metadata["group"], "gray");
    }

    #[test]
    fn dubbo_provider_host_is_the_directory_interface() {
        // Higress names the host after the directory, not the URL's path.
        let (host, _) = dubbo_provider("com.example.Other", PROVIDER).unwrap();
        assert_eq!(host, "providers:com.example.Other:0.0.0:.zookeeper");
    }

    #[test]
    fn dubbo_provider_repeated_params_are_not_metadata() {
        let node = format!("{PROVIDER}%26tag%3Da%26tag%3Db");
        let (_, ep) = dubbo_provider("com.example.DemoService", &node).unwrap();
        assert!(!ep.metadata.contains_key("tag"));
    }

    #[test]
    fn dubbo_provider_rejects_other_urls() {
        assert!(dubbo_provider("i", "tri%3A%2F%2F10.0.0.7%3A50051%2Fi").is_none());
        assert!(dubbo_provider("i", "dubbo%3A%2F%2Fprovider.local%3A20880%2Fi").is_none());
        assert!(dubbo_provider("i", "dubbo%3A%2F%2F10.0.0.7%2Fi").is_none());
        assert!(dubbo_provider("i", "dubbo%3A%2F%2F10.0.0.7%3A20880%ZZ").is_none());
    }

    #[test]
    fn dubbo_provider_unencoded_and_ipv6() {
        let (_, ep) = dubbo_provider("i", "dubbo://[::1]:20880/i?x=1").unwrap();
        assert_eq!(ep.addr, "[::1]:20880".parse().unwrap());
        assert_eq!(ep.metadata["x"], "1");
    }

    // What Spring Cloud Zookeeper writes (Curator's JsonInstanceSerializer).
    const INSTANCE: &str = r#"{"name":"orders","id":"e479f40a-8f91-42a1-98e6-9377d224b360","address":"10.0.0.9","port":8071,"sslPort":null,"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"orders-1","name":"orders","metadata":{"version":"1","instance_status":"UP"}},"registrationTimeUTC":1663145171645,"serviceType":"DYNAMIC","uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}}"#;

    #[test]
    fn spring_cloud_instance_decodes_curator_json() {
        let (ep, protocol) = spring_cloud_instance(INSTANCE.as_bytes()).unwrap();
        assert_eq!(ep.addr, "10.0.0.9:8071".parse().unwrap());
        assert_eq!(ep.weight, 1);
        assert_eq!(ep.metadata["version"], "1");
        assert_eq!(ep.metadata["instance_status"], "UP");
        assert_eq!(protocol, "http");
    }

    #[test]
    fn spring_cloud_instance_protocol_from_metadata() {
        let json = r#"{"address":"10.0.0.9","port":9090,"payload":{"metadata":{"protocol":"Triple","n":3}}}"#;
        let (ep, protocol) = spring_cloud_instance(json.as_bytes()).unwrap();
        assert_eq!(protocol, "grpc");
        assert!(!ep.metadata.contains_key("n"));
        let json =
            r#"{"address":"10.0.0.9","port":9090,"payload":{"metadata":{"protocol":"HTTP2"}}}"#;
        assert_eq!(spring_cloud_instance(json.as_bytes()).unwrap().1, "http2");
    }

    #[test]
    fn spring_cloud_instance_rejects_unusable() {
        for bad in [
            r#"{"address":"orders.local","port":80}"#,
            r#"{"address":"10.0.0.9"}"#,
            r#"{"address":"10.0.0.9","port":0}"#,
            r#"{"address":"10.0.0.9","port":70000}"#,
            "not json",
        ] {
            assert!(spring_cloud_instance(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn spring_cloud_hosts_name_the_root() {
        assert_eq!(
            spring_cloud_host("/services", "orders"),
            "orders.services.zookeeper"
        );
        assert_eq!(spring_cloud_host("/a/b", "orders"), "orders.a-b.zookeeper");
        assert_eq!(spring_cloud_host("/", "orders"), "orders.zookeeper");
        assert_eq!(spring_cloud_host("", "orders"), "orders.zookeeper");
    }

    #[test]
    fn spring_cloud_roots_as_higress_keeps_them() {
        let extra = vec![
            "/dubbo".to_string(),
            "/services/".to_string(),
            "/apps/".to_string(),
            "/apps".to_string(),
            "/".to_string(),
        ];
        assert_eq!(spring_cloud_roots(None), vec!["/services"]);
        assert_eq!(
            spring_cloud_roots(Some(&extra)),
            vec!["/services", "/apps", ""]
        );
        assert_eq!(join("", "orders"), "/orders");
        assert_eq!(join("/apps", "orders"), "/apps/orders");
    }
}
