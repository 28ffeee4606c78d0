//! Canary Ingresses merged into the routes of their main Ingress, as Higress's ingress
//! controller does (`ApplyCanaryIngress`, `ApplyByHeader`, `ApplyByWeight`).
//!
//! **Pairing.** Each path of a canary Ingress (`canary: "true"`) belongs to the main
//! (non-canary) Ingress path with the same host, path type, path and match annotations
//! (`match-method`, `*-match-header-*`, ...: Higress's rule key). The oldest such main
//! Ingress wins, as its route is the one that serves. A canary path without one is an
//! error naming the canary Ingress and the host and path it looked for (Higress skips it
//! silently); the main Ingress's routes are unaffected.
//!
//! **Routes.** With nginx-ingress's precedence (header, then cookie, then weight), in
//! Higress's shapes, before the main route (same path; one more header match each, so
//! Higress's route order keeps them first):
//!
//! 1. `canary-by-header`: header = `always` (or `canary-by-header-value`'s value, or
//!    `always`, Higress's `always|<value>`; or `canary-by-header-pattern` found in the
//!    value) -> canary destinations;
//! 2. with the plain header rule and a cookie or weight after it: header = `never` -> the
//!    main destinations without the canary split;
//! 3. `canary-by-cookie`: cookie = `always` -> canary destinations;
//! 4. with a weight after it: cookie = `never` -> the main destinations;
//! 5. the main route, whose destinations share traffic with the canary's by
//!    `canary-weight` out of `canary-weight-total`.
//!
//! A canary route inherits everything of the main route (timeout, redirect, policy,
//! matches) but its destinations and its name (the canary Ingress's).

use std::collections::HashMap;

use crate::annotations::canary::{Canary, HeaderRule};
use crate::model::matcher::{CookieMatcher, FullRegex, HeaderMatcher, HeaderSource, StringMatch};
use crate::model::WeightedCluster;
use crate::resources::ingress::{HttpIngressPath, IngressBackend, PathType};
use crate::resources::{FieldError, Ingress};

/// How a path matches, as Higress classifies it (its `OriginPathType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    Exact,
    Prefix,
    /// `use-regex`: the regex matches a prefix of the path (`<path>.*`).
    PrefixRegex,
    /// `full-path-regex`: the regex matches the whole path (`<path>$`).
    FullPathRegex,
}

impl PathKind {
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
            PathKind::PrefixRegex => "prefix regex",
            PathKind::FullPathRegex => "full path regex",
        }
    }
}

/// What a path of an Ingress is matched on: Higress's `host-pathType-path`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathKey {
    /// Lowercase; `None`: every host.
    pub host: Option<String>,
    pub kind: PathKind,
    /// As Higress keeps it (`OriginPath`): a Prefix path without its trailing `/` (but
    /// `/` itself), the others as written.
    pub path: String,
}

/// The key of path `p` of `ing` under rule host `host`.
pub fn path_key(ing: &Ingress, host: Option<&str>, p: &HttpIngressPath) -> PathKey {
    let raw = p.path.as_deref().unwrap_or("/");
    let opts = &ing.annotations.path;
    let kind = if opts.full_path_regex {
        PathKind::FullPathRegex
    } else if opts.use_regex || ing.annotations.rewrite.forces_regex(raw) {
        // `rewrite-target` with capture groups makes the path a regex too
        // (Higress's NeedRegexMatch).
        PathKind::PrefixRegex
    } else if p.path_type == PathType::Exact {
        PathKind::Exact
    } else {
        PathKind::Prefix
    };
    let path = match kind {
        PathKind::Prefix if raw != "/" => raw.trim_end_matches('/').to_string(),
        _ => raw.to_string(),
    };
    PathKey {
        host: host.map(str::to_ascii_lowercase),
        kind,
        path,
    }
}

/// A canary path attached to a main route.
#[derive(Clone, Copy, Debug)]
pub struct Attached<'a> {
    pub ingress: &'a Ingress,
    pub canary: &'a Canary,
    pub backend: &'a IngressBackend,
}

