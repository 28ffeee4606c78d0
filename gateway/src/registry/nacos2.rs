//! The `nacos2` and `nacos3` registry watchers: Nacos 2's gRPC naming API, through the
//! `nacos-sdk` crate.
//!
//! As Higress's `registry/nacos/v2/watcher.go` (both types share it): every refresh
//! interval the services of each group are listed (50 a page) and subscribed to, gone
//! ones unsubscribed; the server pushes each subscribed service's instances when they
//! change, and each push is reported at once. Hosts, ports, protocols, weights and the
//! filters are those of the `nacos` watcher (see `nacos.rs`, which lists what was
//! checked in Higress and where this differs); the host ends in the literal `nacos`
//! for `nacos2` and `nacos3` too, as Higress writes it.
//!
//! The SDK dials gRPC at the McpBridge `port` + 1000 (8848 -> 9848), as Nacos's own
//! clients do. Credentials: `nacosUsername` / `nacosPassword` log in over HTTP;
//! `nacosAccessKey` / `nacosSecretKey` sign requests (Alibaba Cloud MSE).
//!
//! The SDK keeps its connections and background tasks for the life of the process (it
//! has no shutdown), so one client per distinct registry address, namespace and
//! credentials is kept and shared by the watchers that come and go with McpBridge
//! changes; a stopped watcher's subscriptions are dropped. The SDK also writes its
//! cache of service lists under `$HOME/nacos/naming/` (not read back: the cache is not
//! loaded at start).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use nacos_sdk::api::naming::{
    NamingChangeEvent, NamingEventListener, NamingService, NamingServiceBuilder,
    ServiceInstance,
};
use nacos_sdk::api::props::ClientProps;
use tokio::sync::mpsc;

use super::nacos::{
    build_service, service_host, should_watch, Instance, Settings, MAX_PAGES, PAGE_SIZE,
    TIMEOUT,
};
use super::{DiscoveredService, RegistryConfig, Reporter};

/// A service: (group, name).
type Key = (String, String);

/// What makes two watchers able to share one SDK client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    address: String,
    namespace: String,
    username: Option<String>,
    password: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
}

static CLIENTS: LazyLock<Mutex<HashMap<ClientKey, NamingService>>> =
    LazyLock::new(Default::default);

fn client_key(cfg: &RegistryConfig, namespace: &str) -> ClientKey {
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    ClientKey {
        address: cfg.address(),
        namespace: namespace.to_string(),
        username: nonempty(&cfg.credentials.nacos_username),
        password: nonempty(&cfg.credentials.nacos_password),
        access_key: nonempty(&cfg.registry.nacos_access_key),
        secret_key: nonempty(&cfg.registry.nacos_secret_key),
    }
}

async fn client(key: &ClientKey) -> Result<NamingService, String> {
    if let Some(c) = CLIENTS.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
        return Ok(c.clone());
    }
    let mut props = ClientProps::new()
        .server_addr(key.address.clone())
        .namespace(key.namespace.clone())
        .app_name("gateway")
        // The McpBridge entry says everything; NACOS_CLIENT_* variables must not.
        .env_first(false)
        // An empty push deletes the service, as Higress's updateCacheWhenEmpty does.
        .naming_push_empty_protection(false)
        .naming_load_cache_at_start(false);
    if let Some(u) = &key.username {
        props = props
            .auth_username(u.clone())
            .auth_password(key.password.clone().unwrap_or_default());
    }
    if let (Some(ak), Some(sk)) = (&key.access_key, &key.secret_key) {
        props = props.auth_access_key(ak.clone()).auth_access_secret(sk.clone());
    }
    let mut builder = NamingServiceBuilder::new(props);
    if key.access_key.is_some() && key.secret_key.is_some() {
        builder = builder.enable_auth_plugin_aliyun();
    } else if key.username.is_some() {
        builder = builder.enable_auth_plugin_http();
    }
    let c = tokio::time::timeout(TIMEOUT, builder.build())
        .await
        .map_err(|_| format!("{} did not answer within {TIMEOUT:?}", key.address))?
        .map_err(|e| format!("nacos client for {}: {e}", key.address))?;
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    Ok(clients.entry(key.clone()).or_insert(c).clone())
}

