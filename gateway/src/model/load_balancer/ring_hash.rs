//! Envoy's ring hash (`RING_HASH`), which Istio gives a DestinationRule's
//! `consistentHash` unless it asks for Maglev: every endpoint puts points on a ring of
//! 64-bit hashes, a request's hash goes to the first point at or after it. Built once
//! when the snapshot is built; a lookup is a binary search.
//!
//! Built as Envoy builds it (`ring_hash_lb.cc`): the ring has at least
//! [`MIN_RING_SIZE`] points (Envoy's `minimum_ring_size` default, which Istio sets), each
//! endpoint getting `ceil(min_ring_size / n)` of them (equal weights); point `i` of the
//! endpoint `ip:port` is `xxh64("ip:port_i")`. Since the per-endpoint count depends on
//! the number of endpoints, an endpoint leaving moves its own keys and also a few keys
//! between the others (the new points of each remaining endpoint): see the test
//! `keys_moved_when_one_of_ten_endpoints_leaves`.

use std::fmt::Write;
use std::net::SocketAddr;

use super::xxhash::xxh64;

/// Envoy's default `minimum_ring_size` (Istio writes it for `consistentHash`).
pub const MIN_RING_SIZE: u64 = 1024;
/// Envoy's default `maximum_ring_size`.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// The ring: points sorted by hash, each naming an endpoint index.
#[derive(Debug, Default)]
pub struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// The ring of `endpoints`, all of weight 1.
    pub fn new(endpoints: &[SocketAddr]) -> Ring {
        let n = endpoints.len();
        if n == 0 {
            return Ring::default();
        }
        // Envoy's arithmetic, in the same floating point, so the counts match its own.
        let weight = 1.0 / n as f64;
        let scale = ((weight * MIN_RING_SIZE as f64).ceil() / weight).min(MAX_RING_SIZE as f64);
        let mut points = Vec::with_capacity(scale.ceil() as usize);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        let mut key = String::new();
        for (index, addr) in endpoints.iter().enumerate() {
            target += scale * weight;
            let mut i = 0u64;
            while current < target {
                key.clear();
                let _ = write!(key, "{addr}_{i}");
                points.push((xxh64(key.as_bytes()), index as u32));
                i += 1;
                current += 1.0;
            }
        }
        points.sort_by_key(|p| p.0);
        Ring { points }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The endpoint for `hash`: the first point at or after it, wrapping around. A
    /// retry (`attempt > 0`) takes the point `attempt` places further, as Envoy does
    /// when a retry host predicate rejects the host.
    pub fn choose(&self, hash: u64, attempt: usize) -> Option<u32> {
        if self.points.is_empty() {
            return None;
        }
        let mut at = self.points.partition_point(|p| p.0 < hash);
        if at == self.points.len() {
            at = 0;
        }
        Some(self.points[(at + attempt) % self.points.len()].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, 1 + i as u8], 8080)))
            .collect()
    }

    #[test]
    fn ring_sizes_follow_envoy() {
        // ceil(1024 / n) points per endpoint.
        assert_eq!(Ring::new(&endpoints(10)).len(), 1030);
        assert_eq!(Ring::new(&endpoints(9)).len(), 1026);
        assert_eq!(Ring::new(&endpoints(1)).len(), 1024);
        assert_eq!(Ring::new(&endpoints(3)).len(), 1026);
        assert!(Ring::new(&[]).choose(1, 0).is_none());
    }

    #[test]
    fn a_point_takes_the_hashes_up_to_it() {
        let ring = Ring::new(&endpoints(3));
        let (h, e) = ring.points[5];
        assert_eq!(ring.choose(h, 0), Some(e));
        assert_eq!(ring.choose(ring.points[4].0 + 1, 0), Some(e));
        // Past the last point: the first one.
        assert_eq!(ring.choose(u64::MAX, 0), Some(ring.points[0].1));
        assert_eq!(ring.choose(h, 1), Some(ring.points[6].1));
    }
}
