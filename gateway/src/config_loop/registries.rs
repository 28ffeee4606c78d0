//! The discovering registries as the config loop sees them: which watchers should run
//! (from the `default` McpBridge and the Secrets it names), and each registry's last
//! good services, failures and status for `/debug/configz`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::registry::{Credentials, DiscoveredService, RegistryConfig, Timing, Update};
use crate::resources::mcpbridge::DEFAULT_MCPBRIDGE;
use crate::resources::{McpBridge, SYSTEM_NAMESPACE};
use crate::stats::RegistryStats;
use crate::translate::certificates::Secrets;

/// Registry types a watcher discovers services from (`static` and `dns` name their
/// endpoints themselves).
pub const DISCOVERING: [&str; 6] = ["nacos", "nacos2", "nacos3", "zookeeper", "consul", "eureka"];

/// One registry's state.
#[derive(Debug, Default)]
pub struct RegistryState {
    /// The last good set (kept while the registry fails).
    pub services: Vec<DiscoveredService>,
    /// Whether a good set has come since the watcher started.
    pub synced: bool,
    /// The last failure's message, cleared by the next good set.
    pub last_error: Option<String>,
    pub failures: u64,
    pub updates: u64,
    pub last_update: Option<SystemTime>,
    pub last_failure: Option<SystemTime>,
}

pub struct Registries {
    pub by_id: BTreeMap<String, RegistryState>,
    configs: watch::Sender<Vec<RegistryConfig>>,
    timing: Timing,
    stats: Option<RegistryStats>,
}

impl Registries {
    pub fn new(timing: Timing, stats: Option<RegistryStats>) -> Self {
        Registries {
            by_id: BTreeMap::new(),
            configs: watch::channel(Vec::new()).0,
            timing,
            stats,
        }
    }

    /// The watchers wanted, as they change.
    pub fn subscribe(&self) -> watch::Receiver<Vec<RegistryConfig>> {
        self.configs.subscribe()
    }

    /// The watchers the `default` McpBridge wants, with the credentials of the Secrets
    /// (in the gateway's namespace) its registries name.
    pub fn wanted(&self, bridges: &[&McpBridge], secrets: &Secrets) -> Vec<RegistryConfig> {
        let Some(b) = bridges.iter().find(|b| b.metadata.name == DEFAULT_MCPBRIDGE) else {
            return Vec::new();
        };
        b.spec
            .registries
            .iter()
            .filter(|r| DISCOVERING.contains(&r.kind.as_str()))
            .map(|r| RegistryConfig {
                registry: r.clone(),
                credentials: r
                    .auth_secret_name
                    .as_deref()
                    .map(|name| credentials(secrets, name))
                    .unwrap_or_default(),
                timing: self.timing,
            })
            .collect()
    }

    /// Run exactly the watchers `wanted` lists; forget the state of the others.
    pub fn set_wanted(&mut self, wanted: Vec<RegistryConfig>) {
        let ids: Vec<String> = wanted.iter().map(RegistryConfig::id).collect();
        self.by_id.retain(|id, _| ids.contains(id));
        for id in ids {
            self.by_id.entry(id).or_default();
        }
        self.configs.send_if_modified(|cur| {
            let changed = *cur != wanted;
            if changed {
                *cur = wanted;
            }
            changed
        });
    }

    /// Take a watcher's report. Returns whether the services changed (a rebuild is
    /// due). A failure keeps the last good services.
    pub fn take(&mut self, u: Update) -> bool {
        let Some(st) = self.by_id.get_mut(&u.registry) else {
            // A watcher stopped since: its report is stale.
            return false;
        };
        let now = SystemTime::now();
        match u.result {
            Ok(services) => {
                st.updates += 1;
                st.last_update = Some(now);
                st.last_error = None;
                let changed = !st.synced || st.services != services;
                if changed {
                    tracing::info!(registry = %u.registry, services = services.len(), endpoints = services.iter().map(|s| s.endpoints.len()).sum::<usize>(), "registry services changed");
                }
                st.synced = true;
                st.services = services;
                if let Some(s) = &self.stats {
                    let l = [("registry", u.registry.as_str())];
                    s.updates
                        .counter(&[("registry", u.registry.as_str()), ("result", "success")])
                        .inc();
                    s.up.gauge(&l).set(1);
                    s.services.gauge(&l).set(st.services.len() as i64);
                }
                changed
            }
            Err(e) => {
                st.failures += 1;
                st.last_failure = Some(now);
                tracing::warn!(registry = %u.registry, error = %e, kept = st.services.len(), "registry unreachable; keeping its last services");
                st.last_error = Some(e);
                if let Some(s) = &self.stats {
                    s.updates
                        .counter(&[("registry", u.registry.as_str()), ("result", "failure")])
                        .inc();
                    s.up.gauge(&[("registry", u.registry.as_str())]).set(0);
                }
                false
            }
        }
    }