fn instance(i: &ServiceInstance) -> Instance {
    Instance {
        ip: i.ip.clone(),
        port: i64::from(i.port),
        weight: i.weight,
        healthy: i.healthy,
        enabled: i.enabled,
        metadata: i.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// Forwards one service's pushes to the watcher (the SDK calls it on its own runtime).
struct Listener {
    key: Key,
    tx: mpsc::UnboundedSender<(Key, Vec<Instance>)>,
}

impl NamingEventListener for Listener {
    fn event(&self, event: Arc<NamingChangeEvent>) {
        let list = event.instances.as_deref().unwrap_or_default();
        let _ = self.tx.send((self.key.clone(), list.iter().map(instance).collect()));
    }
}

/// The watcher's subscriptions; dropped with it (an aborted task), it unsubscribes them.
struct Subscriptions {
    client: NamingService,
    listeners: HashMap<Key, Arc<dyn NamingEventListener>>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let listeners: Vec<_> = self.listeners.drain().collect();
        if listeners.is_empty() {
            return;
        }
        rt.spawn(async move {
            for ((group, name), l) in listeners {
                let _ = tokio::time::timeout(
                    TIMEOUT,
                    client.unsubscribe(name, Some(group), Vec::new(), l),
                )
                .await;
            }
        });
    }
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = nacos_sdk::api::error::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {TIMEOUT:?}")),
    }
}

/// The watcher's state between refreshes.
struct Watch {
    subs: Subscriptions,
    tx: mpsc::UnboundedSender<(Key, Vec<Instance>)>,
    instances: BTreeMap<Key, Vec<Instance>>,
}

impl Watch {
    /// List the services, subscribe to new ones (reading their instances at once, as the
    /// SDK's subscribe does not hand them over), unsubscribe from gone ones. `reread`
    /// reads every watched service's instances again (after the registry was away,
    /// pushes may have been missed).
    async fn refresh(&mut self, s: &Settings, reread: bool) -> Result<(), String> {
        let c = self.subs.client.clone();
        let mut listed: Vec<Key> = Vec::new();
        for group in &s.groups {
            for page in 1..=MAX_PAGES {
                let (names, count) = timed(
                    &format!("service list of group {group}"),
                    c.get_service_list(page as i32, PAGE_SIZE as i32, Some(group.clone())),
                )
                .await?;
                let short = names.len() < PAGE_SIZE;
                listed.extend(names.into_iter().map(|n| (group.clone(), n)));
                if short || (count > 0 && listed.len() as i64 >= i64::from(count)) {
                    break;
                }
            }
        }
        listed.retain(|(_, n)| should_watch(n));
        listed.sort();
        listed.dedup();

        let gone: Vec<Key> = self
            .subs
            .listeners
            .keys()
            .filter(|k| listed.binary_search(k).is_err())
            .cloned()
            .collect();
        for key in gone {
            self.instances.remove(&key);
            if let Some(l) = self.subs.listeners.remove(&key) {
                let (group, name) = key.clone();
                let _ = timed("unsubscribe", c.unsubscribe(name, Some(group), Vec::new(), l)).await;
            }
        }
        for key in listed {
            let new = !self.subs.listeners.contains_key(&key);
            if new {
                let l: Arc<dyn NamingEventListener> = Arc::new(Listener {
                    key: key.clone(),
                    tx: self.tx.clone(),
                });
                let (group, name) = key.clone();
                timed(
                    &format!("subscribe {group}@@{name}"),
                    c.subscribe(name, Some(group), Vec::new(), l.clone()),
                )
                .await?;
                self.subs.listeners.insert(key.clone(), l);
            }
            if new || reread {
                let (group, name) = key.clone();
                let list = timed(
                    &format!("instances of {group}@@{name}"),
                    c.get_all_instances(name, Some(group), Vec::new(), false),
                )
                .await?;
                self.instances
                    .insert(key, list.iter().map(instance).collect());
            }
        }
        Ok(())
    }

