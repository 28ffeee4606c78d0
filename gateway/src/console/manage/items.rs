//! The console's items and the Higress objects they are, mapped as the Higress console
//! writes them: a service source is one registry of McpBridge `default`; a domain the
//! ConfigMap `domain-<host>` (a leading `*` written `wildcard`); a route an Ingress of
//! class `higress` whose backend is the McpBridge and whose services are the
//! `higress.io/destination` annotation; a plugin a WasmPlugin (its spec fields as they
//! are); the global tracing item the `tracing` section of `higress-config`'s
//! `data.higress`.
//!
//! Writing an item over an existing object starts from that object, so what the item
//! does not say (labels, other keys of `data.higress`, other registries) is kept.

use serde_json::{json, Map, Value};

use crate::annotations::destination;
use crate::resources::configmap::{HIGRESS_CONFIG_KEY, HIGRESS_CONFIG_NAME};
use crate::resources::domain::DOMAIN_PREFIX;
use crate::resources::mcpbridge::DEFAULT_MCPBRIDGE;

/// A value of the item that cannot be mapped: the item field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ItemError {
    ItemError {
        field: field.into(),
        message: message.into(),
    }
}

/// Who made an object, as the Higress console labels its own.
const DEFINER_LABEL: &str = "higress.io/resource-definer";
const CONFIG_MAP_TYPE_LABEL: &str = "higress.io/config-map-type";
const USE_REGEX: &str = "higress.io/use-regex";
const IGNORE_PATH_CASE: &str = "higress.io/ignore-path-case";

/// The item's fields as a map, without the bookkeeping the console adds.
fn fields(item: &Value) -> Result<Map<String, Value>, ItemError> {
    let mut m = item
        .as_object()
        .cloned()
        .ok_or_else(|| bad("", "the item must be a JSON object"))?;
    m.remove("version");
    Ok(m)
}

/// `existing`, or a new object of `api_version`/`kind` named `name`.
fn base(existing: Option<&Value>, api_version: &str, kind: &str, name: &str) -> Value {
    let mut obj = existing.cloned().unwrap_or_else(|| {
        json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "labels": {DEFINER_LABEL: "higress"}}})
    });
    if !obj.is_object() {
        obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {}});
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["name"] = name.into();
    obj
}

// --- service sources -------------------------------------------------------------------

/// The registries of McpBridge `default`.
pub fn registries(bridge: &Value) -> Vec<Value> {
    bridge
        .pointer("/spec/registries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

pub fn registry_named(bridge: &Value, name: &str) -> Option<Value> {
    registries(bridge)
        .into_iter()
        .find(|r| r.get("name").and_then(Value::as_str) == Some(name))
}

/// McpBridge `default` (`existing` or new) with registry `name` set to `item`, or
/// removed when `item` is `None`.
pub fn bridge_with(
    existing: Option<&Value>,
    name: &str,
    item: Option<&Value>,
) -> Result<Value, ItemError> {
    let mut bridge = base(
        existing,
        "networking.higress.io/v1",
        "McpBridge",
        DEFAULT_MCPBRIDGE,
    );
    let mut regs = registries(&bridge);
    let at = regs
        .iter()
        .position(|r| r.get("name").and_then(Value::as_str) == Some(name));
    match item {
        Some(item) => {
            let mut reg = fields(item)?;
            reg.insert("name".into(), name.into());
            // A port typed as text in a form is still the port.
            if let Some(Value::String(p)) = reg.get("port") {
                let n: u32 = p
                    .trim()
                    .parse()
                    .map_err(|_| bad("port", format!("expected a port number, got {p:?}")))?;
                reg.insert("port".into(), n.into());
            }
            match at {
                Some(i) => regs[i] = Value::Object(reg),
                None => regs.push(Value::Object(reg)),
            }
        }
        None => {
            if let Some(i) = at {
                regs.remove(i);
            }
        }
    }
    if !bridge["spec"].is_object() {
        bridge["spec"] = json!({});
    }
    bridge["spec"]["registries"] = Value::Array(regs);
    Ok(bridge)
}

// --- domains ---------------------------------------------------------------------------

/// `domain-<host>`, a leading `*` written `wildcard` (a ConfigMap name has no `*`).
pub fn domain_configmap(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    match host.strip_prefix('*') {
        Some(rest) => format!("{DOMAIN_PREFIX}wildcard{rest}"),
        None => format!("{DOMAIN_PREFIX}{host}"),
    }
}

/// The host of a domain ConfigMap name.
pub fn domain_host(configmap: &str) -> Option<String> {
    let host = configmap.strip_prefix(DOMAIN_PREFIX)?;
    Some(match host.strip_prefix("wildcard") {
        Some(rest) if rest.starts_with('.') => format!("*{rest}"),
        _ => host.to_string(),
    })
}

pub fn domain_item(cm: &Value) -> Value {
    let data = &cm["data"];
    let name = data["domain"].as_str().map(str::to_string).or_else(|| {
        cm.pointer("/metadata/name")
            .and_then(Value::as_str)
            .and_then(domain_host)
    });
    json!({
        "name": name,
        "enableHttps": data["enableHttps"].as_str().unwrap_or("off"),
        "cert": data["cert"].as_str().filter(|c| !c.is_empty()),
    })
}

pub fn domain_object(
    host: &str,
    item: &Value,
    existing: Option<&Value>,
) -> Result<Value, ItemError> {
    let f = fields(item)?;
    let mut cm = base(existing, "v1", "ConfigMap", &domain_configmap(host));
    cm["metadata"]["labels"][CONFIG_MAP_TYPE_LABEL] = "domain".into();
    let text = |key: &str| -> Result<Option<String>, ItemError> {
        match f.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(key, format!("expected a string, got {other}"))),
        }
    };
    let mut data = Map::new();
    data.insert("domain".into(), host.trim().to_ascii_lowercase().into());
    data.insert(
        "enableHttps".into(),
        text("enableHttps")?.unwrap_or_else(|| "off".into()).into(),
    );
    if let Some(cert) = text("cert")?.filter(|c| !c.trim().is_empty()) {
        data.insert("cert".into(), cert.into());
    }
    cm["data"] = Value::Object(data);
    Ok(cm)
}

