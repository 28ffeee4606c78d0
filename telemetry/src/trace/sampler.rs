//! The sampling decision: parent-based, with a percentage for new traces.
//!
//! Order: a debug request is always traced; a valid `sw8` is always traced, whatever
//! its sample flag (cpp2sky forces `sampled = true` for any `sw8` it accepts, and the
//! SkyWalking Java agent force-samples a valid carrier; flag `0` only says the caller
//! "may ignore" the context); otherwise the caller's explicit decision is honoured;
//! with none, `sampling` percent decides. `docs/tracing.md` has the user's view of it.

use super::context::SpanContext;
use super::ids::random_u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampler {
    /// A new trace is sampled when a random `u64` is below this; `u64::MAX` means
    /// always (100 %), 0 never.
    threshold: u64,
}

impl Sampler {
    /// `percent` of new traces are sampled: 100 or more is always, 0 or less (or NaN)
    /// never, exactly.
    pub fn new(percent: f64) -> Self {
        let threshold = if percent.is_nan() || percent <= 0.0 {
            0
        } else if percent >= 100.0 {
            u64::MAX
        } else {
            // Saturating float-to-int; 2^64 is exact in f64.
            (percent / 100.0 * 18_446_744_073_709_551_616.0) as u64
        };
        Sampler { threshold }
    }

    /// Whether to trace a request that arrived with `parent` (`None`: no usable
    /// context, a new trace).
    pub fn decide(&self, parent: Option<&SpanContext>) -> bool {
        match parent {
            Some(p) if p.debug || p.sw.is_some() => true,
            Some(p) => self.decide_new(p.sampled),
            None => self.decide_new(None),
        }
    }

    /// A new trace, for which the caller may still have sent a decision without ids
    /// (B3 `b3: 0|1|d`, a lone `x-b3-sampled`): honoured when present.
    pub fn decide_new(&self, requested: Option<bool>) -> bool {
        match (requested, self.threshold) {
            (Some(d), _) => d,
            (None, 0) => false,
            (None, u64::MAX) => true,
            (None, t) => random_u64() < t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{SpanId, SwParent, TraceId};

    fn ctx(sampled: Option<bool>, debug: bool, sw: bool) -> SpanContext {
        SpanContext {
            trace_id: TraceId::Hex(1),
            span_id: SpanId(1),
            sampled,
            debug,
            tracestate: None,
            sw: sw.then(|| SwParent {
                segment_id: "s".into(),
                span_id: 0,
                service: String::new(),
                instance: String::new(),
                endpoint: String::new(),
                address: String::new(),
            }),
        }
    }

    #[test]
    fn extremes_are_exact() {
        let (all, none) = (Sampler::new(100.0), Sampler::new(0.0));
        for _ in 0..10_000 {
            assert!(all.decide(None));
            assert!(!none.decide(None));
            assert!(all.decide(Some(&ctx(None, false, false))));
            assert!(!none.decide(Some(&ctx(None, false, false))));
        }
        assert_eq!(Sampler::new(250.0), all);
        assert_eq!(Sampler::new(-1.0), none);
        assert_eq!(Sampler::new(f64::NAN), none);
    }

    #[test]
    fn parent_decisions_win() {
        let (all, none) = (Sampler::new(100.0), Sampler::new(0.0));
        assert!(none.decide(Some(&ctx(Some(true), false, false))));
        assert!(!all.decide(Some(&ctx(Some(false), false, false))));
        assert!(none.decide(Some(&ctx(Some(false), true, false))), "debug");
        assert!(
            none.decide(Some(&ctx(Some(false), false, true))),
            "sw8 flag 0"
        );
        assert!(none.decide(Some(&ctx(Some(true), false, true))));
        assert!(none.decide_new(Some(true)));
        assert!(!all.decide_new(Some(false)));
    }

    #[test]
    fn percentage_is_roughly_honoured() {
        for (p, lo, hi) in [
            (1.0, 700, 1300),
            (25.0, 24_000, 26_000),
            (50.0, 49_000, 51_000),
        ] {
            let s = Sampler::new(p);
            let n = (0..100_000).filter(|_| s.decide(None)).count();
            assert!((lo..=hi).contains(&n), "{p}%: {n} of 100000");
        }
        // The smallest positive percentages still sample sometimes in principle.
        assert!(Sampler::new(1e-9).threshold > 0);
    }
}
