//! TLS towards an upstream as the data plane uses it: the SNI to send, whether to
//! verify, the trust anchors and client certificate, all decided when the snapshot is
//! built (`translate/upstream_tls.rs` has the rules); a request only picks up the result
//! (and, for a request-host SNI, copies its host).

use std::sync::Arc;

use openssl::x509::X509;
use pingora_core::utils::tls::CertKey;

/// The SNI a request's `Host` gives: the name without port or trailing dot, lowercase;
/// `None` for an IP literal or no host (SNI carries DNS names only).
pub fn sni_from_host(host: &str) -> Option<String> {
    let name = super::host::strip_port(host).trim_end_matches('.');
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() || bare.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Some(bare.to_ascii_lowercase())
}

/// The SNI an upstream TLS connection sends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Sni {
    None,
    Fixed(String),
    /// The request's host (`Host` / `:authority`, port removed).
    RequestHost,
}

/// TLS towards one destination.
pub struct UpstreamTls {
    pub sni: Sni,
    /// Verify the certificate chain and that it names the SNI.
    pub verify: bool,
    /// Trust anchors; `None`: the system trust store.
    pub ca: Option<Arc<Box<[X509]>>>,
    pub client_cert: Option<Arc<CertKey>>,
    /// Mixed into the pool key: connections with other TLS settings are not shared.
    pub pool_salt: u64,
    /// What `/debug/configz` shows.
    pub describe: serde_json::Value,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hosts_become_dns_names_only() {
        assert_eq!(
            sni_from_host("Api.Example.com:8443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            sni_from_host("api.example.com.").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(sni_from_host("127.0.0.1:80"), None);
        assert_eq!(sni_from_host("[::1]:8080"), None);
        assert_eq!(sni_from_host(""), None);
    }
}
