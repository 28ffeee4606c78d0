//! The access group's annotations (`annotations/access.rs`) → a route's own filters, in
//! the order they run: IP access, basic auth, local rate limit. Higress's gateway has
//! its RBAC filter before its local rate limit filter (its Istio's
//! `plugin/mseingress`), and a source-range denial should not cost a bcrypt check or a
//! token; basic auth sits between them, so only authenticated requests take tokens.
//!
//! - Source ranges: a route's own list (`whitelist-source-range` /
//!   `blacklist-source-range`) wins; without it the route takes its host's
//!   `domain-*-source-range` list, from the oldest Ingress of that host that has one
//!   (Higress merged a host's domain list into its virtual host from the first Ingress
//!   that set it, and Envoy uses the most specific per-route config).
//! - Local rate limit: one bucket per route (each path of each rule), per process.
//! - Basic auth: the users are read from the Secret now; a missing Secret (or key)
//!   is an error naming the annotation, and the Ingress's routes are left out.

use std::collections::HashMap;
use std::sync::Arc;

use super::certificates::Secrets;
use crate::annotations::access::{AuthSecretType, BasicAuth, SourceRange};
use crate::annotations::{field_path, AccessAnnotations};
use crate::error::FieldError;
use crate::filters::basic_auth::{htpasswd, BasicAuthFilter};
use crate::filters::ip_access::IpAccessFilter;
use crate::filters::local_rate_limit::{LocalRateLimitFilter, LocalRateLimitStats};
use crate::model::http_filter::HttpFilter;
use crate::resources::Ingress;

/// The htpasswd key of an `auth-file` Secret.
const AUTH_FILE_KEY: &str = "auth";

/// What the access filters are built with.
pub struct AccessInputs<'a> {
    pub secrets: &'a Secrets,
    /// The process's local rate limit counters (every route counts into them).
    pub rate_limit_stats: &'a LocalRateLimitStats,
    /// Each host's domain-level source range filter (`None`: rules without host).
    pub domain: HashMap<Option<String>, Arc<dyn HttpFilter>>,
}

impl<'a> AccessInputs<'a> {
    /// Gather the hosts' domain lists from `ingresses` (oldest first).
    pub fn new(
        ingresses: &[&Ingress],
        secrets: &'a Secrets,
        rate_limit_stats: &'a LocalRateLimitStats,
    ) -> Self {
        let mut domain: HashMap<Option<String>, Arc<dyn HttpFilter>> = HashMap::new();
        for ing in ingresses {
            let Some(list) = &ing.annotations.access.domain_source_range else {
                continue;
            };
            let filter = ip_filter(list);
            for rule in &ing.spec.rules {
                let host = rule.host.as_ref().map(|h| h.to_ascii_lowercase());
                domain.entry(host).or_insert_with(|| filter.clone());
            }
            if ing.spec.default_backend.is_some() {
                domain.entry(None).or_insert_with(|| filter.clone());
            }
        }
        AccessInputs {
            secrets,
            rate_limit_stats,
            domain,
        }
    }
}

fn ip_filter(list: &SourceRange) -> Arc<dyn HttpFilter> {
    Arc::new(IpAccessFilter::new(list.allow, list.ranges.clone()))
}

/// The filters one Ingress's annotations give each of its routes.
pub struct IngressAccess {
    ip: Option<Arc<dyn HttpFilter>>,
    auth: Option<Arc<dyn HttpFilter>>,
    rate_limit: Option<crate::annotations::access::RateLimit>,
}

impl IngressAccess {
    /// Read the Ingress's access annotations; problems that leave something out go to
    /// `notes`.
    pub fn new(
        ing: &Ingress,
        inputs: &AccessInputs<'_>,
        notes: &mut Vec<String>,
    ) -> Result<IngressAccess, FieldError> {
        let ann: &AccessAnnotations = &ing.annotations.access;
        let auth = match &ann.basic_auth {
            Some(b) => Some(basic_auth(
                b,
                &ing.metadata.namespace,
                inputs.secrets,
                notes,
            )?),
            None => None,
        };
        Ok(IngressAccess {
            ip: ann.source_range.as_ref().map(ip_filter),
            auth,
            rate_limit: ann.rate_limit,
        })
    }

    /// The filters of one route of `host`, in running order.
    pub fn route_filters(
        &self,
        host: Option<&str>,
        inputs: &AccessInputs<'_>,
    ) -> Vec<Arc<dyn HttpFilter>> {
        let mut out = Vec::new();
        let ip = self
            .ip
            .clone()
            .or_else(|| inputs.domain.get(&host.map(str::to_string)).cloned());
        out.extend(ip);
        out.extend(self.auth.clone());
        if let Some(rl) = &self.rate_limit {
            out.push(Arc::new(LocalRateLimitFilter::new(
                rl.max_tokens,
                rl.tokens_per_fill,
                rl.fill_interval,
                inputs.rate_limit_stats.clone(),
            )));
        }
        out
    }
}

/// The basic auth filter of an Ingress in `namespace`, its users read from the Secret.
fn basic_auth(
    b: &BasicAuth,
    namespace: &str,
    secrets: &Secrets,
    notes: &mut Vec<String>,
) -> Result<Arc<dyn HttpFilter>, FieldError> {
    let (ns, name) = b.secret_in(namespace);
    let err = |m: String| FieldError::new(field_path(&b.secret_key), m);
    let secret = secrets
        .get(&(ns.clone(), name.clone()))
        .ok_or_else(|| err(format!("Secret {ns}/{name} not found")))?;
    let (users, unsupported) = match b.secret_type {
        AuthSecretType::AuthFile => {
            let file = secret.data.get(AUTH_FILE_KEY).ok_or_else(|| {
                err(format!(
                    "Secret {ns}/{name} has no key {AUTH_FILE_KEY:?} (auth-secret-type auth-file)"
                ))
            })?;
            htpasswd::parse_file(&String::from_utf8_lossy(file))
        }
        AuthSecretType::AuthMap => {
            let (mut users, mut unsupported) = (Vec::new(), Vec::new());
            for (user, hash) in &secret.data {
                htpasswd::push_user(
                    &mut users,
                    &mut unsupported,
                    user,
                    &String::from_utf8_lossy(hash),
                );
            }
            (users, unsupported)
        }
    };
    if users.is_empty() {
        notes.push(format!(
            "{}: Secret {ns}/{name} has no users; every request gets 401",
            b.secret_key
        ));
    }
    for u in unsupported {
        notes.push(format!(
            "{}: Secret {ns}/{name}: {u}; that user never authenticates",
            b.secret_key
        ));
    }
    Ok(Arc::new(BasicAuthFilter::new(users, &b.realm)))
}
