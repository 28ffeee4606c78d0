//! Managing the config from the console: `/api/console/resources/<kind>[/<name>]` for
//! the kinds `service-sources`, `domains`, `routes`, `plugins` and `global`
//! (docs/console.md has the API). Items are mapped onto the Higress objects
//! (`items.rs`), validated by the code every config source uses and written where the
//! config lives (`store.rs`: files, `kube.rs`: the API); the gateway then applies them
//! through its usual watcher.
//!
//! Writes are optimistic: `If-Match: <version>` must name the stored version of an
//! object that exists (else 409 with the current version); a new object is written with
//! no `If-Match` (or `*`) and is refused when it exists already.

pub mod items;
mod kube;
mod nacos;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use http::{Method, Response};
use serde_json::{json, Value};

use crate::admin::{percent_decode, AdminRequest};
use crate::resources::configmap::HIGRESS_CONFIG_NAME;
use crate::resources::mcpbridge::DEFAULT_MCPBRIDGE;
use crate::resources::Kind;

use super::auth::Session;
use super::json;
use items::ItemError;
use store::{Backend, Precondition, StoreError, Stored};

/// Where the config lives, and so where the console writes.
pub enum Store {
    /// The config directory (Higress standalone layout).
    Files(PathBuf),
    /// The Kubernetes API (the client inferred as the config source's is); objects in
    /// the gateway's namespace.
    Kube { namespace: String },
    /// Nacos (Higress standalone's layout); objects in the group `higress-system`.
    Nacos(crate::sources::nacos::NacosOptions),
}

const PREFIX: &str = "/api/console/resources";

/// The console's kinds of item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemKind {
    ServiceSources,
    Domains,
    Routes,
    Plugins,
    Global,
}

impl ItemKind {
    const ALL: [ItemKind; 5] = [
        ItemKind::ServiceSources,
        ItemKind::Domains,
        ItemKind::Routes,
        ItemKind::Plugins,
        ItemKind::Global,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ItemKind::ServiceSources => "service-sources",
            ItemKind::Domains => "domains",
            ItemKind::Routes => "routes",
            ItemKind::Plugins => "plugins",
            ItemKind::Global => "global",
        }
    }

    fn parse(s: &str) -> Option<ItemKind> {
        ItemKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind of object the items are stored in.
    fn object_kind(self) -> Kind {
        match self {
            ItemKind::ServiceSources => Kind::McpBridge,
            ItemKind::Domains | ItemKind::Global => Kind::ConfigMap,
            ItemKind::Routes => Kind::Ingress,
            ItemKind::Plugins => Kind::WasmPlugin,
        }
    }

    /// The object an item named `name` lives in.
    fn object_name(self, name: &str) -> String {
        match self {
            ItemKind::ServiceSources => DEFAULT_MCPBRIDGE.to_string(),
            ItemKind::Domains => items::domain_configmap(name),
            ItemKind::Global => HIGRESS_CONFIG_NAME.to_string(),
            ItemKind::Routes | ItemKind::Plugins => name.to_string(),
        }
    }
}

/// A console error: `{"error", "field", "object", "file"}` (and `item_field`, the field
/// of the item the page edits, when it is known).
#[derive(Debug)]
struct Failure(Box<FailureInfo>);

#[derive(Debug, Default)]
struct FailureInfo {
    status: u16,
    error: String,
    field: Option<String>,
    object: Option<String>,
    file: Option<String>,
    item_field: Option<String>,
    /// A 409's current version.
    version: Option<Option<String>>,
}

impl std::ops::Deref for Failure {
    type Target = FailureInfo;
    fn deref(&self) -> &FailureInfo {
        &self.0
    }
}

impl std::ops::DerefMut for Failure {
    fn deref_mut(&mut self) -> &mut FailureInfo {
        &mut self.0
    }
}

impl Failure {
    fn new(status: u16, error: impl Into<String>) -> Self {
        Failure(Box::new(FailureInfo {
            status,
            error: error.into(),
            ..FailureInfo::default()
        }))
    }

    fn item(e: ItemError) -> Self {
        let field = (!e.field.is_empty()).then_some(e.field);
        Failure(Box::new(FailureInfo {
            status: 400,
            error: match &field {
                Some(f) => format!("{f}: {}", e.message),
                None => e.message,
            },
            item_field: field.clone(),
            field,
            ..FailureInfo::default()
        }))
    }

