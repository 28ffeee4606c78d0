//! Istio Gateways into the servers VirtualServices bind to: which Gateways are ours
//! (their `selector` within `--gateway-selector`), which listener each server is
//! (a TLS server: the HTTPS listener, with its `credentialName` certificate; plain HTTP
//! on the cluster-local port: the cluster-local listener; other plain HTTP: the
//! gateway's listeners), and how hosts of a VirtualService meet a server's.

use std::collections::HashMap;

use super::{Options, Output};
use crate::resources::istio::gateway::TlsMode;
use crate::resources::IstioGateway;
use crate::translate::certificates::TlsEntry;

/// Which route table a server's routes go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The gateway's HTTP and HTTPS listeners.
    External,
    /// The cluster-local listener (`--local-http-addr`).
    Local,
}

/// One server of one of our Gateways, as VirtualServices bind to it.
#[derive(Debug)]
pub struct ServerInfo {
    pub listener: Listener,
    pub port: u32,
    /// (namespace allowed to bind, `None`: any; host, lowercase).
    pub hosts: Vec<(Option<String>, String)>,
    /// `tls.httpsRedirect` on a plain-HTTP server.
    pub ssl_redirect: bool,
    /// A plain-HTTP server (else it terminates TLS).
    pub plain: bool,
}

/// Our Gateways' servers by (namespace, name).
pub type Servers = HashMap<(String, String), Vec<ServerInfo>>;

/// Whether every label of the Gateway's selector is one of ours.
pub fn is_ours(g: &IstioGateway, opts: &Options) -> bool {
    g.spec
        .selector
        .iter()
        .all(|(k, v)| opts.selector.get(k) == Some(v))
}

/// The servers of our Gateways; certificates of TLS servers go to `out.routes.tls`.
pub fn servers(gateways: &[&IstioGateway], opts: &Options, out: &mut Output) -> Servers {
    let mut all = Servers::new();
    for g in gateways {
        if !is_ours(g, opts) {
            continue;
        }
        let ns = &g.metadata.namespace;
        let gname = format!("gateway {ns}/{}", g.metadata.name);
        let mut list = Vec::new();
        for (i, s) in g.spec.servers.iter().enumerate() {
            let at = format!("spec.servers[{i}]");
            let hosts: Vec<(Option<String>, String)> = s
                .split_hosts()
                .map(|(n, h)| {
                    let n = match n {
                        Some(".") => Some(ns.clone()),
                        other => other.map(str::to_string),
                    };
                    (n, h)
                })
                .collect();
            let listener = if s.terminates_tls() {
                let tls = s.tls.as_ref().expect("terminates_tls");
                if tls.credential_name.is_empty() {
                    out.not_enforced.push(format!(
                        "{gname}: {at}.tls.serverCertificate (certificate files; only credentialName Secrets are read)"
                    ));
                } else {
                    for (_, host) in &hosts {
                        out.routes.tls.push(TlsEntry {
                            origin: format!("{gname} {at}.tls"),
                            host: host.clone(),
                            namespace: ns.clone(),
                            secret: tls.credential_name.clone(),
                        });
                    }
                }
                if matches!(tls.mode, TlsMode::Mutual | TlsMode::OptionalMutual) {
                    out.not_enforced.push(format!(
                        "{gname}: {at}.tls.mode {:?} (client certificates are not requested)",
                        tls.mode
                    ));
                }
                Listener::External
            } else if s.is_plain_http() {
                if Some(s.port.number) == opts.local_port.map(u32::from) {
                    Listener::Local
                } else {
                    Listener::External
                }
            } else {
                out.not_enforced.push(format!(
                    "{gname}: {at} ({} {}{}; only HTTP and TLS-terminating servers are served)",
                    s.port.protocol,
                    s.port.number,
                    s.tls
                        .as_ref()
                        .map_or(String::new(), |t| format!(", tls mode {:?}", t.mode)),
                ));
                continue;
            };
            list.push(ServerInfo {
                listener,
                port: s.port.number,
                hosts,
                ssl_redirect: s.is_plain_http() && s.tls.as_ref().is_some_and(|t| t.https_redirect),
                plain: s.is_plain_http(),
            });
        }
        all.insert((ns.clone(), g.metadata.name.clone()), list);
    }
    all
}

/// Whether `host` is covered by the wildcard `*.suffix` (`suffix` with its dot).
fn wildcard_covers(wild: &str, host: &str) -> bool {
    let suffix = &wild[1..];
    host.len() > suffix.len() && host.ends_with(suffix)
}

/// Where a VirtualService host meets a server host: the more specific of the two, as
/// Istio takes it; `None` when they do not meet.
pub fn intersect(vs: &str, server: &str) -> Option<String> {
    let (vw, sw) = (vs.starts_with('*'), server.starts_with('*'));
    let r = match (vs, server) {
        (_, "*") => vs,
        ("*", _) => server,
        _ if vw && sw => {
            if vs.len() >= server.len() && vs.ends_with(&server[1..]) {
                vs
            } else if server.ends_with(&vs[1..]) {
                server
            } else {
                return None;
            }
        }
        _ if vw && wildcard_covers(vs, server) => server,
        _ if sw && wildcard_covers(server, vs) => vs,
        _ if vs == server => vs,
        _ => return None,
    };
    Some(r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_meet_at_the_more_specific() {
        assert_eq!(
            intersect("a.example.com", "*").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect("*", "a.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(intersect("*", "*").as_deref(), Some("*"));
        assert_eq!(
            intersect("a.example.com", "*.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect("*.example.com", "a.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect("*.a.example.com", "*.example.com").as_deref(),
            Some("*.a.example.com")
        );
        assert_eq!(
            intersect("*.example.com", "*.a.example.com").as_deref(),
            Some("*.a.example.com")
        );
        assert_eq!(intersect("example.com", "*.example.com"), None);
        assert_eq!(intersect("a.example.org", "a.example.com"), None);
    }
}