    /// Every registry's services, for the cluster build.
    pub fn services(&self) -> impl Iterator<Item = (&str, &DiscoveredService)> {
        self.by_id
            .iter()
            .flat_map(|(id, st)| st.services.iter().map(move |s| (id.as_str(), s)))
    }

    /// `/debug/configz`'s `registries`.
    pub fn status_json(&self) -> serde_json::Value {
        let configs = self.configs.borrow();
        let at = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
        };
        self.by_id
            .iter()
            .map(|(id, st)| {
                let address = configs
                    .iter()
                    .find(|c| c.id() == *id)
                    .map(RegistryConfig::address);
                serde_json::json!({
                    "registry": id,
                    "address": address,
                    "status": match (&st.last_error, st.synced) {
                        (Some(_), true) => "failing, last services kept",
                        (Some(_), false) => "failing",
                        (None, true) => "ok",
                        (None, false) => "connecting",
                    },
                    "last_error": st.last_error,
                    "failures": st.failures,
                    "updates": st.updates,
                    "last_update_ms": at(st.last_update),
                    "last_failure_ms": at(st.last_failure),
                    "services": st.services.iter().map(|s| serde_json::json!({
                        "host": s.host,
                        "port": s.port,
                        "protocol": s.protocol,
                        "endpoints": s.endpoints.iter().map(|e| serde_json::json!({
                            "address": e.addr.to_string(),
                            "weight": e.weight,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    }
}

/// `nacosUsername`, `nacosPassword` and `consulToken` of the Secret `name` in the
/// gateway's namespace (Higress's `registry/auth_option.go` keys); missing: none.
fn credentials(secrets: &Secrets, name: &str) -> Credentials {
    let Some(s) = secrets.get(&(SYSTEM_NAMESPACE.to_string(), name.to_string())) else {
        tracing::warn!(secret = %name, "authSecretName names a Secret that is not there; no credentials");
        return Credentials::default();
    };
    let get = |k: &str| {
        s.data
            .get(k)
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
    };
    Credentials {
        nacos_username: get("nacosUsername"),
        nacos_password: get("nacosPassword"),
        consul_token: get("consulToken"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::DiscoveredEndpoint;

    fn service(host: &str, port: u16) -> DiscoveredService {
        DiscoveredService {
            host: host.into(),
            port,
            protocol: "http".into(),
            endpoints: vec![DiscoveredEndpoint {
                addr: format!("127.0.0.1:{port}").parse().unwrap(),
                weight: 1,
                metadata: Default::default(),
            }],
        }
    }

    #[test]
    fn failures_keep_the_last_services_and_stale_reports_are_dropped() {
        let y = "metadata: {name: default}\nspec:\n  registries:\n  - {type: nacos, name: n, domain: 127.0.0.1, port: 8848, authSecretName: creds}\n  - {type: static, name: s, domain: \"127.0.0.1:1\", port: 80}\n";
        let b = McpBridge::parse(y.as_bytes()).unwrap();
        let mut r = Registries::new(Timing::default(), None);
        let rx = r.subscribe();
        let wanted = r.wanted(&[&b], &Secrets::new());
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].id(), "nacos/n");
        r.set_wanted(wanted);
        assert_eq!(rx.borrow().len(), 1);
        let ok = |s: Vec<DiscoveredService>| Update {
            registry: "nacos/n".into(),
            result: Ok(s),
        };
        // The first set counts as a change even when empty.
        assert!(r.take(ok(vec![])));
        assert!(r.take(ok(vec![service("a.DEFAULT-GROUP.public.nacos", 8080)])));
        assert!(!r.take(ok(vec![service("a.DEFAULT-GROUP.public.nacos", 8080)])));
        assert!(!r.take(Update {
            registry: "nacos/n".into(),
            result: Err("connection refused".into()),
        }));
        assert_eq!(r.services().count(), 1);
        let st = &r.by_id["nacos/n"];
        assert_eq!((st.failures, st.updates), (1, 3));
        let j = r.status_json();
        assert_eq!(j[0]["status"], "failing, last services kept");
        assert_eq!(j[0]["address"], "127.0.0.1:8848");
        assert!(!r.take(Update {
            registry: "consul/gone".into(),
            result: Ok(vec![service("x", 1)]),
        }));
        r.set_wanted(vec![]);
        assert_eq!(r.services().count(), 0);
    }
}
