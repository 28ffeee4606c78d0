//! An Ingress's rewrite, redirect and header-control annotations onto its routes, as
//! Higress's `rewrite.go`, `redirect.go` and `header_control.go` (`ApplyRoute`) and
//! Istio put them on the Envoy route:
//!
//! - `higress.io/rewrite-path` is Envoy's `prefix_rewrite` (or the `^<prefix>(/.*)?`
//!   regex rewrite Higress writes when the value has no trailing `/`).
//! - `rewrite-target` is Envoy's `regex_rewrite` whose pattern is the route's first match
//!   as Higress writes it: the path regex plus `.*` on regex routes, the exact path on
//!   exact and prefix routes (a prefix route's first match is its exact twin), `^/` on the
//!   `/` prefix. Every occurrence is replaced (RE2 `GlobalReplace`).
//! - `upstream-vhost` is `host_rewrite_literal`; without it a request `host` line of
//!   header control is (Istio's authority rewrite).
//! - `app-root` is a route of its own on each host of the Ingress: exact `/`, 302 to the
//!   path, first on the host (the newest Ingress's wins, as Higress records the latest).

use std::sync::Arc;

use crate::annotations::IngressAnnotations;
use crate::model::header_control::HeaderControl;
use crate::model::rewrite::{PathRewrite, Redirect, Rewrite};
use crate::model::{PathMatch, Route};
use crate::resources::FieldError;

/// What every route of one Ingress gets, built once per Ingress.
pub struct IngressPolicy<'a> {
    ann: &'a IngressAnnotations,
    header_control: Option<Arc<HeaderControl>>,
}

impl<'a> IngressPolicy<'a> {
    pub fn new(ann: &'a IngressAnnotations) -> Self {
        IngressPolicy {
            ann,
            header_control: ann.header_control.control.clone().map(Arc::new),
        }
    }

    /// Whether a URL redirect replaces the route's `ssl-redirect` (Higress's route has
    /// one redirect).
    pub fn redirects(&self) -> bool {
        self.ann.redirect.url.is_some()
    }

    /// Put the policy on `route`, whose path was written `raw`.
    pub fn apply(&self, route: &mut Route, raw: &str) -> Result<(), FieldError> {
        let p = &mut route.policy;
        p.header_control = self.header_control.clone();
        if let Some(r) = &self.ann.redirect.url {
            // A redirect route goes nowhere: no rewrite.
            p.redirect = Some(Box::new(r.clone()));
            return Ok(());
        }
        let rw = &self.ann.rewrite;
        let path = match (&rw.path, &rw.target) {
            (Some(with), _) => Some(PathRewrite::Prefix(with.clone())),
            (None, Some(t)) => {
                let pattern = match &route.path {
                    PathMatch::Regex(_) => format!("{raw}.*"),
                    PathMatch::Prefix(p) if p.is_empty() => "^/".to_string(),
                    PathMatch::Prefix(p) | PathMatch::Exact(p) => regex::escape(p),
                };
                let pattern = regex::Regex::new(&pattern).map_err(|e| {
                    FieldError::new(
                        crate::annotations::field_path(&t.key),
                        format!("the path {raw:?} is not a valid regex: {e}"),
                    )
                })?;
                Some(PathRewrite::Regex {
                    pattern,
                    substitution: t.substitution.clone(),
                })
            }
            (None, None) => None,
        };
        let host = rw
            .host
            .clone()
            .or_else(|| self.ann.header_control.host.clone());
        if path.is_some() || host.is_some() {
            p.rewrite = Some(Box::new(Rewrite { path, host }));
        }
        Ok(())
    }
}

/// The `app-root` route of a host: exact `/`, a 302 to `root`.
pub fn app_root_route(name: &str, root: &str, ssl_redirect: bool) -> Route {
    let mut route = Route::new(
        format!("{name}-app-root").into(),
        PathMatch::Exact("/".into()),
        false,
        Vec::new(),
        None,
        ssl_redirect,
    );
    route.policy.redirect = Some(Box::new(Redirect {
        scheme: None,
        authority: None,
        path: Some(root.to_string()),
        code: 302,
    }));
    route
}
