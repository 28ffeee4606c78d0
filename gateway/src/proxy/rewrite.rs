//! The route's own answer and edits, made where Envoy's router makes them: after the
//! route's filters and the plugin chain, before the request goes upstream.
//!
//! - A redirect route (`temporal-redirect`, `permanent-redirect`, `app-root`) answers
//!   with its `location` (Envoy's `newUri`); the route's response header control applies
//!   to it, as Envoy's does.
//! - Otherwise the request is edited in place, in Envoy's `finalizeRequestHeaders` order:
//!   request header control (remove, update, add), then the host (`upstream-vhost`), then
//!   the path (`rewrite-target`, `rewrite-path`; the query is kept). A rewritten path
//!   leaves the original target in `x-envoy-original-path` (unless
//!   `disableXEnvoyHeaders`), which the access log's `path` reads first, as Higress's
//!   log format (`%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`) does. Plugins ran before: they saw
//!   the request as the client sent it, as Envoy's filters before the router do.
//! - Response header control is applied to the upstream response before the plugins'
//!   response phase (Envoy's router applies it before the encoder filters).

use http::header::{HeaderName, HeaderValue};
use http::Uri;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use crate::model::filter_settings::GlobalOptionSettings;
use crate::model::header_control::HeaderOps;
use crate::model::rewrite::PathRewrite;
use crate::model::{PathMatch, Route};

pub const X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");

/// Whether the route redirects, rewrites or controls request headers still to be
/// applied (the common case: no). `control_done`: [`early_control`] applied them.
pub fn acts(route: &Route, control_done: bool) -> bool {
    let p = &route.policy;
    p.redirect.is_some()
        || p.rewrite.is_some()
        || (!control_done
            && p.header_control
                .as_ref()
                .is_some_and(|c| !c.request.is_empty()))
}

/// The route's request header control when it may be applied with the edge headers,
/// before the filters and plugins instead of after them: nothing in between can see
/// the difference when no plugin is configured, none of the route's filters acts on
/// this request (`filters_act`), and the route does not redirect. Saves converting
/// the request header a second time.
pub fn early_control(route: &Route, filters_act: bool, plugins: bool) -> Option<&HeaderOps> {
    let p = &route.policy;
    if plugins || filters_act || p.redirect.is_some() {
        return None;
    }
    p.header_control
        .as_deref()
        .map(|c| &c.request)
        .filter(|ops| !ops.is_empty())
}

/// Answer a redirect route, or edit the request for upstream. `Some(status)` when
/// answered.
pub async fn on_request(
    session: &mut Session,
    route: &Route,
    tls: bool,
    global: &GlobalOptionSettings,
    control_done: bool,
) -> pingora_error::Result<Option<u16>> {
    if let Some(r) = &route.policy.redirect {
        let req = session.req_header();
        let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let scheme = if tls { "https" } else { "http" };
        let location = r.location(scheme, super::request_host(req), target);
        let mut resp = ResponseHeader::build(r.code, Some(2))?;
        resp.insert_header(http::header::LOCATION, location)?;
        resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
        on_response(Some(route), &mut resp);
        session.write_response_header(Box::new(resp), true).await?;
        return Ok(Some(r.code));
    }
    upstream_request(route, session.req_header_mut(), global, control_done);
    Ok(None)
}

/// Header control (unless `control_done`), host and path of the request going upstream.
pub fn upstream_request(
    route: &Route,
    req: &mut RequestHeader,
    global: &GlobalOptionSettings,
    control_done: bool,
) {
    let p = &route.policy;
    let control = p
        .header_control
        .as_ref()
        .filter(|c| !control_done && !c.request.is_empty());
    let host = p.rewrite.as_ref().and_then(|r| r.host.as_ref());
    let path_rewrite = p.rewrite.as_ref().and_then(|r| r.path.as_ref());
    // Origin-form when the host changes: the upstream `:authority` comes from `Host`.
    let new_uri = if path_rewrite.is_some() || (host.is_some() && req.uri.authority().is_some()) {
        new_target(route, req, path_rewrite)
    } else {
        None
    };
    let original = match (&new_uri, path_rewrite) {
        (Some(_), Some(_)) if !global.disable_x_envoy_headers => req
            .uri
            .path_and_query()
            .and_then(|o| HeaderValue::from_str(o.as_str()).ok()),
        _ => None,
    };
    if control.is_some() || host.is_some() || original.is_some() {
        super::headers::edit_request(req, |h| {
            if let Some(c) = control {
                c.request.apply(h);
            }
            if let Some(host) = host {
                h.insert(http::header::HOST, host.clone());
            }
            if let Some(o) = original {
                h.insert(X_ENVOY_ORIGINAL_PATH, o);
            }
        });
    }
    if let Some(uri) = new_uri {
        req.set_uri(uri);
    }
}

