//! From resources to a snapshot, in named steps: each step reads the objects gathered
//! once for this publish and what the steps before it built.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{ConfigLoop, LoopOptions, Objects};
use crate::controllers::ConfigmapMgr;
use crate::filters::local_rate_limit::LocalRateLimitStats;
use crate::model::filter_settings::{Collector, FilterSettings};
use crate::model::{Cluster, RouteTable};
use crate::resources::configmap::HIGRESS_CONFIG_NAME;
use crate::resources::domain::DomainConfig;
use crate::resources::{
    EndpointSlice, Endpoints, Ingress, KIngress, McpBridge, Resource, Service, SYSTEM_NAMESPACE,
};
use crate::snapshot::Snapshot;
use crate::stats::{ClusterStatsCache, RouteStatsCache, StatNamePattern};
use crate::tracer::{Tracer, TracerKey};
use crate::translate::certificates::{self, Secrets};
use crate::translate::hosts::VirtualHosts;
use crate::translate::route_table::{self, TranslateWarning};
use crate::translate::{clusters, istio, kingress, regex_cache, services};

type Clusters = BTreeMap<String, Arc<Cluster>>;

/// The objects one snapshot is built from, gathered in one pass over the resources.
#[derive(Default)]
struct Inputs<'a> {
    /// Ours by class, oldest first (without timestamps, file mode, by name).
    ingresses: Vec<&'a Ingress>,
    bridges: Vec<&'a McpBridge>,
    /// By (namespace, name).
    secrets: Secrets,
    /// The console's domain ConfigMaps, by name.
    domains: Vec<&'a DomainConfig>,
    /// ConfigMaps the gateway does not read (neither `higress-config` nor `domain-*`).
    unread_configmaps: Vec<String>,
    services: Vec<&'a Service>,
    slices: Vec<&'a EndpointSlice>,
    endpoints: Vec<&'a Endpoints>,
    /// Ours by class, oldest first.
    kingresses: Vec<&'a KIngress>,
    istio: istio::Inputs<'a>,
}

impl<'a> Inputs<'a> {
    fn gather(objects: &'a Objects, opts: &LoopOptions) -> Self {
        let mut me = Inputs::default();
        for (key, (_, r)) in objects {
            match &**r {
                Resource::Ingress(i) if is_ours(i, opts) => me.ingresses.push(i),
                Resource::Ingress(_) => {}
                Resource::McpBridge(b) => me.bridges.push(b),
                Resource::Secret(s) => {
                    me.secrets
                        .insert((key.namespace.clone(), key.name.clone()), s.clone());
                    // A directory's Secrets keep their namespace for KIngresses; what
                    // the gateway's own objects name is still found in its namespace.
                    if opts.directory && key.namespace != SYSTEM_NAMESPACE {
                        me.secrets
                            .entry((SYSTEM_NAMESPACE.to_string(), key.name.clone()))
                            .or_insert_with(|| s.clone());
                    }
                }
                Resource::ConfigMap(cm) => match &cm.domain {
                    Some(d) => me.domains.push(d),
                    None if key.name != HIGRESS_CONFIG_NAME => me
                        .unread_configmaps
                        .push(format!("configmap {}/{}", key.namespace, key.name)),
                    None => {}
                },
                Resource::Service(s) => me.services.push(s),
                Resource::EndpointSlice(s) => me.slices.push(s),
                Resource::Endpoints(e) => me.endpoints.push(e),
                Resource::WasmPlugin(_) => {}
                Resource::KIngress(k) if k.is_ours() => me.kingresses.push(k),
                Resource::KIngress(_) => {}
                Resource::IstioGateway(g) => me.istio.gateways.push(g),
                Resource::VirtualService(v) => me.istio.virtual_services.push(v),
                Resource::DestinationRule(d) => me.istio.destination_rules.push(d),
            }
        }
        let by_age = |m: &crate::resources::ObjectMeta| m.creation_timestamp.clone();
        me.kingresses
            .sort_by_key(|k| by_age(&k.metadata).unwrap_or_default());
        me.istio
            .virtual_services
            .sort_by_key(|v| by_age(&v.metadata).unwrap_or_default());
        // Stable: equal timestamps keep the map's (name) order.
        me.ingresses.sort_by(|a, b| {
            let ta = a.metadata.creation_timestamp.as_deref().unwrap_or("");
            let tb = b.metadata.creation_timestamp.as_deref().unwrap_or("");
            ta.cmp(tb)
        });
        me
    }
}

fn is_ours(ing: &Ingress, opts: &LoopOptions) -> bool {
    match ing.class() {
        Some(c) => c == opts.ingress_class,
        None => opts.accept_unclassed,
    }
}

