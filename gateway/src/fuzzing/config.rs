//! Config in: `higress-config` through the item controllers, one object of any kind
//! through its parser, and a whole set of objects through the config loop's
//! translation into a snapshot.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora_http::RequestHeader;

use crate::config_loop::{ConfigLoop, ConfigStatus, LoopOptions, StatusCell, TracingDeps};
use crate::controllers::ConfigmapMgr;
use crate::proxy::zlib::GzipEncoder;
use crate::resources::configmap::HIGRESS_CONFIG_NAME;
use crate::resources::{HigressConfig, Kind, Resource, ResourceKey, SYSTEM_NAMESPACE};
use crate::snapshot;
use crate::sources::Change;
use crate::stats::{ClusterStatsCache, RouteStatsCache, ServerStats};
use crate::translate::wasm_plugins::{check_native, WasmDeps};
use telemetry::export::RecentTraces;

/// `data.higress` of `higress-config`: parsing never panics; the controllers' validation
/// decides alone whether an update applies; a config applied again changes nothing;
/// validated gzip settings are ones zlib takes; the defaults always apply again.
pub fn higress_config(data: &[u8]) {
    let Ok(cfg) = HigressConfig::parse(data) else {
        return;
    };
    let mut mgr = ConfigmapMgr::new();
    let valid = mgr.validate(&cfg);
    let updated = mgr.update(cfg.clone());
    assert_eq!(valid.is_ok(), updated.is_ok(), "{valid:?} vs {updated:?}");
    if updated.is_err() {
        return;
    }
    assert_eq!(mgr.update(cfg).expect("applied once"), Vec::<&str>::new());
    let settings = mgr.settings();
    if let Some(g) = &settings.gzip {
        if let Err(e) = GzipEncoder::new(&g.deflate) {
            panic!(
                "validated gzip settings {:?} refused by zlib: {e}",
                g.deflate
            );
        }
    }
    let _ = mgr.describe();
    let _ = mgr.not_enforced();
    mgr.update(HigressConfig::default())
        .expect("the defaults are valid");
}

/// The kind, namespace and name a header `<folder>/<name>` or
/// `<folder>/<namespace>/<name>` names (folders as in a config directory).
fn key_of(header: &str) -> Option<ResourceKey> {
    let mut parts = header.trim().splitn(3, '/');
    let folder = parts.next()?;
    let kind = Kind::ALL.into_iter().find(|k| k.folder() == folder)?;
    let (namespace, name) = match (parts.next()?, parts.next()) {
        (ns, Some(name)) if kind.keeps_namespace() => (ns, name),
        (name, _) => (SYSTEM_NAMESPACE, name),
    };
    (!name.is_empty() && !namespace.is_empty()).then(|| ResourceKey {
        kind,
        namespace: namespace.into(),
        name: name.into(),
    })
}

/// One object: a first line `<folder>/<name>` (`ingresses/foo`, `configmaps/domain-x`,
/// `secrets/ns/tls`), then its YAML. Parsing never panics, and what parses renders as
/// `/config_dump` shows it; a `higress-config` is also validated, a WasmPlugin that runs
/// natively has its configuration checked.
pub fn resource(data: &[u8]) {
    let (header, yaml) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Some(key) = std::str::from_utf8(header).ok().and_then(key_of) else {
        return;
    };
    let Ok(res) = Resource::parse(key.kind, yaml, &key.name, &key.namespace) else {
        return;
    };
    serde_json::to_value(&res).expect("a parsed object serializes");
    match &res {
        Resource::ConfigMap(cm) => {
            if let Some(cfg) = &cm.higress {
                let _ = ConfigmapMgr::new().validate(cfg);
            }
        }
        Resource::WasmPlugin(wp) => {
            let _ = check_native(wp);
        }
        Resource::Ingress(ing) => {
            let _ = ing.class();
            let _ = crate::translate::route_name(ing);
        }
        _ => {}
    }
}

