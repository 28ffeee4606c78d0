//! Quantiles from histogram buckets, computed as Prometheus' `histogram_quantile` does:
//! find the bucket the rank falls in and interpolate linearly inside it.

/// The `q` quantile (0..=1) of samples counted per bucket: `counts[i]` values in
/// `(bounds[i-1], bounds[i]]` (the first bucket from 0), `counts[bounds.len()]` above
/// the last bound. `None` without samples.
///
/// As Prometheus: a rank in the `+Inf` bucket gives the highest finite bound, and the
/// first bucket's lower edge is 0 (durations and sizes are not negative).
pub fn histogram_quantile(q: f64, bounds: &[f64], counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || q.is_nan() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        let cumulative = below + n;
        // The first bucket whose cumulative count reaches the rank (Prometheus searches
        // with `>=`), skipping empty ones so a rank of 0 lands where samples are.
        if n > 0 && cumulative as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                // The `+Inf` bucket: its lower edge is all that is known.
                return Some(bounds.last().copied().unwrap_or(0.0));
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let within = (rank - below as f64) / n as f64;
            return Some(lower + (upper - lower) * within);
        }
        below = cumulative;
    }
    // Unreachable with total > 0 (the last non-empty bucket reaches the total).
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry::stats::ENVOY_DEFAULT_BUCKETS as B;

    fn counts(pairs: &[(usize, u64)]) -> Vec<u64> {
        let mut c = vec![0; B.len() + 1];
        for &(i, n) in pairs {
            c[i] = n;
        }
        c
    }

    #[test]
    fn interpolates_inside_the_bucket_as_prometheus() {
        // 100 samples in (5, 10]: p50 halfway, p90 at 9.5, p99 at 9.95.
        let c = counts(&[(3, 100)]);
        assert_eq!(histogram_quantile(0.5, B, &c), Some(7.5));
        assert_eq!(histogram_quantile(0.9, B, &c), Some(9.5));
        assert!((histogram_quantile(0.99, B, &c).unwrap() - 9.95).abs() < 1e-9);
        // 90 fast (<= 0.5 ms), 10 in (100, 250]: p50 in the first bucket from 0.
        let c = counts(&[(0, 90), (7, 10)]);
        assert!((histogram_quantile(0.5, B, &c).unwrap() - 0.5 * 50.0 / 90.0).abs() < 1e-9);
        assert_eq!(
            histogram_quantile(0.9, B, &c),
            Some(0.5),
            "exactly the edge"
        );
        // rank 99 of 100: 9 of the 10 in (100, 250].
        assert_eq!(histogram_quantile(0.99, B, &c), Some(100.0 + 150.0 * 0.9));
    }

    #[test]
    fn edges_and_empty() {
        assert_eq!(histogram_quantile(0.5, B, &counts(&[])), None);
        let c = counts(&[(B.len(), 3)]);
        assert_eq!(
            histogram_quantile(0.5, B, &c),
            Some(3_600_000.0),
            "+Inf: the highest finite bound"
        );
        let c = counts(&[(4, 2), (6, 2)]);
        assert_eq!(
            histogram_quantile(0.0, B, &c),
            Some(10.0),
            "q=0: the lower edge of the first sample's bucket"
        );
        assert_eq!(histogram_quantile(1.0, B, &c), Some(100.0));
        assert_eq!(
            histogram_quantile(0.5, B, &c),
            Some(25.0),
            "rank 2 ends bucket 4"
        );
        assert_eq!(histogram_quantile(f64::NAN, B, &c), None);
    }
}