/// A canary path that found no main Ingress.
#[derive(Clone, Debug)]
pub struct Unpaired<'a> {
    pub ingress: &'a Ingress,
    pub error: FieldError,
}

/// Where main (index in the input, rule, path) -> its canaries, oldest first.
#[derive(Default)]
pub struct Pairing<'a> {
    attached: HashMap<(usize, usize, usize), Vec<Attached<'a>>>,
    pub unpaired: Vec<Unpaired<'a>>,
}

impl<'a> Pairing<'a> {
    /// The canaries of path `path` of rule `rule` of the `main`-th Ingress.
    pub fn of(&self, main: usize, rule: usize, path: usize) -> &[Attached<'a>] {
        self.attached
            .get(&(main, rule, path))
            .map_or(&[], Vec::as_slice)
    }
}

/// Pair every canary path of `ingresses` (in age order) with its main path.
pub fn pair<'a>(ingresses: &[&'a Ingress]) -> Pairing<'a> {
    let mut pairing = Pairing::default();
    if ingresses.iter().all(|i| i.annotations.canary.is_none()) {
        return pairing;
    }
    // Main paths by key, oldest first.
    let mut mains: HashMap<PathKey, Vec<(usize, usize, usize)>> = HashMap::new();
    for (i, ing) in ingresses.iter().enumerate() {
        if ing.annotations.canary.is_some() {
            continue;
        }
        for_paths(ing, |r, j, key, _| {
            mains.entry(key).or_default().push((i, r, j));
        });
    }
    for ing in ingresses {
        let Some(canary) = ing.annotations.canary.as_deref() else {
            continue;
        };
        for_paths(ing, |r, j, key, p| {
            let main = mains.get(&key).and_then(|list| {
                list.iter().copied().find(|&(i, _, _)| {
                    ingresses[i].annotations.matching == ing.annotations.matching
                })
            });
            match main {
                Some(at) => pairing.attached.entry(at).or_default().push(Attached {
                    ingress: ing,
                    canary,
                    backend: &p.backend,
                }),
                None => pairing.unpaired.push(Unpaired {
                    ingress: ing,
                    error: FieldError::new(
                        format!("spec.rules[{r}].http.paths[{j}]"),
                        format!(
                            "canary Ingress has no main (non-canary) Ingress with host {:?}, {} path {:?}{}",
                            key.host.as_deref().unwrap_or("*"),
                            key.kind.name(),
                            key.path,
                            if ing.annotations.matching.is_none() {
                                ""
                            } else {
                                " and the same match annotations"
                            },
                        ),
                    ),
                }),
            }
        });
    }
    pairing
}

fn for_paths<'a>(ing: &'a Ingress, mut f: impl FnMut(usize, usize, PathKey, &'a HttpIngressPath)) {
    for (r, rule) in ing.spec.rules.iter().enumerate() {
        let Some(http) = &rule.http else { continue };
        for (j, p) in http.paths.iter().enumerate() {
            f(r, j, path_key(ing, rule.host.as_deref(), p), p);
        }
    }
}

/// What one match added before the main route sends where.
#[derive(Debug)]
pub enum Extra<'a> {
    /// The canary's destinations when the request also carries `when`.
    Canary(Attached<'a>, Condition),
    /// The main destinations, without the canary split, when it carries `when`.
    Main(Condition),
}

/// The one match a canary route adds to the main route's.
#[derive(Clone, Debug)]
pub enum Condition {
    Header(HeaderMatcher),
    Cookie(CookieMatcher),
}