// --- routes ----------------------------------------------------------------------------

const BACKEND: &str = r#"{"resource": {"apiGroup": "networking.higress.io", "kind": "McpBridge", "name": "default"}}"#;

pub fn route_object(
    name: &str,
    item: &Value,
    existing: Option<&Value>,
) -> Result<Value, ItemError> {
    let f = fields(item)?;
    let mut ing = base(existing, "networking.k8s.io/v1", "Ingress", name);
    let domains: Vec<String> = match f.get("domains") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.as_str()
                    .map(|s| s.trim().to_ascii_lowercase())
                    .ok_or_else(|| bad(format!("domains[{i}]"), "expected a host name"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("domains", "expected a list of host names")),
    };
    let path = f.get("path").cloned().unwrap_or(Value::Null);
    let match_type = path["matchType"].as_str().unwrap_or("PRE");
    let match_value = path["matchValue"].as_str().unwrap_or("/");
    let path_type = match match_type {
        "PRE" => "Prefix",
        "EQUAL" => "Exact",
        "REGULAR" => "ImplementationSpecific",
        other => {
            return Err(bad(
                "path.matchType",
                format!("expected PRE, EQUAL or REGULAR, got {other:?}"),
            ))
        }
    };
    // Annotations: the item's, then what the mapping owns.
    let mut annotations = match f.get("annotations") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Bool(_) | Value::Number(_) => v.to_string(),
                    _ => return Err(bad(format!("annotations[{k:?}]"), "expected a string")),
                };
                out.insert(k.clone(), v.into());
            }
            out
        }
        Some(_) => return Err(bad("annotations", "expected a map of strings")),
    };
    annotations.remove(destination::ANNOTATION);
    if match_type == "REGULAR" {
        annotations.insert(USE_REGEX.into(), "true".into());
    } else {
        annotations.remove(USE_REGEX);
    }
    if path["caseSensitive"] == Value::Bool(false) {
        annotations.insert(IGNORE_PATH_CASE.into(), "true".into());
    }
    let services = match f.get("services") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        _ => return Err(bad("services", "at least one service is required")),
    };
    annotations.insert(
        destination::ANNOTATION.into(),
        destinations(&services)?.into(),
    );
    ing["metadata"]["annotations"] = Value::Object(annotations);
    let backend: Value = serde_json::from_str(BACKEND).unwrap_or_default();
    let http = json!({"paths": [{"path": match_value, "pathType": path_type, "backend": backend}]});
    let rules: Vec<Value> = if domains.is_empty() {
        vec![json!({"http": http})]
    } else {
        domains
            .iter()
            .map(|d| json!({"host": d, "http": http}))
            .collect()
    };
    if !ing["spec"].is_object() {
        ing["spec"] = json!({});
    }
    ing["spec"]["ingressClassName"] = "higress".into();
    ing["spec"]["rules"] = Value::Array(rules);
    Ok(ing)
}

