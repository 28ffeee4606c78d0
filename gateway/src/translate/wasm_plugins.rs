//! `WasmPlugin` objects → the plugins the data plane runs, kept by the config loop: one
//! chain entry per object, built when the object changes and kept while it does not:
//! - an `oci://` image that names one of Higress's plugins the gateway implements
//!   (`filters::FACTORIES`: key-auth, ...) becomes that native filter, its configuration
//!   checked as the plugin checks it (unless `--wasm-native-plugins off`);
//! - anything else is a [`LoadedPlugin`] (config types become the `wasm` module's here):
//!   module fetched and compiled, a VM started to check that the plugin accepts its
//!   configuration.
//!
//! A plugin that cannot be loaded is an error for the object: the config loop rejects the
//! change and the plugin's last good version keeps running.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use serde_json::json;
use telemetry::stats::Registry;

use crate::filters::{BuildContext, ChainEntry, FilterFamilies, NativeFilter};
use crate::model::plugin_chain::{self, Phase};
use crate::resources::wasmplugin;
use crate::resources::{ResourceKey, Secret, WasmPlugin};
use crate::snapshot::SnapshotCell;
use crate::stats::WasmStats;
use crate::wasm::host::{PluginShared, Resolver};
use crate::wasm::metrics::PluginMetrics;
use crate::wasm::module_store::{ModuleSource, ModuleStore};
use crate::wasm::oci::{OciOptions, PullPolicy, PullRequest};
use crate::wasm::plugin::{LoadedPlugin, PluginStats};
use crate::wasm::shared::SharedSpace;
use crate::wasm::vm::{Limits, Runtime};

/// What loading plugins needs from the process.
#[derive(Clone)]
pub struct WasmDeps {
    pub limits: Limits,
    /// Compiled modules kept across restarts; `None`: compile at every start.
    pub cache_dir: Option<PathBuf>,
    /// `--wasm-perf-map`.
    pub perf_map: bool,
    /// `--wasm-native-plugins`: Higress's core plugins named by `oci://` images run
    /// natively.
    pub native_plugins: bool,
    pub stats: WasmStats,
    pub registry: Arc<Registry>,
    /// Where relative `file://` paths start.
    pub config_dir: PathBuf,
    /// How OCI images are pulled and where they are kept.
    pub oci: OciOptions,
}

/// What decides whether a changed object needs a new plugin.
#[derive(Clone, PartialEq)]
struct Fingerprint {
    url: String,
    sha256: Option<String>,
    config: String,
    root_id: String,
    phase: Phase,
    priority: i32,
    fail_open: bool,
    env: Vec<(String, String)>,
}

struct Entry {
    fingerprint: Fingerprint,
    plugin: ChainEntry<LoadedPlugin>,
}

pub struct PluginSet {
    deps: WasmDeps,
    runtime: OnceLock<Arc<Runtime>>,
    modules: ModuleStore,
    loaded: BTreeMap<ResourceKey, Entry>,
    /// Plugin-defined metrics by plugin name, kept across reconfigurations.
    metrics: HashMap<String, Arc<PluginMetrics>>,
    resolve: Resolver,
    native_stats: FilterFamilies,
}

/// `gateway validate`: the configuration of a WasmPlugin that runs natively, checked as
/// loading it would check it (without resolving clusters).
pub fn check_native(wp: &WasmPlugin) -> Result<(), crate::error::FieldError> {
    let source = wp.source()?;
    let Some(factory) = source.oci_plugin_name().and_then(crate::filters::factory) else {
        return Ok(());
    };
    let Some(config) = wp.plugin_config()? else {
        return Ok(());
    };
    let registry = Registry::new();
    let name = wp.full_name();
    let stats = FilterFamilies::register(&registry).stats(&name);
    NativeFilter::build(
        factory,
        name.as_str().into(),
        None,
        &config,
        stats,
        &BuildContext::detached(&name, &registry),
    )
    .map(|_| ())
    .map_err(|e| config_field(wp, e))
}

/// Secrets in a configuration shown by `/debug/configz` become `"<redacted>"`.
fn redact(mut v: serde_json::Value) -> serde_json::Value {
    crate::resources::redact::redact(&mut v);
    v
}

/// A native filter's configuration error as a field of the object: `_rules_[i]` is the
/// i-th enabled `matchRules` entry's `config` when the rules came from there.
fn config_field(wp: &WasmPlugin, e: crate::error::FieldError) -> crate::error::FieldError {
    if wp.spec.plugin_config.is_some() {
        return e.under("spec.pluginConfig");
    }
    let enabled: Vec<usize> = wp
        .spec
        .match_rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.config_disable != Some(true))
        .map(|(i, _)| i)
        .collect();
    if let Some(rest) = e.path.strip_prefix("_rules_[") {
        if let Some((n, tail)) = rest.split_once(']') {
            if let Some(&j) = n.parse::<usize>().ok().and_then(|i| enabled.get(i)) {
                let tail = tail.trim_start_matches('.');
                let mut e = crate::error::FieldError::new(tail, e.message);
                e = e.under(&format!("spec.matchRules[{j}].config"));
                return e;
            }
        }
    }
    e.under("spec.defaultConfig")
}

