//! `request-header-control-*` and `response-header-control-*` (Higress's header control,
//! which becomes Envoy's route `request_headers_to_add/remove` and
//! `response_headers_to_add/remove`). Names and values are parsed once, when the
//! Ingress is; a request only edits its header map.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The edits of one direction, applied as Envoy's header parser applies them: remove
/// first, then overwrite (`update`), then append (`add`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// `*-remove`.
    pub remove: Vec<HeaderName>,
    /// `*-update`: set, replacing every value the header had (Envoy
    /// `OVERWRITE_IF_EXISTS_OR_ADD`).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// `*-add`: one more value beside those the header has (Envoy
    /// `APPEND_IF_EXISTS_OR_ADD`).
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Edit `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// A route's header control; an empty side does nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderControl {
    /// Applied to the request going upstream, after the plugins (where Envoy's router
    /// applies it).
    pub request: HeaderOps,
    /// Applied to the upstream response (and the route's redirects) before the plugins
    /// see it.
    pub response: HeaderOps,
}

impl HeaderControl {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_then_set_then_add() {
        let n = |s: &'static str| HeaderName::from_static(s);
        let v = HeaderValue::from_static;
        let ops = HeaderOps {
            remove: vec![n("x-gone"), n("x-set")],
            set: vec![(n("x-set"), v("new")), (n("x-both"), v("set"))],
            add: vec![(n("x-both"), v("added")), (n("x-add"), v("a"))],
        };
        let mut h = HeaderMap::new();
        h.insert("x-gone", v("1"));
        h.append("x-both", v("old1"));
        h.append("x-both", v("old2"));
        h.insert("x-add", v("first"));
        ops.apply(&mut h);
        assert!(h.get("x-gone").is_none());
        assert_eq!(h["x-set"], "new");
        let both: Vec<_> = h.get_all("x-both").iter().collect();
        assert_eq!(both, ["set", "added"]);
        let add: Vec<_> = h.get_all("x-add").iter().collect();
        assert_eq!(add, ["first", "a"]);
    }
}
