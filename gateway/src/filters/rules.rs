//! `_rules_`: which configuration of a plugin applies to a request, with the semantics
//! of Higress's plugin SDKs (wasm-go `pkg/matcher/rule_matcher.go`), so a native filter
//! takes the same configuration a Wasm plugin does, in either form: `matchRules`
//! converted by the WasmPlugin translation, or `_rules_` written inside `defaultConfig`.
//!
//! Parsing:
//! - `{}` is a global configuration (the plugin applies everywhere).
//! - Keys besides `_rules_` make the whole object the global configuration.
//! - Each rule holds its own configuration and at least one match key; its kind is the
//!   first present of `_match_route_` (with `_match_service_` too: route and service),
//!   `_match_domain_`, `_match_service_`, `_match_route_prefix_`. Empty strings in the
//!   lists are dropped. A rule without a match key is an error.
//! - No global configuration and no rule is an error.
//!
//! Matching, per request: the first rule that matches wins, in the order written; else
//! the global configuration; else the plugin does not run for the request.
//! - domain: the request's authority without its port; `*.a.com` matches by suffix
//!   (`x.a.com`, `x.y.a.com`, not `a.com`), `a.*` by prefix, anything else exactly;
//!   case-sensitive, as the SDK is;
//! - route: the route name (`route_name`) exactly; route prefix: its start;
//! - service: the cluster name `outbound|<port>|<subset>|<fqdn>`; an entry `fqdn:port`
//!   matches both, a bare `fqdn` any port.
//!
//! One deviation: the SDK remembers a global configuration that fails to parse and
//! starts anyway when rules exist; here any configuration that fails is an error that
//! names its field, so a bad config is rejected before it serves.

use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::model::http_filter::MatchInput;
use crate::model::strip_port;

