//! Service discovery: the McpBridge registries that hold services rather than name one
//! (`nacos`, `nacos2`, `nacos3`, `zookeeper`, `consul`, `eureka`).
//!
//! One watcher task runs per registry. It talks to the registry and reports, each time
//! something changed, the registry's whole set of services ([`Reporter::services`]) or
//! that it cannot reach it ([`Reporter::failed`]). The config loop turns the last good
//! set into clusters, named as Higress names them; a failure keeps that set (and counts).
//! The [`supervise`] task starts and stops the watchers as the registries change.
//!
//! Like `crate::dns`, this is the control plane: nothing here runs per request.

pub mod consul;
pub mod eureka;
pub mod nacos;
pub mod nacos2;
pub mod rest;
pub mod zookeeper;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::resources::mcpbridge::Registry;

/// The shortest refresh interval Higress allows for Nacos and Consul (anything below,
/// unset included, is raised to it).
pub const MIN_REFRESH: Duration = Duration::from_secs(10);

/// A registry's credentials, read from the Secret its `authSecretName` names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// Key `nacosUsername`.
    pub nacos_username: Option<String>,
    /// Key `nacosPassword`.
    pub nacos_password: Option<String>,
    /// Key `consulToken`.
    pub consul_token: Option<String>,
}

/// How often watchers poll: Higress's timings by default; flags of `gateway run` make
/// them shorter (for tests and demos).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The floor of `nacosRefreshInterval` / `consulRefreshInterval`
    /// (`--registry-min-refresh`, default 10 s, Higress's).
    pub min_refresh: Duration,
    /// Eureka's full and per-application polls (`--eureka-poll`, default 30 s), and
    /// ZooKeeper's rescan (Higress: 30 s).
    pub poll: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            min_refresh: MIN_REFRESH,
            poll: Duration::from_secs(30),
        }
    }
}

/// What a watcher is given: the McpBridge entry as written, its credentials and the
/// timings. Two equal configs are one watcher; a changed one restarts it.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryConfig {
    pub registry: Registry,
    pub credentials: Credentials,
    pub timing: Timing,
}

impl RegistryConfig {
    /// `<type>/<name>`: the registry's key in updates, `/debug/configz` and stats.
    pub fn id(&self) -> String {
        format!("{}/{}", self.registry.kind, self.registry.name)
    }

    /// The registry's `domain:port` (an IPv6 address in brackets).
    pub fn address(&self) -> String {
        let d = self.registry.domain.trim();
        match d.contains(':') && !d.starts_with('[') {
            true => format!("[{d}]:{}", self.registry.port),
            false => format!("{d}:{}", self.registry.port),
        }
    }

    /// `nacosRefreshInterval` / `consulRefreshInterval` (nanoseconds), raised to
    /// [`Timing::min_refresh`] as Higress raises it to 10 s.
    pub fn refresh_interval(&self, nanos: Option<i64>) -> Duration {
        let d = Duration::from_nanos(nanos.unwrap_or(0).max(0) as u64);
        d.max(self.timing.min_refresh)
    }
}

/// One instance of a discovered service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredEndpoint {
    pub addr: SocketAddr,
    /// Load balancing weight, at least 1 (Nacos: its weight rounded, 1 when <= 0).
    pub weight: u32,
    /// The instance's metadata (Envoy endpoint labels).
    pub metadata: BTreeMap<String, String>,
}

/// A discovered service: one cluster `outbound|<port>||<host>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredService {
    /// Higress's host for it: `<service>.<group>.<namespace>.nacos`,
    /// `<service>.<datacenter>.consul`, `<app>.eureka`, `<service>.<root>.zookeeper`,
    /// `providers:<interface>:<version>:<group>.zookeeper`.
    pub host: String,
    /// The cluster's port: `vport`'s for the host, else the first instance's.
    pub port: u16,
    /// The upstream protocol, as McpBridge's `protocol` spells it (`http`, `grpc`,
    /// `dubbo`, ...); from the instances' `protocol` metadata, `http` by default.
    pub protocol: String,
    /// Healthy, enabled instances only (what each registry calls so).
    pub endpoints: Vec<DiscoveredEndpoint>,
}

/// What a watcher reports.
#[derive(Clone, Debug)]
pub struct Update {
    /// [`RegistryConfig::id`].
    pub registry: String,
    /// The whole set of services, sorted by host; or why the registry could not be read.
    pub result: Result<Vec<DiscoveredService>, String>,
}

/// A watcher's way to report; cheap to clone.
#[derive(Clone, Debug)]
pub struct Reporter {
    id: String,
    tx: mpsc::Sender<Update>,
}

impl Reporter {
    pub fn new(id: String, tx: mpsc::Sender<Update>) -> Self {
        Reporter { id, tx }
    }

    /// The registry's services now (all of them; sorted here by host).
    pub async fn services(&self, mut services: Vec<DiscoveredService>) {
        services.sort_by(|a, b| a.host.cmp(&b.host));
        let _ = self
            .tx
            .send(Update {
                registry: self.id.clone(),
                result: Ok(services),
            })
            .await;
    }

