//! Request mirroring (Envoy's `request_mirror_policies`, Istio's `mirror` and
//! `mirrorPercentage`, from Higress's `mirror-*` annotations): a copy of a route's
//! requests goes to another cluster, fire-and-forget. The data plane side is
//! `proxy/mirror.rs`.

use std::sync::Arc;

use super::cluster::Cluster;

/// Envoy's runtime fractions count in millionths.
pub const MILLION: u32 = 1_000_000;

/// Where a route's requests are mirrored, and how many of them.
#[derive(Debug)]
pub struct MirrorPolicy {
    /// `outbound|<port>||<host>`, known or not.
    pub cluster_name: Arc<str>,
    /// `None` while no registry defines the host: nothing is mirrored (and nothing is
    /// counted, as there is no cluster to count on).
    pub cluster: Option<Arc<Cluster>>,
    /// Requests mirrored, per million (100 % = [`MILLION`]).
    pub per_million: u32,
}

impl MirrorPolicy {
    /// A mirror of `percent` (0..=100) of the requests.
    pub fn new(cluster_name: Arc<str>, cluster: Option<Arc<Cluster>>, percent: u32) -> Self {
        MirrorPolicy {
            cluster_name,
            cluster,
            per_million: percent.min(100) * (MILLION / 100),
        }
    }

    /// Whether the request with `roll` (uniform over `u32`) is mirrored.
    pub fn sampled(&self, roll: u32) -> bool {
        if self.per_million >= MILLION {
            return true;
        }
        ((u64::from(roll) * u64::from(MILLION)) >> 32) < u64::from(self.per_million)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_percentage() {
        let at = |percent| {
            let m = MirrorPolicy::new("c".into(), None, percent);
            // 10,000 rolls spread evenly over the range.
            (0..10_000u64)
                .filter(|i| m.sampled(((2 * i + 1) * (1u64 << 32) / 20_000) as u32))
                .count()
        };
        assert_eq!(at(0), 0);
        assert_eq!(at(30), 3000);
        assert_eq!(at(100), 10_000);
        assert!(MirrorPolicy::new("c".into(), None, 100).sampled(u32::MAX));
        assert!(!MirrorPolicy::new("c".into(), None, 0).sampled(0));
    }
}
