//! Cumulative histograms as Envoy exports them: fixed bucket bounds, counts since start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::exemplar::{valid_trace_id, Exemplar, Slot};

/// Envoy's default histogram buckets, in the stat's unit (milliseconds for `*_time`).
pub const ENVOY_DEFAULT_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The sum is kept in thousandths of the unit, so it is one atomic add per sample.
const SUM_SCALE: f64 = 1000.0;

struct Cells {
    bounds: &'static [f64],
    /// One count per bound (values `<=` it and above the previous one), plus the overflow.
    counts: Box<[AtomicU64]>,
    sum_milli: AtomicU64,
    /// One exemplar slot per count, allocated on the first exemplar: histograms that
    /// never get one (and plain `record`) pay nothing for them.
    exemplars: OnceLock<Box<[Slot]>>,
}

/// A histogram series. Cloning shares the same cells; recording is two atomic adds.
#[derive(Clone)]
pub struct Histogram(Arc<Cells>);

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish()
    }
}

impl Histogram {
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(Cells {
            bounds,
            counts,
            sum_milli: AtomicU64::new(0),
            exemplars: OnceLock::new(),
        }))
    }

    /// Record one value in the stat's unit; negative and NaN values count as zero.
    pub fn record(&self, value: f64) {
        self.add(value);
    }

    /// Record like [`Histogram::record`] and keep `trace_id` as the exemplar of the
    /// value's bucket (the latest one wins), for OpenMetrics scrapes.
    ///
    /// Never waits: if another thread is writing the same bucket's exemplar at this
    /// instant, this one is skipped. Ids longer than [`MAX_TRACE_ID_LEN`] or with
    /// characters other than printable ASCII (minus `"` and `\`) are not kept.
    ///
    /// [`MAX_TRACE_ID_LEN`]: super::MAX_TRACE_ID_LEN
    pub fn record_with_exemplar(&self, value: f64, trace_id: &str) {
        let (i, v) = self.add(value);
        if !valid_trace_id(trace_id) {
            return;
        }
        let slots = self
            .0
            .exemplars
            .get_or_init(|| (0..self.0.counts.len()).map(|_| Slot::default()).collect());
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        slots[i].store(trace_id.as_bytes(), v, now_ms);
    }

    /// The two relaxed adds of a sample; returns its bucket and the value as counted.
    #[inline(always)]
    fn add(&self, value: f64) -> (usize, f64) {
        let v = if value > 0.0 { value } else { 0.0 };
        let c = &self.0;
        // `partition_point` finds the first bound >= v: Prometheus' `le` is inclusive.
        let i = c.bounds.partition_point(|&b| b < v);
        c.counts[i].fetch_add(1, Ordering::Relaxed);
        c.sum_milli
            .fetch_add((v * SUM_SCALE).round() as u64, Ordering::Relaxed);
        (i, v)
    }

    /// The latest exemplar of bucket `bucket` (the index into [`Histogram::cumulative`]).
    pub fn exemplar(&self, bucket: usize) -> Option<Exemplar> {
        self.0.exemplars.get()?.get(bucket)?.load()
    }

    /// Handles to these cells, the family's own included.
    pub(super) fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// Record a duration in milliseconds (the unit of Envoy's `*_time` histograms).
    pub fn record_ms(&self, d: std::time::Duration) {
        self.record(d.as_secs_f64() * 1000.0);
    }

    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn sum(&self) -> f64 {
        self.0.sum_milli.load(Ordering::Relaxed) as f64 / SUM_SCALE
    }

    /// The bucket bounds (the `+Inf` bucket has none).
    pub fn bounds(&self) -> &'static [f64] {
        self.0.bounds
    }

    /// Copy each bucket's own (not cumulative) count into `out`, the `+Inf` bucket's
    /// last, without allocating; returns how many were written (the fewer of the
    /// buckets and `out.len()`). For samplers that read often.
    pub fn bucket_counts(&self, out: &mut [u64]) -> usize {
        let n = out.len().min(self.0.counts.len());
        for (o, c) in out.iter_mut().zip(self.0.counts.iter()) {
            *o = c.load(Ordering::Relaxed);
        }
        n
    }

    /// `(upper bound, cumulative count)` per bound, then `(+Inf, total)`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.0.counts.len());
        for (i, c) in self.0.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            out.push((
                self.0.bounds.get(i).copied().unwrap_or(f64::INFINITY),
                total,
            ));
        }
        out
    }
}

