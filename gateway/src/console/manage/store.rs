//! Reading and writing whole objects where the config lives: the config directory
//! (`DIR/<kind-plural>/<name>.yaml`, written atomically by `atomic_file`) or
//! the Kubernetes API (create, or replace at the resourceVersion read). Every write is
//! validated first by the code `gateway validate` and the config sources use; a rejected
//! write changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::kube::KubeStore;
use super::nacos::NacosStore;
use super::Store;
use crate::error::FieldError;
use crate::resources::{Kind, Resource, ResourceKey, SYSTEM_NAMESPACE};
use crate::sources::file::{collect, object_name, Scan};
use crate::sources::Change;
use crate::validate::{check, check_object, Problem};

/// One object as stored.
#[derive(Clone, Debug)]
pub struct Stored {
    pub name: String,
    /// File mode: the first 16 hex digits of the SHA-1 of the file's bytes; Kubernetes
    /// mode: `metadata.resourceVersion`.
    pub version: String,
    /// The object (JSON of the YAML), as stored.
    pub object: Value,
    /// The object as stored: the file's text, or the API object as YAML.
    pub yaml: String,
}

/// What a write expects to find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// No such object yet: the write creates it.
    Absent,
    /// The object at this version.
    Version(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object is not at the version the write expected (or exists, or is gone).
    #[error("stale: {message}")]
    Conflict {
        message: String,
        current: Option<String>,
    },
    /// The object (or the directory with it) does not validate.
    #[error("{}", .0.line())]
    Invalid(Problem),
    /// Reading or writing failed (I/O, the API server).
    #[error("{0}")]
    Failed(String),
}

impl StoreError {
    pub(super) fn failed(what: impl std::fmt::Display) -> Self {
        StoreError::Failed(what.to_string())
    }
}

/// The store of a console: the config directory or the Kubernetes API.
pub enum Backend {
    Files(FileStore),
    Kube(KubeStore),
    Nacos(NacosStore),
}

impl Backend {
    pub fn new(store: &Arc<Store>) -> Backend {
        match &**store {
            Store::Files(dir) => Backend::Files(FileStore {
                dir: dir.clone(),
                lock: tokio::sync::Mutex::new(()),
            }),
            Store::Kube { namespace } => Backend::Kube(KubeStore::new(namespace.clone())),
            Store::Nacos(opts) => Backend::Nacos(NacosStore::new(opts)),
        }
    }

    /// The namespace objects are written in.
    pub fn namespace(&self) -> &str {
        match self {
            Backend::Files(_) | Backend::Nacos(_) => SYSTEM_NAMESPACE,
            Backend::Kube(k) => k.namespace(),
        }
    }

    pub fn writable(&self) -> bool {
        match self {
            Backend::Files(f) => f.writable(),
            Backend::Kube(_) | Backend::Nacos(_) => true,
        }
    }

    pub async fn get(&self, kind: Kind, name: &str) -> Result<Option<Stored>, StoreError> {
        match self {
            Backend::Files(f) => f.get(kind, name),
            Backend::Kube(k) => k.get(kind, name).await,
            Backend::Nacos(n) => n.get(kind, name).await,
        }
    }

    pub async fn list(&self, kind: Kind) -> Result<Vec<Stored>, StoreError> {
        match self {
            Backend::Files(f) => f.list(kind),
            Backend::Kube(k) => k.list(kind).await,
            Backend::Nacos(n) => n.list(kind).await,
        }
    }

    /// Validate `object` and write it as `kind` `name` if the store is as `pre` says.
    /// Returns the new version.
    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        object: Value,
        pre: Precondition,
    ) -> Result<String, StoreError> {
        match self {
            Backend::Files(f) => f.put(kind, name, object, pre).await,
            Backend::Kube(k) => k.put(kind, name, object, pre).await,
            Backend::Nacos(n) => n.put(kind, name, object, pre).await,
        }
    }

    /// Delete `kind` `name` if it is at `version`.
    pub async fn delete(&self, kind: Kind, name: &str, version: &str) -> Result<(), StoreError> {
        match self {
            Backend::Files(f) => f.delete(kind, name, version).await,
            Backend::Kube(k) => k.delete(kind, name, version).await,
            Backend::Nacos(n) => n.delete(kind, name, version).await,
        }
    }
}

