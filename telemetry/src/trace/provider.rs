//! The tracing providers: each names a collector protocol (the exporters), a
//! propagation format and the names and tags of its spans.

/// A tracer: the collector protocol its exporter speaks, and for the gateway also the
/// propagation format it reads and writes and how it names spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    SkyWalking,
    Zipkin,
    OpenTelemetry,
}

impl Provider {
    /// Every provider, in [`Provider::index`] order.
    pub const ALL: [Provider; 3] = [
        Provider::SkyWalking,
        Provider::Zipkin,
        Provider::OpenTelemetry,
    ];

    /// The name `higress-config` gives the provider (its `tracing.<name>` block), also
    /// the value of the gateway's `provider` stat label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::SkyWalking => "skywalking",
            Provider::Zipkin => "zipkin",
            Provider::OpenTelemetry => "opentelemetry",
        }
    }

    /// The provider's place in [`Provider::ALL`]: a stable index for arrays kept per
    /// provider (the gateway's per-provider stat handles).
    pub const fn index(self) -> usize {
        match self {
            Provider::SkyWalking => 0,
            Provider::Zipkin => 1,
            Provider::OpenTelemetry => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Provider;

    #[test]
    fn provider_index_is_its_place_in_all() {
        for (i, p) in Provider::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i, "{p:?}");
        }
    }
}
