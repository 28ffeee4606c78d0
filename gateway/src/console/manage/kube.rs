//! The console's writes in Kubernetes mode: objects in the gateway's namespace, created,
//! or replaced at the resourceVersion read (the API server refuses a replace of an
//! object changed since: 409, as the console's own check), deleted with that version as
//! a precondition.

use ::kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
    Preconditions,
};
use ::kube::Client;
use serde_json::Value;

use super::store::{to_yaml, validate_one, Precondition, StoreError, Stored};
use crate::resources::Kind;
use crate::validate::Problem;

pub struct KubeStore {
    namespace: String,
    /// Made on first use, on the admin listener's runtime (the client's tasks live there).
    client: tokio::sync::OnceCell<Client>,
}

/// `(group, version, kind, plural)` of the kinds the console writes.
fn api_resource(kind: Kind) -> Option<ApiResource> {
    let (group, version, api_kind, plural) = match kind {
        Kind::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
        Kind::Secret => ("", "v1", "Secret", "secrets"),
        Kind::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses"),
        Kind::McpBridge => ("networking.higress.io", "v1", "McpBridge", "mcpbridges"),
        Kind::WasmPlugin => (
            "extensions.higress.io",
            "v1alpha1",
            "WasmPlugin",
            "wasmplugins",
        ),
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, api_kind),
        plural,
    ))
}

/// The API server's answer as a store error: its 409 is a conflict.
fn api_error(e: ::kube::Error) -> StoreError {
    match e {
        ::kube::Error::Api(s) if s.code == 409 => StoreError::Conflict {
            message: s.message,
            current: None,
        },
        ::kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
            StoreError::Failed(format!("the API server refused the object: {}", s.message))
        }
        e => StoreError::Failed(format!("Kubernetes API: {e}")),
    }
}

impl KubeStore {
    pub fn new(namespace: String) -> Self {
        KubeStore {
            namespace,
            client: tokio::sync::OnceCell::new(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    async fn api(&self, kind: Kind) -> Result<Api<DynamicObject>, StoreError> {
        let ar = api_resource(kind)
            .ok_or_else(|| StoreError::failed(format!("{kind}: not written by the console")))?;
        let client = self
            .client
            .get_or_try_init(Client::try_default)
            .await
            .map_err(|e| StoreError::failed(format!("no Kubernetes client: {e}")))?;
        Ok(Api::namespaced_with(client.clone(), &self.namespace, &ar))
    }

    fn stored(kind: Kind, obj: DynamicObject) -> Result<Stored, StoreError> {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let version = obj.metadata.resource_version.clone().unwrap_or_default();
        let mut object = serde_json::to_value(&obj).map_err(StoreError::failed)?;
        if object.get("apiVersion").is_none() {
            if let Some(ar) = api_resource(kind) {
                object["apiVersion"] = ar.api_version.into();
                object["kind"] = ar.kind.into();
            }
        }
        // Bookkeeping of the API server's, not the object.
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        let yaml = to_yaml(&object)?;
        Ok(Stored {
            name,
            version,
            object,
            yaml,
        })
    }

    pub async fn get(&self, kind: Kind, name: &str) -> Result<Option<Stored>, StoreError> {
        let api = self.api(kind).await?;
        match api.get_opt(name).await.map_err(api_error)? {
            Some(o) => Self::stored(kind, o).map(Some),
            None => Ok(None),
        }
    }

    pub async fn list(&self, kind: Kind) -> Result<Vec<Stored>, StoreError> {
        let api = self.api(kind).await?;
        let list = api.list(&ListParams::default()).await.map_err(api_error)?;
        list.items
            .into_iter()
            .map(|o| Self::stored(kind, o))
            .collect()
    }

    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        mut object: Value,
        pre: Precondition,
    ) -> Result<String, StoreError> {
        let origin = format!("{kind} {}/{name}", self.namespace);
        object["metadata"]["name"] = name.into();
        object["metadata"]["namespace"] = self.namespace.clone().into();
        let bytes = serde_json::to_vec(&object).map_err(StoreError::failed)?;
        if let Err(error) = validate_one(kind, &bytes, name, &self.namespace) {
            return Err(StoreError::Invalid(Problem {
                origin: origin.clone(),
                object: origin,
                error,
            }));
        }
        let api = self.api(kind).await?;
        let current = api.get_opt(name).await.map_err(api_error)?;
        let current_version = current
            .as_ref()
            .and_then(|c| c.metadata.resource_version.clone());
        let pp = PostParams::default();
        let written = match (&pre, &current_version) {
            (Precondition::Absent, None) => {
                if let Some(meta) = object["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                let obj: DynamicObject =
                    serde_json::from_value(object).map_err(StoreError::failed)?;
                api.create(&pp, &obj).await
            }
            (Precondition::Version(v), Some(c)) if v == c => {
                object["metadata"]["resourceVersion"] = v.clone().into();
                let obj: DynamicObject =
                    serde_json::from_value(object).map_err(StoreError::failed)?;
                api.replace(name, &pp, &obj).await
            }
            (_, current) => {
                return Err(StoreError::Conflict {
                    message: match (&pre, current) {
                        (_, None) => "it no longer exists".into(),
                        (Precondition::Absent, Some(_)) => "it already exists".into(),
                        (Precondition::Version(v), Some(c)) => {
                            format!("version {v} was asked, the stored one is {c}")
                        }
                    },
                    current: current.clone(),
                })
            }
        };
        let written = written.map_err(api_error);
        match written {
            Ok(o) => Ok(o.metadata.resource_version.unwrap_or_default()),
            Err(StoreError::Conflict { message, .. }) => Err(StoreError::Conflict {
                message,
                current: self.get(kind, name).await?.map(|s| s.version),
            }),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(&self, kind: Kind, name: &str, version: &str) -> Result<(), StoreError> {
        let api = self.api(kind).await?;
        let current = api
            .get_opt(name)
            .await
            .map_err(api_error)?
            .and_then(|c| c.metadata.resource_version);
        if current.as_deref() != Some(version) {
            return Err(StoreError::Conflict {
                message: match &current {
                    None => "it no longer exists".into(),
                    Some(c) => format!("version {version} was asked, the stored one is {c}"),
                },
                current,
            });
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(version.to_string()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(name, &dp).await.map_err(api_error).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ::kube::Error {
        ::kube::Error::Api(Box::new(::kube::core::Status {
            code,
            message: "the object has been modified".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn the_api_servers_409_is_a_conflict_and_422_a_refusal() {
        assert!(
            matches!(api_error(status(409)), StoreError::Conflict { ref message, current: None } if message == "the object has been modified")
        );
        assert!(
            matches!(api_error(status(422)), StoreError::Failed(ref m) if m.starts_with("the API server refused"))
        );
        assert!(matches!(api_error(status(500)), StoreError::Failed(_)));
        assert_eq!(
            api_resource(Kind::McpBridge).unwrap().api_version,
            "networking.higress.io/v1"
        );
        assert!(api_resource(Kind::Service).is_none());
    }
}