    fn stale(message: impl std::fmt::Display, current: Option<String>) -> Self {
        Failure(Box::new(FailureInfo {
            status: 409,
            error: format!("stale: {message}"),
            version: Some(current),
            ..FailureInfo::default()
        }))
    }

    fn store(e: StoreError, kind: ItemKind, files: bool) -> Self {
        match e {
            StoreError::Conflict { message, current } => Failure::stale(message, current),
            StoreError::Invalid(p) => Failure(Box::new(FailureInfo {
                status: 400,
                error: format!("{}: {}", p.object, p.error.located()),
                item_field: items::item_field(kind.as_str(), &p.error.path),
                field: Some(p.error.path),
                object: Some(p.object),
                file: files.then_some(p.origin),
                version: None,
            })),
            StoreError::Failed(m) => Failure::new(500, m),
        }
    }

    fn response(self) -> Response<Vec<u8>> {
        let f = *self.0;
        let mut v = json!({
            "error": f.error,
            "field": f.field,
            "object": f.object,
            "file": f.file,
        });
        if let Some(field) = f.item_field {
            v["item_field"] = field.into();
        }
        if let Some(version) = f.version {
            v["version"] = version.into();
        }
        json(f.status, &v)
    }
}

type Answer = Result<Response<Vec<u8>>, Failure>;

/// What `If-Match` says.
#[derive(Debug, PartialEq, Eq)]
enum IfMatch {
    /// Absent or `*`: a new object.
    Any,
    Version(String),
}

fn if_match(req: &AdminRequest) -> IfMatch {
    match req.header(http::header::IF_MATCH).map(str::trim) {
        None | Some("") | Some("*") => IfMatch::Any,
        Some(v) => {
            let v = v.strip_prefix("W/").unwrap_or(v);
            IfMatch::Version(v.trim_matches('"').to_string())
        }
    }
}

/// Whether the request may write: an existing item (`exists`) needs its stored version
/// (`current`, the version of the object holding it); a new one none, or the holding
/// object's. Returns what the store must still find.
fn precondition(
    exists: bool,
    current: Option<&str>,
    asked: &IfMatch,
) -> Result<Precondition, Failure> {
    match (exists, asked) {
        (true, IfMatch::Version(v)) if Some(v.as_str()) == current => {}
        (true, IfMatch::Any) => {
            return Err(Failure::stale(
                "it exists already: send If-Match with its version",
                current.map(str::to_string),
            ))
        }
        (false, IfMatch::Any) => {}
        (false, IfMatch::Version(v)) if Some(v.as_str()) == current => {}
        (_, IfMatch::Version(v)) => {
            return Err(Failure::stale(
                format!(
                    "version {v} was asked, the stored one is {}",
                    current.unwrap_or("none (no such object)")
                ),
                current.map(str::to_string),
            ))
        }
    }
    Ok(match current {
        Some(v) => Precondition::Version(v.to_string()),
        None => Precondition::Absent,
    })
}

/// A Kubernetes object name (RFC 1123 subdomain): it is also the file's name.
fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..")
}

/// A registry name: one DNS label, since its hosts are `<name>.<type>`.
fn valid_registry_name(name: &str) -> bool {
    valid_object_name(name) && name.len() <= 63 && !name.contains('.')
}

pub struct Manager {
    backend: Backend,
}

impl Manager {
    pub fn new(store: Arc<Store>) -> Self {
        Manager {
            backend: Backend::new(&store),
        }
    }

    /// Whether writes are possible at all.
    pub fn writable(&self) -> bool {
        self.backend.writable()
    }

    fn files(&self) -> bool {
        matches!(self.backend, Backend::Files(_) | Backend::Nacos(_))
    }