impl From<wasmplugin::ModuleSource> for ModuleSource {
    fn from(s: wasmplugin::ModuleSource) -> ModuleSource {
        match s {
            wasmplugin::ModuleSource::File(path) => ModuleSource::File(path),
            wasmplugin::ModuleSource::Http(url) => ModuleSource::Http(url),
            wasmplugin::ModuleSource::Oci(image) => ModuleSource::Oci(image),
        }
    }
}

impl PluginSet {
    /// `snapshot`: plugins' HTTP calls go to the endpoints of its clusters.
    pub fn new(deps: WasmDeps, snapshot: SnapshotCell) -> PluginSet {
        let resolve: Resolver = Arc::new(move |cluster: &str| {
            let snap = snapshot.load();
            snap.clusters.get(cluster)?.pick(&[]).map(|(_, addr)| addr)
        });
        PluginSet {
            modules: ModuleStore::new(deps.oci.clone()),
            runtime: OnceLock::new(),
            loaded: BTreeMap::new(),
            metrics: HashMap::new(),
            native_stats: FilterFamilies::register(&deps.registry),
            deps,
            resolve,
        }
    }

    /// The runtime, made with the first plugin (no epoch thread without plugins).
    fn runtime(&self) -> Result<Arc<Runtime>, String> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt.clone());
        }
        let rt = Runtime::new(
            self.deps.limits.clone(),
            self.deps.cache_dir.as_deref(),
            self.deps.perf_map,
        )
        .map_err(|e| format!("the Wasm runtime could not start: {e:#}"))?;
        Ok(self.runtime.get_or_init(|| rt).clone())
    }

    /// Load (or keep) the plugin of `wp`; `pull_secret` is the Secret its
    /// `spec.imagePullSecret` names, when there is one. The error names the field at fault.
    pub fn upsert(
        &mut self,
        key: &ResourceKey,
        wp: &WasmPlugin,
        pull_secret: Option<&Secret>,
    ) -> Result<(), String> {
        let Some(config) = wp.plugin_config().map_err(|e| e.to_string())? else {
            // `defaultConfigDisable` without a rule: the plugin runs nowhere.
            if self.loaded.remove(key).is_some() {
                tracing::info!(plugin = %wp.full_name(), "Wasm plugin disabled");
            }
            return Ok(());
        };
        let fingerprint = Fingerprint {
            url: wp.spec.url.trim().to_string(),
            sha256: wp.spec.sha256.clone(),
            config: config.to_string(),
            root_id: wp.root_id(),
            phase: wp.phase().into(),
            priority: wp.priority(),
            fail_open: wp.fail_open(),
            env: wp.vm_env(),
        };
        if self
            .loaded
            .get(key)
            .is_some_and(|e| e.fingerprint == fingerprint)
        {
            return Ok(());
        }
        let source = wp.source().map_err(|e| e.to_string())?;
        if let Some(factory) = source
            .oci_plugin_name()
            .filter(|_| self.deps.native_plugins)
            .and_then(crate::filters::factory)
        {
            let native = self.build_native(factory, wp, &config)?;
            tracing::info!(plugin = %native.name, native = factory.name(), "plugin runs natively");
            self.loaded.insert(
                key.clone(),
                Entry {
                    fingerprint,
                    plugin: ChainEntry::Native(Arc::new(native)),
                },
            );
            return Ok(());
        }
        let runtime = self.runtime()?;
        let source = ModuleSource::from(source);
        let docker_config = match &source {
            ModuleSource::Oci(_) => pull_secret_config(wp, pull_secret)?,
            _ => None,
        };
        let pull = PullRequest {
            policy: PullPolicy::parse(wp.spec.image_pull_policy.as_deref()),
            docker_config: docker_config.map(Vec::as_slice),
            sha256: wp.spec.sha256.as_deref(),
        };
        let module = self
            .modules
            .load(&runtime, &source, &pull, &self.deps.config_dir)
            .map_err(|e| e.to_string())?;
        let name = wp.full_name();
        let metrics = self
            .metrics
            .entry(name.clone())
            .or_insert_with(|| Arc::new(PluginMetrics::new(self.deps.registry.clone())))
            .clone();
        let shared = Arc::new(PluginShared {
            name: name.clone(),
            root_id: fingerprint.root_id.clone(),
            // One VM id per plugin: its shared data and queues are its own.
            vm_id: name.clone(),
            config: fingerprint.config.clone().into_bytes(),
            vm_config: Vec::new(),
            env: fingerprint.env.clone(),
            shared: SharedSpace::of(&name),
            metrics,
            resolve: self.resolve.clone(),
            max_requests_per_io_cycle: AtomicU64::new(0),
            redis: Default::default(),
        });
        let s = &self.deps.stats;
        let labels = [("plugin", name.as_str())];
        let failure = |reason: &str| {
            s.failures
                .counter(&[("plugin", name.as_str()), ("reason", reason)])
        };
        let stats = PluginStats {
            calls: s.calls.counter(&labels),
            failures: [
                failure("trap"),
                failure("deadline"),
                failure("memory"),
                failure("exit"),
            ],
            rebuilds: s.rebuilds.counter(&labels),
            latency: s.latency.histogram(&labels),
            memory: s.memory.gauge(&labels),
        };
        let plugin = LoadedPlugin::new(
            shared,
            module,
            runtime,
            fingerprint.phase,
            fingerprint.priority,
            fingerprint.fail_open,
            stats,
        );
        plugin.check().map_err(|e| {
            format!("spec.defaultConfig/spec.matchRules: the plugin did not start with its configuration: {e}")
        })?;
        tracing::info!(plugin = %name, sha256 = %plugin.module.sha256, abi = ?plugin.module.abi, "Wasm plugin loaded");
        self.loaded.insert(
            key.clone(),
            Entry {
                fingerprint,
                plugin: ChainEntry::Plugin(plugin),
            },
        );
        Ok(())
    }

    /// The native filter of `wp`; errors name the field of the object.
    fn build_native(
        &self,
        factory: &dyn crate::filters::FilterFactory,
        wp: &WasmPlugin,
        config: &serde_json::Value,
    ) -> Result<NativeFilter, String> {
        let name = wp.full_name();
        let order = (wp.spec.phase.is_some() || wp.spec.priority.is_some())
            .then(|| (Phase::from(wp.phase()), wp.priority()));
        let ctx = BuildContext {
            plugin: &name,
            registry: &self.deps.registry,
            resolve: self.resolve.clone(),
        };
        NativeFilter::build(
            factory,
            name.as_str().into(),
            order,
            config,
            self.native_stats.stats(&name),
            &ctx,
        )
        .map_err(|e| config_field(wp, e).to_string())
    }

    pub fn remove(&mut self, key: &ResourceKey) -> bool {
        self.loaded.remove(key).is_some()
    }

    /// The plugins in run order.
    pub fn chain(&self) -> Vec<ChainEntry<LoadedPlugin>> {
        plugin_chain::order(self.loaded.values().map(|e| e.plugin.clone()).collect())
    }

    /// Whether any plugin runs as Wasm (not natively).
    pub fn has_wasm(&self) -> bool {
        self.loaded
            .values()
            .any(|e| matches!(e.plugin, ChainEntry::Plugin(_)))
    }

    /// Configuration fields the native filters accept without acting on them.
    pub fn not_enforced(&self) -> Vec<String> {
        self.loaded
            .values()
            .filter_map(|e| match &e.plugin {
                ChainEntry::Native(f) => Some(f),
                ChainEntry::Plugin(_) => None,
            })
            .flat_map(|f| {
                f.not_enforced
                    .iter()
                    .map(move |field| format!("wasmplugin {}: {} field {field}", f.name, f.plugin))
            })
            .collect()
    }

    /// For `/debug/configz`: the chain with each plugin's module and settings.
    pub fn describe(&self) -> serde_json::Value {
        let mut entries: Vec<&Entry> = self.loaded.values().collect();
        entries.sort_by(|a, b| plugin_chain::run_order(&a.plugin, &b.plugin));
        let chain: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| match &e.plugin {
                ChainEntry::Plugin(p) => json!({
                    "name": p.name(),
                    "implementation": "wasm",
                    "phase": p.phase.as_str(),
                    "priority": p.priority,
                    "fail_strategy": if p.fail_open { "FAIL_OPEN" } else { "FAIL_CLOSE" },
                    "sha256": p.module.sha256,
                    "abi": format!("{:?}", p.module.abi),
                    "config": serde_json::from_slice::<serde_json::Value>(&p.shared.config).unwrap_or_default(),
                    "env_imports": p.module.env_imports.len(),
                }),
                ChainEntry::Native(f) => json!({
                    "name": &*f.name,
                    "implementation": "native",
                    "native_plugin": f.plugin,
                    "url": e.fingerprint.url,
                    "phase": f.phase.as_str(),
                    "priority": f.priority,
                    "config": redact(serde_json::from_str(&e.fingerprint.config).unwrap_or_default()),
                    "not_enforced": f.not_enforced,
                }),
            })
            .collect();
        json!(chain)
    }
}

/// The `.dockerconfigjson` of the Secret `spec.imagePullSecret` names (a
/// `kubernetes.io/dockerconfigjson` Secret in the plugin's namespace).
fn pull_secret_config<'a>(
    wp: &WasmPlugin,
    secret: Option<&'a Secret>,
) -> Result<Option<&'a Vec<u8>>, String> {
    const KEY: &str = ".dockerconfigjson";
    let Some(name) = wp
        .spec
        .image_pull_secret
        .as_deref()
        .filter(|n| !n.is_empty())
    else {
        return Ok(None);
    };
    let ns = &wp.metadata.namespace;
    let secret =
        secret.ok_or_else(|| format!("spec.imagePullSecret: there is no Secret {ns}/{name}"))?;
    secret.data.get(KEY).map(Some).ok_or_else(|| {
        format!("spec.imagePullSecret: Secret {ns}/{name} has no {KEY} (a kubernetes.io/dockerconfigjson Secret)")
    })
}
