use std::sync::{Arc, Mutex};

use super::family::{Family, Kind};

/// All families of one process, rendered in registration order.
#[derive(Default)]
pub struct Registry {
    families: Mutex<Vec<Arc<Family>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The family with this name, registered on first use. Asking again with the same
    /// name returns the same family.
    pub fn family(&self, name: &str, help: &str, kind: Kind) -> Arc<Family> {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = families.iter().find(|f| f.name() == name) {
            return f.clone();
        }
        let f = Arc::new(Family::new(name, help, kind));
        families.push(f.clone());
        f
    }

    /// The histogram family with this name and bucket bounds, registered on first use.
    pub fn histogram_family(&self, name: &str, help: &str, bounds: &'static [f64]) -> Arc<Family> {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = families.iter().find(|f| f.name() == name) {
            return f.clone();
        }
        let f = Arc::new(Family::with_bounds(name, help, Kind::Histogram, bounds));
        families.push(f.clone());
        f
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(4096);
        for f in families.iter() {
            f.render(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_in_order_with_help_and_type() {
        let r = Registry::new();
        r.family("g", "a gauge", Kind::Gauge).gauge(&[]).set(-3);
        r.family("c_total", "a counter", Kind::Counter)
            .counter(&[("k", "v")])
            .inc();
        assert_eq!(
            r.render(),
            "# HELP g a gauge\n# TYPE g gauge\ng -3\n# HELP c_total a counter\n# TYPE c_total counter\nc_total{k=\"v\"} 1\n"
        );
    }
}
