//! Nacos as the config store, as Higress standalone keeps it (`get-higress.sh -c
//! nacos://host:8848`): one Nacos config per object in the Nacos namespace
//! `--nacos-namespace` (the tenant, default `higress-system`), data id
//! `<kind-plural>.<name>` (`ingresses.foo`, `configmaps.higress-config`), group the
//! object's namespace, content the object as YAML; Secrets may be encrypted
//! ([`crypt`]). A `<kind-plural>.__names__` config in `DEFAULT_GROUP` lists the objects
//! of a kind; whoever adds or removes one rewrites it, which wakes the listeners.
//!
//! Reading: every kind is listed by a search for `<kind-plural>.*` (50 a page); then one
//! long poll watches every object and every name index at the MD5 last read, and a
//! relist every `--nacos-list-refresh-interval` (10 s, Higress's) catches objects added or
//! removed without the index being touched (a plain SDK publish). Objects are parsed by
//! the code the config directory uses, so one bad object is rejected alone, named
//! `nacos:<group>/<dataId>` with its field path, and its last good version keeps
//! serving. Nacos unreachable: nothing changes, the failure is logged, the poll retries
//! with backoff.
//!
//! An object's namespace is its group. The gateway's own kinds (ConfigMaps, McpBridges,
//! WasmPlugins) are read from the group `higress-system` only, as Kubernetes mode reads
//! them from the gateway's namespace.

pub mod client;
pub mod crypt;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Change;
use crate::error::FieldError;
use crate::resources::{Kind, Resource, ResourceKey, SYSTEM_NAMESPACE};
use client::{md5_hex, ConfigItem, Listened, DEFAULT_GROUP};
pub use client::{NacosClient, NacosError, ServerAddr};
use crypt::Crypt;

/// How long the server may hold a long poll (the Nacos clients' 30 s).
pub const LONG_POLL: Duration = Duration::from_secs(30);

/// Backoff after a failed call: doubled from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// The suffix of a kind's name index.
pub const NAMES_SUFFIX: &str = "__names__";

/// What `--config nacos://...` and its flags say.
#[derive(Clone, Debug)]
pub struct NacosOptions {
    pub server: ServerAddr,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The Nacos namespace id (tenant).
    pub namespace: String,
    /// The key Secrets are encrypted with.
    pub crypt: Option<Crypt>,
    /// How often every kind is listed again.
    pub list_refresh: Duration,
}

impl NacosOptions {
    pub fn client(&self) -> NacosClient {
        let credentials = self
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .map(|u| (u, self.password.clone().unwrap_or_default()));
        NacosClient::new(self.server.clone(), self.namespace.clone(), credentials)
    }

    /// `nacos://host:8848/nacos (namespace higress-system)`, for logs and errors.
    pub fn describe(&self) -> String {
        format!("nacos://{} (namespace {})", self.server, self.namespace)
    }
}

/// The data id of `kind` `name`.
pub fn data_id(kind: Kind, name: &str) -> String {
    format!("{}.{name}", kind.folder())
}

/// The data id of `kind`'s name index.
pub fn names_id(kind: Kind) -> String {
    data_id(kind, NAMES_SUFFIX)
}

/// `nacos:<group>/<dataId>`: where an object came from, in rejections and logs.
pub fn origin(group: &str, data_id: &str) -> String {
    format!("nacos:{group}/{data_id}")
}

/// The object a config holds, from its data id and group; `None` for a name index, a
/// data id of no kind, or a gateway kind outside the gateway's namespace.
fn key_of(kind: Kind, item: &ConfigItem) -> Option<ResourceKey> {
    let name = item
        .data_id
        .strip_prefix(kind.folder())?
        .strip_prefix('.')?;
    if name.is_empty() || name == NAMES_SUFFIX {
        return None;
    }
    let gateway_kind = matches!(kind, Kind::ConfigMap | Kind::McpBridge | Kind::WasmPlugin);
    if gateway_kind && item.group != SYSTEM_NAMESPACE {
        return None;
    }
    Some(ResourceKey {
        kind,
        namespace: item.group.clone(),
        name: name.to_string(),
    })
}

