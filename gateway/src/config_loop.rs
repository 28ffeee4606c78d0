//! The config loop: one task that owns every resource, applies changes from the
//! sources and DNS, runs the item controllers and translators, and publishes a new
//! [`Snapshot`] when something changed.
//!
//! An object that fails to parse or validate is rejected as a whole: its last good
//! version stays in force, the error is logged with file and field path, counted, and
//! shown at `/debug/configz`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::controllers::ConfigmapMgr;
use crate::dns::DnsAnswer;
use crate::resources::configmap::HIGRESS_CONFIG_NAME;
use crate::resources::domain::DomainConfig;
use crate::resources::{Ingress, Kind, McpBridge, Resource, ResourceKey};
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::sources::Change;
use crate::stats::{ClusterStatsCache, ConfigStats, StatNamePattern, TracerStats};
use crate::tracer::{Tracer, TracerKey};
use crate::translate::certificates::{self, Secrets};
use crate::translate::{
    clusters, route_table, route_table::TranslateWarning, services,
};
use crate::wasm::plugin_set::{PluginSet, WasmDeps};
use telemetry::export::RecentTraces;

/// What `/debug/configz` and `/config_dump` show, republished on every event.
pub type StatusCell = Arc<ArcSwap<ConfigStatus>>;

#[derive(Default)]
pub struct ConfigStatus {
    /// Everything but the raw objects (`/debug/configz`).
    pub configz: serde_json::Value,
    /// Raw objects as last applied, secrets redacted (for `/config_dump`).
    pub resources: serde_json::Value,
}

struct Rejection {
    origin: String,
    error: String,
    at: SystemTime,
}

/// Where the exporter dials the collector: the endpoint of the McpBridge cluster
/// `outbound|<port>||<service>` when there is one (as Higress points Envoy at that
/// cluster), else `service:port` resolved by name.
fn collector_endpoint(
    c: &crate::controllers::Collector,
    clusters: &BTreeMap<String, Arc<crate::model::Cluster>>,
) -> String {
    let name = crate::model::cluster_name(c.port, "", &c.service);
    match clusters.get(&name).and_then(|cl| cl.endpoints.first()) {
        Some(ep) => ep.to_string(),
        None => format!("{}:{}", c.service, c.port),
    }
}

