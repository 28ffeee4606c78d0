//! The 15 minutes of one route or cluster the console keeps: a ring of one point per
//! second, latency bucket counts in 15-second blocks (for window percentiles), response
//! flag counts in the same blocks, and the latest exemplars.
//!
//! Memory per entity, fixed by the constants below (the figures docs/console-metrics.md
//! states): 900 points of [`Point`] (24 B) = 21,600 B; 60 blocks of latency buckets
//! (84 B) = 5,040 B; response flags, once the entity had a flagged request, 60 x 56 B =
//! 3,360 B; exemplars, once it had a sampled request, 128 x 88 B = 11,264 B. So 26.6 KB
//! for an entity without flags or exemplars, 41.3 KB at most, plus its name and the
//! sampler's baseline (about 0.4 KB, counted by the store).

use std::collections::VecDeque;

use telemetry::stats::{Exemplar, ENVOY_DEFAULT_BUCKETS};

use super::metrics_quantile::histogram_quantile;
use crate::proxy::flags::ResponseFlags;

/// Points kept: 15 minutes at one per second.
pub const POINTS: usize = 900;
/// Seconds per point.
pub const STEP_MS: u64 = 1000;
/// The window the store covers, in seconds.
pub const WINDOW_S: u32 = 900;
/// Latency buckets: Envoy's default bounds and `+Inf`.
pub const BUCKETS: usize = ENVOY_DEFAULT_BUCKETS.len() + 1;
/// Seconds per block of bucket and flag counts: a window's percentiles and flag counts
/// are those of the blocks that began within it (the current one included), so they
/// cover between the window less 14 s and the window.
pub const BLOCK_S: u32 = 15;
/// Blocks kept: the 900 s window.
pub const BLOCKS: usize = (WINDOW_S / BLOCK_S) as usize;
/// Exemplars kept per entity, newest kept when full.
pub const EXEMPLARS: usize = 128;
/// Exemplars taken per second per entity, slowest first.
pub const EXEMPLARS_PER_POINT: usize = 4;
/// Response flags counted.
pub const FLAGS: usize = ResponseFlags::COUNT;

/// One second of one entity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The second (Unix time) the point covers: `[sec, sec + 1)`.
    pub sec: u32,
    /// Requests that ended in it (with a status class).
    pub rq: u32,
    /// Those answered 5xx.
    pub err: u32,
    /// p50, p90, p99 in ms of the latency samples of the second; NaN without any.
    pub p: [f32; 3],
}

#[derive(Clone, Copy)]
struct Block {
    /// `sec / BLOCK_S` of the seconds counted here; u32::MAX: unused.
    id: u32,
    buckets: [u32; BUCKETS],
}

#[derive(Clone, Copy)]
struct FlagBlock {
    id: u32,
    flags: [u32; FLAGS],
}

const EMPTY_BLOCK: Block = Block {
    id: u32::MAX,
    buckets: [0; BUCKETS],
};
const EMPTY_FLAGS: FlagBlock = FlagBlock {
    id: u32::MAX,
    flags: [0; FLAGS],
};

/// The quantiles every point and window reports.
pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// What the store keeps of one entity.
pub struct EntityRing {
    /// Chronological until full, then a ring whose oldest point is at `next`.
    points: Vec<Point>,
    next: usize,
    blocks: Box<[Block; BLOCKS]>,
    flag_blocks: Option<Box<[FlagBlock; BLOCKS]>>,
    exemplars: VecDeque<Exemplar>,
}

impl Default for EntityRing {
    fn default() -> Self {
        Self::new()
    }
}

impl EntityRing {
    pub fn new() -> Self {
        EntityRing {
            points: Vec::new(),
            next: 0,
            blocks: Box::new([EMPTY_BLOCK; BLOCKS]),
            flag_blocks: None,
            exemplars: VecDeque::new(),
        }
    }

    /// Add the point of second `sec`: `rq` requests, `err` of them 5xx, and the latency
    /// samples of the second per bucket (`bounds` are the histogram's).
    pub fn push(&mut self, sec: u32, rq: u32, err: u32, buckets: &[u32; BUCKETS], bounds: &[f64]) {
        let wide: [u64; BUCKETS] = buckets.map(u64::from);
        let p =
            QUANTILES.map(|q| histogram_quantile(q, bounds, &wide).map_or(f32::NAN, |v| v as f32));
        let point = Point { sec, rq, err, p };
        if self.points.len() < POINTS {
            if self.points.capacity() == 0 {
                self.points.reserve_exact(POINTS);
            }
            self.points.push(point);
        } else {
            self.points[self.next] = point;
            self.next = (self.next + 1) % POINTS;
        }
        if buckets.iter().any(|&n| n > 0) {
            let b = block(&mut self.blocks, sec, EMPTY_BLOCK, |b| &mut b.id);
            for (sum, n) in b.buckets.iter_mut().zip(buckets) {
                *sum = sum.saturating_add(*n);
            }
        }
    }