/// An object's file version: 16 hex digits of the SHA-1 of its bytes.
pub fn file_version(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    let d = sha1::Sha1::digest(bytes);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The object `key` parsed and checked as a config source would take it, or why not.
pub fn validate_one(
    kind: Kind,
    bytes: &[u8],
    name: &str,
    namespace: &str,
) -> Result<Resource, FieldError> {
    let res = Resource::parse(kind, bytes, name, namespace)?;
    check_object(&res)?;
    Ok(res)
}

pub struct FileStore {
    dir: PathBuf,
    /// One write at a time: read, check the version, validate, rename.
    lock: tokio::sync::Mutex<()>,
}

/// The namespace an object of `kind` is keyed in, in a directory (as the file source
/// keys it).
fn file_namespace(kind: Kind, object: &Value) -> String {
    if !kind.keeps_namespace() {
        return SYSTEM_NAMESPACE.to_string();
    }
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(SYSTEM_NAMESPACE)
        .to_string()
}

impl FileStore {
    fn writable(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(self.dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: a valid NUL-terminated path; access(2) only reads it.
        self.dir.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0
    }

    /// The file of `kind` `name`: where it is (a folder below the kind's, `.yml`), or
    /// where a new one goes.
    fn path_of(&self, kind: Kind, name: &str) -> (PathBuf, bool) {
        let folder = self.dir.join(kind.folder());
        for ext in ["yaml", "yml"] {
            let p = folder.join(format!("{name}.{ext}"));
            if p.is_file() {
                return (p, true);
            }
        }
        let mut paths = Vec::new();
        collect(&folder, &mut paths);
        paths.sort();
        match paths
            .into_iter()
            .find(|p| object_name(p).as_deref() == Some(name))
        {
            Some(p) => (p, true),
            None => (folder.join(format!("{name}.yaml")), false),
        }
    }

    fn read(&self, path: &Path, name: &str) -> Result<Stored, StoreError> {
        let bytes = std::fs::read(path)
            .map_err(|e| StoreError::failed(format!("{}: {e}", self.origin(path))))?;
        let object: Value = serde_yaml::from_slice(&bytes).map_err(|e| {
            StoreError::Invalid(Problem {
                origin: self.origin(path),
                object: name.to_string(),
                error: FieldError::new("", format!("invalid YAML: {e}")),
            })
        })?;
        Ok(Stored {
            name: name.to_string(),
            version: file_version(&bytes),
            object,
            yaml: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    fn origin(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn get(&self, kind: Kind, name: &str) -> Result<Option<Stored>, StoreError> {
        let (path, exists) = self.path_of(kind, name);
        if !exists {
            return Ok(None);
        }
        match self.read(&path, name) {
            // Removed since it was found.
            Err(StoreError::Failed(_)) if !path.exists() => Ok(None),
            r => r.map(Some),
        }
    }

    fn list(&self, kind: Kind) -> Result<Vec<Stored>, StoreError> {
        let mut paths = Vec::new();
        collect(&self.dir.join(kind.folder()), &mut paths);
        paths.sort();
        let mut out: Vec<Stored> = Vec::new();
        for p in paths {
            let Some(name) = object_name(&p) else {
                continue;
            };
            match self.read(&p, &name) {
                Ok(s) => {
                    // Two files naming one object: the later wins, as the source reads.
                    out.retain(|o| o.name != name);
                    out.push(s);
                }
                // A file that is not YAML is listed by name, so it can be fixed.
                Err(StoreError::Invalid(_)) => {
                    let bytes = std::fs::read(&p).unwrap_or_default();
                    out.push(Stored {
                        name,
                        version: file_version(&bytes),
                        object: Value::Null,
                        yaml: String::from_utf8_lossy(&bytes).into_owned(),
                    });
                }
                Err(_) => {}
            }
        }
        Ok(out)
    }

    fn check_pre(current: Option<&Stored>, pre: &Precondition) -> Result<(), StoreError> {
        check_pre(current.map(|c| c.version.as_str()), pre)
    }

    /// The problems `change` (an upsert of `key`, or its delete when `None`) brings to
    /// the directory: those of the directory with it that the directory without it does
    /// not have. A problem elsewhere that was already there does not block the write.
    fn new_problems(
        &self,
        key: &ResourceKey,
        change: Option<Change>,
    ) -> Result<Vec<Problem>, StoreError> {
        let mut scan = Scan::read(&self.dir).map_err(StoreError::failed)?;
        Ok(new_problems(scan.all(), key, change))
    }

    async fn put(
        &self,
        kind: Kind,
        name: &str,
        object: Value,
        pre: Precondition,
    ) -> Result<String, StoreError> {
        let _guard = self.lock.lock().await;
        let (path, _) = self.path_of(kind, name);
        let current = self.get(kind, name)?;
        Self::check_pre(current.as_ref(), &pre)?;
        let text = to_yaml(&object)?;
        let namespace = file_namespace(kind, &object);
        let key = ResourceKey {
            kind,
            namespace: namespace.clone(),
            name: name.to_string(),
        };
        let origin = self.origin(&path);
        let result = validate_one(kind, text.as_bytes(), name, &namespace);
        if let Err(error) = &result {
            return Err(StoreError::Invalid(Problem {
                origin,
                object: key.to_string(),
                error: error.clone(),
            }));
        }
        // Across objects (a canary without its main route ...): the directory as it
        // would be with this file.
        let problems = self.new_problems(
            &key,
            Some(Change::Upsert {
                key: key.clone(),
                origin,
                result,
            }),
        )?;
        if let Some(p) = problems.into_iter().next() {
            return Err(StoreError::Invalid(p));
        }
        crate::atomic_file::write(&path, text.as_bytes())
            .map_err(|e| StoreError::failed(format!("{}: {e}", self.origin(&path))))?;
        Ok(file_version(text.as_bytes()))
    }

    async fn delete(&self, kind: Kind, name: &str, version: &str) -> Result<(), StoreError> {
        let _guard = self.lock.lock().await;
        let current = self.get(kind, name)?;
        Self::check_pre(current.as_ref(), &Precondition::Version(version.into()))?;
        let (path, _) = self.path_of(kind, name);
        let namespace = file_namespace(kind, &current.map(|c| c.object).unwrap_or_default());
        let key = ResourceKey {
            kind,
            namespace,
            name: name.to_string(),
        };
        if let Some(p) = self.new_problems(&key, None)?.into_iter().next() {
            return Err(StoreError::Invalid(p));
        }
        std::fs::remove_file(&path)
            .and_then(|_| crate::atomic_file::sync_parent(&path))
            .map_err(|e| StoreError::failed(format!("{}: {e}", self.origin(&path))))
    }
}

/// Compare the stored version (`None`: no such object) with what the write expects.
pub(super) fn check_pre(current: Option<&str>, pre: &Precondition) -> Result<(), StoreError> {
    match (current, pre) {
        (None, Precondition::Absent) => Ok(()),
        (Some(c), Precondition::Version(v)) if c == v => Ok(()),
        (Some(c), Precondition::Absent) => Err(StoreError::Conflict {
            message: "it already exists".into(),
            current: Some(c.to_string()),
        }),
        (Some(c), Precondition::Version(v)) => Err(StoreError::Conflict {
            message: format!("version {v} was asked, the stored one is {c}"),
            current: Some(c.to_string()),
        }),
        (None, Precondition::Version(_)) => Err(StoreError::Conflict {
            message: "it no longer exists".into(),
            current: None,
        }),
    }
}

/// The problems `change` (an upsert of `key`, or its delete when `None`) brings to the
/// objects `before` (every upsert of a full read): those of the objects with it that
/// they do not have without it. A problem elsewhere that was already there does not
/// block the write.
pub(super) fn new_problems(
    before: Vec<Change>,
    key: &ResourceKey,
    change: Option<Change>,
) -> Vec<Problem> {
    let mut after: Vec<Change> = before
        .iter()
        .filter(|c| !matches!(c, Change::Upsert { key: k, .. } if k == key))
        .cloned()
        .collect();
    after.extend(change);
    let old = check(&before);
    check(&after)
        .into_iter()
        .filter(|p| !old.contains(p))
        .collect()
}

/// YAML a human reads: block style, keys in the order Kubernetes manifests use
/// (`apiVersion`, `kind`, `metadata`, then the body; a name before the rest), the other
/// keys alphabetical.
pub fn to_yaml(object: &Value) -> Result<String, StoreError> {
    serde_yaml::to_string(&ordered(object)).map_err(StoreError::failed)
}

/// Keys that lead a map, in this order.
const LEADING_KEYS: [&str; 15] = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "type",
    "host",
    "path",
    "pathType",
    "domain",
    "port",
    "labels",
    "annotations",
    "spec",
    "data",
];

fn ordered(v: &Value) -> serde_yaml::Value {
    match v {
        Value::Object(m) => {
            let rank = |k: &str| {
                LEADING_KEYS
                    .iter()
                    .position(|l| *l == k)
                    .unwrap_or(usize::MAX)
            };
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
            let mut out = serde_yaml::Mapping::new();
            for k in keys {
                out.insert(
                    serde_yaml::Value::String(k.clone()),
                    ordered(&m[k.as_str()]),
                );
            }
            serde_yaml::Value::Mapping(out)
        }
        Value::Array(a) => serde_yaml::Value::Sequence(a.iter().map(ordered).collect()),
        other => serde_yaml::to_value(other).unwrap_or(serde_yaml::Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Backend {
        Backend::new(&Arc::new(Store::Files(dir.to_path_buf())))
    }

    #[test]
    fn versions_are_a_hash_of_the_bytes() {
        let v = file_version(b"a: b\n");
        assert_eq!(v.len(), 16);
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(v, file_version(b"a: b\n"));
        assert_ne!(v, file_version(b"a: c\n"));
    }

    #[tokio::test]
    async fn writes_check_versions_validate_and_rename() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let cm = |v: &str| {
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "domain-a.com"}, "data": {"domain": "a.com", "enableHttps": v}})
        };
        let v1 = s
            .put(
                Kind::ConfigMap,
                "domain-a.com",
                cm("off"),
                Precondition::Absent,
            )
            .await
            .unwrap();
        let path = dir.path().join("configmaps/domain-a.com.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: domain-a.com\n"),
            "{text}"
        );
        assert!(text.contains("enableHttps: off"), "{text}");
        assert_eq!(file_version(text.as_bytes()), v1);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("configmaps"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["domain-a.com.yaml"], "no temporary file left");
        // Created again, or at another version: refused, nothing written.
        let e = s
            .put(
                Kind::ConfigMap,
                "domain-a.com",
                cm("off"),
                Precondition::Absent,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict { current: Some(ref c), .. } if *c == v1));
        let e = s
            .put(
                Kind::ConfigMap,
                "domain-a.com",
                cm("off"),
                Precondition::Version("0".into()),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }));
        // Invalid: the field is named, the file is as it was.
        let e = s
            .put(
                Kind::ConfigMap,
                "domain-a.com",
                cm("sometimes"),
                Precondition::Version(v1.clone()),
            )
            .await
            .unwrap_err();
        let StoreError::Invalid(p) = e else { panic!() };
        assert_eq!(p.error.path, "data.enableHttps");
        assert_eq!(p.origin, "configmaps/domain-a.com.yaml");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let got = s
            .get(Kind::ConfigMap, "domain-a.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.version, v1);
        s.delete(Kind::ConfigMap, "domain-a.com", &v1)
            .await
            .unwrap();
        assert!(!path.exists());
        assert!(s
            .get(Kind::ConfigMap, "domain-a.com")
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn an_old_problem_elsewhere_does_not_block_a_write_a_new_one_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ingresses")).unwrap();
        std::fs::write(dir.path().join("ingresses/broken.yaml"), "spec: [\n").unwrap();
        let s = store(dir.path());
        let ing = |canary: bool| {
            let mut a = serde_json::json!({"higress.io/destination": "x.static"});
            if canary {
                a["higress.io/canary"] = "true".into();
            }
            serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "r", "annotations": a},
                "spec": {"rules": [{"host": "a.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"resource": {"apiGroup": "networking.higress.io", "kind": "McpBridge", "name": "default"}}}]}}]}})
        };
        s.put(Kind::Ingress, "r", ing(false), Precondition::Absent)
            .await
            .unwrap();
        // A canary with no main Ingress for its host and path: a problem across objects.
        let e = s
            .put(Kind::Ingress, "c", ing(true), Precondition::Absent)
            .await;
        assert!(e.is_ok(), "r is its main: {e:?}");
        let v = s.get(Kind::Ingress, "r").await.unwrap().unwrap().version;
        let e = s.delete(Kind::Ingress, "r", &v).await.unwrap_err();
        let StoreError::Invalid(p) = e else { panic!() };
        assert_eq!(p.object, "Ingress higress-system/c", "{p:?}");
    }
}