impl ConfigLoop {
    /// Build and publish a new snapshot from the current resources.
    pub fn publish(&mut self) {
        let t0 = std::time::Instant::now();
        self.resolve_registries();
        // A handle of its own, so the loop's state can change while the inputs are read
        // (the map is not copied: no one changes it meanwhile).
        let objects = self.objects.clone();
        let inputs = Inputs::gather(&objects, &self.opts);
        let wanted = self.registries.wanted(&inputs.bridges, &inputs.secrets);
        self.registries.set_wanted(wanted);
        let t_gather = t0.elapsed();
        let mut istio_out = istio::Output::default();
        let (mut clusters, skipped, lb_notes) = build_clusters(
            &inputs,
            (&self.dns, &self.registries),
            &self.stat_pattern,
            &mut self.cluster_stats,
        );
        istio::apply_destination_rules(
            &inputs.istio.destination_rules,
            &mut clusters,
            &inputs.secrets,
            &mut istio_out,
        );
        prune_cluster_stats(&mut self.cluster_stats, &clusters);
        regex_cache::new_generation();
        let knative = kingress::build(&inputs.kingresses, &clusters, &inputs.secrets);
        istio::build(
            &inputs.istio,
            &istio::Options {
                selector: &self.opts.gateway_selector,
                local_port: self.opts.local_port,
            },
            &clusters,
            &inputs.secrets,
            &mut istio_out,
        );
        let mut tls_warnings = Vec::new();
        // The KIngresses' routes first, then Istio's (after the Ingresses' below).
        let mut more = knative.routes;
        more.append(std::mem::take(&mut istio_out.routes));
        let certs = certificates::build(
            &inputs.ingresses,
            &inputs.domains,
            &inputs.secrets,
            &more.tls,
            &self.opts.namespace,
            &mut tls_warnings,
        );
        let rate_limit_stats = LocalRateLimitStats::register(self.cluster_stats.registry());
        let t_clusters = t0.elapsed();
        let (mut hosts, route_warnings) =
            build_routes(&inputs, &clusters, &certs.force_https, &rate_limit_stats);
        hosts.append(more.external);
        let routes = hosts.into_table();
        let local_routes = more.local.into_table();
        resolve_route_stats(&mut self.route_stats, [&routes, &local_routes]);
        let t_routes = t0.elapsed();
        let filters = self.cmgr.settings();
        self.update_tracer(&filters, &clusters);
        self.version += 1;
        let snap = Snapshot {
            version: self.version,
            routes,
            local_routes,
            clusters,
            filters,
            tracer: self.tracer.clone(),
            certs,
            wasm_plugins: self.plugins.has_wasm(),
            plugins: self.plugins.chain().into(),
        };
        let t_built = t0.elapsed();
        let old = self.swap_in(snap);
        let t_live = t0.elapsed();
        // What only the status and the log need, once the snapshot serves.
        self.warnings = collect_warnings(&route_warnings, tls_warnings);
        self.warnings.extend(knative.warnings);
        self.warnings.extend(istio_out.warnings);
        self.served_kingresses
            .send_replace(Arc::new(knative.served));
        log_left_out(&self.warnings, &skipped);
        for n in &lb_notes {
            tracing::warn!("{n}");
        }
        self.warnings.extend(lb_notes);
        self.not_enforced = collect_not_enforced(&self.cmgr, skipped, &inputs.ingresses);
        // Accepted, but nothing reads them (higress-https's automatic certificates, ...).
        self.not_enforced.extend(
            inputs.unread_configmaps.iter().map(|c| {
                format!("{c}: not read (only higress-config and domain-* ConfigMaps are)")
            }),
        );
        self.not_enforced.extend(self.plugins.not_enforced());
        self.not_enforced.extend(istio_out.not_enforced);
        // The annotations a KIngress's routes do not act on.
        for k in &inputs.kingresses {
            let name = kingress::route_name(k);
            self.not_enforced.extend(
                crate::annotations::not_enforced_on_kingress(&k.metadata.annotations)
                    .into_iter()
                    .map(|a| format!("kingress {name}: annotation {a}")),
            );
        }
        self.applied_at = std::time::SystemTime::now();
        self.refresh_status();
        tracing::info!(version = self.version, "config snapshot published");
        // The previous snapshot (10,000 routes take milliseconds to free) goes last,
        // unless requests still hold it.
        drop(old);
        tracing::debug!(
            gather_us = t_gather.as_micros() as u64,
            clusters_us = (t_clusters - t_gather).as_micros() as u64,
            routes_us = (t_routes - t_clusters).as_micros() as u64,
            rest_us = (t_built - t_routes).as_micros() as u64,
            swap_us = (t_live - t_built).as_micros() as u64,
            after_us = (t0.elapsed() - t_live).as_micros() as u64,
            "snapshot build times"
        );
    }

    /// Tell the DNS task which names the registries need (it answers through the loop).
    fn resolve_registries(&self) {
        let names = self.dns_names();
        self.dns_names.send_if_modified(|cur| {
            if *cur != names {
                *cur = names;
                true
            } else {
                false
            }
        });
    }

