//! The order a filter chain runs in, as Istio orders one: by phase (AUTHN, AUTHZ, STATS,
//! then unspecified, just before the router), within a phase higher priority first, ties
//! by name. Any chain entry (a Wasm plugin, a native filter) that says its phase,
//! priority and name takes its place in the same order.

use std::cmp::Ordering;
use std::sync::Arc;

/// Where in the chain an entry runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Authentication: first.
    Authn,
    /// Authorization.
    Authz,
    /// Stats.
    Stats,
    /// Unspecified: last, just before the router.
    #[default]
    Unspecified,
}

impl Phase {
    /// The name Istio and Higress give the phase (`WasmPlugin.spec.phase`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Authn => "AUTHN",
            Phase::Authz => "AUTHZ",
            Phase::Stats => "STATS",
            Phase::Unspecified => "UNSPECIFIED_PHASE",
        }
    }
}

/// What ordering needs to know of a chain entry.
pub trait Ordered {
    fn phase(&self) -> Phase;
    /// Higher runs first within a phase.
    fn priority(&self) -> i32;
    /// Breaks ties; for a `WasmPlugin`, `<namespace>.<name>`.
    fn name(&self) -> &str;
}

impl<T: Ordered + ?Sized> Ordered for Arc<T> {
    fn phase(&self) -> Phase {
        (**self).phase()
    }
    fn priority(&self) -> i32 {
        (**self).priority()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
}

/// Whether `a` runs before `b`.
pub fn run_order<A: Ordered + ?Sized, B: Ordered + ?Sized>(a: &A, b: &B) -> Ordering {
    a.phase()
        .cmp(&b.phase())
        .then(b.priority().cmp(&a.priority()))
        .then_with(|| a.name().cmp(b.name()))
}

/// The chain: `entries` in run order.
pub fn order<T: Ordered>(mut entries: Vec<T>) -> Vec<T> {
    entries.sort_by(|a, b| run_order(a, b));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P(Phase, i32, &'static str);

    impl Ordered for P {
        fn phase(&self) -> Phase {
            self.0
        }
        fn priority(&self) -> i32 {
            self.1
        }
        fn name(&self) -> &str {
            self.2
        }
    }

    #[test]
    fn phase_then_priority_then_name() {
        let chain = order(vec![
            Arc::new(P(Phase::Unspecified, 1000, "u")),
            Arc::new(P(Phase::Stats, 1, "s")),
            Arc::new(P(Phase::Authn, 10, "a-low")),
            Arc::new(P(Phase::Authn, 300, "a-high")),
            Arc::new(P(Phase::Authz, 0, "z2")),
            Arc::new(P(Phase::Authz, 0, "z1")),
        ]);
        let names: Vec<&str> = chain.iter().map(|p| p.2).collect();
        assert_eq!(names, ["a-high", "a-low", "z1", "z2", "s", "u"]);
    }

    #[test]
    fn entries_of_different_kinds_share_one_order() {
        struct Native;
        impl Ordered for Native {
            fn phase(&self) -> Phase {
                Phase::Authn
            }
            fn priority(&self) -> i32 {
                100
            }
            fn name(&self) -> &str {
                "native"
            }
        }
        let chain: Vec<Arc<dyn Ordered>> = order(vec![
            Arc::new(P(Phase::Authn, 10, "wasm-low")) as Arc<dyn Ordered>,
            Arc::new(P(Phase::Authn, 300, "wasm-high")),
            Arc::new(Native),
        ]);
        let names: Vec<&str> = chain.iter().map(|e| e.name()).collect();
        assert_eq!(names, ["wasm-high", "native", "wasm-low"]);
    }
}
