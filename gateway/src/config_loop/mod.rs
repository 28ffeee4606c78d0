//! The config loop: one task that owns every resource, applies changes from the
//! sources and DNS, runs the item controllers and translators, and publishes a new
//! [`Snapshot`](crate::snapshot::Snapshot) when something changed.
//!
//! An object that fails to parse or validate is rejected as a whole: its last good
//! version stays in force, the error is logged with file and field path, counted, and
//! shown at `/debug/configz`.
//!
//! This file holds the state and how changes apply to it; `publish.rs` the build steps
//! from resources to a snapshot; `status.rs` what `/debug/configz` shows.

mod publish;
mod registries;
mod status;
#[cfg(test)]
mod tests;

pub use status::{ConfigStatus, StatusCell};

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};

use crate::controllers::ConfigmapMgr;
use crate::dns::DnsAnswer;
use crate::resources::configmap::HIGRESS_CONFIG_NAME;
use crate::resources::{Kind, McpBridge, Resource, ResourceKey, WasmPlugin};
use crate::snapshot::SnapshotCell;
use crate::sources::Change;
use crate::stats::{ClusterStatsCache, ConfigStats, RouteStatsCache, StatNamePattern, TracerStats};
use crate::tracer::Tracer;
use crate::translate::clusters;
use crate::translate::wasm_plugins::{PluginSet, WasmDeps};
use telemetry::export::RecentTraces;

/// Every object in force, with the file (or API path) it came from. Shared with the
/// status, which renders them only when `/config_dump` asks.
type Objects = BTreeMap<ResourceKey, (String, Arc<Resource>)>;

struct Rejection {
    origin: String,
    error: String,
    at: SystemTime,
}