/// A config directory in one file: objects, each after a line `--- <folder>/<name>` (as
/// in [`resource`]). The config loop takes them as one batch, builds and publishes a
/// snapshot, reports its status, and routes a request to every host and path the
/// Ingresses name; then the objects are deleted again. None of it panics.
/// WasmPlugins that do not run natively are only parsed (loading one would download or
/// read its module); `higress-config`'s tracing stays off (a tracer starts exporters).
pub fn translate(data: &[u8]) {
    let text = super::text(data);
    let mut changes = Vec::new();
    let mut keys = Vec::new();
    for doc in text.split("--- ").skip(1) {
        let (header, yaml) = doc.split_once('\n').unwrap_or((doc, ""));
        let Some(key) = key_of(header) else {
            continue;
        };
        let mut result = Resource::parse(key.kind, yaml.as_bytes(), &key.name, &key.namespace);
        match &mut result {
            Ok(Resource::WasmPlugin(wp)) => {
                let native = wp
                    .source()
                    .ok()
                    .and_then(|s| s.oci_plugin_name().map(str::to_owned))
                    .and_then(|n| crate::filters::factory(&n))
                    .is_some();
                if !native {
                    continue;
                }
            }
            Ok(Resource::ConfigMap(cm)) if key.name == HIGRESS_CONFIG_NAME => {
                if let Some(h) = &mut cm.higress {
                    h.tracing = None;
                }
            }
            _ => {}
        }
        keys.push(key.clone());
        changes.push(Change::Upsert {
            origin: format!("{}/{}.yaml", key.kind.folder(), key.name),
            key,
            result,
        });
    }
    if changes.is_empty() {
        return;
    }
    let hosts_paths: Vec<(String, String)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Upsert {
                result: Ok(Resource::Ingress(i)),
                ..
            } => Some(i),
            _ => None,
        })
        .flat_map(|i| &i.spec.rules)
        .flat_map(|r| {
            let host = r.host.clone().unwrap_or_default();
            r.http
                .iter()
                .flat_map(|h| &h.paths)
                .map(move |p| (host.clone(), p.path.clone().unwrap_or_else(|| "/".into())))
        })
        .take(64)
        .collect();

    let server = ServerStats::new(1);
    let cell = snapshot::new_cell();
    let status: StatusCell = Arc::new(ArcSwap::from_pointee(ConfigStatus::default()));
    let wasm = WasmDeps {
        limits: Default::default(),
        cache_dir: None,
        perf_map: false,
        native_plugins: true,
        stats: server.wasm.clone(),
        registry: server.registry.clone(),
        config_dir: std::env::temp_dir(),
        oci: Default::default(),
    };
    let (mut cl, _dns_names) = ConfigLoop::new(
        LoopOptions {
            ingress_class: "higress".into(),
            accept_unclassed: true,
            namespace: SYSTEM_NAMESPACE.into(),
            demo_tracing: false,
            gateway_selector: crate::config_loop::parse_selector(
                "higress=higress-system-higress-gateway",
            ),
            local_port: Some(8081),
            directory: true,
            registry_timing: Default::default(),
        },
        cell.clone(),
        status.clone(),
        server.config.clone(),
        (
            ClusterStatsCache::new(server.registry.clone(), SYSTEM_NAMESPACE),
            RouteStatsCache::new(server.registry.clone()),
        ),
        TracingDeps {
            stats: server.tracing.clone(),
            recent: Arc::new(RecentTraces::new(8)),
        },
        wasm,
    );
    cl.take_batch(changes);
    let _ = status.load().configz();
    let _ = status.load().resources();
    let snap = cell.load_full();
    for (host, path) in &hosts_paths {
        let Ok(mut req) = RequestHeader::build("GET", path.as_bytes(), None) else {
            continue;
        };
        let _ = req.insert_header("host", host.as_str());
        let host = if host.is_empty() { "any.test" } else { host };
        if let Some(route) = snap.routes.find(host, path, &req) {
            for roll in [0, 1, 50, 99, 9_999] {
                let _ = route.pick(roll);
            }
        }
    }
    let deletes = keys
        .into_iter()
        .map(|key| Change::Delete {
            origin: format!("{}/{}.yaml", key.kind.folder(), key.name),
            key,
        })
        .collect();
    cl.take_batch(deletes);
    let _ = status.load().configz();
}
