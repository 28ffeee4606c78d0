//! The console's writes when Nacos is the config store, as Higress standalone's
//! api-server writes: the object as YAML (without `resourceVersion`) in data id
//! `<kind-plural>.<name>`, group `higress-system`; its version is the MD5 of the stored
//! content, and a replace publishes with that MD5 as `casMd5`, so Nacos refuses it when
//! someone wrote in between. A create or delete also rewrites the kind's name index
//! (`<kind-plural>.__names__` in `DEFAULT_GROUP`, `<namespace>/<name>` lines, `EMPTY`
//! when none are left), which wakes every reader. Secrets are encrypted when a key is
//! set. Every write is validated first, alone and with everything else Nacos holds.

use serde_json::Value;

use super::store::{
    check_pre, new_problems, to_yaml, validate_one, Precondition, StoreError, Stored,
};
use crate::resources::{Kind, ResourceKey, SYSTEM_NAMESPACE};
use crate::sources::nacos::client::{md5_hex, DEFAULT_GROUP};
use crate::sources::nacos::crypt::{self, Crypt};
use crate::sources::nacos::{self as source, NacosClient, NacosError, NacosOptions};
use crate::validate::Problem;

/// What a name index holds when no object is left (Nacos keeps no empty content).
const EMPTY_NAMES: &str = "EMPTY";

pub struct NacosStore {
    client: NacosClient,
    crypt: Option<Crypt>,
    /// One write at a time from this console: read, check, publish, index.
    lock: tokio::sync::Mutex<()>,
}

fn failed(e: NacosError) -> StoreError {
    StoreError::failed(e)
}