    /// Count response flags of second `sec` (by bit position).
    pub fn add_flags(&mut self, sec: u32, flags: &[u32; FLAGS]) {
        if flags.iter().all(|&n| n == 0) {
            return;
        }
        let blocks = self
            .flag_blocks
            .get_or_insert_with(|| Box::new([EMPTY_FLAGS; BLOCKS]));
        let b = block(blocks, sec, EMPTY_FLAGS, |b| &mut b.id);
        for (sum, n) in b.flags.iter_mut().zip(flags) {
            *sum = sum.saturating_add(*n);
        }
    }

    /// Keep an exemplar; the oldest goes when [`EXEMPLARS`] are kept.
    pub fn add_exemplar(&mut self, e: Exemplar) {
        if self.exemplars.capacity() == 0 {
            self.exemplars.reserve_exact(EXEMPLARS);
        }
        if self.exemplars.len() == EXEMPLARS {
            self.exemplars.pop_front();
        }
        self.exemplars.push_back(e);
    }

    /// Points of seconds `>= from_sec`, oldest first.
    pub fn points_since(&self, from_sec: u32) -> impl Iterator<Item = &Point> {
        let (newer, older) = self.points.split_at(self.next);
        older
            .iter()
            .chain(newer.iter())
            .filter(move |p| p.sec >= from_sec)
    }

    /// The newest point.
    pub fn last(&self) -> Option<&Point> {
        match self.next {
            0 => self.points.last(),
            n => self.points.get(n - 1),
        }
    }

    /// Latency samples per bucket over the `window_s` seconds up to `now_sec`
    /// (in whole blocks, see [`BLOCK_S`]), added to `into`.
    pub fn window_buckets(&self, now_sec: u32, window_s: u32, into: &mut [u64; BUCKETS]) {
        let (first, last) = block_range(now_sec, window_s);
        for b in self.blocks.iter().filter(|b| b.id >= first && b.id <= last) {
            for (sum, n) in into.iter_mut().zip(&b.buckets) {
                *sum += u64::from(*n);
            }
        }
    }

    /// Requests per response flag over the window, as [`EntityRing::window_buckets`].
    pub fn window_flags(&self, now_sec: u32, window_s: u32) -> [u64; FLAGS] {
        let mut out = [0; FLAGS];
        let (first, last) = block_range(now_sec, window_s);
        for b in self.flag_blocks.iter().flat_map(|b| b.iter()) {
            if b.id >= first && b.id <= last {
                for (sum, n) in out.iter_mut().zip(&b.flags) {
                    *sum += u64::from(*n);
                }
            }
        }
        out
    }

    /// Exemplars recorded in `[from_ms, to_ms]`, newest first.
    pub fn exemplars_between(&self, from_ms: u64, to_ms: u64) -> Vec<Exemplar> {
        let mut v: Vec<Exemplar> = self
            .exemplars
            .iter()
            .filter(|e| (from_ms..=to_ms).contains(&e.timestamp_ms()))
            .copied()
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.timestamp_ms()));
        v
    }

    /// Bytes allocated for this entity's history.
    pub fn heap_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<Point>()
            + std::mem::size_of::<[Block; BLOCKS]>()
            + self
                .flag_blocks
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<[FlagBlock; BLOCKS]>())
            + self.exemplars.capacity() * std::mem::size_of::<Exemplar>()
    }
}

/// The ids of the blocks that began within the `window_s` seconds ending with `now_sec`.
fn block_range(now_sec: u32, window_s: u32) -> (u32, u32) {
    let start = (now_sec + 1).saturating_sub(window_s);
    (start.div_ceil(BLOCK_S), now_sec / BLOCK_S)
}