fn bridges_in(objects: &Objects) -> Vec<&McpBridge> {
    objects
        .values()
        .filter_map(|(_, r)| match &**r {
            Resource::McpBridge(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// Options that shape how resources become a snapshot.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    /// The Ingress class that is ours (`higress`).
    pub ingress_class: String,
    /// File mode: an Ingress without class is ours too.
    pub accept_unclassed: bool,
    /// The gateway's namespace (its reported tracing service is `higress-gateway.<ns>`).
    pub namespace: String,
    /// `gateway demo`: trace every request to `/debug/traces` while `higress-config`
    /// enables no tracer.
    pub demo_tracing: bool,
    /// The labels an Istio Gateway's `selector` must match to be ours.
    pub gateway_selector: BTreeMap<String, String>,
    /// The cluster-local listener's port: Istio Gateway servers on it serve there.
    pub local_port: Option<u16>,
    /// Config from a directory: Secrets keyed in another namespace are also found in
    /// the gateway's (what its own objects name, as before namespaces were kept).
    pub directory: bool,
    /// How often registry watchers poll (`--registry-min-refresh`, `--eureka-poll`).
    pub registry_timing: crate::registry::Timing,
}

/// `key=value,key2=value2` as labels (blank parts skipped).
pub fn parse_selector(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// What tracing needs from the process: its stats and the `/debug/traces` ring.
#[derive(Clone)]
pub struct TracingDeps {
    pub stats: TracerStats,
    pub recent: Arc<RecentTraces>,
}

pub struct ConfigLoop {
    opts: LoopOptions,
    objects: Arc<Objects>,
    rejected: BTreeMap<ResourceKey, Rejection>,
    cmgr: ConfigmapMgr,
    dns: HashMap<String, Vec<IpAddr>>,
    /// The discovering registries' watchers and last good services.
    registries: registries::Registries,
    version: u64,
    /// When the current snapshot was published (the console shows it).
    applied_at: std::time::SystemTime,
    warnings: Vec<String>,
    not_enforced: Vec<String>,
    snapshot: SnapshotCell,
    status: StatusCell,
    stats: ConfigStats,
    /// Cluster stats by stat name, kept across snapshots.
    cluster_stats: ClusterStatsCache,
    /// Route stats by route name, kept across snapshots.
    route_stats: RouteStatsCache,
    /// `mesh.outboundClusterStatName` of `higress-config`.
    stat_pattern: StatNamePattern,
    tracing: TracingDeps,
    /// The WasmPlugins' loaded plugins.
    plugins: PluginSet,
    /// WasmPlugins rejected because the Secret their `spec.imagePullSecret` names was not
    /// there, with that Secret's key: applied again when it comes (the Kubernetes watchers
    /// list kinds in no set order).
    awaiting_secret: BTreeMap<ResourceKey, (ResourceKey, String, WasmPlugin)>,
    /// The tracer of the current snapshot.
    tracer: Option<Arc<Tracer>>,
    dns_names: watch::Sender<Vec<String>>,
    /// The version of each snapshot published, for listeners that follow the config.
    published: watch::Sender<u64>,
    /// The KIngresses the live snapshot serves, sent once it is live (their status
    /// follows this).
    served_kingresses: watch::Sender<Arc<Vec<crate::translate::kingress::Served>>>,
}

impl ConfigLoop {
    pub fn new(
        opts: LoopOptions,
        snapshot: SnapshotCell,
        status: StatusCell,
        stats: ConfigStats,
        (cluster_stats, route_stats): (ClusterStatsCache, RouteStatsCache),
        tracing: TracingDeps,
        wasm: WasmDeps,
    ) -> (Self, watch::Receiver<Vec<String>>) {
        let (dns_names, rx) = watch::channel(Vec::new());
        let registries =
            registries::Registries::new(opts.registry_timing, Some(stats.registries.clone()));
        let me = ConfigLoop {
            registries,
            opts,
            objects: Arc::default(),
            rejected: BTreeMap::new(),
            cmgr: ConfigmapMgr::new(),
            dns: HashMap::new(),
            version: 0,
            applied_at: std::time::SystemTime::now(),
            warnings: Vec::new(),
            not_enforced: Vec::new(),
            plugins: PluginSet::new(wasm, snapshot.clone()),
            awaiting_secret: BTreeMap::new(),
            snapshot,
            status,
            stats,
            cluster_stats,
            route_stats,
            stat_pattern: StatNamePattern::default(),
            tracing,
            tracer: None,
            dns_names,
            published: watch::channel(0).0,
            served_kingresses: watch::channel(Arc::default()).0,
        };
        (me, rx)
    }

    /// The KIngresses each live snapshot serves, from now on.
    pub fn subscribe_kingresses(
        &self,
    ) -> watch::Receiver<Arc<Vec<crate::translate::kingress::Served>>> {
        self.served_kingresses.subscribe()
    }

    /// The registry watchers the config wants, as it changes (for
    /// [`crate::registry::supervise`]).
    pub fn registry_configs(&self) -> watch::Receiver<Vec<crate::registry::RegistryConfig>> {
        self.registries.subscribe()
    }

    /// A registry watcher's report, as the loop takes it: publish if services changed,
    /// else republish the status (a failure shows at `/debug/configz`).
    pub fn take_registry(&mut self, update: crate::registry::Update) {
        if self.registries.take(update) {
            self.publish();
        } else {
            self.refresh_status();
        }
    }

    /// Versions of the snapshots published from now on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// One batch from a source, as the loop takes it: apply every change in order, then
    /// publish if the resources changed, else republish only the status (rejections and
    /// no-op changes still show at `/debug/configz`).
    pub fn take_batch(&mut self, changes: Vec<Change>) {
        if self.apply_changes(changes) {
            self.publish();
        } else {
            self.refresh_status();
        }
        release_memory();
    }

    /// One DNS answer, as the loop takes it: publish if endpoints changed.
    pub fn take_dns(&mut self, answer: DnsAnswer) {
        if self.apply_dns(answer) {
            self.publish();
        }
    }

    /// Apply a batch of changes. Returns whether the resource set changed.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> bool {
        let mut changed = false;
        for c in changes {
            changed |= self.apply_change(c);
        }
        changed
    }

    fn apply_change(&mut self, change: Change) -> bool {
        match change {
            Change::Delete { key, origin } => {
                self.rejected.remove(&key);
                if key.kind == Kind::ConfigMap && key.name == HIGRESS_CONFIG_NAME {
                    // Higress registers no delete handler: the last config stays.
                    tracing::info!(file = %origin, "higress-config deleted; keeping the last config in force");
                    return false;
                }
                tracing::info!(file = %origin, object = %key, "object deleted");
                if key.kind == Kind::WasmPlugin {
                    self.plugins.remove(&key);
                    self.awaiting_secret.remove(&key);
                }
                Arc::make_mut(&mut self.objects).remove(&key).is_some()
            }
            Change::Upsert {
                key,
                origin,
                result,
            } => {
                self.awaiting_secret.remove(&key);
                let res = match result {
                    Ok(r) => r,
                    Err(e) => {
                        self.reject(key, origin, e.located());
                        return false;
                    }
                };
                let mut mesh_changed = false;
                if let Resource::ConfigMap(cm) = &res {
                    if key.name == HIGRESS_CONFIG_NAME {
                        let pattern = StatNamePattern::new(
                            cm.mesh
                                .as_ref()
                                .and_then(|m| m.outbound_cluster_stat_name.as_deref())
                                .unwrap_or(""),
                        );
                        if pattern != self.stat_pattern {
                            tracing::info!(file = %origin, pattern = ?pattern, "mesh.outboundClusterStatName changed");
                            self.stat_pattern = pattern;
                            mesh_changed = true;
                        }
                        let Some(cfg) = &cm.higress else {
                            // No `higress` key: Higress keeps the old config silently.
                            return mesh_changed;
                        };
                        match self.cmgr.update(cfg.clone()) {
                            Ok(items) if !items.is_empty() => {
                                tracing::info!(file = %origin, items = ?items, "higress-config applied");
                            }
                            Ok(_) => {}
                            Err(e) => {
                                self.reject(key, origin, e.under("data.higress").located());
                                return false;
                            }
                        }
                    }
                }
                if let Resource::WasmPlugin(wp) = &res {
                    let pull_secret = wp.spec.image_pull_secret.as_ref().and_then(|name| {
                        let at = ResourceKey {
                            kind: Kind::Secret,
                            namespace: key.namespace.clone(),
                            name: name.clone(),
                        };
                        match self.objects.get(&at).map(|(_, r)| &**r) {
                            Some(Resource::Secret(s)) => Some(s),
                            _ => None,
                        }
                    });
                    let missing_secret = pull_secret.is_none();
                    if let Err(e) = self.plugins.upsert(&key, wp, pull_secret) {
                        if let Some(name) = wp
                            .spec
                            .image_pull_secret
                            .as_ref()
                            .filter(|_| missing_secret)
                        {
                            let secret = ResourceKey {
                                kind: Kind::Secret,
                                namespace: key.namespace.clone(),
                                name: name.clone(),
                            };
                            self.awaiting_secret
                                .insert(key.clone(), (secret, origin.clone(), wp.clone()));
                        }
                        self.reject(key, origin, e);
                        return false;
                    }
                }
                if let Resource::Ingress(ing) = &res {
                    for a in ing.unsupported_annotations() {
                        tracing::warn!(file = %origin, annotation = a, "annotation not supported yet; ignored");
                    }
                }
                self.rejected.remove(&key);
                let res = Arc::new(res);
                let secret = (key.kind == Kind::Secret).then(|| key.clone());
                let prev = Arc::make_mut(&mut self.objects).insert(key, (origin, res.clone()));
                let changed = mesh_changed || prev.map(|(_, r)| r) != Some(res);
                changed | secret.is_some_and(|s| self.retry_awaiting(&s))
            }
        }
    }

    /// Apply again the WasmPlugins that waited for Secret `secret`. Returns whether the
    /// resource set changed.
    fn retry_awaiting(&mut self, secret: &ResourceKey) -> bool {
        let due: Vec<ResourceKey> = self
            .awaiting_secret
            .iter()
            .filter(|(_, (s, _, _))| s == secret)
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = false;
        for key in due {
            if let Some((_, origin, wp)) = self.awaiting_secret.remove(&key) {
                tracing::info!(object = %key, secret = %secret, "the pull secret arrived; applying the WasmPlugin again");
                changed |= self.apply_change(Change::Upsert {
                    key,
                    origin,
                    result: Ok(Resource::WasmPlugin(wp)),
                });
            }
        }
        changed
    }

    /// Count and log a rejected change; `error` is `<field path>: <message>`, so the log
    /// line reads as `gateway validate` prints the problem.
    fn reject(&mut self, key: ResourceKey, origin: String, error: String) {
        tracing::error!(file = %origin, object = %key, "rejected {origin}: {key}: {error}; the last good version stays in force");
        self.stats.rejected.inc();
        self.rejected.insert(
            key,
            Rejection {
                origin,
                error,
                at: SystemTime::now(),
            },
        );
    }

    /// Take a DNS answer. Returns whether endpoints changed. A failure keeps the last
    /// good endpoints; each answer counts in the stats of the clusters it feeds, as
    /// Envoy's DNS clusters count refreshes (`update_attempt`, then `update_success`,
    /// with `update_no_rebuild` when nothing changed, or `update_failure`).
    pub fn apply_dns(&mut self, a: DnsAnswer) -> bool {
        let changed = match &a.result {
            Ok(ips) => self.dns.get(&a.name) != Some(ips),
            Err(_) => false,
        };
        let live = self.snapshot.load();
        for name in clusters::clusters_resolving(&bridges_in(&self.objects), &a.name) {
            if let Some(c) = live.clusters.get(&name) {
                let s = &c.stats;
                s.update_attempt.inc();
                match (&a.result, changed) {
                    (Err(_), _) => s.update_failure.inc(),
                    (Ok(_), true) => s.update_success.inc(),
                    (Ok(_), false) => {
                        s.update_success.inc();
                        s.update_no_rebuild.inc();
                    }
                }
            }
        }
        match a.result {
            Ok(ips) => {
                if !changed {
                    return false;
                }
                tracing::info!(name = %a.name, ?ips, "dns answer changed");
                self.dns.insert(a.name, ips);
                true
            }
            Err(e) => {
                tracing::warn!(name = %a.name, error = %e, "dns resolution failed; keeping the last good endpoints");
                false
            }
        }
    }

    /// DNS names the current registries need.
    pub fn dns_names(&self) -> Vec<String> {
        clusters::dns_names(&bridges_in(&self.objects))
    }
}

/// Give the pages that building freed back to the OS now, once the snapshot is out.
/// mimalloc returns them only after a delay and on later allocations, which an idle
/// config thread does not make: after loading 10,000 Ingresses the parsing's garbage
/// stayed resident (about 1.5 KiB per Ingress).
pub fn release_memory() {
    let t0 = std::time::Instant::now();
    // SAFETY: mimalloc's own entry point; with another global allocator it only
    // collects mimalloc's (empty) heaps.
    unsafe { libmimalloc_sys::mi_collect(true) };
    tracing::debug!(
        took_us = t0.elapsed().as_micros() as u64,
        "allocator pages released"
    );
}

/// Run the loop: take batches from the sources, answers from DNS and registry
/// watchers' reports until the sources end.
pub async fn run(
    mut me: ConfigLoop,
    mut changes: mpsc::Receiver<Vec<Change>>,
    mut dns: mpsc::Receiver<DnsAnswer>,
    mut registry: mpsc::Receiver<crate::registry::Update>,
) {
    loop {
        tokio::select! {
            update = registry.recv() => {
                if let Some(u) = update {
                    me.take_registry(u);
                }
            },
            batch = changes.recv() => match batch {
                Some(b) => me.take_batch(b),
                None => return,
            },
            answer = dns.recv() => {
                if let Some(a) = answer {
                    me.take_dns(a);
                }
            },
        }
    }
}