impl NacosStore {
    pub fn new(opts: &NacosOptions) -> Self {
        NacosStore {
            client: opts.client(),
            crypt: opts.crypt.clone(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn group(&self) -> &'static str {
        SYSTEM_NAMESPACE
    }

    /// The stored content of `kind` `name` and the object in it.
    fn stored(&self, kind: Kind, name: &str, content: &str) -> Result<Stored, StoreError> {
        let data_id = source::data_id(kind, name);
        let problem = |m: String| {
            StoreError::Invalid(Problem {
                origin: source::origin(self.group(), &data_id),
                object: format!("{kind} {}/{name}", self.group()),
                error: crate::error::FieldError::new("", m),
            })
        };
        let plain =
            crypt::open(self.crypt.as_ref(), content).map_err(|e| problem(e.to_string()))?;
        let object: Value =
            serde_yaml::from_str(&plain).map_err(|e| problem(format!("invalid YAML: {e}")))?;
        Ok(Stored {
            name: name.to_string(),
            version: md5_hex(content),
            object,
            yaml: plain,
        })
    }

    pub async fn get(&self, kind: Kind, name: &str) -> Result<Option<Stored>, StoreError> {
        let data_id = source::data_id(kind, name);
        match self
            .client
            .get(&data_id, self.group())
            .await
            .map_err(failed)?
        {
            None => Ok(None),
            Some(content) => self.stored(kind, name, &content).map(Some),
        }
    }

    pub async fn list(&self, kind: Kind) -> Result<Vec<Stored>, StoreError> {
        let prefix = format!("{}.", kind.folder());
        let items = self
            .client
            .search(&source::data_id(kind, "*"), self.group())
            .await
            .map_err(failed)?;
        let mut out = Vec::new();
        for i in items {
            let Some(name) = i.data_id.strip_prefix(&prefix) else {
                continue;
            };
            if name.is_empty() || name == source::NAMES_SUFFIX || i.group != self.group() {
                continue;
            }
            match self.stored(kind, name, &i.content) {
                Ok(s) => out.push(s),
                // Listed by name, so it can be fixed.
                Err(StoreError::Invalid(_)) => out.push(Stored {
                    name: name.to_string(),
                    version: md5_hex(&i.content),
                    object: Value::Null,
                    yaml: i.content,
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The problems the change brings to everything Nacos holds.
    async fn new_problems(
        &self,
        key: &ResourceKey,
        change: Option<crate::sources::Change>,
    ) -> Result<Vec<Problem>, StoreError> {
        let (_, before) = source::load(&self.client, self.crypt.as_ref())
            .await
            .map_err(failed)?;
        Ok(new_problems(before, key, change))
    }

    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        mut object: Value,
        pre: Precondition,
    ) -> Result<String, StoreError> {
        let _guard = self.lock.lock().await;
        let group = self.group();
        let data_id = source::data_id(kind, name);
        let origin = source::origin(group, &data_id);
        let current = self.client.get(&data_id, group).await.map_err(failed)?;
        let current_md5 = current.as_deref().map(md5_hex);
        check_pre(current_md5.as_deref(), &pre)?;
        if !object["metadata"].is_object() {
            object["metadata"] = Value::Object(Default::default());
        }
        object["metadata"]["name"] = name.into();
        object["metadata"]["namespace"] = group.into();
        if let Some(meta) = object["metadata"].as_object_mut() {
            // The version is the content's MD5, never stored in it.
            meta.remove("resourceVersion");
            if current.is_none() && !meta.contains_key("creationTimestamp") {
                meta.insert(
                    "creationTimestamp".into(),
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                        .to_string()
                        .into(),
                );
            }
        }
        let text = to_yaml(&object)?;
        let key = ResourceKey {
            kind,
            namespace: group.to_string(),
            name: name.to_string(),
        };
        let result = validate_one(kind, text.as_bytes(), name, group);
        if let Err(error) = &result {
            return Err(StoreError::Invalid(Problem {
                origin,
                object: key.to_string(),
                error: error.clone(),
            }));
        }
        let change = crate::sources::Change::Upsert {
            key: key.clone(),
            origin,
            result,
        };
        if let Some(p) = self
            .new_problems(&key, Some(change))
            .await?
            .into_iter()
            .next()
        {
            return Err(StoreError::Invalid(p));
        }
        let content = match (&self.crypt, kind) {
            (Some(c), Kind::Secret) => c.encrypt(&text),
            _ => text,
        };
        let published = self
            .client
            .publish(&data_id, group, &content, current_md5.as_deref())
            .await;
        match published {
            Ok(true) => {}
            Ok(false) | Err(_) if current_md5.is_some() => {
                // Refused or failed: a conflict when someone wrote in between.
                let now = self.client.get(&data_id, group).await.map_err(failed)?;
                let now_md5 = now.as_deref().map(md5_hex);
                if now_md5 != current_md5 {
                    return Err(StoreError::Conflict {
                        message: "it changed while it was written".into(),
                        current: now_md5,
                    });
                }
                return Err(match published {
                    Err(e) => failed(e),
                    _ => StoreError::failed(format!("Nacos did not take {group}/{data_id}")),
                });
            }
            Ok(false) => {
                return Err(StoreError::failed(format!(
                    "Nacos did not take {group}/{data_id}"
                )))
            }
            Err(e) => return Err(failed(e)),
        }
        if current.is_none() {
            self.index(kind, |names| format!("{names}{group}/{name}\n"))
                .await;
        }
        Ok(md5_hex(&content))
    }

    pub async fn delete(&self, kind: Kind, name: &str, version: &str) -> Result<(), StoreError> {
        let _guard = self.lock.lock().await;
        let group = self.group();
        let data_id = source::data_id(kind, name);
        let current = self.client.get(&data_id, group).await.map_err(failed)?;
        check_pre(
            current.as_deref().map(md5_hex).as_deref(),
            &Precondition::Version(version.into()),
        )?;
        let key = ResourceKey {
            kind,
            namespace: group.to_string(),
            name: name.to_string(),
        };
        if let Some(p) = self.new_problems(&key, None).await?.into_iter().next() {
            return Err(StoreError::Invalid(p));
        }
        if !self.client.delete(&data_id, group).await.map_err(failed)? {
            return Err(StoreError::failed(format!(
                "Nacos did not delete {group}/{data_id}"
            )));
        }
        let line = format!("{group}/{name}\n");
        self.index(kind, |names| {
            let left = names.replace(&line, "");
            if left.is_empty() {
                EMPTY_NAMES.to_string()
            } else {
                left
            }
        })
        .await;
        Ok(())
    }

    /// Rewrite `kind`'s name index with `edit` (at the MD5 read). A failure is logged:
    /// the object is written, and readers find it at their next relist anyway.
    async fn index(&self, kind: Kind, edit: impl FnOnce(&str) -> String) {
        let id = source::names_id(kind);
        let result = async {
            let stored = self
                .client
                .get(&id, DEFAULT_GROUP)
                .await?
                .unwrap_or_default();
            let names = if stored == EMPTY_NAMES { "" } else { &stored };
            let next = edit(names);
            self.client
                .publish(&id, DEFAULT_GROUP, &next, Some(&md5_hex(&stored)))
                .await
        }
        .await;
        if !matches!(result, Ok(true)) {
            let error = result.map_or_else(|e| e.to_string(), |_| "not taken".into());
            tracing::warn!(index = %id, %error, "console: the Nacos name index was not updated; readers find the change at their next relist");
        }
    }
}