/// The object in `content`, or why it is rejected.
fn parse(key: &ResourceKey, content: &str, crypt: Option<&Crypt>) -> Result<Resource, FieldError> {
    let plain = crypt::open(crypt, content).map_err(|e| FieldError::new("", e.to_string()))?;
    Resource::parse(key.kind, plain.as_bytes(), &key.name, &key.namespace)
}

/// One object as last read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    key: ResourceKey,
    md5: String,
}

/// What the gateway holds from Nacos: each config read, by `(group, dataId)`, and the
/// MD5 of each name index (`""` while there is none).
#[derive(Clone, Debug, Default)]
pub struct State {
    items: BTreeMap<(String, String), Entry>,
    names: BTreeMap<Kind, String>,
}

/// Every object of every kind, as a search lists them.
pub async fn list_all(client: &NacosClient) -> Result<Vec<(Kind, ConfigItem)>, NacosError> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let items = client.search(&data_id(kind, "*"), "").await?;
        out.extend(items.into_iter().map(|i| (kind, i)));
    }
    Ok(out)
}

impl State {
    /// Apply a full listing: an upsert for each object new or changed, a delete for
    /// each one gone.
    pub fn relisted(
        &mut self,
        listing: Vec<(Kind, ConfigItem)>,
        crypt: Option<&Crypt>,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (kind, item) in listing {
            let Some(key) = key_of(kind, &item) else {
                continue;
            };
            let id = (item.group.clone(), item.data_id.clone());
            seen.insert(id.clone());
            out.extend(self.read(id, key, Some(&item.content), crypt));
        }
        let gone: Vec<(String, String)> = self
            .items
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(e) = self.items.remove(&id) {
                out.push(Change::Delete {
                    key: e.key,
                    origin: origin(&id.0, &id.1),
                });
            }
        }
        out
    }

    /// Take `content` (`None`: the config is gone) as the config `id` of object `key`:
    /// a change when it differs from what was read.
    fn read(
        &mut self,
        id: (String, String),
        key: ResourceKey,
        content: Option<&str>,
        crypt: Option<&Crypt>,
    ) -> Option<Change> {
        let origin = origin(&id.0, &id.1);
        let Some(content) = content else {
            return self
                .items
                .remove(&id)
                .map(|e| Change::Delete { key: e.key, origin });
        };
        let md5 = md5_hex(content);
        if self.items.get(&id).is_some_and(|e| e.md5 == md5) {
            return None;
        }
        self.items.insert(
            id,
            Entry {
                key: key.clone(),
                md5,
            },
        );
        Some(Change::Upsert {
            result: parse(&key, content, crypt),
            key,
            origin,
        })
    }

    /// What the long poll watches: every object and every kind's name index.
    fn listened(&self) -> Vec<Listened> {
        let mut out: Vec<Listened> = self
            .items
            .iter()
            .map(|((group, data_id), e)| Listened {
                data_id: data_id.clone(),
                group: group.clone(),
                md5: e.md5.clone(),
            })
            .collect();
        out.extend(Kind::ALL.iter().map(|k| Listened {
            data_id: names_id(*k),
            group: DEFAULT_GROUP.to_string(),
            md5: self.names.get(k).cloned().unwrap_or_default(),
        }));
        out
    }

    /// The kind whose name index `(data_id, group)` is.
    fn names_kind(data_id: &str, group: &str) -> Option<Kind> {
        (group == DEFAULT_GROUP)
            .then(|| Kind::ALL.into_iter().find(|k| names_id(*k) == data_id))
            .flatten()
    }

    /// Re-read what the long poll says changed. `Ok(true)` in the second place: a name
    /// index changed, so the kinds are to be listed again.
    async fn reread(
        &mut self,
        client: &NacosClient,
        changed: Vec<(String, String)>,
        crypt: Option<&Crypt>,
    ) -> Result<(Vec<Change>, bool), NacosError> {
        let mut out = Vec::new();
        let mut relist = false;
        for (data_id, group) in changed {
            let content = client.get(&data_id, &group).await?;
            if let Some(kind) = Self::names_kind(&data_id, &group) {
                self.names
                    .insert(kind, content.as_deref().map(md5_hex).unwrap_or_default());
                relist = true;
                continue;
            }
            let id = (group, data_id);
            let Some(key) = self.items.get(&id).map(|e| e.key.clone()) else {
                continue;
            };
            out.extend(self.read(id, key, content.as_deref(), crypt));
        }
        Ok((out, relist))
    }
}