    fn services(&self, cfg: &RegistryConfig, s: &Settings) -> Vec<DiscoveredService> {
        let mut out: Vec<DiscoveredService> = self
            .instances
            .iter()
            .filter_map(|((group, name), list)| {
                build_service(&cfg.registry, service_host(name, group, &s.namespace_label), list)
            })
            .collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out.dedup_by(|a, b| a.host == b.host);
        out
    }
}

pub async fn run(cfg: RegistryConfig, reporter: Reporter) {
    let s = Settings::new(&cfg);
    if s.groups.is_empty() {
        // Higress discovers nothing without groups.
        reporter.services(Vec::new()).await;
        return std::future::pending().await;
    }
    let key = client_key(&cfg, &s.namespace_id);
    let client = loop {
        match client(&key).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(registry = %cfg.id(), error = %e, "nacos registry not read");
                reporter.failed(e).await;
                tokio::time::sleep(s.refresh).await;
            }
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut w = Watch {
        subs: Subscriptions {
            client,
            listeners: HashMap::new(),
        },
        tx,
        instances: BTreeMap::new(),
    };
    let mut last: Option<Vec<DiscoveredService>> = None;
    let mut failed = false;
    let mut tick = tokio::time::interval(s.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => match w.refresh(&s, failed).await {
                Ok(()) => failed = false,
                Err(e) => {
                    tracing::warn!(registry = %cfg.id(), error = %e, "nacos registry not read");
                    reporter.failed(e).await;
                    failed = true;
                    // Report the set again once the registry answers.
                    last = None;
                    continue;
                }
            },
            Some((key, list)) = rx.recv() => {
                // A push for a service no longer watched is late: drop it.
                if w.subs.listeners.contains_key(&key) {
                    w.instances.insert(key, list);
                }
                while let Ok((key, list)) = rx.try_recv() {
                    if w.subs.listeners.contains_key(&key) {
                        w.instances.insert(key, list);
                    }
                }
            }
        }
        let services = w.services(&cfg, &s);
        if last.as_ref() != Some(&services) {
            tracing::debug!(registry = %cfg.id(), services = services.len(), "nacos services changed");
            reporter.services(services.clone()).await;
            last = Some(services);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_instances_convert_with_their_health_and_metadata() {
        let mut i = ServiceInstance {
            ip: "127.0.0.1".into(),
            port: 8080,
            weight: 2.6,
            healthy: false,
            ..Default::default()
        };
        i.metadata.insert("protocol".into(), "http".into());
        let got = instance(&i);
        assert_eq!(got.port, 8080);
        assert_eq!(got.weight, 2.6);
        assert!(!got.healthy && got.enabled);
        assert_eq!(got.metadata["protocol"], "http");
    }

    #[test]
    fn host_is_literally_nacos_whatever_the_type() {
        // Higress's v2 watcher writes "nacos", not the registry's type.
        assert_eq!(
            service_host("svc", "DEFAULT_GROUP", "public"),
            "svc.DEFAULT-GROUP.public.nacos"
        );
    }

    #[test]
    fn watchers_of_one_registry_share_a_client_key() {
        let mut cfg = RegistryConfig {
            registry: Default::default(),
            credentials: Default::default(),
            timing: Default::default(),
        };
        cfg.registry.domain = "127.0.0.1".into();
        cfg.registry.port = 8848;
        let a = client_key(&cfg, "public");
        cfg.registry.nacos_groups = Some(vec!["g".into()]);
        assert_eq!(client_key(&cfg, "public"), a);
        cfg.credentials.nacos_username = Some("nacos".into());
        assert_ne!(client_key(&cfg, "public"), a);
        assert_eq!(a.address, "127.0.0.1:8848");
    }
}