/// The request's target with the path rewritten (the query kept).
fn new_target(route: &Route, req: &RequestHeader, rewrite: Option<&PathRewrite>) -> Option<Uri> {
    let original = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let (path, query) = match original.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (original, None),
    };
    let prefix = match &route.path {
        PathMatch::Prefix(p) => Some(p.as_str()),
        _ => None,
    };
    let mut target = rewrite
        .and_then(|rw| rw.apply(path, prefix))
        .unwrap_or_else(|| path.to_string());
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    let uri = Uri::try_from(target);
    if uri.is_err() {
        tracing::debug!(route = %route.name, "rewritten path is not a valid target; sent as it came");
    }
    uri.ok()
}

/// The route's response header control on `resp` (an upstream response or its redirect).
pub fn on_response(route: Option<&Route>, resp: &mut ResponseHeader) {
    let Some(c) = route
        .and_then(|r| r.policy.header_control.as_ref())
        .filter(|c| !c.response.is_empty())
    else {
        return;
    };
    crate::model::http_filter::edit_parts(resp, |p| c.response.apply(&mut p.headers));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::header_control::{HeaderControl, HeaderOps};
    use crate::model::rewrite::{Rewrite, Substitution};
    use std::sync::Arc;

    fn route(path: PathMatch, rewrite: Rewrite) -> Route {
        let mut r = Route::new("r".into(), path, false, vec![], None, false);
        r.policy.rewrite = Some(Box::new(rewrite));
        r
    }

    fn request(target: &str, host: &str) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        req.insert_header("host", host).unwrap();
        req
    }

    #[test]
    fn path_and_host_rewritten_query_kept_original_recorded() {
        let r = route(
            PathMatch::Regex(crate::model::route::PathRegex::new("/svc/(.*)").unwrap()),
            Rewrite {
                path: Some(PathRewrite::Regex {
                    pattern: regex::Regex::new("/svc/(.*).*").unwrap(),
                    substitution: Substitution::parse("/$1").unwrap(),
                }),
                host: Some(HeaderValue::from_static("internal")),
            },
        );
        let mut req = request("/svc/foo?a=1", "shop.com");
        let mut g = GlobalOptionSettings::default();
        upstream_request(&r, &mut req, &g, false);
        assert_eq!(req.uri.to_string(), "/foo?a=1");
        assert_eq!(req.headers["host"], "internal");
        assert_eq!(req.headers[X_ENVOY_ORIGINAL_PATH], "/svc/foo?a=1");
        g.disable_x_envoy_headers = true;
        let mut req = request("/svc/foo", "shop.com");
        upstream_request(&r, &mut req, &g, false);
        assert_eq!(req.uri.to_string(), "/foo");
        assert!(req.headers.get(X_ENVOY_ORIGINAL_PATH).is_none());
    }

    #[test]
    fn header_control_on_both_sides() {
        let mut r = Route::new(
            "r".into(),
            PathMatch::Prefix(String::new()),
            false,
            vec![],
            None,
            false,
        );
        let n = HeaderName::from_static;
        let v = HeaderValue::from_static;
        r.policy.header_control = Some(Arc::new(HeaderControl {
            request: HeaderOps {
                remove: vec![n("x-drop")],
                set: vec![],
                add: vec![(n("x-add"), v("1"))],
            },
            response: HeaderOps {
                remove: vec![n("server")],
                set: vec![(n("x-set"), v("2"))],
                add: vec![],
            },
        }));
        assert!(acts(&r, false));
        let mut req = request("/x", "a.com");
        req.insert_header("x-drop", "y").unwrap();
        upstream_request(&r, &mut req, &GlobalOptionSettings::default(), false);
        assert!(req.headers.get("x-drop").is_none());
        assert_eq!(req.headers["x-add"], "1");
        assert_eq!(req.uri.to_string(), "/x");
        // Applied early with the edge headers: nothing left to do here.
        let early = early_control(&r, false, false).expect("no filters, no plugins");
        assert_eq!(early, &r.policy.header_control.as_ref().unwrap().request);
        assert!(!acts(&r, true));
        assert!(
            early_control(&r, true, false).is_none(),
            "a filter acts first"
        );
        assert!(
            early_control(&r, false, true).is_none(),
            "plugins run first"
        );
        let mut req = request("/x", "a.com");
        req.insert_header("x-add", "0").unwrap();
        upstream_request(&r, &mut req, &GlobalOptionSettings::default(), true);
        assert_eq!(req.headers["x-add"], "0", "not applied twice");
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("server", "up").unwrap();
        on_response(Some(&r), &mut resp);
        assert!(resp.headers.get("server").is_none());
        assert_eq!(resp.headers["x-set"], "2");
    }
}
