//! `/api/console/config`: what the console's config panel shows, made from
//! `/debug/configz`: the version in force and when it was applied, the last rejected
//! change with its file, object and field, what is accepted but not enforced, and per
//! route its destinations and the plugin chain that runs on it.

use serde_json::{json, Value};

use crate::config_loop::ConfigStatus;
use crate::snapshot::Snapshot;

pub fn describe(status: &ConfigStatus, snapshot: &Snapshot) -> Value {
    let z = status.configz();
    let rejected = z["rejected"].as_array().cloned().unwrap_or_default();
    // RFC 3339 times of one format sort as text.
    let last_rejected = rejected
        .iter()
        .max_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()))
        .cloned();
    let plugins = z["plugins"].as_array().cloned().unwrap_or_default();
    let mut routes = Vec::new();
    for vhost in z["routes"].as_array().into_iter().flatten() {
        let host = vhost["host"].as_str().unwrap_or("*");
        for r in vhost["routes"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or("");
            // The route's own filters (from its annotations) run first, then the
            // plugin chain.
            let own = r["filters"].as_array().into_iter().flatten().map(|f| {
                json!({"name": f, "implementation": "native (annotation)", "phase": null, "priority": null})
            });
            let chain: Vec<Value> = own
                .chain(plugins.iter().filter(|p| applies(p, name, host)).map(|p| {
                    json!({
                        "name": p["name"],
                        "implementation": p["implementation"],
                        "phase": p["phase"],
                        "priority": p["priority"],
                    })
                }))
                .collect();
            routes.push(json!({
                "name": name,
                "host": host,
                "match": r["match"],
                "destinations": r["destinations"],
                "timeout_seconds": r["timeout_seconds"],
                "plugins": chain,
            }));
        }
    }
    json!({
        "version": snapshot.version,
        "applied_at": z["applied_at"],
        "last_rejected": last_rejected,
        "rejected": rejected,
        "not_enforced": z["not_enforced"],
        "warnings": z["warnings"],
        "routes": routes,
        "clusters": z["clusters"],
        "plugins": plugins.iter().map(|p| json!({
            "name": p["name"],
            "implementation": p["implementation"],
            "phase": p["phase"],
            "priority": p["priority"],
        })).collect::<Vec<_>>(),
    })
}

/// Whether a plugin (as `/debug/configz` lists it) runs on a route: its global
/// config does, or one of its `_rules_` names the route or its domain, as Higress's
/// rule matching does.
fn applies(plugin: &Value, route: &str, host: &str) -> bool {
    let config = &plugin["config"];
    let Some(map) = config.as_object() else {
        return true;
    };
    let global = map.keys().any(|k| k != "_rules_");
    if global || !map.contains_key("_rules_") {
        return true;
    }
    map["_rules_"].as_array().into_iter().flatten().any(|rule| {
        let names = |key: &str| {
            rule[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        names("_match_route_").iter().any(|r| r == route)
            || names("_match_domain_")
                .iter()
                .any(|d| domain_matches(d, host))
    })
}

fn domain_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_runs_where_its_rules_say() {
        let global = json!({"config": {"consumers": []}});
        assert!(applies(&global, "r", "a.com"));
        let scoped = json!({"config": {"_rules_": [
            {"_match_route_": ["default/foo"], "allow": ["c"]},
            {"_match_domain_": ["*.example.com"], "allow": ["c"]},
        ]}});
        assert!(applies(&scoped, "default/foo", "x.org"));
        assert!(applies(&scoped, "other", "api.example.com"));
        assert!(!applies(&scoped, "other", "example.org"));
        let native = json!({"config": null});
        assert!(applies(&native, "r", "h"));
    }
}
