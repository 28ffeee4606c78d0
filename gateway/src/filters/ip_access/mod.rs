//! IP access control: the route filter of `whitelist-source-range`,
//! `blacklist-source-range` and their `domain-` forms.
//!
//! Higress turns these annotations into an Envoy RBAC policy on the route (its Istio's
//! `mseingress/rbac.go`): a `remote_ip` principal per range, a DENY policy on "not any
//! of them" for an allow list, on "any of them" for a deny list. `remote_ip` is the
//! downstream remote address the connection manager derived, which at Higress's gateway
//! (`use_remote_address: true`, `xff_num_trusted_hops` from the mesh's
//! `gatewayTopology.numTrustedProxies`, 0 by default) is the TCP peer: a client cannot
//! pick its address with `x-forwarded-for`. This gateway has no trusted hops either
//! (see `proxy/headers.rs`), so the address checked is [`MatchInput::peer`].
//!
//! A denied request gets Envoy's RBAC reply: 403, `RBAC: access denied`.

use crate::model::cidr::Cidr;
use crate::model::http_filter::{FilterStatus, HttpFilter, LocalReply, MatchInput};

/// Envoy's RBAC filter's local reply body.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// An allow or deny list of address ranges.
#[derive(Debug)]
pub struct IpAccessFilter {
    /// `true`: only addresses in `ranges` pass; `false`: addresses in `ranges` do not.
    allow: bool,
    ranges: Box<[Cidr]>,
}

impl IpAccessFilter {
    pub fn new(allow: bool, ranges: Vec<Cidr>) -> Self {
        IpAccessFilter {
            allow,
            ranges: ranges.into_boxed_slice(),
        }
    }

    /// Whether a request from `peer` passes. A request without an IP peer (a Unix
    /// socket) matches no range.
    pub fn permits(&self, peer: Option<std::net::IpAddr>) -> bool {
        let listed = peer.is_some_and(|ip| self.ranges.iter().any(|c| c.contains(ip)));
        listed == self.allow
    }
}

impl HttpFilter for IpAccessFilter {
    fn name(&self) -> &'static str {
        "envoy.filters.http.rbac"
    }

    fn on_request_headers(
        &self,
        _req: &mut pingora_http::RequestHeader,
        input: &MatchInput<'_>,
    ) -> FilterStatus {
        if self.permits(input.peer) {
            return FilterStatus::Continue;
        }
        tracing::debug!(peer = ?input.peer, route = ?input.route, "denied by source range");
        FilterStatus::Reply(LocalReply {
            status: 403,
            body: DENIED_BODY.as_bytes().to_vec(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(allow: bool, list: &[&str]) -> IpAccessFilter {
        IpAccessFilter::new(
            allow,
            list.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
        )
    }

    #[test]
    fn allow_and_deny_lists() {
        let ip = |s: &str| Some(s.parse().unwrap());
        let w = filter(true, &["10.0.0.0/8", "::1"]);
        assert!(w.permits(ip("10.1.1.1")));
        assert!(w.permits(ip("::1")));
        assert!(!w.permits(ip("127.0.0.1")));
        assert!(!w.permits(None));
        let b = filter(false, &["127.0.0.1", "2001:db8::/32"]);
        assert!(!b.permits(ip("127.0.0.1")));
        assert!(!b.permits(ip("2001:db8::5")));
        assert!(b.permits(ip("::1")));
        assert!(b.permits(None));
    }

    #[test]
    fn a_denied_request_gets_rbac_403() {
        let f = filter(true, &["10.0.0.0/8"]);
        let mut req = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
        let input = MatchInput {
            peer: Some("192.168.0.1".parse().unwrap()),
            ..Default::default()
        };
        match f.on_request_headers(&mut req, &input) {
            FilterStatus::Reply(r) => {
                assert_eq!(r.status, 403);
                assert_eq!(r.body, b"RBAC: access denied");
            }
            other => panic!("{other:?}"),
        }
    }
}
