//! The status of the KIngresses the gateway serves: Knative's controller marks a Route
//! ready only once its KIngress says `Ready` for the KIngress's current generation.
//!
//! The writer follows the config loop's list of served KIngresses, which is sent right
//! after the snapshot serving them is live: a status is written only for a generation
//! that requests already reach, never ahead of it. It writes (a merge patch of the
//! `status` subresource) when what the object's status says is not "ready at this
//! generation with our load balancer", once per generation; a failed write is retried on
//! the next change or on the 10 s tick (Higress re-writes every 10 s too). Our own patch
//! comes back through the watcher as an update whose status already says what we
//! wrote, so it writes nothing more.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use ::kube::Client;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::KubeOptions;
use crate::resources::kingress::{CLASS_ANNOTATION, HIGRESS_CLASS};
use crate::translate::kingress::Served;

/// Bound of one status write, as for Ingresses.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How often statuses that are not what they should be are written again.
const RETRY: Duration = Duration::from_secs(10);

/// `(namespace, name)`.
type Key = (String, String);

/// What a KIngress watcher saw of one of our KIngresses.
pub(super) enum Observed {
    Seen {
        key: Key,
        uid: Option<String>,
        status: Option<Value>,
    },
    Gone {
        key: Key,
    },
}

impl Observed {
    /// Our KIngresses only: another class's never get a status from us.
    pub(super) fn of(obj: &DynamicObject) -> Option<Observed> {
        let ours = obj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLASS_ANNOTATION))
            .is_some_and(|c| c == HIGRESS_CLASS);
        if !ours {
            return None;
        }
        Some(Observed::Seen {
            key: key_of(obj)?,
            uid: obj.metadata.uid.clone(),
            status: obj.data.get("status").cloned(),
        })
    }

    pub(super) fn gone(obj: &DynamicObject) -> Option<Observed> {
        Some(Observed::Gone { key: key_of(obj)? })
    }
}

fn key_of(obj: &DynamicObject) -> Option<Key> {
    Some((
        obj.metadata.namespace.clone().unwrap_or_default(),
        obj.metadata.name.clone()?,
    ))
}

/// What the watcher last saw of a KIngress.
struct Seen {
    uid: Option<String>,
    status: Option<Value>,
}

/// The KIngress status writer, made when KIngresses are watched.
pub struct KIngressStatus {
    client: Client,
    resource: ApiResource,
    /// `publicLoadBalancer` and `privateLoadBalancer` (the same, as in Higress).
    load_balancer: Value,
    observed_tx: mpsc::UnboundedSender<Observed>,
    observed_rx: mpsc::UnboundedReceiver<Observed>,
}

impl KIngressStatus {
    pub(super) fn new(client: Client, opts: &KubeOptions, resource: ApiResource) -> Self {
        let (observed_tx, observed_rx) = mpsc::unbounded_channel();
        KIngressStatus {
            client,
            resource,
            load_balancer: load_balancer(opts),
            observed_tx,
            observed_rx,
        }
    }

    /// Where a KIngress watcher reports what it sees.
    pub(super) fn observer(&self) -> mpsc::UnboundedSender<Observed> {
        self.observed_tx.clone()
    }

    /// Start writing statuses. `served`: the config loop's
    /// [`subscribe_kingresses`](crate::config_loop::ConfigLoop::subscribe_kingresses);
    /// `listening`: true once the gateway's listeners accept connections (nothing is
    /// written before).
    pub fn start(
        self,
        served: watch::Receiver<Arc<Vec<Served>>>,
        listening: watch::Receiver<bool>,
    ) {
        tokio::spawn(self.run(served, listening));
    }

    async fn run(
        self,
        mut served: watch::Receiver<Arc<Vec<Served>>>,
        mut listening: watch::Receiver<bool>,
    ) {
        let KIngressStatus {
            client,
            resource,
            load_balancer,
            observed_tx,
            mut observed_rx,
        } = self;
        drop(observed_tx);
        if listening.wait_for(|up| *up).await.is_err() {
            return;
        }
        let mut seen: HashMap<Key, Seen> = HashMap::new();
        // The generation (and object uid) last written per KIngress, so a write is not
        // repeated before the watcher shows it back.
        let mut written: HashMap<Key, (i64, Option<String>)> = HashMap::new();
        let mut tick = tokio::time::interval(RETRY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                r = served.changed() => {
                    if r.is_err() {
                        return;
                    }
                    false
                }
                o = observed_rx.recv() => {
                    let Some(o) = o else { return };
                    note(&mut seen, o);
                    false
                }
                _ = tick.tick() => true,
            };
            // What the watchers saw up to now, before deciding on it.
            while let Ok(o) = observed_rx.try_recv() {
                note(&mut seen, o);
            }
            let now = served.borrow_and_update().clone();
            for s in now.iter() {
                let key = (s.namespace.clone(), s.name.clone());
                let current = seen.get(&key);
                if current.is_some_and(|c| reports(c.status.as_ref(), s.generation, &load_balancer))
                {
                    continue;
                }
                let uid = current.and_then(|c| c.uid.clone());
                if !forced && written.get(&key) == Some(&(s.generation, uid)) {
                    continue;
                }
                match write(&client, &resource, &load_balancer, s).await {
                    Ok(obj) => {
                        tracing::info!(kingress = %format!("{}/{}", s.namespace, s.name), generation = s.generation, "KIngress status updated: Ready");
                        // The uid of the object written, which later observations of
                        // the same object carry.
                        written.insert(key, (s.generation, obj.metadata.uid.clone()));
                        if let Some(o) = Observed::of(&obj) {
                            note(&mut seen, o);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(kingress = %format!("{}/{}", s.namespace, s.name), error = %e, "could not update the KIngress status; retrying");
                        written.remove(&key);
                    }
                }
            }
            if !written.is_empty() {
                let served: std::collections::HashSet<(&str, &str)> = now
                    .iter()
                    .map(|s| (s.namespace.as_str(), s.name.as_str()))
                    .collect();
                written.retain(|(ns, name), _| served.contains(&(ns.as_str(), name.as_str())));
            }
        }
    }
}

