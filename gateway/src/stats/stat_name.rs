//! `mesh.outboundClusterStatName`: the Istio pattern that renames a cluster in its stats
//! (Envoy's `alt_stat_name`), e.g. `outbound_%SERVICE_PORT%_%SUBSET_NAME%_%SERVICE_FQDN%`.

/// What a cluster's stat name can be made of.
#[derive(Clone, Debug)]
pub struct ClusterIdentity<'a> {
    /// `outbound|<port>|<subset>|<host>`, used when no pattern is set.
    pub name: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// The port endpoints listen on (a static registry's `ip:port`); the service port
    /// otherwise.
    pub target_port: u16,
    /// The service port's name (its protocol, as McpBridge service entries name it).
    pub port_name: &'a str,
    pub subset: &'a str,
}

/// A parsed `outboundClusterStatName`; empty means "the cluster name itself".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatNamePattern(String);

impl StatNamePattern {
    pub fn new(pattern: &str) -> Self {
        StatNamePattern(pattern.trim().to_string())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `cluster_name` label for a cluster, with Istio's substitutions:
    /// `%SERVICE%` is `<name>.<namespace>` for a Kubernetes service and the host
    /// otherwise, `%SERVICE_NAME%` the service's name (or host), `%SERVICE_FQDN%` the
    /// host, `%SERVICE_PORT%`, `%TARGET_PORT%`, `%SERVICE_PORT_NAME%`, `%SUBSET_NAME%`.
    pub fn apply(&self, c: &ClusterIdentity<'_>) -> String {
        if self.0.is_empty() {
            return c.name.to_string();
        }
        let kube = c.host.strip_suffix(".svc.cluster.local");
        let short = kube.unwrap_or(c.host);
        let service_name = kube
            .map(|k| k.split('.').next().unwrap_or(k))
            .unwrap_or(c.host);
        // `%SERVICE_NAME%` and `%SERVICE_PORT_NAME%` go before their prefixes
        // `%SERVICE%` and `%SERVICE_PORT%` would match (Istio replaces whole tokens too).
        self.0
            .replace("%SERVICE_NAME%", service_name)
            .replace("%SERVICE_FQDN%", c.host)
            .replace("%SERVICE_PORT_NAME%", c.port_name)
            .replace("%SERVICE_PORT%", &c.port.to_string())
            .replace("%TARGET_PORT%", &c.target_port.to_string())
            .replace("%SUBSET_NAME%", c.subset)
            .replace("%SERVICE%", short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<'a>(host: &'a str, name: &'a str) -> ClusterIdentity<'a> {
        ClusterIdentity {
            name,
            host,
            port: 80,
            target_port: 8080,
            port_name: "http",
            subset: "",
        }
    }

    #[test]
    fn empty_pattern_keeps_the_cluster_name() {
        let c = id("httpbin.dns", "outbound|80||httpbin.dns");
        assert_eq!(
            StatNamePattern::default().apply(&c),
            "outbound|80||httpbin.dns"
        );
    }

    #[test]
    fn higress_manifest_pattern() {
        let p = StatNamePattern::new("outbound_%SERVICE_PORT%_%SUBSET_NAME%_%SERVICE_FQDN%");
        let c = id(
            "bff.app-system.svc.cluster.local",
            "outbound|80||bff.app-system.svc.cluster.local",
        );
        assert_eq!(p.apply(&c), "outbound_80__bff.app-system.svc.cluster.local");
    }

    #[test]
    fn every_token() {
        let p = StatNamePattern::new(
            "%SERVICE%|%SERVICE_NAME%|%SERVICE_FQDN%|%SERVICE_PORT%|%TARGET_PORT%|%SERVICE_PORT_NAME%|%SUBSET_NAME%",
        );
        let kube = id("bff.app.svc.cluster.local", "x");
        assert_eq!(
            p.apply(&kube),
            "bff.app|bff|bff.app.svc.cluster.local|80|8080|http|"
        );
        let registry = id("httpbin.dns", "x");
        assert_eq!(
            p.apply(&registry),
            "httpbin.dns|httpbin.dns|httpbin.dns|80|8080|http|"
        );
    }
}
