//! Kubernetes mode: list/watch of the kinds the gateway reads, feeding the same config
//! loop as the directory source. kube-rs's watcher does the protocol (paged lists,
//! watches from the list's resourceVersion, bookmarks, a re-list after `410 Gone` or any
//! watch error, with backoff); this module turns its events into [`Change`]s, and turns
//! a re-list into deletes of whatever the new list no longer has, so a gap in the watch
//! never leaves a deleted object serving. Objects are kept as JSON and parsed by the
//! same code as files, so one bad object is rejected alone with its field path.

use std::collections::BTreeSet;
use std::time::Duration;

use ::kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use ::kube::runtime::watcher::{self, Event};
use ::kube::runtime::WatchStreamExt;
use ::kube::Client;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Change;
use crate::resources::ingress::CLASS_ANNOTATION;
use crate::resources::{Kind, Resource, ResourceKey};

/// What Kubernetes mode watches, from the command line.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// The gateway's namespace (`higress-config`, domains, McpBridge, WasmPlugins).
    pub namespace: String,
    /// Namespaces whose Ingresses, Services, EndpointSlices and Secrets are read; empty:
    /// all.
    pub watch_namespaces: Vec<String>,
    pub ingress_class: String,
    pub watch_without_class: bool,
    /// Written into the status of the Ingresses the gateway serves (IP or host name).
    pub status_address: Option<String>,
    /// `domainInternal` of the KIngresses' status: the gateway's in-cluster name.
    pub domain_internal: String,
}

/// Where a kind is read from.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// The gateway's own namespace.
    Gateway,
    /// `--watch-namespace`, or every namespace.
    Watched,
}

struct Watched {
    kind: Kind,
    group: &'static str,
    version: &'static str,
    api_kind: &'static str,
    plural: &'static str,
    scope: Scope,
}

const WATCHED: [Watched; 7] = [
    Watched {
        kind: Kind::ConfigMap,
        group: "",
        version: "v1",
        api_kind: "ConfigMap",
        plural: "configmaps",
        scope: Scope::Gateway,
    },
    Watched {
        kind: Kind::Secret,
        group: "",
        version: "v1",
        api_kind: "Secret",
        plural: "secrets",
        scope: Scope::Watched,
    },
    Watched {
        kind: Kind::Ingress,
        group: "networking.k8s.io",
        version: "v1",
        api_kind: "Ingress",
        plural: "ingresses",
        scope: Scope::Watched,
    },
    Watched {
        kind: Kind::McpBridge,
        group: "networking.higress.io",
        version: "v1",
        api_kind: "McpBridge",
        plural: "mcpbridges",
        scope: Scope::Gateway,
    },
    Watched {
        kind: Kind::WasmPlugin,
        group: "extensions.higress.io",
        version: "v1alpha1",
        api_kind: "WasmPlugin",
        plural: "wasmplugins",
        scope: Scope::Gateway,
    },
    Watched {
        kind: Kind::Service,
        group: "",
        version: "v1",
        api_kind: "Service",
        plural: "services",
        scope: Scope::Watched,
    },
    Watched {
        kind: Kind::EndpointSlice,
        group: "discovery.k8s.io",
        version: "v1",
        api_kind: "EndpointSlice",
        plural: "endpointslices",
        scope: Scope::Watched,
    },
];

impl Watched {
    fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.api_kind),
            self.plural,
        )
    }
}

/// Only these ConfigMaps are the gateway's: Higress reads no other.
fn wanted(kind: Kind, name: &str) -> bool {
    kind != Kind::ConfigMap
        || name == crate::resources::configmap::HIGRESS_CONFIG_NAME
        || name.starts_with(crate::resources::domain::DOMAIN_PREFIX)
}

/// `ConfigMap higress-system/higress-config` (what errors and logs name).
fn origin(w: &Watched, ns: &str, name: &str) -> String {
    format!("{} {ns}/{name}", w.api_kind)
}

fn key(w: &Watched, obj: &DynamicObject) -> Option<ResourceKey> {
    let name = obj.metadata.name.clone()?;
    wanted(w.kind, &name).then(|| ResourceKey {
        kind: w.kind,
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name,
    })
}

fn upsert(w: &Watched, obj: &DynamicObject) -> Option<(ResourceKey, Change)> {
    let key = key(w, obj)?;
    let result = serde_json::to_vec(obj)
        .map_err(|e| crate::resources::FieldError::new("", e.to_string()))
        .and_then(|bytes| Resource::parse(w.kind, &bytes, &key.name, &key.namespace));
    Some((
        key.clone(),
        Change::Upsert {
            origin: origin(w, &key.namespace, &key.name),
            key,
            result,
        },
    ))
}

fn delete(w: &Watched, key: ResourceKey) -> Change {
    Change::Delete {
        origin: origin(w, &key.namespace, &key.name),
        key,
    }
}

