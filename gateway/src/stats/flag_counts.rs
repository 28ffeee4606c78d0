//! Requests per response flag, for the console: plain atomics read by its sampler
//! without the locks of the Istio families (the request path takes those).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::proxy::flags::ResponseFlags;

/// One count per response flag; a request with `UF,URX` counts under both.
#[derive(Debug, Default)]
pub struct FlagCounts([AtomicU64; ResponseFlags::COUNT]);

impl FlagCounts {
    /// Count a request's flags; callers skip requests without any.
    #[inline]
    pub fn add(&self, flags: ResponseFlags) {
        let mut bits = flags.bits();
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            if let Some(c) = self.0.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            bits &= bits - 1;
        }
    }

    /// The counts by bit position ([`ResponseFlags::short_name`] names them).
    pub fn get(&self) -> [u64; ResponseFlags::COUNT] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_counts_on_its_own() {
        let c = FlagCounts::default();
        let mut f = ResponseFlags::default();
        f.set(ResponseFlags::CONNECT_FAILURE);
        f.set(ResponseFlags::RETRY_EXHAUSTED);
        c.add(f);
        c.add(f);
        let mut nr = ResponseFlags::default();
        nr.set(ResponseFlags::NO_ROUTE);
        c.add(nr);
        let got = c.get();
        let by_name = |n: &str| {
            (0..ResponseFlags::COUNT)
                .find(|&i| ResponseFlags::short_name(i) == n)
                .map(|i| got[i])
        };
        assert_eq!(by_name("UF"), Some(2));
        assert_eq!(by_name("URX"), Some(2));
        assert_eq!(by_name("NR"), Some(1));
        assert_eq!(got.iter().sum::<u64>(), 5);
    }
}