/// The routes to put before the main route, in order, for `attached` canaries.
pub fn extras<'a>(attached: &[Attached<'a>]) -> Vec<Extra<'a>> {
    let mut out = Vec::new();
    for a in attached {
        let c = a.canary;
        let weighted = c.weight.is_some();
        if let Some(h) = &c.header {
            let header = |value| {
                Condition::Header(HeaderMatcher {
                    source: HeaderSource::Header(h.clone()),
                    value,
                })
            };
            let value = match &c.header_rule {
                HeaderRule::AlwaysNever => StringMatch::Exact("always".into()),
                HeaderRule::Value(v) => StringMatch::Regex(always_or(v)),
                HeaderRule::Pattern(p) => StringMatch::Regex(p.clone()),
            };
            out.push(Extra::Canary(*a, header(value)));
            if c.header_rule == HeaderRule::AlwaysNever && (c.cookie.is_some() || weighted) {
                out.push(Extra::Main(header(StringMatch::Exact("never".into()))));
            }
        }
        if let Some(name) = &c.cookie {
            let cookie = |value: &str| {
                Condition::Cookie(CookieMatcher {
                    name: name.clone(),
                    value: value.into(),
                })
            };
            out.push(Extra::Canary(*a, cookie("always")));
            if weighted {
                out.push(Extra::Main(cookie("never")));
            }
        }
    }
    out
}

/// Higress's `always|<value>` for `canary-by-header-value`, the value taken literally.
fn always_or(value: &str) -> FullRegex {
    FullRegex::new(&format!("always|{}", regex::escape(value)))
        .expect("an escaped literal is a valid regex")
}

/// The total weight the destinations of a split are scaled to.
const SPLIT_SCALE: f64 = 1_000_000.0;

/// The main route's destinations sharing traffic with the weighted canaries
/// (`(canary-weight, destinations)`), `total` being the first canary's
/// `canary-weight-total` (raised to the canaries' sum when they ask for more). Each side
/// keeps its own destinations' proportions; weights are scaled to a total of one
/// million so the split is exact to 1e-6 (Higress rounds each to whole percents).
pub fn split(
    main: Vec<WeightedCluster>,
    canaries: Vec<(u32, Vec<WeightedCluster>)>,
    total: u32,
) -> Vec<WeightedCluster> {
    if canaries.is_empty() {
        return main;
    }
    let canary_sum: u64 = canaries.iter().map(|(w, _)| u64::from(*w)).sum();
    let total = (u64::from(total)).max(canary_sum).max(1) as f64;
    let mut out = Vec::new();
    let mut side = |share: f64, dests: Vec<WeightedCluster>| {
        let sum: u64 = dests.iter().map(|d| u64::from(d.weight)).sum();
        let n = dests.len() as f64;
        for mut d in dests {
            let part = if sum == 0 {
                1.0 / n
            } else {
                f64::from(d.weight) / sum as f64
            };
            d.weight = (share * part * SPLIT_SCALE).round() as u32;
            out.push(d);
        }
    };
    side((total - canary_sum as f64) / total, main);
    for (w, dests) in canaries {
        side(f64::from(w) / total, dests);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn dest(name: &str, weight: u32) -> WeightedCluster {
        WeightedCluster {
            name: name.into(),
            cluster: None,
            weight,
            protocol: Protocol::Http,
            tls: None,
            headers: None,
        }
    }

    #[test]
    fn split_keeps_each_sides_proportions() {
        let out = split(vec![dest("a", 100)], vec![(10, vec![dest("c", 100)])], 100);
        let w: Vec<u32> = out.iter().map(|d| d.weight).collect();
        assert_eq!(w, [900_000, 100_000]);
        // Two main destinations 20/80 and a 5-in-1000 canary.
        let out = split(
            vec![dest("a", 20), dest("b", 80)],
            vec![(5, vec![dest("c", 100)])],
            1000,
        );
        let w: Vec<u32> = out.iter().map(|d| d.weight).collect();
        assert_eq!(w, [199_000, 796_000, 5_000]);
        // Canaries asking for more than the total take everything.
        let out = split(
            vec![dest("a", 100)],
            vec![(80, vec![dest("c", 100)]), (70, vec![dest("d", 100)])],
            100,
        );
        let w: Vec<u32> = out.iter().map(|d| d.weight).collect();
        assert_eq!(w, [0, 533_333, 466_667]);
        assert_eq!(split(vec![dest("a", 100)], vec![], 100).len(), 1);
    }

    #[test]
    fn header_value_is_literal_or_always() {
        let r = always_or("a.b");
        assert!(r.is_match("a.b") && r.is_match("always"));
        assert!(!r.is_match("axb") && !r.is_match("never"));
    }
}