/// Start one watcher per kind and namespace. Each sends its changes to `changes` and,
/// after its first complete list has been sent, its kind to `synced`. Returns how many
/// watchers run.
pub fn spawn(
    client: Client,
    opts: &KubeOptions,
    changes: mpsc::Sender<Vec<Change>>,
    synced: mpsc::UnboundedSender<String>,
) -> usize {
    let mut n = 0;
    for w in &WATCHED {
        let namespaces: Vec<Option<String>> = match w.scope {
            Scope::Gateway => vec![Some(opts.namespace.clone())],
            Scope::Watched if opts.watch_namespaces.is_empty() => vec![None],
            Scope::Watched => opts.watch_namespaces.iter().cloned().map(Some).collect(),
        };
        for ns in namespaces {
            let api = match &ns {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &w.api_resource()),
                None => Api::all_with(client.clone(), &w.api_resource()),
            };
            let status = (w.kind == Kind::Ingress)
                .then(|| opts.status_address.clone())
                .flatten()
                .map(|addr| IngressStatus {
                    address: addr,
                    resource: w.api_resource(),
                    class: opts.ingress_class.clone(),
                    without_class: opts.watch_without_class,
                });
            let label = format!(
                "{} in {}",
                w.plural,
                ns.as_deref().unwrap_or("all namespaces")
            );
            tokio::spawn(run(w, api, label, changes.clone(), synced.clone(), status));
            n += 1;
        }
    }
    n
}

async fn run(
    w: &'static Watched,
    api: Api<DynamicObject>,
    label: String,
    changes: mpsc::Sender<Vec<Change>>,
    synced: mpsc::UnboundedSender<String>,
    status: Option<IngressStatus>,
) {
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    // What the gateway currently holds from this watcher, to find deletions a re-list
    // reveals.
    let mut known: BTreeSet<ResourceKey> = BTreeSet::new();
    let mut listing: Option<(Vec<Change>, BTreeSet<ResourceKey>)> = None;
    let mut first = true;
    while let Some(ev) = stream.next().await {
        let batch = match ev {
            Err(e) => {
                // The watcher re-lists after its backoff; the current snapshot stays.
                tracing::warn!(watch = %label, error = %e, "Kubernetes watch failed; retrying, the current config stays in force");
                continue;
            }
            Ok(Event::Init) => {
                listing = Some((Vec::new(), BTreeSet::new()));
                continue;
            }
            Ok(Event::InitApply(obj)) => {
                if let Some(st) = &status {
                    st.ensure(&api, &obj).await;
                }
                if let (Some((batch, seen)), Some((key, c))) = (listing.as_mut(), upsert(w, &obj)) {
                    seen.insert(key);
                    batch.push(c);
                }
                continue;
            }
            Ok(Event::InitDone) => {
                let Some((mut batch, seen)) = listing.take() else {
                    continue;
                };
                for gone in known.difference(&seen) {
                    batch.push(delete(w, gone.clone()));
                }
                known = seen;
                batch
            }
            Ok(Event::Apply(obj)) => {
                if let Some(st) = &status {
                    st.ensure(&api, &obj).await;
                }
                match upsert(w, &obj) {
                    Some((key, c)) => {
                        known.insert(key);
                        vec![c]
                    }
                    None => continue,
                }
            }
            Ok(Event::Delete(obj)) => match key(w, &obj) {
                Some(key) => {
                    known.remove(&key);
                    vec![delete(w, key)]
                }
                None => continue,
            },
        };
        if !batch.is_empty() && changes.send(batch).await.is_err() {
            return;
        }
        if first {
            first = false;
            tracing::info!(watch = %label, objects = known.len(), "initial list synced");
            let _ = synced.send(label.clone());
        }
    }
}

/// Writes the gateway's address into `status.loadBalancer` of the Ingresses it serves,
/// as Higress does.
struct IngressStatus {
    address: String,
    resource: ApiResource,
    class: String,
    without_class: bool,
}

impl IngressStatus {
    fn ours(&self, obj: &DynamicObject) -> bool {
        let class = obj
            .data
            .pointer("/spec/ingressClassName")
            .and_then(|v| v.as_str())
            .or_else(|| {
                obj.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CLASS_ANNOTATION))
                    .map(String::as_str)
            });
        match class {
            Some(c) => c == self.class,
            None => self.without_class,
        }
    }

    async fn ensure(&self, api: &Api<DynamicObject>, obj: &DynamicObject) {
        if !self.ours(obj) {
            return;
        }
        let entry = if self.address.parse::<std::net::IpAddr>().is_ok() {
            serde_json::json!({ "ip": self.address })
        } else {
            serde_json::json!({ "hostname": self.address })
        };
        let want = serde_json::json!([entry]);
        if obj.data.pointer("/status/loadBalancer/ingress") == Some(&want) {
            return;
        }
        let Some(name) = obj.metadata.name.as_deref() else {
            return;
        };
        let api = match obj.metadata.namespace.as_deref() {
            Some(ns) => {
                Api::<DynamicObject>::namespaced_with(api.clone().into_client(), ns, &self.resource)
            }
            None => api.clone(),
        };
        let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": want } } });
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await;
        match r {
            Ok(Ok(_)) => {
                tracing::info!(ingress = name, address = %self.address, "ingress status updated")
            }
            Ok(Err(e)) => {
                tracing::warn!(ingress = name, error = %e, "could not update the ingress status")
            }
            Err(_) => tracing::warn!(ingress = name, "updating the ingress status timed out"),
        }
    }
}