fn bridges_in(objects: &BTreeMap<ResourceKey, (String, Resource)>) -> Vec<&McpBridge> {
    objects
        .values()
        .filter_map(|(_, r)| match r {
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
}

/// What tracing needs from the process: its stats and the `/debug/traces` ring.
#[derive(Clone)]
pub struct TracingDeps {
    pub stats: TracerStats,
    pub recent: Arc<RecentTraces>,
}

pub struct ConfigLoop {
    opts: LoopOptions,
    objects: BTreeMap<ResourceKey, (String, Resource)>,
    rejected: BTreeMap<ResourceKey, Rejection>,
    cmgr: ConfigmapMgr,
    dns: HashMap<String, Vec<IpAddr>>,
    version: u64,
    warnings: Vec<String>,
    not_enforced: Vec<String>,
    snapshot: SnapshotCell,
    status: StatusCell,
    stats: ConfigStats,
    /// Cluster stats by stat name, kept across snapshots.
    cluster_stats: ClusterStatsCache,
    /// `mesh.outboundClusterStatName` of `higress-config`.
    stat_pattern: StatNamePattern,
    tracing: TracingDeps,
    /// The WasmPlugins' loaded plugins.
    plugins: PluginSet,
    /// The tracer of the current snapshot.
    tracer: Option<Arc<Tracer>>,
    dns_names: watch::Sender<Vec<String>>,
    /// The version of each snapshot published, for listeners that follow the config.
    published: watch::Sender<u64>,
}

impl ConfigLoop {
    pub fn new(
        opts: LoopOptions,
        snapshot: SnapshotCell,
        status: StatusCell,
        stats: ConfigStats,
        cluster_stats: ClusterStatsCache,
        tracing: TracingDeps,
        wasm: WasmDeps,
    ) -> (Self, watch::Receiver<Vec<String>>) {
        let (dns_names, rx) = watch::channel(Vec::new());
        let me = ConfigLoop {
            opts,
            objects: BTreeMap::new(),
            rejected: BTreeMap::new(),
            cmgr: ConfigmapMgr::new(),
            dns: HashMap::new(),
            version: 0,
            warnings: Vec::new(),
            not_enforced: Vec::new(),
            plugins: PluginSet::new(wasm, snapshot.clone()),
            snapshot,
            status,
            stats,
            cluster_stats,
            stat_pattern: StatNamePattern::default(),
            tracing,
            tracer: None,
            dns_names,
            published: watch::channel(0).0,
        };
        (me, rx)
    }

    /// Versions of the snapshots published from now on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Secrets by (namespace, name).
    fn secrets(&self) -> Secrets {
        self.objects
            .iter()
            .filter_map(|(k, (_, r))| match r {
                Resource::Secret(s) => Some(((k.namespace.clone(), k.name.clone()), s.clone())),
                _ => None,
            })
            .collect()
    }

    /// The console's domain ConfigMaps, by name.
    fn domains(&self) -> Vec<&DomainConfig> {
        self.objects
            .values()
            .filter_map(|(_, r)| match r {
                Resource::ConfigMap(cm) => cm.domain.as_ref(),
                _ => None,
            })
            .collect()
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
                }
                self.objects.remove(&key).is_some()
            }
            Change::Upsert {
                key,
                origin,
                result,
            } => {
                let res = match result {
                    Ok(r) => r,
                    Err(e) => {
                        self.reject(key, origin, e.to_string());
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
                                self.reject(key, origin, e.under("data.higress").to_string());
                                return false;
                            }
                        }
                    }
                }
                if let Resource::WasmPlugin(wp) = &res {
                    if let Err(e) = self.plugins.upsert(&key, wp) {
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
                let prev = self.objects.insert(key, (origin, res.clone()));
                mesh_changed || prev.map(|(_, r)| r) != Some(res)
            }
        }
    }

    fn reject(&mut self, key: ResourceKey, origin: String, error: String) {
        tracing::error!(file = %origin, object = %key, "rejected: {error}; the last good version stays in force");
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

    /// Take a DNS answer. Returns whether endpoints changed.
    pub fn apply_dns(&mut self, a: DnsAnswer) -> bool {
        match a.result {
            Ok(ips) => {
                if self.dns.get(&a.name) == Some(&ips) {
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
        clusters::dns_names(&self.bridges())
    }

    fn bridges(&self) -> Vec<&McpBridge> {
        bridges_in(&self.objects)
    }

    fn ingresses(&self) -> Vec<&Ingress> {
        let mut v: Vec<&Ingress> = self
            .objects
            .values()
            .filter_map(|(_, r)| match r {
                Resource::Ingress(i) => Some(i),
                _ => None,
            })
            .filter(|i| match i.class() {
                Some(c) => c == self.opts.ingress_class,
                None => self.opts.accept_unclassed,
            })
            .collect();
        // Older first; without timestamps (file mode) by name, the map's order.
        v.sort_by(|a, b| {
            let ta = a.metadata.creation_timestamp.as_deref().unwrap_or("");
            let tb = b.metadata.creation_timestamp.as_deref().unwrap_or("");
            ta.cmp(tb)
        });
        v
    }

    /// Build and publish a new snapshot from the current resources.
    pub fn publish(&mut self) {
        let names = self.dns_names();
        self.dns_names.send_if_modified(|cur| {
            if *cur != names {
                *cur = names;
                true
            } else {
                false
            }
        });
        let mut skipped = Vec::new();
        self.cluster_stats.set_pattern(self.stat_pattern.clone());
        let mut clusters = clusters::build(
            &bridges_in(&self.objects),
            &self.dns,
            &mut self.cluster_stats,
            &mut skipped,
        );
        {
            let (mut svcs, mut slices, mut eps) = (Vec::new(), Vec::new(), Vec::new());
            for (_, r) in self.objects.values() {
                match r {
                    Resource::Service(s) => svcs.push(s),
                    Resource::EndpointSlice(s) => slices.push(s),
                    Resource::Endpoints(e) => eps.push(e),
                    _ => {}
                }
            }
            services::build(
                &svcs,
                &slices,
                &eps,
                &mut self.cluster_stats,
                &mut clusters,
                &mut skipped,
            );
        }
        let in_use: std::collections::HashSet<&str> = clusters
            .values()
            .map(|c| c.stats.stat_name.as_str())
            .collect();
        self.cluster_stats.retain(&in_use);
        self.cluster_stats.registry().prune();
        let secrets = self.secrets();
        let mut tls_warnings = Vec::new();
        let certs = certificates::build(
            &self.ingresses(),
            &self.domains(),
            &secrets,
            &self.opts.namespace,
            &mut tls_warnings,
        );
        let mut warns: Vec<TranslateWarning> = Vec::new();
        let routes = route_table::build(
            &self.ingresses(),
            &clusters,
            &secrets,
            &certs.force_https,
            &mut warns,
        );
        self.warnings = warns
            .iter()
            .map(|w| format!("ingress {}: {}", w.ingress, w.error))
            .chain(tls_warnings)
            .collect();
        self.stats.first_cert_expiry.store(
            certs.earliest_expiry().unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        for w in &self.warnings {
            tracing::warn!("{w}; its routes are left out");
        }
        for s in &skipped {
            tracing::warn!("{s} is not supported yet; no cluster built");
        }
        self.version += 1;
        let filters = self.cmgr.settings();
        self.update_tracer(&filters, &clusters);
        let snap = Snapshot {
            version: self.version,
            routes,
            clusters,
            filters,
            tracer: self.tracer.clone(),
            certs,
            plugins: self.plugins.chain().into(),
        };
        self.not_enforced = self.cmgr.not_enforced();
        self.not_enforced.extend(skipped);
        let unsupported: Vec<String> = self
            .ingresses()
            .iter()
            .flat_map(|ing| {
                let name = route_table::route_name(ing);
                ing.unsupported_annotations()
                    .into_iter()
                    .map(move |a| format!("ingress {name}: annotation {a}"))
            })
            .collect();
        self.not_enforced.extend(unsupported);
        self.snapshot.store(Arc::new(snap));
        self.stats.applied.inc();
        self.stats.version.set(self.version as i64);
        self.refresh_status();
        self.published.send_replace(self.version);
        tracing::info!(version = self.version, "config snapshot published");
    }

    /// Start a tracer when the tracing settings or the collector's address changed, and
    /// retire the one it replaces.
    fn update_tracer(
        &mut self,
        filters: &crate::controllers::FilterSettings,
        clusters: &BTreeMap<String, Arc<crate::model::Cluster>>,
    ) {
        let key = match &filters.tracing {
            Some(s) => Some(TracerKey {
                settings: Some(s.clone()),
                endpoint: collector_endpoint(&s.collector, clusters),
            }),
            None if self.opts.demo_tracing => Some(TracerKey {
                settings: None,
                endpoint: String::new(),
            }),
            None => None,
        };
        if key.as_ref() == self.tracer.as_ref().map(|t| &t.key) {
            return;
        }
        let new = key.map(|k| {
            Tracer::start(
                k,
                &self.opts.namespace,
                &self.tracing.stats,
                self.tracing.recent.clone(),
            )
        });
        if let Some(old) = std::mem::replace(&mut self.tracer, new) {
            tracing::info!(old = ?old.key, "tracer replaced; draining its exporter");
            Tracer::retire(old);
        }
    }

    /// Republish `/debug/configz` (also after a rejection, which builds no snapshot).
    pub fn refresh_status(&self) {
        let snap = self.snapshot.load();
        let clusters: Vec<serde_json::Value> = snap
            .clusters
            .values()
            .map(|c| {
                json!({
                    "name": c.name,
                    "protocol": format!("{:?}", c.protocol).to_lowercase(),
                    "endpoints": c.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let rejected: Vec<serde_json::Value> = self
            .rejected
            .iter()
            .map(|(k, r)| {
                json!({
                    "object": k.to_string(),
                    "file": r.origin,
                    "error": r.error,
                    "at": crate::proxy::access_log::rfc3339(r.at),
                })
            })
            .collect();
        let configz = json!({
            "version": snap.version,
            "routes": snap.routes.describe(),
            "tls": snap.certs.describe(),
            "clusters": clusters,
            "plugins": self.plugins.describe(),
            "items": self.cmgr.describe(),
            "not_enforced": self.not_enforced,
            "warnings": self.warnings,
            "rejected": rejected,
            "dns": self.dns.iter().map(|(k, v)| (k.clone(), json!(v.iter().map(|i| i.to_string()).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
        });
        let resources: Vec<serde_json::Value> = self
            .objects
            .iter()
            .map(|(k, (origin, r))| json!({"object": k.to_string(), "file": origin, "resource": describe_resource(r)}))
            .collect();
        self.status.store(Arc::new(ConfigStatus {
            configz,
            resources: json!(resources),
        }));
    }
}

fn describe_resource(r: &Resource) -> serde_json::Value {
    // A Secret serializes redacted (key names and certificate facts only).
    serde_json::to_value(r).unwrap_or(serde_json::Value::Null)
}

/// Run the loop: take batches from the sources and answers from DNS until both end.
pub async fn run(
    mut me: ConfigLoop,
    mut changes: mpsc::Receiver<Vec<Change>>,
    mut dns: mpsc::Receiver<DnsAnswer>,
) {
    loop {
        let changed = tokio::select! {
            batch = changes.recv() => match batch {
                Some(b) => {
                    let c = me.apply_changes(b);
                    if !c {
                        // Rejections and no-op changes still show at /debug/configz.
                        me.refresh_status();
                    }
                    c
                }
                None => return,
            },
            answer = dns.recv() => match answer {
                Some(a) => me.apply_dns(a),
                None => false,
            },
        };
        if changed {
            me.publish();
        }
    }
}
