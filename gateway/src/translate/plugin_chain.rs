//! WasmPlugins → the order the data plane runs them in, as Istio orders a filter chain:
//! by phase (AUTHN, AUTHZ, STATS, then unspecified, just before the router), within a
//! phase higher `priority` first, ties by namespace and name.

use std::sync::Arc;

use crate::resources::wasmplugin::Phase;

/// What ordering needs to know of a plugin.
pub trait Ordered {
    fn phase(&self) -> Phase;
    fn priority(&self) -> i32;
    /// `<namespace>.<name>`.
    fn name(&self) -> &str;
}

/// The chain: `plugins` in run order.
pub fn order<P: Ordered>(mut plugins: Vec<Arc<P>>) -> Vec<Arc<P>> {
    plugins.sort_by(|a, b| {
        a.phase()
            .cmp(&b.phase())
            .then(b.priority().cmp(&a.priority()))
            .then_with(|| a.name().cmp(b.name()))
    });
    plugins
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
}