/// A bound or a sum as Envoy prints it (`%.32g`): integers without a fraction or
/// exponent (`3600000`), others in their shortest exact form (`0.5`).
pub fn format_value(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v.fract() == 0.0 && v.abs() < 1e21 {
        return format!("{}", v as i128);
    }
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let h = Histogram::new(ENVOY_DEFAULT_BUCKETS);
        for v in [
            0.0,
            0.5,
            0.51,
            1.0,
            7.0,
            3600000.0,
            3600000.5,
            -3.0,
            f64::NAN,
        ] {
            h.record(v);
        }
        let c = h.cumulative();
        assert_eq!(c[0], (0.5, 4), "0, 0.5, and the negative and NaN as 0");
        assert_eq!(c[1], (1.0, 6), "0.51 and 1");
        assert_eq!(c[2], (5.0, 6));
        assert_eq!(c[3], (10.0, 7), "7");
        assert_eq!(c[18], (3600000.0, 8), "the last bound is inclusive");
        assert_eq!(c[19].1, 9, "+Inf holds everything");
        assert!(c[19].0.is_infinite());
        assert_eq!(h.count(), 9);
        assert_eq!(h.sum(), 0.5 + 0.51 + 1.0 + 7.0 + 3600000.0 + 3600000.5);
    }

    #[test]
    fn bucket_counts_are_per_bucket() {
        let h = Histogram::new(ENVOY_DEFAULT_BUCKETS);
        for v in [0.2, 0.3, 7.0, 1e9] {
            h.record(v);
        }
        let mut out = [9u64; 32];
        assert_eq!(h.bucket_counts(&mut out), ENVOY_DEFAULT_BUCKETS.len() + 1);
        assert_eq!(&out[..4], &[2, 0, 0, 1]);
        assert_eq!(out[ENVOY_DEFAULT_BUCKETS.len()], 1, "+Inf");
        assert_eq!(
            out[ENVOY_DEFAULT_BUCKETS.len() + 1],
            9,
            "past the buckets: untouched"
        );
        let mut short = [0u64; 2];
        assert_eq!(h.bucket_counts(&mut short), 2);
        assert_eq!(h.bounds(), ENVOY_DEFAULT_BUCKETS);
    }

    #[test]
    fn durations_are_milliseconds() {
        let h = Histogram::new(ENVOY_DEFAULT_BUCKETS);
        h.record_ms(std::time::Duration::from_micros(2500));
        assert_eq!(h.cumulative()[2], (5.0, 1));
        assert_eq!(h.sum(), 2.5);
    }

    #[test]
    fn exemplars_land_in_the_bucket_of_their_value() {
        let h = Histogram::new(ENVOY_DEFAULT_BUCKETS);
        h.record(3.0);
        assert_eq!(h.exemplar(2), None, "plain records keep no exemplar");
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        h.record_with_exemplar(3.0, "4bf92f3577b34da6a3ce929d0e0e4736");
        h.record_with_exemplar(4.5, "00f067aa0ba902b7");
        h.record_with_exemplar(-1.0, "0af7651916cd43dd");
        h.record_with_exemplar(1e9, "ffff");
        h.record_with_exemplar(7.0, "not \"valid\"");
        assert_eq!(h.count(), 6, "every call counts, exemplar kept or not");
        let e = h.exemplar(2).unwrap();
        assert_eq!(e.trace_id(), "00f067aa0ba902b7", "the latest wins");
        assert_eq!(e.value(), 4.5);
        assert!(e.timestamp_ms() >= before && e.timestamp_ms() < before + 60_000);
        assert_eq!(
            h.exemplar(0).unwrap().value(),
            0.0,
            "clamped like the count"
        );
        assert_eq!(h.exemplar(19).unwrap().trace_id(), "ffff", "+Inf bucket");
        assert_eq!(h.exemplar(3), None, "the invalid id was not kept");
        assert_eq!(h.exemplar(99), None);
    }

    #[test]
    fn values_print_as_envoy_prints_them() {
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(3600000.0), "3600000");
        assert_eq!(format_value(12.345), "12.345");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }
}