/// The `higress.io/destination` value of the route's services: `<host>[:<port>]`, each
/// line led by `<weight>% ` when there are several or a weight is given below 100.
fn destinations(services: &[Value]) -> Result<String, ItemError> {
    let weighted = services.len() > 1
        || services
            .iter()
            .any(|s| s["weight"].as_u64().is_some_and(|w| w != 100));
    let mut lines = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let at = |f: &str| format!("services[{i}].{f}");
        let host = s["name"]
            .as_str()
            .map(str::trim)
            .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
            .ok_or_else(|| bad(at("name"), "expected a service host (<registry>.<type>)"))?;
        let mut line = String::new();
        if weighted {
            let w = match &s["weight"] {
                Value::Null => 100,
                v => v
                    .as_u64()
                    .filter(|w| *w <= 100)
                    .ok_or_else(|| bad(at("weight"), "expected a percentage within 0..100"))?,
            };
            line.push_str(&format!("{w}% "));
        }
        line.push_str(host);
        match &s["port"] {
            Value::Null => {}
            v => {
                let p = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|t| t.trim().parse().ok()))
                    .filter(|p| (1..=65535).contains(p))
                    .ok_or_else(|| bad(at("port"), "expected a port within 1..65535"))?;
                line.push_str(&format!(":{p}"));
            }
        }
        lines.push(line);
    }
    Ok(lines.join("\n"))
}

pub fn route_item(ing: &Value) -> Value {
    let annotations = ing
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let rules = ing
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut domains: Vec<Value> = Vec::new();
    for r in &rules {
        if let Some(h) = r["host"].as_str() {
            if !domains.iter().any(|d| d == h) {
                domains.push(h.into());
            }
        }
    }
    let first = rules
        .iter()
        .find_map(|r| r.pointer("/http/paths/0"))
        .cloned()
        .unwrap_or(Value::Null);
    let regex = annotations
        .get(USE_REGEX)
        .and_then(Value::as_str)
        .is_some_and(|v| v == "true");
    let match_type = match first["pathType"].as_str() {
        _ if regex => "REGULAR",
        Some("Exact") => "EQUAL",
        _ => "PRE",
    };
    let mut path = json!({
        "matchType": match_type,
        "matchValue": first["path"].as_str().unwrap_or("/"),
    });
    if annotations.get(IGNORE_PATH_CASE).and_then(Value::as_str) == Some("true") {
        path["caseSensitive"] = false.into();
    }
    let services: Vec<Value> = annotations
        .get(destination::ANNOTATION)
        .and_then(Value::as_str)
        .and_then(|v| destination::parse(v).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|d| json!({"name": d.host, "port": d.port, "weight": d.weight}))
        .collect();
    let mut extra = annotations;
    extra.remove(destination::ANNOTATION);
    extra.remove(USE_REGEX);
    extra.remove(IGNORE_PATH_CASE);
    json!({
        "name": ing.pointer("/metadata/name"),
        "domains": domains,
        "path": path,
        "services": services,
        "annotations": extra,
    })
}

// --- plugins ---------------------------------------------------------------------------

pub fn plugin_item(wp: &Value) -> Value {
    let mut item = wp["spec"].as_object().cloned().unwrap_or_default();
    item.insert("name".into(), wp["metadata"]["name"].clone());
    Value::Object(item)
}

pub fn plugin_object(
    name: &str,
    item: &Value,
    existing: Option<&Value>,
) -> Result<Value, ItemError> {
    let mut spec = fields(item)?;
    spec.remove("name");
    let mut wp = base(
        existing,
        "extensions.higress.io/v1alpha1",
        "WasmPlugin",
        name,
    );
    wp["spec"] = Value::Object(spec);
    Ok(wp)
}

// --- global: higress-config tracing ----------------------------------------------------

pub const TRACING: &str = "tracing";
const PROVIDERS: [&str; 3] = ["skywalking", "zipkin", "opentelemetry"];

/// `data.higress` of `higress-config`, as YAML (an empty map when absent).
fn higress_yaml(cm: Option<&Value>) -> Result<serde_yaml::Mapping, ItemError> {
    let text = cm
        .and_then(|c| c["data"][HIGRESS_CONFIG_KEY].as_str())
        .unwrap_or("");
    if text.trim().is_empty() {
        return Ok(serde_yaml::Mapping::new());
    }
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Mapping(m)) => Ok(m),
        Ok(serde_yaml::Value::Null) => Ok(serde_yaml::Mapping::new()),
        Ok(_) => Err(bad("", "data.higress of higress-config is not a map")),
        Err(e) => Err(bad("", format!("data.higress of higress-config: {e}"))),
    }
}