/// The first read: every object, as upserts, and the state to watch from.
pub async fn load(
    client: &NacosClient,
    crypt: Option<&Crypt>,
) -> Result<(State, Vec<Change>), NacosError> {
    let mut state = State::default();
    let changes = state.relisted(list_all(client).await?, crypt);
    Ok((state, changes))
}

/// The first read, retried with backoff until Nacos answers (the gateway cannot serve
/// without its config, and Nacos may start after it).
pub async fn load_retrying(client: &NacosClient, crypt: Option<&Crypt>) -> (State, Vec<Change>) {
    let mut wait = BACKOFF.0;
    loop {
        match load(client, crypt).await {
            Ok(r) => return r,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?wait, "cannot read the config from Nacos; not serving until it answers");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKOFF.1);
            }
        }
    }
}

/// Watch Nacos and send each batch of changes; `state` is what the receiver has.
/// Runs until the receiver is gone.
pub async fn watch(
    client: Arc<NacosClient>,
    opts: NacosOptions,
    mut state: State,
    tx: mpsc::Sender<Vec<Change>>,
) {
    let crypt = opts.crypt.as_ref();
    let mut relist = tokio::time::interval(opts.list_refresh);
    relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    relist.tick().await;
    let mut failing = Failing::default();
    'poll: loop {
        let listened = state.listened();
        let poll = client.listen(&listened, LONG_POLL);
        tokio::pin!(poll);
        loop {
            let changes = tokio::select! {
                answer = &mut poll => {
                    let result = match answer {
                        Ok(changed) if changed.is_empty() => Ok((Vec::new(), false)),
                        Ok(changed) => state.reread(&client, changed, crypt).await,
                        Err(e) => Err(e),
                    };
                    let (mut changes, again) = match result {
                        Ok(r) => {
                            failing.ok();
                            r
                        }
                        Err(e) => {
                            let wait = failing.failed(&e);
                            tokio::time::sleep(wait).await;
                            continue 'poll;
                        }
                    };
                    if again {
                        match list_all(&client).await {
                            Ok(l) => changes.extend(state.relisted(l, crypt)),
                            Err(e) => {
                                failing.failed(&e);
                            }
                        }
                    }
                    if !send(&tx, changes).await {
                        return;
                    }
                    continue 'poll;
                }
                _ = relist.tick() => match list_all(&client).await {
                    Ok(l) => {
                        failing.ok();
                        state.relisted(l, crypt)
                    }
                    Err(e) => {
                        failing.failed(&e);
                        Vec::new()
                    }
                },
            };
            // A relist that found something: the poll must watch the new set.
            let again = !changes.is_empty();
            if !send(&tx, changes).await {
                return;
            }
            if again {
                continue 'poll;
            }
        }
    }
}

/// Send a non-empty batch; false when the receiver is gone.
async fn send(tx: &mpsc::Sender<Vec<Change>>, changes: Vec<Change>) -> bool {
    changes.is_empty() || tx.send(changes).await.is_ok()
}

/// Consecutive failures: logged when they start and end, the wait doubled between.
#[derive(Default)]
struct Failing {
    count: u32,
}

impl Failing {
    fn failed(&mut self, e: &NacosError) -> Duration {
        self.count += 1;
        let wait = BACKOFF
            .0
            .saturating_mul(1 << self.count.min(5).saturating_sub(1))
            .min(BACKOFF.1);
        if self.count == 1 {
            tracing::error!(error = %e, "Nacos unreachable; the current config stays in force, retrying with backoff");
        } else {
            tracing::debug!(error = %e, failures = self.count, "Nacos still unreachable");
        }
        wait
    }