    /// `(kind, name)` of a resources path; `None` when the path is not one.
    fn target(path: &str) -> Option<Result<(ItemKind, Option<String>), Failure>> {
        let rest = path.strip_prefix(PREFIX)?;
        let rest = match rest {
            "" | "/" => return Some(Err(Failure::new(404, "name a kind: /api/console/resources/<service-sources|domains|routes|plugins|global>"))),
            r => r.strip_prefix('/')?,
        };
        let (kind, name) = match rest.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (rest, None),
        };
        let Some(kind) = ItemKind::parse(kind) else {
            return Some(Err(Failure::new(404, format!("no kind {kind:?}"))));
        };
        let name = match name.filter(|n| !n.is_empty()) {
            None => None,
            Some(n) => match percent_decode(n) {
                Some(n) if !n.contains('/') => Some(n),
                _ => return Some(Err(Failure::new(404, format!("no item {n:?}")))),
            },
        };
        Some(Ok((kind, name)))
    }

    pub async fn read(&self, req: &AdminRequest) -> Option<Response<Vec<u8>>> {
        let answer = match Self::target(&req.path)? {
            Err(f) => Err(f),
            Ok((kind, None)) => self.list(kind).await,
            Ok((kind, Some(name))) => self.one(kind, &name).await,
        };
        Some(answer.unwrap_or_else(Failure::response))
    }

    pub async fn write(&self, req: &AdminRequest, session: &Session) -> Option<Response<Vec<u8>>> {
        let answer = match Self::target(&req.path)? {
            Err(f) => Err(f),
            Ok((_, None)) => Err(Failure::new(
                405,
                "write one item: PUT or DELETE /api/console/resources/<kind>/<name>",
            )),
            Ok((kind, Some(name))) => match req.method {
                Method::PUT => self.put(kind, &name, req, session).await,
                Method::DELETE => self.delete(kind, &name, req, session).await,
                _ => Err(Failure::new(405, "use PUT or DELETE")),
            },
        };
        Some(answer.unwrap_or_else(Failure::response))
    }

    async fn get(&self, kind: ItemKind, name: &str) -> Result<Option<Stored>, Failure> {
        self.backend
            .get(kind.object_kind(), &kind.object_name(name))
            .await
            .map_err(|e| Failure::store(e, kind, self.files()))
    }

    async fn list(&self, kind: ItemKind) -> Answer {
        let fail = |e| Failure::store(e, kind, self.files());
        let mut out = Vec::new();
        let with = |name: &str, version: &str, item: Value| {
            let mut v = item;
            if !v.is_object() {
                v = json!({"error": "the stored object is not valid YAML"});
            }
            v["name"] = name.into();
            v["version"] = version.into();
            v
        };
        match kind {
            ItemKind::ServiceSources => {
                if let Some(b) = self.get(kind, "").await? {
                    for r in items::registries(&b.object) {
                        let name = r["name"].as_str().unwrap_or("").to_string();
                        out.push(with(&name, &b.version, r));
                    }
                }
            }
            ItemKind::Global => {
                let cm = self.get(kind, "").await?;
                let item =
                    items::tracing_item(cm.as_ref().map(|c| &c.object)).map_err(Failure::item)?;
                let mut v = with(items::TRACING, "", item);
                v["version"] = cm.map(|c| c.version).into();
                out.push(v);
            }
            _ => {
                for s in self.backend.list(kind.object_kind()).await.map_err(fail)? {
                    let (name, item) = match kind {
                        ItemKind::Domains => {
                            let Some(host) = items::domain_host(&s.name) else {
                                continue;
                            };
                            let item = (!s.object.is_null()).then(|| items::domain_item(&s.object));
                            let name = item
                                .as_ref()
                                .and_then(|i| i["name"].as_str().map(str::to_string))
                                .unwrap_or(host);
                            (name, item)
                        }
                        ItemKind::Routes => (
                            s.name.clone(),
                            (!s.object.is_null()).then(|| items::route_item(&s.object)),
                        ),
                        _ => (
                            s.name.clone(),
                            (!s.object.is_null()).then(|| items::plugin_item(&s.object)),
                        ),
                    };
                    out.push(with(&name, &s.version, item.unwrap_or(Value::Null)));
                }
            }
        }
        Ok(json(200, &json!({ "items": out })))
    }

    async fn one(&self, kind: ItemKind, name: &str) -> Answer {
        let stored = self.get(kind, name).await?;
        let not_found = || Failure::new(404, format!("no {} {name:?}", kind.as_str()));
        let item = match kind {
            ItemKind::Global => {
                if name != items::TRACING {
                    return Err(not_found());
                }
                items::tracing_item(stored.as_ref().map(|s| &s.object)).map_err(Failure::item)?
            }
            _ => {
                let Some(s) = &stored else {
                    return Err(not_found());
                };
                match kind {
                    ItemKind::ServiceSources => {
                        items::registry_named(&s.object, name).ok_or_else(not_found)?
                    }
                    ItemKind::Domains => items::domain_item(&s.object),
                    ItemKind::Routes => items::route_item(&s.object),
                    _ => items::plugin_item(&s.object),
                }
            }
        };
        Ok(json(
            200,
            &json!({
                "name": name,
                "version": stored.as_ref().map(|s| &s.version),
                "item": item,
                "yaml": stored.as_ref().map_or("", |s| s.yaml.as_str()),
            }),
        ))
    }

    fn check_name(kind: ItemKind, name: &str) -> Result<(), Failure> {
        let ok = match kind {
            ItemKind::ServiceSources => valid_registry_name(name),
            ItemKind::Domains => valid_object_name(&items::domain_configmap(name)),
            ItemKind::Global => name == items::TRACING,
            _ => valid_object_name(name),
        };
        if ok {
            return Ok(());
        }
        let mut f = Failure::new(
            400,
            match kind {
                ItemKind::Global => format!("no global item {name:?}; the items are: tracing"),
                ItemKind::ServiceSources => format!("name {name:?}: expected lowercase letters, digits and '-' (a DNS label)"),
                _ => format!("name {name:?}: expected lowercase letters, digits, '-' and '.' (a Kubernetes object name)"),
            },
        );
        f.field = Some("name".into());
        f.item_field = Some("name".into());
        Err(f)
    }

    async fn put(
        &self,
        kind: ItemKind,
        name: &str,
        req: &AdminRequest,
        session: &Session,
    ) -> Answer {
        Self::check_name(kind, name)?;
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|e| Failure::new(400, format!("the body must be JSON: {e}")))?;
        let current = self.get(kind, name).await?;
        let holder = current.as_ref().map(|c| &c.object);
        let exists = match kind {
            ItemKind::ServiceSources => holder
                .and_then(|b| items::registry_named(b, name))
                .is_some(),
            _ => current.is_some(),
        };
        let pre = precondition(
            exists,
            current.as_ref().map(|c| c.version.as_str()),
            &if_match(req),
        )?;
        let object = match (body.get("item"), body.get("yaml")) {
            (Some(item), None) => match kind {
                ItemKind::ServiceSources => items::bridge_with(holder, name, Some(item)),
                ItemKind::Domains => items::domain_object(name, item, holder),
                ItemKind::Routes => items::route_object(name, item, holder),
                ItemKind::Plugins => items::plugin_object(name, item, holder),
                ItemKind::Global => items::config_with_tracing(holder, item),
            }
            .map_err(Failure::item)?,
            (None, Some(Value::String(text)))
                if matches!(kind, ItemKind::Routes | ItemKind::Plugins) =>
            {
                self.object_from_yaml(kind, name, text)?
            }
            (None, Some(_)) => {
                return Err(Failure::new(
                    400,
                    "yaml: a whole object as text, for routes and plugins only",
                ))
            }
            _ => {
                return Err(Failure::new(
                    400,
                    "the body is {\"item\": {...}} or {\"yaml\": \"...\"}",
                ))
            }
        };
        let object_name = kind.object_name(name);
        let version = self
            .backend
            .put(kind.object_kind(), &object_name, object, pre)
            .await
            .map_err(|e| Failure::store(e, kind, self.files()))?;
        tracing::info!(user = %session.username, kind = kind.as_str(), name, version, "console: written");
        Ok(json(200, &json!({"name": name, "version": version})))
    }

    /// The advanced editor's whole object: of the kind the path says, named as it says.
    fn object_from_yaml(&self, kind: ItemKind, name: &str, text: &str) -> Result<Value, Failure> {
        let mut obj: Value = serde_yaml::from_str(text).map_err(|e| {
            let mut f = Failure::new(400, format!("invalid YAML: {e}"));
            f.field = Some(String::new());
            f
        })?;
        if !obj.is_object() {
            return Err(Failure::new(400, "the YAML must be one object (a map)"));
        }
        let want = match kind.object_kind() {
            Kind::Ingress => ("networking.k8s.io/v1", "Ingress"),
            _ => ("extensions.higress.io/v1alpha1", "WasmPlugin"),
        };
        let field_err = |field: &str, msg: String| {
            let mut f = Failure::new(400, format!("{field}: {msg}"));
            f.field = Some(field.into());
            f
        };
        match obj.get("kind").and_then(Value::as_str) {
            None => obj["kind"] = want.1.into(),
            Some(k) if k == want.1 => {}
            Some(k) => return Err(field_err("kind", format!("expected {}, got {k:?}", want.1))),
        }
        if obj.get("apiVersion").is_none() {
            obj["apiVersion"] = want.0.into();
        }
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        match obj["metadata"].get("name").and_then(Value::as_str) {
            None | Some("") => obj["metadata"]["name"] = name.into(),
            Some(n) if n == name => {}
            Some(n) => {
                return Err(field_err(
                    "metadata.name",
                    format!("{n:?} is not the name in the path ({name:?})"),
                ))
            }
        }
        Ok(obj)
    }

    async fn delete(
        &self,
        kind: ItemKind,
        name: &str,
        req: &AdminRequest,
        session: &Session,
    ) -> Answer {
        if kind == ItemKind::Global {
            return Err(Failure::new(405, "global items are set, not deleted"));
        }
        let current = self.get(kind, name).await?;
        let not_found = || Failure::new(404, format!("no {} {name:?}", kind.as_str()));
        let Some(current) = current else {
            return Err(not_found());
        };
        if kind == ItemKind::ServiceSources
            && items::registry_named(&current.object, name).is_none()
        {
            return Err(not_found());
        }
        let pre = precondition(true, Some(&current.version), &if_match(req))?;
        let result = match kind {
            ItemKind::ServiceSources => {
                let bridge =
                    items::bridge_with(Some(&current.object), name, None).map_err(Failure::item)?;
                self.backend
                    .put(Kind::McpBridge, DEFAULT_MCPBRIDGE, bridge, pre)
                    .await
                    .map(|_| ())
            }
            _ => {
                self.backend
                    .delete(
                        kind.object_kind(),
                        &kind.object_name(name),
                        &current.version,
                    )
                    .await
            }
        };
        result.map_err(|e| Failure::store(e, kind, self.files()))?;
        tracing::info!(user = %session.username, kind = kind.as_str(), name, "console: deleted");
        Ok(json(200, &json!({"name": name})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_rules() {
        let v = |s: &str| IfMatch::Version(s.into());
        // An existing item needs its version.
        assert_eq!(
            precondition(true, Some("a"), &v("a")).unwrap(),
            Precondition::Version("a".into())
        );
        let f = precondition(true, Some("a"), &IfMatch::Any).unwrap_err();
        assert_eq!((f.status, f.version.clone()), (409, Some(Some("a".into()))));
        let f = precondition(true, Some("a"), &v("b")).unwrap_err();
        assert!(f.error.starts_with("stale: "), "{}", f.error);
        // A new one none, or the version of the object that will hold it.
        assert_eq!(
            precondition(false, None, &IfMatch::Any).unwrap(),
            Precondition::Absent
        );
        assert_eq!(
            precondition(false, Some("m"), &IfMatch::Any).unwrap(),
            Precondition::Version("m".into())
        );
        assert!(precondition(false, Some("m"), &v("m")).is_ok());
        assert_eq!(precondition(false, None, &v("x")).unwrap_err().status, 409);
    }

    #[test]
    fn if_match_header_forms() {
        let mut req = AdminRequest::get("/x");
        assert_eq!(if_match(&req), IfMatch::Any);
        for (h, want) in [
            ("*", IfMatch::Any),
            ("abc", IfMatch::Version("abc".into())),
            ("\"abc\"", IfMatch::Version("abc".into())),
            ("W/\"abc\"", IfMatch::Version("abc".into())),
        ] {
            req.headers
                .insert(http::header::IF_MATCH, h.parse().unwrap());
            assert_eq!(if_match(&req), want, "{h}");
        }
    }

    #[test]
    fn paths_and_names() {
        let t = |p: &str| Manager::target(p).map(|r| r.map_err(|f| f.status));
        assert!(t("/api/console/settings").is_none());
        assert_eq!(
            t("/api/console/resources/routes").unwrap().unwrap(),
            (ItemKind::Routes, None)
        );
        assert_eq!(
            t("/api/console/resources/domains/%2A.a.com")
                .unwrap()
                .unwrap(),
            (ItemKind::Domains, Some("*.a.com".into()))
        );
        assert_eq!(
            t("/api/console/resources/things").unwrap().unwrap_err(),
            404
        );
        assert_eq!(
            t("/api/console/resources/routes/a%2Fb")
                .unwrap()
                .unwrap_err(),
            404
        );
        assert!(valid_object_name("a.b-c"));
        for bad in ["", "A", "a/b", ".a", "a..b", "-a", "a_b"] {
            assert!(!valid_object_name(bad), "{bad}");
        }
        assert!(valid_registry_name("be-1") && !valid_registry_name("be.x"));
        assert!(Manager::check_name(ItemKind::Domains, "*.a.com").is_ok());
        assert_eq!(
            Manager::check_name(ItemKind::Global, "gzip")
                .unwrap_err()
                .status,
            400
        );
    }
}