/// The tracing item of `higress-config` (Higress's defaults where it says nothing).
pub fn tracing_item(cm: Option<&Value>) -> Result<Value, ItemError> {
    let higress = higress_yaml(cm)?;
    let t: Value = higress
        .get(TRACING)
        .map(|v| serde_json::to_value(v).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    // Several blocks: the last of skywalking, zipkin, opentelemetry wins, as in Higress.
    let provider = PROVIDERS.iter().rev().find(|p| t[**p].is_object()).copied();
    let block = provider.map(|p| &t[p]).unwrap_or(&Value::Null);
    let port = match &block["port"] {
        Value::String(s) => s
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or(s.clone().into()),
        v => v.clone(),
    };
    Ok(json!({
        "name": TRACING,
        "enable": t["enable"].as_bool().unwrap_or(false),
        "sampling": t["sampling"].as_f64().unwrap_or(100.0),
        "timeout": t["timeout"].as_i64().unwrap_or(500),
        "provider": provider,
        "service": block["service"],
        "port": port,
    }))
}

/// `higress-config` (`existing` or new) with its tracing section set from `item`; every
/// other key of the ConfigMap and of `data.higress` kept.
pub fn config_with_tracing(existing: Option<&Value>, item: &Value) -> Result<Value, ItemError> {
    let f = fields(item)?;
    let mut higress = higress_yaml(existing)?;
    let mut tracing = match higress.get(TRACING) {
        Some(serde_yaml::Value::Mapping(m)) => m.clone(),
        _ => serde_yaml::Mapping::new(),
    };
    let set = |m: &mut serde_yaml::Mapping, k: &str, v: serde_yaml::Value| {
        m.insert(serde_yaml::Value::String(k.into()), v);
    };
    let to_yaml = |field: &str, v: &Value| -> Result<serde_yaml::Value, ItemError> {
        serde_yaml::to_value(v).map_err(|e| bad(field, e.to_string()))
    };
    for key in ["enable", "sampling", "timeout"] {
        if let Some(v) = f.get(key).filter(|v| !v.is_null()) {
            set(&mut tracing, key, to_yaml(key, v)?);
        }
    }
    match f.get("provider") {
        None => {}
        Some(Value::Null) => {
            for p in PROVIDERS {
                tracing.remove(p);
            }
        }
        Some(Value::String(p)) if PROVIDERS.contains(&p.as_str()) => {
            // One provider: the others go (Higress refuses several when enabled). Keys of
            // the block besides service and port (an access token) stay.
            let mut block = match tracing.get(p.as_str()) {
                Some(serde_yaml::Value::Mapping(m)) => m.clone(),
                _ => serde_yaml::Mapping::new(),
            };
            for other in PROVIDERS.iter().filter(|o| **o != p.as_str()) {
                tracing.remove(*other);
            }
            let service = f.get("service").and_then(Value::as_str).unwrap_or("");
            set(&mut block, "service", service.into());
            // Higress's schema types the port as a string.
            let port = match f.get("port") {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            set(&mut block, "port", port.into());
            set(&mut tracing, p.as_str(), serde_yaml::Value::Mapping(block));
        }
        Some(other) => {
            return Err(bad(
                "provider",
                format!("expected skywalking, zipkin or opentelemetry, got {other}"),
            ))
        }
    }
    set(&mut higress, TRACING, serde_yaml::Value::Mapping(tracing));
    let text = serde_yaml::to_string(&higress).map_err(|e| bad("", e.to_string()))?;
    let mut cm = base(existing, "v1", "ConfigMap", HIGRESS_CONFIG_NAME);
    if !cm["data"].is_object() {
        cm["data"] = json!({});
    }
    cm["data"][HIGRESS_CONFIG_KEY] = text.into();
    Ok(cm)
}

// --- errors: the object's field as the item's ------------------------------------------

/// The item field an object's field path is, where there is one.
pub fn item_field(kind: &str, object_field: &str) -> Option<String> {
    let f = object_field;
    match kind {
        "routes" => {
            if let Some(key) = f
                .strip_prefix("metadata.annotations[\"")
                .and_then(|r| r.strip_suffix("\"]"))
            {
                return Some(match key {
                    destination::ANNOTATION => "services".into(),
                    _ => format!("annotations[\"{key}\"]"),
                });
            }
            let rest = f.strip_prefix("spec.rules[")?;
            let (i, rest) = rest.split_once(']')?;
            match rest {
                ".host" => Some(format!("domains[{i}]")),
                r if r.starts_with(".http.paths[") && r.ends_with(".path") => {
                    Some("path.matchValue".into())
                }
                _ => None,
            }
        }
        "domains" => match f {
            "data.domain" => Some("name".into()),
            "data.enableHttps" => Some("enableHttps".into()),
            "data.cert" => Some("cert".into()),
            _ => None,
        },
        "service-sources" => {
            let rest = f.strip_prefix("spec.registries[")?;
            let (_, rest) = rest.split_once("].")?;
            Some(rest.to_string())
        }
        "plugins" => f.strip_prefix("spec.").map(str::to_string),
        "global" => {
            let rest = f.strip_prefix("data.higress.tracing")?;
            let rest = rest.strip_prefix('.').unwrap_or(rest);
            Some(match rest.split_once('.') {
                Some((p, leaf)) if PROVIDERS.contains(&p) => leaf.to_string(),
                _ if PROVIDERS.contains(&rest) => "provider".to_string(),
                _ => rest.to_string(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