/// The block of `sec` in `blocks` (a ring by block id), cleared if it held an older one.
fn block<B: Copy>(
    blocks: &mut [B; BLOCKS],
    sec: u32,
    empty: B,
    id: impl Fn(&mut B) -> &mut u32,
) -> &mut B {
    let want = sec / BLOCK_S;
    let b = &mut blocks[want as usize % BLOCKS];
    if *id(b) != want {
        *b = empty;
        *id(b) = want;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry::stats::{Registry, ENVOY_DEFAULT_BUCKETS as B};

    fn buckets(pairs: &[(usize, u32)]) -> [u32; BUCKETS] {
        let mut b = [0; BUCKETS];
        for &(i, n) in pairs {
            b[i] = n;
        }
        b
    }

    #[test]
    fn the_ring_wraps_keeping_the_last_900_seconds_in_order() {
        let mut r = EntityRing::new();
        let t0 = 1_700_000_000;
        for i in 0..1000u32 {
            r.push(t0 + i, i, 0, &buckets(&[]), B);
        }
        assert_eq!(r.points.len(), POINTS, "no growth past the ring");
        assert_eq!(r.points.capacity(), POINTS);
        let secs: Vec<u32> = r.points_since(0).map(|p| p.sec).collect();
        assert_eq!(secs.len(), POINTS);
        assert_eq!(secs[0], t0 + 100, "the oldest 100 went");
        assert!(secs.windows(2).all(|w| w[1] == w[0] + 1), "oldest first");
        assert_eq!(r.last().unwrap().sec, t0 + 999);
        assert_eq!(r.points_since(t0 + 990).count(), 10);
        assert!(r.last().unwrap().p[0].is_nan(), "no samples: no percentile");
    }

    #[test]
    fn points_carry_the_seconds_percentiles() {
        let mut r = EntityRing::new();
        r.push(10, 100, 3, &buckets(&[(3, 100)]), B);
        let p = r.last().unwrap();
        assert_eq!((p.rq, p.err), (100, 3));
        assert_eq!(p.p[0], 7.5);
        assert_eq!(p.p[1], 9.5);
        assert!((p.p[2] - 9.95).abs() < 1e-5);
    }

    #[test]
    fn windows_sum_whole_blocks_and_forget_old_ones() {
        let mut r = EntityRing::new();
        // One sample per second in (5, 10] for 1000 s, starting at a block boundary.
        let t0 = 1_700_000_010 - 1_700_000_010 % BLOCK_S;
        for i in 0..1000 {
            r.push(t0 + i, 1, 0, &buckets(&[(3, 1)]), B);
            r.add_flags(t0 + i, &std::array::from_fn(|f| u32::from(f == 3)));
        }
        let now = t0 + 999;
        let mut w = [0u64; BUCKETS];
        r.window_buckets(now, 60, &mut w);
        // now is the 10th second of its block (1000 % 15 = 10): 10 + 3 x 15.
        assert_eq!(w[3], 55);
        let mut w = [0u64; BUCKETS];
        r.window_buckets(now, WINDOW_S, &mut w);
        assert_eq!(
            w[3],
            10 + 59 * 15,
            "the blocks that began in the last 900 s"
        );
        assert_eq!(r.window_flags(now, WINDOW_S)[3], 10 + 59 * 15);
        assert_eq!(r.window_flags(now + 2000, WINDOW_S)[3], 0, "all too old");
        let mut w = [0u64; BUCKETS];
        r.window_buckets(now + 2000, WINDOW_S, &mut w);
        assert_eq!(w.iter().sum::<u64>(), 0);
    }

    #[test]
    fn exemplars_are_bounded_and_found_by_time() {
        let r_ = Registry::new();
        let h = r_.histogram_family("h", "h", B).histogram(&[]);
        let mut r = EntityRing::new();
        assert_eq!(
            r.heap_bytes(),
            std::mem::size_of::<[Block; BLOCKS]>(),
            "lazy rest"
        );
        for i in 0..(EXEMPLARS + 10) {
            h.record_with_exemplar(i as f64, &format!("t{i}"));
            let bucket = B.partition_point(|&b| b < i as f64);
            r.add_exemplar(h.exemplar(bucket).unwrap());
        }
        assert_eq!(r.exemplars.len(), EXEMPLARS);
        let all = r.exemplars_between(0, u64::MAX);
        assert_eq!(all.len(), EXEMPLARS);
        assert!(all
            .windows(2)
            .all(|w| w[0].timestamp_ms() >= w[1].timestamp_ms()));
        assert!(all.iter().all(|e| e.trace_id() != "t0"), "the oldest went");
        assert!(r.exemplars_between(0, 1).is_empty());
        assert_eq!(
            r.heap_bytes(),
            std::mem::size_of::<[Block; BLOCKS]>() + EXEMPLARS * std::mem::size_of::<Exemplar>()
        );
    }

    #[test]
    fn stated_sizes_hold() {
        assert_eq!(std::mem::size_of::<Point>(), 24);
        assert_eq!(std::mem::size_of::<[Block; BLOCKS]>(), 5_040);
        assert_eq!(std::mem::size_of::<[FlagBlock; BLOCKS]>(), 3_360);
        assert_eq!(std::mem::size_of::<Exemplar>(), 88);
    }
}
