//! A fixed window counter shared by every worker thread: one atomic word, no lock.
//!
//! The word packs the window's start (milliseconds since the counter was made, high 36
//! bits: two years) and the requests admitted in it (low 28 bits). A window starts with
//! the first request after the previous one ended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const COUNT_BITS: u32 = 28;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Start value meaning "no window yet".
const NONE: u64 = u64::MAX;

#[derive(Debug)]
pub struct FixedWindow {
    base: Instant,
    state: AtomicU64,
    limit: u64,
    window_ms: u64,
}

impl FixedWindow {
    /// `limit` requests per `window` (a limit above 2^28 - 1 is held at that).
    pub fn new(limit: u64, window: Duration) -> FixedWindow {
        FixedWindow {
            base: Instant::now(),
            state: AtomicU64::new(NONE),
            limit: limit.min(COUNT_MASK),
            window_ms: window.as_millis().max(1) as u64,
        }
    }

    /// Admit one request now; `false` when the window's limit is reached.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_at(self.base.elapsed().as_millis() as u64)
    }

    /// Admit one request at `now` (milliseconds on the counter's clock).
    pub fn try_acquire_at(&self, now: u64) -> bool {
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (start, count) = (cur >> COUNT_BITS, cur & COUNT_MASK);
            let next = if cur == NONE || now.saturating_sub(start) >= self.window_ms {
                (now << COUNT_BITS) | 1
            } else if count < self.limit {
                cur + 1
            } else {
                return false;
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_limit_passes_per_window() {
        let w = FixedWindow::new(2, Duration::from_secs(60));
        assert!(w.try_acquire_at(1_000));
        assert!(w.try_acquire_at(30_000));
        assert!(!w.try_acquire_at(60_999), "the window started at 1 s");
        assert!(w.try_acquire_at(61_000), "a new window");
        assert!(w.try_acquire_at(61_001));
        assert!(!w.try_acquire_at(61_002));
    }

    #[test]
    fn threads_share_one_count() {
        let w = std::sync::Arc::new(FixedWindow::new(1000, Duration::from_secs(3600)));
        let admitted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let w = w.clone();
                    s.spawn(move || (0..500).filter(|_| w.try_acquire_at(5)).count())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1000);
    }
}
