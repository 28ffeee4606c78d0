use std::sync::{Arc, Mutex};

use super::family::{Family, Kind, RenderOptions};

/// All families of one process, rendered in Envoy's order (see [`Registry::render_with`]).
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
        self.register(name, help, kind, &[])
    }

    /// The histogram family with this name and bucket bounds, registered on first use.
    pub fn histogram_family(&self, name: &str, help: &str, bounds: &'static [f64]) -> Arc<Family> {
        self.register(name, help, Kind::Histogram, bounds)
    }

    fn register(&self, name: &str, help: &str, kind: Kind, bounds: &'static [f64]) -> Arc<Family> {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = families.iter().find(|f| f.name() == name) {
            return f.clone();
        }
        let f = Arc::new(Family::with_bounds(name, help, kind, bounds));
        families.push(f.clone());
        f
    }

    /// Prometheus text exposition format 0.0.4, every series.
    pub fn render(&self) -> String {
        self.render_with(&RenderOptions::default())
    }

    /// Prometheus text exposition format 0.0.4 in Envoy's order: counters, then gauges,
    /// then histograms, each by name.
    pub fn render_with(&self, opts: &RenderOptions) -> String {
        let mut families: Vec<Arc<Family>> = self
            .families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        families
            .sort_by(|a, b| (kind_rank(a.kind()), a.name()).cmp(&(kind_rank(b.kind()), b.name())));
        let mut out = String::with_capacity(4096);
        for f in &families {
            f.render(&mut out, opts);
        }
        out
    }
}

fn kind_rank(k: Kind) -> u8 {
    match k {
        Kind::Counter => 0,
        Kind::Gauge => 1,
        Kind::Histogram => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_then_gauges_then_histograms_by_name() {
        let r = Registry::new();
        r.histogram_family("h", "a histogram", &[1.0])
            .histogram(&[])
            .record(2.0);
        r.family("g", "a gauge", Kind::Gauge).gauge(&[]).set(-3);
        r.family("d_total", "a counter", Kind::Counter)
            .counter(&[])
            .inc();
        r.family("c_total", "a counter", Kind::Counter)
            .counter(&[("k", "v")])
            .inc();
        assert_eq!(
            r.render(),
            "# HELP c_total a counter\n# TYPE c_total counter\nc_total{k=\"v\"} 1\n\
             # HELP d_total a counter\n# TYPE d_total counter\nd_total 1\n\
             # HELP g a gauge\n# TYPE g gauge\ng -3\n\
             # HELP h a histogram\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\n\
             h_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n"
        );
    }
}