fn note(seen: &mut HashMap<Key, Seen>, o: Observed) {
    match o {
        Observed::Seen { key, uid, status } => {
            seen.insert(key, Seen { uid, status });
        }
        Observed::Gone { key } => {
            seen.remove(&key);
        }
    }
}

/// `{ingress: [{domainInternal, ip | domain}]}`: the in-cluster name, and
/// `--status-address` as an IP or a DNS name when given.
fn load_balancer(opts: &KubeOptions) -> Value {
    let mut entry = json!({ "domainInternal": opts.domain_internal });
    if let Some(addr) = &opts.status_address {
        let field = if addr.parse::<std::net::IpAddr>().is_ok() {
            "ip"
        } else {
            "domain"
        };
        entry[field] = json!(addr);
    }
    json!({ "ingress": [entry] })
}

/// Whether `status` already says: ready at `generation`, behind `lb`.
fn reports(status: Option<&Value>, generation: i64, lb: &Value) -> bool {
    let Some(st) = status else { return false };
    let ready = st["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    ready
        && st["observedGeneration"].as_i64() == Some(generation)
        && &st["publicLoadBalancer"] == lb
        && &st["privateLoadBalancer"] == lb
}

/// The status a served KIngress gets: Knative's condition set (`LoadBalancerReady`,
/// `NetworkConfigured`, hence `Ready`), sorted by type as Knative keeps it.
fn status_patch(generation: i64, lb: &Value, now: SystemTime) -> Value {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let at = crate::clock::rfc3339(UNIX_EPOCH + Duration::from_secs(secs)).replace(".000Z", "Z");
    let condition = |t: &str| json!({ "type": t, "status": "True", "lastTransitionTime": at });
    json!({ "status": {
        "observedGeneration": generation,
        "conditions": [
            condition("LoadBalancerReady"),
            condition("NetworkConfigured"),
            condition("Ready"),
        ],
        "publicLoadBalancer": lb,
        "privateLoadBalancer": lb,
    }})
}

async fn write(
    client: &Client,
    resource: &ApiResource,
    lb: &Value,
    s: &Served,
) -> Result<DynamicObject, String> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &s.namespace, resource);
    let patch = status_patch(s.generation, lb, SystemTime::now());
    match tokio::time::timeout(
        TIMEOUT,
        api.patch_status(&s.name, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(addr: Option<&str>) -> KubeOptions {
        KubeOptions {
            namespace: "higress-system".into(),
            watch_namespaces: vec![],
            ingress_class: "higress".into(),
            watch_without_class: false,
            status_address: addr.map(str::to_string),
            domain_internal: "gw.higress-system.svc.cluster.local".into(),
        }
    }

    #[test]
    fn the_load_balancer_names_the_address_as_ip_or_domain() {
        assert_eq!(
            load_balancer(&opts(None)),
            json!({"ingress": [{"domainInternal": "gw.higress-system.svc.cluster.local"}]})
        );
        assert_eq!(
            load_balancer(&opts(Some("10.0.0.7")))["ingress"][0]["ip"],
            "10.0.0.7"
        );
        let lb = load_balancer(&opts(Some("lb.example.com")));
        assert_eq!(lb["ingress"][0]["domain"], "lb.example.com");
        assert!(lb["ingress"][0].get("ip").is_none());
    }

    #[test]
    fn a_written_status_reports_its_generation_only() {
        let lb = load_balancer(&opts(Some("10.0.0.7")));
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let p = status_patch(3, &lb, t);
        let st = &p["status"];
        assert_eq!(st["conditions"][2]["type"], "Ready");
        assert_eq!(
            st["conditions"][0]["lastTransitionTime"],
            "2023-11-14T22:13:20Z"
        );
        assert!(reports(Some(st), 3, &lb));
        assert!(!reports(Some(st), 4, &lb));
        assert!(!reports(Some(st), 3, &load_balancer(&opts(None))));
        assert!(!reports(None, 3, &lb));
        assert!(!reports(Some(&json!({"observedGeneration": 3})), 3, &lb));
    }
}