    fn ok(&mut self) {
        if self.count > 0 {
            tracing::info!(failures = self.count, "Nacos answers again");
        }
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(data_id: &str, group: &str, content: &str) -> (Kind, ConfigItem) {
        let kind = Kind::ALL
            .into_iter()
            .find(|k| data_id.starts_with(&format!("{}.", k.folder())))
            .unwrap();
        (
            kind,
            ConfigItem {
                data_id: data_id.into(),
                group: group.into(),
                content: content.into(),
            },
        )
    }

    #[test]
    fn data_ids_name_the_kind_and_the_group_the_namespace() {
        assert_eq!(data_id(Kind::Ingress, "foo"), "ingresses.foo");
        assert_eq!(names_id(Kind::McpBridge), "mcpbridges.__names__");
        let k = |id: &str, g: &str| {
            let (kind, i) = item(id, g, "");
            key_of(kind, &i).map(|k| k.to_string())
        };
        assert_eq!(
            k("ingresses.a.b", "higress-system").as_deref(),
            Some("Ingress higress-system/a.b")
        );
        assert_eq!(k("secrets.tls", "shop").as_deref(), Some("Secret shop/tls"));
        assert_eq!(k("ingresses.__names__", DEFAULT_GROUP), None);
        assert_eq!(k("configmaps.higress-config", "other"), None);
        // A search for `ingresses.*` may also list `ingressesX`: not an Ingress.
        let i = ConfigItem {
            data_id: "ingressesx.a".into(),
            group: "g".into(),
            content: String::new(),
        };
        assert_eq!(key_of(Kind::Ingress, &i), None);
    }

    #[test]
    fn relists_diff_by_md5_and_name_the_data_id() {
        let mut s = State::default();
        let ing = "spec: {}\n";
        let all = s.relisted(
            vec![
                item("ingresses.a", "higress-system", ing),
                item("mcpbridges.default", "higress-system", "spec: [\n"),
            ],
            None,
        );
        assert_eq!(all.len(), 2);
        assert!(
            matches!(&all[1], Change::Upsert { origin, result: Err(e), .. }
            if origin == "nacos:higress-system/mcpbridges.default" && e.message.contains("YAML"))
        );
        // Same content: nothing; one changed, one gone.
        assert!(s
            .relisted(
                vec![
                    item("ingresses.a", "higress-system", ing),
                    item("mcpbridges.default", "higress-system", "spec: [\n"),
                ],
                None
            )
            .is_empty());
        let ch = s.relisted(
            vec![item("mcpbridges.default", "higress-system", "spec: {}\n")],
            None,
        );
        assert!(
            matches!(&ch[..], [Change::Upsert { result: Ok(_), .. }, Change::Delete { key, origin }]
                if key.name == "a" && origin == "nacos:higress-system/ingresses.a"),
            "{ch:?}"
        );
        let l = s.listened();
        assert_eq!(l.len(), 1 + Kind::ALL.len());
        assert_eq!(l[0].md5, md5_hex("spec: {}\n"));
        assert!(l[1..]
            .iter()
            .all(|n| n.group == DEFAULT_GROUP && n.md5.is_empty()));
    }

    #[test]
    fn encrypted_secrets_are_opened_or_rejected() {
        let c = Crypt::new(b"0123456789abcdef".to_vec()).unwrap();
        let secret = "apiVersion: v1\nkind: Secret\ntype: Opaque\nstringData: {a: b}\n";
        let sealed = c.encrypt(secret);
        let mut s = State::default();
        let ch = s.relisted(vec![item("secrets.x", "higress-system", &sealed)], Some(&c));
        assert!(
            matches!(&ch[..], [Change::Upsert { result: Ok(_), .. }]),
            "{ch:?}"
        );
        let mut s = State::default();
        let ch = s.relisted(vec![item("secrets.x", "higress-system", &sealed)], None);
        assert!(matches!(&ch[..], [Change::Upsert { result: Err(e), .. }]
            if e.message.contains("--nacos-encryption-key-file")));
    }
}
