//! Kubernetes mode: list/watch of the kinds the gateway reads, feeding the same config
//! loop as the directory source. kube-rs's watcher does the protocol (paged lists,
//! watches from the list's resourceVersion, bookmarks, a re-list after `410 Gone` or any
//! watch error, with backoff); this module turns its events into [`Change`]s, and turns
//! a re-list into deletes of whatever the new list no longer has, so a gap in the watch
//! never leaves a deleted object serving. Objects are kept as JSON and parsed by the
//! same code as files, so one bad object is rejected alone with its field path.

mod discovery;
mod ingress_status;
mod kingress_status;

use std::collections::BTreeSet;

use ::kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use ::kube::runtime::watcher::{self, Event};
use ::kube::runtime::WatchStreamExt;
use ::kube::Client;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Change;
use crate::resources::{Kind, Resource, ResourceKey};
use ingress_status::IngressStatus;
pub use kingress_status::KIngressStatus;

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
    /// A custom resource that may not be installed: watched only when the API server
    /// serves its group/version at start-up (Higress enables its KIngress controller
    /// only when the CRD exists).
    optional: bool,
}

const WATCHED: [Watched; 11] = [
    Watched {
        kind: Kind::ConfigMap,
        group: "",
        version: "v1",
        api_kind: "ConfigMap",
        plural: "configmaps",
        scope: Scope::Gateway,
        optional: false,
    },
    Watched {
        kind: Kind::Secret,
        group: "",
        version: "v1",
        api_kind: "Secret",
        plural: "secrets",
        scope: Scope::Watched,
        optional: false,
    },
    Watched {
        kind: Kind::Ingress,
        group: "networking.k8s.io",
        version: "v1",
        api_kind: "Ingress",
        plural: "ingresses",
        scope: Scope::Watched,
        optional: false,
    },
    Watched {
        kind: Kind::McpBridge,
        group: "networking.higress.io",
        version: "v1",
        api_kind: "McpBridge",
        plural: "mcpbridges",
        scope: Scope::Gateway,
        optional: false,
    },
    Watched {
        kind: Kind::WasmPlugin,
        group: "extensions.higress.io",
        version: "v1alpha1",
        api_kind: "WasmPlugin",
        plural: "wasmplugins",
        scope: Scope::Gateway,
        optional: false,
    },
    Watched {
        kind: Kind::Service,
        group: "",
        version: "v1",
        api_kind: "Service",
        plural: "services",
        scope: Scope::Watched,
        optional: false,
    },
    Watched {
        kind: Kind::EndpointSlice,
        group: "discovery.k8s.io",
        version: "v1",
        api_kind: "EndpointSlice",
        plural: "endpointslices",
        scope: Scope::Watched,
        optional: false,
    },
    Watched {
        kind: Kind::KIngress,
        group: "networking.internal.knative.dev",
        version: "v1alpha1",
        api_kind: "Ingress",
        plural: "ingresses",
        scope: Scope::Watched,
        optional: true,
    },
    // Istio's kinds at v1beta1: what net-istio writes, served by every Istio since 1.9.
    Watched {
        kind: Kind::IstioGateway,
        group: "networking.istio.io",
        version: "v1beta1",
        api_kind: "Gateway",
        plural: "gateways",
        scope: Scope::Watched,
        optional: true,
    },
    Watched {
        kind: Kind::VirtualService,
        group: "networking.istio.io",
        version: "v1beta1",
        api_kind: "VirtualService",
        plural: "virtualservices",
        scope: Scope::Watched,
        optional: true,
    },
    Watched {
        kind: Kind::DestinationRule,
        group: "networking.istio.io",
        version: "v1beta1",
        api_kind: "DestinationRule",
        plural: "destinationrules",
        scope: Scope::Watched,
        optional: true,
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

/// `ConfigMap higress-system/higress-config` (what errors and logs name; a Knative
/// Ingress is `KIngress default/hello`, not to be taken for a Kubernetes Ingress).
fn origin(w: &Watched, ns: &str, name: &str) -> String {
    let kind = if w.kind == Kind::KIngress {
        "KIngress"
    } else {
        w.api_kind
    };
    format!("{kind} {ns}/{name}")
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
    // A list's items may come without `apiVersion`/`kind` (the list names them once);
    // the object is parsed as a file would be, so they are put back.
    let typed;
    let obj = match &obj.types {
        Some(_) => obj,
        None => {
            let mut o = obj.clone();
            o.types = Some(::kube::api::TypeMeta {
                api_version: w.api_resource().api_version,
                kind: w.api_kind.to_string(),
            });
            typed = o;
            &typed
        }
    };
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

/// What [`spawn`] started.
pub struct Spawned {
    /// How many watchers run: each reports its first complete list once.
    pub watchers: usize,
    /// The KIngress status writer, when KIngresses are watched; started with
    /// [`KIngressStatus::start`] once the config loop exists.
    pub kingress_status: Option<KIngressStatus>,
}

/// Start one watcher per kind and namespace. Each sends its changes to `changes` and,
/// after its first complete list has been sent, its kind to `synced`. A custom resource
/// whose group/version the API server does not serve (discovery answers 404) is not
/// watched, decided once here: it neither blocks the initial sync nor retries.
pub async fn spawn(
    client: Client,
    opts: &KubeOptions,
    changes: mpsc::Sender<Vec<Change>>,
    synced: mpsc::UnboundedSender<String>,
) -> Spawned {
    let mut served = discovery::Served::default();
    let mut n = 0;
    let mut kingress_status = None;
    for w in &WATCHED {
        if w.optional && !served.serves(&client, w.group, w.version, w.plural).await {
            tracing::info!(
                group = w.group,
                version = w.version,
                resource = w.plural,
                "the API server does not serve this resource (CRD not installed?); not watched"
            );
            continue;
        }
        let observed = (w.kind == Kind::KIngress).then(|| {
            kingress_status
                .get_or_insert_with(|| KIngressStatus::new(client.clone(), opts, w.api_resource()))
                .observer()
        });
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
            let hook = match &observed {
                Some(tx) => Hook::KIngress(tx.clone()),
                None => (w.kind == Kind::Ingress)
                    .then(|| opts.status_address.clone())
                    .flatten()
                    .map(|addr| {
                        Hook::Ingress(IngressStatus {
                            address: addr,
                            resource: w.api_resource(),
                            class: opts.ingress_class.clone(),
                            without_class: opts.watch_without_class,
                        })
                    })
                    .unwrap_or(Hook::None),
            };
            // `networking.k8s.io/v1 ingresses in apps`: Knative's are ingresses too.
            let label = format!(
                "{} {} in {}",
                w.api_resource().api_version,
                w.plural,
                ns.as_deref().unwrap_or("all namespaces")
            );
            tokio::spawn(run(w, api, label, changes.clone(), synced.clone(), hook));
            n += 1;
        }
    }
    Spawned {
        watchers: n,
        kingress_status,
    }
}

/// What a watcher does with each object besides sending it on.
enum Hook {
    None,
    /// Keep `status.loadBalancer` of our Ingresses.
    Ingress(IngressStatus),
    /// Tell the KIngress status writer what each object's status says now.
    KIngress(mpsc::UnboundedSender<kingress_status::Observed>),
}

impl Hook {
    async fn seen(&self, api: &Api<DynamicObject>, obj: &DynamicObject) {
        match self {
            Hook::None => {}
            Hook::Ingress(st) => st.ensure(api, obj).await,
            Hook::KIngress(tx) => {
                if let Some(o) = kingress_status::Observed::of(obj) {
                    let _ = tx.send(o);
                }
            }
        }
    }

    fn gone(&self, obj: &DynamicObject) {
        if let Hook::KIngress(tx) = self {
            if let Some(o) = kingress_status::Observed::gone(obj) {
                let _ = tx.send(o);
            }
        }
    }
}

async fn run(
    w: &'static Watched,
    api: Api<DynamicObject>,
    label: String,
    changes: mpsc::Sender<Vec<Change>>,
    synced: mpsc::UnboundedSender<String>,
    hook: Hook,
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
                hook.seen(&api, &obj).await;
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
                hook.seen(&api, &obj).await;
                match upsert(w, &obj) {
                    Some((key, c)) => {
                        known.insert(key);
                        vec![c]
                    }
                    None => continue,
                }
            }
            Ok(Event::Delete(obj)) => match key(w, &obj).inspect(|_| hook.gone(&obj)) {
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