    /// Start a tracer when the tracing settings or the collector's address changed, and
    /// retire the one it replaces.
    fn update_tracer(&mut self, filters: &FilterSettings, clusters: &Clusters) {
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

    /// Swap the snapshot in, update the config stats, and tell the listeners that
    /// follow the config; returns the snapshot it replaces.
    fn swap_in(&mut self, snap: Snapshot) -> Arc<Snapshot> {
        self.stats
            .first_cert_expiry
            .store(snap.certs.earliest_expiry().unwrap_or(0), Ordering::Relaxed);
        let old = self.snapshot.swap(Arc::new(snap));
        self.stats.applied.inc();
        self.stats.version.set(self.version as i64);
        self.published.send_replace(self.version);
        old
    }
}

/// Clusters of the `default` McpBridge's registries, then of the Services, with their
/// stats named by the mesh's pattern; also what was skipped as not supported.
fn build_clusters(
    inputs: &Inputs,
    (dns, registries): (&HashMap<String, Vec<IpAddr>>, &super::registries::Registries),
    pattern: &StatNamePattern,
    stats: &mut ClusterStatsCache,
) -> (Clusters, Vec<String>, Vec<String>) {
    let mut skipped = Vec::new();
    stats.set_pattern(pattern.clone());
    let mut clusters = clusters::build(&inputs.bridges, dns, stats, &mut skipped);
    clusters::build_discovered(registries.services(), stats, &mut clusters);
    services::build(
        &inputs.services,
        &inputs.slices,
        &inputs.endpoints,
        stats,
        &mut clusters,
        &mut skipped,
    );
    // The Ingresses' load balancing belongs to the services' clusters (Higress's
    // DestinationRules), before the routes share them.
    let lb_notes = crate::translate::load_balance::apply(&inputs.ingresses, &mut clusters);
    (clusters, skipped, lb_notes)
}

/// Forget the stats of clusters that are gone, so their series leave the registry.
fn prune_cluster_stats(stats: &mut ClusterStatsCache, clusters: &Clusters) {
    let in_use: HashSet<&str> = clusters
        .values()
        .map(|c| c.stats.stat_name.as_str())
        .collect();
    stats.retain(&in_use);
    stats.registry().prune();
}

/// Give every route the stats of its name, and forget the names no route has now.
fn resolve_route_stats(stats: &mut RouteStatsCache, tables: [&RouteTable; 2]) {
    let mut names = HashSet::new();
    for route in tables.into_iter().flat_map(RouteTable::routes) {
        // A route carried over from an earlier snapshot already has its name's stats.
        route.stats.get_or_init(|| stats.get(&route.name));
        names.insert(&*route.name);
    }
    stats.retain(&names);
}

/// The virtual hosts of our Ingresses; hosts in `force_https` redirect plain HTTP.
fn build_routes(
    inputs: &Inputs,
    clusters: &Clusters,
    force_https: &HashSet<String>,
    rate_limit_stats: &LocalRateLimitStats,
) -> (VirtualHosts, Vec<TranslateWarning>) {
    let mut warnings = Vec::new();
    let routes = route_table::build_hosts(
        &inputs.ingresses,
        clusters,
        &inputs.secrets,
        force_https,
        rate_limit_stats,
        &mut warnings,
    );
    (routes, warnings)
}

/// What `/debug/configz` lists as warnings: the Ingresses' problems, then the TLS ones.
fn collect_warnings(routes: &[TranslateWarning], tls: Vec<String>) -> Vec<String> {
    routes
        .iter()
        .map(|w| format!("ingress {}: {}", w.ingress, w.error))
        .chain(tls)
        .collect()
}

fn log_left_out(warnings: &[String], skipped: &[String]) {
    for w in warnings {
        tracing::warn!("{w}; its routes are left out");
    }
    for s in skipped {
        tracing::warn!("{s} is not supported yet; no cluster built");
    }
}

/// What is accepted but not enforced: fields of `higress-config`, registries and
/// Services without a cluster, and Ingress annotations not supported yet.
fn collect_not_enforced(
    cmgr: &ConfigmapMgr,
    skipped: Vec<String>,
    ingresses: &[&Ingress],
) -> Vec<String> {
    let mut out = cmgr.not_enforced();
    out.extend(skipped);
    out.extend(ingresses.iter().flat_map(|ing| {
        let name = crate::translate::route_name(ing);
        ing.unsupported_annotations()
            .into_iter()
            .map(move |a| format!("ingress {name}: annotation {a}"))
    }));
    out
}

/// Where the exporter dials the collector: the endpoint of the McpBridge cluster
/// `outbound|<port>||<service>` when there is one (as Higress points Envoy at that
/// cluster), else `service:port` resolved by name.
fn collector_endpoint(c: &Collector, clusters: &Clusters) -> String {
    let name = crate::model::cluster_name(c.port, "", &c.service);
    match clusters.get(&name).and_then(|cl| cl.endpoints.first()) {
        Some(ep) => ep.to_string(),
        None => format!("{}:{}", c.service, c.port),
    }
}
