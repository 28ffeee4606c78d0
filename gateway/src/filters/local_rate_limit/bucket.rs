//! A token bucket shared by every worker thread: one atomic word, no lock, no
//! allocation per request.
//!
//! Envoy's atomic token bucket (`AtomicTokenBucketImpl`, which its local rate limit uses)
//! keeps one number: the time at which the bucket would have been empty. The tokens at
//! time `t` are `(t - empty_at) * rate`, capped at `max_tokens`; taking one moves
//! `empty_at` forward by one token's worth of time. This is the same in integer
//! nanoseconds: a token costs `fill_interval / tokens_per_fill` (rounded up to a whole
//! nanosecond, which is below one token in a century at any rate), and one
//! compare-and-swap takes it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Larger than any bucket's span in nanoseconds; keeps sums from overflowing.
const MAX_SPAN_NS: u64 = 1 << 62;

#[derive(Debug)]
pub struct TokenBucket {
    /// Times are nanoseconds since `base`, plus `capacity_ns`, so that the bucket
    /// starts full with `empty_at` at 0.
    base: Instant,
    empty_at: AtomicU64,
    /// Nanoseconds one token takes to refill.
    cost_ns: u64,
    /// Nanoseconds a full bucket takes to refill (`cost_ns * max_tokens`).
    capacity_ns: u64,
}

impl TokenBucket {
    /// A full bucket of `max_tokens` that gains `tokens_per_fill` every `fill_interval`.
    pub fn new(max_tokens: u32, tokens_per_fill: u32, fill_interval: Duration) -> Self {
        let interval_ns = fill_interval.as_nanos().min(u128::from(MAX_SPAN_NS)) as u64;
        let cost_ns = interval_ns
            .div_ceil(u64::from(tokens_per_fill.max(1)))
            .max(1);
        let capacity_ns = cost_ns
            .saturating_mul(u64::from(max_tokens))
            .min(MAX_SPAN_NS);
        TokenBucket {
            base: Instant::now(),
            empty_at: AtomicU64::new(0),
            cost_ns,
            capacity_ns,
        }
    }

    /// Take one token now; `false` when there is none.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let since = self.base.elapsed().as_nanos().min(u128::from(MAX_SPAN_NS)) as u64;
        self.try_acquire_at(since + self.capacity_ns)
    }

    /// Take one token at time `now` (nanoseconds on the bucket's own clock).
    fn try_acquire_at(&self, now: u64) -> bool {
        let mut cur = self.empty_at.load(Ordering::Relaxed);
        loop {
            let stored = now.saturating_sub(cur).min(self.capacity_ns);
            if stored < self.cost_ns {
                return false;
            }
            let next = now - (stored - self.cost_ns);
            match self.empty_at.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Tokens available at `now` (tests).
    #[cfg(test)]
    fn tokens_at(&self, now: u64) -> u64 {
        now.saturating_sub(self.empty_at.load(Ordering::Relaxed))
            .min(self.capacity_ns)
            / self.cost_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const S: u64 = 1_000_000_000;

    #[test]
    fn starts_full_then_refills_at_the_rate() {
        // route-limit-rps 2, multiplier 5: 10 tokens, 2 a second.
        let b = TokenBucket::new(10, 2, Duration::from_secs(1));
        let t0 = b.capacity_ns;
        assert_eq!(b.tokens_at(t0), 10);
        for _ in 0..10 {
            assert!(b.try_acquire_at(t0));
        }
        assert!(!b.try_acquire_at(t0));
        // Half a second is one token; a quarter is none.
        assert!(!b.try_acquire_at(t0 + S / 4));
        assert!(b.try_acquire_at(t0 + S / 2));
        assert!(!b.try_acquire_at(t0 + S / 2));
        // Ten seconds idle refill to the cap, not beyond.
        assert_eq!(b.tokens_at(t0 + 10 * S), 10);
    }

    #[test]
    fn per_minute_limits() {
        // route-limit-rpm 3, multiplier 1.
        let b = TokenBucket::new(3, 3, Duration::from_secs(60));
        let t0 = b.capacity_ns;
        assert!((0..3).all(|_| b.try_acquire_at(t0)));
        assert!(!b.try_acquire_at(t0 + 19 * S));
        assert!(b.try_acquire_at(t0 + 20 * S));
        assert!(!b.try_acquire_at(t0 + 20 * S));
    }

    #[test]
    fn threads_share_the_bucket_exactly() {
        let b = Arc::new(TokenBucket::new(1000, 1, Duration::from_secs(3600)));
        let t0 = b.capacity_ns;
        let got: u64 = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..1000).filter(|_| b.try_acquire_at(t0)).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap() as u64)
            .sum();
        assert_eq!(got, 1000);
    }

    #[test]
    fn huge_limits_do_not_overflow() {
        let b = TokenBucket::new(u32::MAX, u32::MAX, Duration::from_secs(60));
        assert!(b.try_acquire());
        let b = TokenBucket::new(u32::MAX, 1, Duration::from_secs(60));
        assert!(b.try_acquire());
    }
}
