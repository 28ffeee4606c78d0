//! The protocol the gateway speaks to an upstream.

/// What a cluster or a route's destination speaks: from a registry's `protocol`, a
/// Service port, or the `backend-protocol` annotation. The variant names are what the
/// stats (`port_name`) and `/debug/configz` show, lowercased.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 in plain text.
    #[default]
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 in plain text (h2c).
    Http2,
    /// gRPC: HTTP/2 in plain text.
    Grpc,
    /// gRPC over TLS.
    Grpcs,
}

impl Protocol {
    /// Whether connections to it are TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Grpcs)
    }
}