    /// Report `now` unless it is the set this watcher last reported (`last`, which
    /// it keeps), so an unchanged poll does not rebuild anything.
    pub async fn services_if_changed(
        &self,
        last: &mut Option<Vec<DiscoveredService>>,
        mut now: Vec<DiscoveredService>,
    ) {
        now.sort_by(|a, b| a.host.cmp(&b.host));
        if last.as_ref() != Some(&now) {
            self.services(now.clone()).await;
            *last = Some(now);
        }
    }

    /// The registry could not be read: its last services stay in force.
    pub async fn failed(&self, error: impl std::fmt::Display) {
        let _ = self
            .tx
            .send(Update {
                registry: self.id.clone(),
                result: Err(error.to_string()),
            })
            .await;
    }
}

/// `_` becomes `-`, as Higress writes host suffixes (`DEFAULT_GROUP` ->
/// `DEFAULT-GROUP`), since `_` is not allowed in a host name.
pub fn dns_safe(s: &str) -> String {
    s.replace('_', "-")
}

/// The service's cluster port: the registry's `vport` for `host`, else `first`.
pub fn service_port(registry: &Registry, host: &str, first: u16) -> u16 {
    registry
        .vport
        .as_ref()
        .and_then(|v| v.port_of(host))
        .unwrap_or(first)
}

/// Run one registry's watcher until it is aborted.
async fn watch_one(cfg: RegistryConfig, tx: mpsc::Sender<Update>) {
    let reporter = Reporter::new(cfg.id(), tx);
    match cfg.registry.kind.as_str() {
        "nacos" => nacos::run(cfg, reporter).await,
        "nacos2" | "nacos3" => nacos2::run(cfg, reporter).await,
        "zookeeper" => zookeeper::run(cfg, reporter).await,
        "consul" => consul::run(cfg, reporter).await,
        "eureka" => eureka::run(cfg, reporter).await,
        other => tracing::error!(registry = %other, "no watcher for this registry type"),
    }
}

/// Start a watcher for each registry `configs` lists, stop those no longer listed (or
/// changed), until the config loop goes away.
pub async fn supervise(
    mut configs: watch::Receiver<Vec<RegistryConfig>>,
    tx: mpsc::Sender<Update>,
) {
    let mut running: HashMap<String, (RegistryConfig, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    loop {
        let wanted: Vec<RegistryConfig> = configs.borrow_and_update().clone();
        let ids: Vec<String> = wanted.iter().map(RegistryConfig::id).collect();
        running.retain(|id, (cfg, task)| {
            let keep = wanted.iter().any(|w| w.id() == *id && w == cfg);
            if !keep {
                tracing::info!(registry = %id, "registry watcher stopped");
                task.abort();
            }
            keep
        });
        for (cfg, id) in wanted.into_iter().zip(ids) {
            if running.contains_key(&id) {
                continue;
            }
            tracing::info!(registry = %id, address = %cfg.address(), "registry watcher started");
            let task = tokio::spawn(watch_one(cfg.clone(), tx.clone()));
            running.insert(id, (cfg, task));
        }
        if configs.changed().await.is_err() {
            for (_, (_, task)) in running {
                task.abort();
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(r: &Registry) -> RegistryConfig {
        RegistryConfig {
            registry: r.clone(),
            credentials: Credentials::default(),
            timing: Timing::default(),
        }
    }

    #[test]
    fn refresh_interval_is_at_least_ten_seconds() {
        let c = config(&Registry::default());
        assert_eq!(c.refresh_interval(None), MIN_REFRESH);
        assert_eq!(c.refresh_interval(Some(-5)), MIN_REFRESH);
        assert_eq!(
            c.refresh_interval(Some(30_000_000_000)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn ipv6_registry_address_in_brackets() {
        let mut r = Registry {
            domain: "::1".into(),
            port: 8848,
            ..Default::default()
        };
        let c = config;
        assert_eq!(c(&r).address(), "[::1]:8848");
        r.domain = "nacos.local".into();
        assert_eq!(c(&r).address(), "nacos.local:8848");
    }

    /// A registry nothing listens for: its watcher reports failures; once the config
    /// no longer lists it, the watcher is stopped and reports no more.
    #[tokio::test]
    async fn supervise_starts_and_stops_watchers() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let r = Registry {
            kind: "eureka".into(),
            name: "e".into(),
            domain: "127.0.0.1".into(),
            port: port.into(),
            ..Default::default()
        };
        let mut cfg = config(&r);
        cfg.timing.poll = Duration::from_millis(50);
        cfg.timing.min_refresh = Duration::from_millis(50);
        let (configs_tx, configs_rx) = watch::channel(vec![cfg]);
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(supervise(configs_rx, tx));
        let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a report within 20 s")
            .unwrap();
        assert_eq!(first.registry, "eureka/e");
        assert!(first.result.is_err(), "{first:?}");
        configs_tx.send_replace(vec![]);
        // Let the supervisor stop it, then drain what was already sent.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(rx.try_recv().is_err(), "a stopped watcher still reports");
        drop(configs_tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("supervise ends with the config loop")
            .unwrap();
    }
}