/// The key of the rules array.
pub const RULES: &str = "_rules_";
const MATCH_ROUTE: &str = "_match_route_";
const MATCH_DOMAIN: &str = "_match_domain_";
const MATCH_SERVICE: &str = "_match_service_";
const MATCH_ROUTE_PREFIX: &str = "_match_route_prefix_";

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*<suffix>`.
    Suffix(String),
    /// `<prefix>*`.
    Prefix(String),
}

impl HostPattern {
    fn new(p: &str) -> HostPattern {
        if let Some(suffix) = p.strip_prefix('*') {
            HostPattern::Suffix(suffix.to_string())
        } else if let Some(prefix) = p.strip_suffix('*') {
            HostPattern::Prefix(prefix.to_string())
        } else {
            HostPattern::Exact(p.to_string())
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host == h,
            HostPattern::Suffix(s) => host.ends_with(s.as_str()),
            HostPattern::Prefix(p) => host.starts_with(p.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ServicePattern {
    fqdn: String,
    /// `None`: any port.
    port: Option<String>,
}

impl ServicePattern {
    fn new(s: &str) -> ServicePattern {
        match s.rsplit_once(':') {
            Some((fqdn, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                ServicePattern {
                    fqdn: fqdn.to_string(),
                    port: Some(port.to_string()),
                }
            }
            _ => ServicePattern {
                fqdn: s.to_string(),
                port: None,
            },
        }
    }

    /// `cluster` must be `direction|port|subset|fqdn`.
    fn matches(&self, cluster: &str) -> bool {
        let mut parts = cluster.split('|');
        let (Some(_), Some(port), Some(_), Some(fqdn), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return false;
        };
        fqdn == self.fqdn && self.port.as_deref().is_none_or(|p| p == port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Matcher {
    Route(Vec<String>),
    RouteAndService(Vec<String>, Vec<ServicePattern>),
    Domain(Vec<HostPattern>),
    Service(Vec<ServicePattern>),
    RoutePrefix(Vec<String>),
}

impl Matcher {
    fn matches(&self, input: &MatchInput<'_>) -> bool {
        let route = input.route.unwrap_or("");
        let service = |list: &[ServicePattern]| {
            input
                .cluster
                .is_some_and(|c| list.iter().any(|s| s.matches(c)))
        };
        match self {
            Matcher::Route(names) => names.iter().any(|n| n == route),
            Matcher::RouteAndService(names, services) => {
                names.iter().any(|n| n == route) && service(services)
            }
            Matcher::Domain(hosts) => {
                let host = strip_port(input.authority);
                hosts.iter().any(|h| h.matches(host))
            }
            Matcher::Service(services) => service(services),
            Matcher::RoutePrefix(prefixes) => {
                prefixes.iter().any(|p| route.starts_with(p.as_str()))
            }
        }
    }
}

/// A plugin's configurations: the global one and its rules, each already turned into
/// `C` (a native filter built with that configuration).
#[derive(Debug)]
pub struct RuleSet<C> {
    global: Option<C>,
    rules: Vec<(Matcher, C)>,
}

/// The non-empty strings of a match list.
fn strings(
    rule: &Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<Vec<String>>, FieldError> {
    let Some(v) = rule.get(key) else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(FieldError::new(
            format!("{at}.{key}"),
            "expected a list of strings",
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if s.is_empty() => {}
            Value::String(s) => out.push(s.clone()),
            _ => {
                return Err(FieldError::new(
                    format!("{at}.{key}[{i}]"),
                    "expected a string",
                ))
            }
        }
    }
    Ok(Some(out))
}

fn matcher(rule: &Map<String, Value>, at: &str) -> Result<Matcher, FieldError> {
    let routes = strings(rule, MATCH_ROUTE, at)?;
    let domains = strings(rule, MATCH_DOMAIN, at)?;
    let services = strings(rule, MATCH_SERVICE, at)?;
    let prefixes = strings(rule, MATCH_ROUTE_PREFIX, at)?;
    let services = services.map(|s| s.iter().map(|s| ServicePattern::new(s)).collect());
    Ok(match (routes, domains, services, prefixes) {
        (Some(r), _, Some(s), _) => Matcher::RouteAndService(r, s),
        (Some(r), _, None, _) => Matcher::Route(r),
        (None, Some(d), _, _) => Matcher::Domain(d.iter().map(|h| HostPattern::new(h)).collect()),
        (None, None, Some(s), _) => Matcher::Service(s),
        (None, None, None, Some(p)) => Matcher::RoutePrefix(p),
        (None, None, None, None) => {
            return Err(FieldError::new(
                at,
                format!(
                    "a rule needs one of {MATCH_ROUTE}, {MATCH_DOMAIN}, {MATCH_SERVICE} or {MATCH_ROUTE_PREFIX}"
                ),
            ))
        }
    })
}

/// A rule's own configuration: the rule without its match keys.
fn rule_config(rule: &Map<String, Value>) -> Value {
    Value::Object(
        rule.iter()
            .filter(|(k, _)| {
                ![MATCH_ROUTE, MATCH_DOMAIN, MATCH_SERVICE, MATCH_ROUTE_PREFIX]
                    .contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

impl<C> RuleSet<C> {
    /// Parse a plugin configuration. `build` turns one configuration into `C`; for a
    /// rule it also gets the global configuration's `C`, for plugins whose rules
    /// inherit from it. Errors carry the field path inside the configuration.
    pub fn parse(
        config: &Value,
        mut build: impl FnMut(&Value, Option<&C>) -> Result<C, FieldError>,
    ) -> Result<RuleSet<C>, FieldError> {
        let Value::Object(top) = config else {
            return Err(FieldError::new("", "expected an object"));
        };
        let has_global = top.is_empty() || top.keys().any(|k| k != RULES);
        let global = if has_global {
            Some(build(config, None)?)
        } else {
            None
        };
        let mut rules = Vec::new();
        match top.get(RULES) {
            None => {}
            Some(Value::Array(list)) => {
                for (i, rule) in list.iter().enumerate() {
                    let at = format!("{RULES}[{i}]");
                    let Value::Object(rule) = rule else {
                        return Err(FieldError::new(at, "expected an object"));
                    };
                    let m = matcher(rule, &at)?;
                    let c = build(&rule_config(rule), global.as_ref()).map_err(|e| e.under(&at))?;
                    rules.push((m, c));
                }
            }
            Some(_) => return Err(FieldError::new(RULES, "expected a list of rules")),
        }
        if global.is_none() && rules.is_empty() {
            return Err(FieldError::new(
                RULES,
                "no global configuration and no rule: the plugin would never run",
            ));
        }
        Ok(RuleSet { global, rules })
    }

    /// The configuration for a request: the first matching rule's, else the global one;
    /// `None`: the plugin does not run for this request.
    pub fn select(&self, input: &MatchInput<'_>) -> Option<&C> {
        self.rules
            .iter()
            .find(|(m, _)| m.matches(input))
            .map(|(_, c)| c)
            .or(self.global.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Each configuration becomes its `v` (or `global+<v>` when it inherits).
    fn set(config: Value) -> Result<RuleSet<String>, FieldError> {
        RuleSet::parse(&config, |c, global| {
            let v = c
                .get("v")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string();
            Ok(match global {
                Some(g) => format!("{g}+{v}"),
                None => v,
            })
        })
    }

    fn pick<'a>(s: &'a RuleSet<String>, route: &str, host: &str, cluster: &str) -> Option<&'a str> {
        s.select(&MatchInput {
            route: Some(route),
            authority: host,
            cluster: Some(cluster),
            peer: None,
        })
        .map(String::as_str)
    }

    const C: &str = "outbound|80||svc.dns";

    #[test]
    fn first_matching_rule_wins_then_global() {
        let s = set(json!({
            "v": "g",
            "_rules_": [
                {"v": "r", "_match_route_": ["default/foo", ""]},
                {"v": "d", "_match_domain_": ["*.example.com", "exact.test", "pre.*"]},
                {"v": "s", "_match_service_": ["svc.dns:80"]},
                {"v": "p", "_match_route_prefix_": ["team-"]},
            ]
        }))
        .unwrap();
        assert_eq!(pick(&s, "default/foo", "a.example.com", C), Some("g+r"));
        assert_eq!(pick(&s, "x", "a.b.example.com:8080", C), Some("g+d"));
        assert_eq!(
            pick(&s, "x", "example.com", C),
            Some("g+s"),
            "*.x does not match x"
        );
        assert_eq!(
            pick(&s, "x", "exact.test", "outbound|81||other"),
            Some("g+d")
        );
        assert_eq!(pick(&s, "x", "pre.fix", "outbound|81||other"), Some("g+d"));
        assert_eq!(
            pick(&s, "x", "Exact.test", "outbound|81||svc.dns"),
            Some("g"),
            "case-sensitive; port 81 is not 80"
        );
        assert_eq!(pick(&s, "team-a", "n", "bad|cluster"), Some("g+p"));
        assert_eq!(
            pick(&s, "", "n", C),
            Some("g+s"),
            "the empty route name is dropped"
        );
    }

    #[test]
    fn without_global_configuration_unmatched_requests_skip_the_plugin() {
        let s = set(json!({"_rules_": [{"v": "r", "_match_route_": ["a"]}]})).unwrap();
        assert_eq!(pick(&s, "a", "h", C), Some("r"));
        assert_eq!(pick(&s, "b", "h", C), None);
        let s = set(json!({})).unwrap();
        assert_eq!(
            pick(&s, "any", "h", C),
            Some("-"),
            "{{}} applies everywhere"
        );
    }

    #[test]
    fn route_with_service_needs_both_and_service_ports_are_optional() {
        let s = set(json!({"_rules_": [
            {"v": "rs", "_match_route_": ["a"], "_match_service_": ["svc.dns"], "_match_domain_": ["ignored"]},
        ]}))
        .unwrap();
        assert_eq!(pick(&s, "a", "h", "outbound|9090||svc.dns"), Some("rs"));
        assert_eq!(pick(&s, "a", "h", "outbound|80||other.dns"), None);
        assert_eq!(pick(&s, "b", "ignored", C), None);
    }

    #[test]
    fn bad_rules_name_their_field() {
        let e = set(json!({"_rules_": [{"v": "x"}]})).unwrap_err();
        assert_eq!(e.path, "_rules_[0]");
        let e = set(json!({"_rules_": [{"_match_domain_": ["a", 3]}]})).unwrap_err();
        assert_eq!(e.path, "_rules_[0]._match_domain_[1]");
        let e = set(json!({"_rules_": []})).unwrap_err();
        assert_eq!(e.path, "_rules_");
        let e = set(json!({"_rules_": {}})).unwrap_err();
        assert_eq!(e.path, "_rules_");
        let e = RuleSet::parse(
            &json!({"_rules_": [{"_match_route_": ["a"], "n": 1}]}),
            |c, _| match c.get("n") {
                Some(_) => Err(FieldError::new("n", "too small")),
                None => Ok(()),
            },
        )
        .unwrap_err();
        assert_eq!(e.path, "_rules_[0].n");
    }
}
