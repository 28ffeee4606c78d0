use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::family::{Family, Kind, RenderOptions};
use super::format::Format;

/// How long a series whose handles are all gone is still exported: long enough for a
/// few scrapes to see its last value (Envoy keeps a removed cluster's stats until its
/// drain ends), short enough that config churn does not grow the exposition forever.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(5 * 60);

type ScrapeHook = Arc<dyn Fn() + Send + Sync>;

/// A family asked for by a name that a family of another kind already has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} is already a {existing:?} family, not a {asked:?} one")]
pub struct KindMismatch {
    pub name: String,
    pub existing: Kind,
    pub asked: Kind,
}

/// All families of one process, rendered in Envoy's order (see [`Registry::render_with`]).
pub struct Registry {
    families: Mutex<Vec<Arc<Family>>>,
    retention: Mutex<Duration>,
    on_scrape: Mutex<Vec<ScrapeHook>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            families: Mutex::default(),
            retention: Mutex::new(DEFAULT_RETENTION),
            on_scrape: Mutex::default(),
        }
    }
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

    /// As [`Registry::family`] (`bounds` for histograms, else empty), for names that come
    /// from outside the gateway (Wasm plugins' metrics): a name a family of another kind
    /// already has is an error, where asking that family for a series would panic.
    pub fn try_family(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        bounds: &'static [f64],
    ) -> Result<Arc<Family>, KindMismatch> {
        let f = self.register(name, help, kind, bounds);
        if f.kind() != kind {
            return Err(KindMismatch {
                name: name.to_string(),
                existing: f.kind(),
                asked: kind,
            });
        }
        Ok(f)
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

    /// How long a series stays exported after its last handle outside the registry is
    /// dropped (default [`DEFAULT_RETENTION`]). Asked for again (same labels) within
    /// that time, it comes back with its counts.
    pub fn set_retention(&self, retention: Duration) {
        *self.retention.lock().unwrap_or_else(|e| e.into_inner()) = retention;
    }

    pub fn retention(&self) -> Duration {
        *self.retention.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drop the series past their retention; returns how many. Every render does this
    /// too; call it on a timer if scrapes may be rare.
    pub fn prune(&self) -> usize {
        let retention = self.retention();
        let now = Instant::now();
        self.snapshot()
            .iter()
            .map(|f| f.prune(now, retention))
            .sum()
    }

    /// Run `f` at the start of every render, before anything is read: for values that
    /// are cheaper to sample at scrape time than to keep current (uptime, memory).
    /// Keep it short; it runs on the scrape's thread.
    pub fn on_scrape(&self, f: impl Fn() + Send + Sync + 'static) {
        self.on_scrape
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(f));
    }

    /// Prometheus text exposition format 0.0.4, every series.
    pub fn render(&self) -> String {
        self.render_with(&RenderOptions::default())
    }

    /// The exposition in `opts.format`, in Envoy's order: counters, then gauges, then
    /// histograms, each by name. Runs the [`Registry::on_scrape`] callbacks and
    /// [`Registry::prune`] first.
    pub fn render_with(&self, opts: &RenderOptions) -> String {
        // Called without the lock held, so a callback may register families or hooks.
        let hooks = self
            .on_scrape
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for hook in &hooks {
            hook();
        }
        self.prune();
        let mut families = self.snapshot();
        families
            .sort_by(|a, b| (kind_rank(a.kind()), a.name()).cmp(&(kind_rank(b.kind()), b.name())));
        // Every registered name, not only the rendered ones, so a family's declared
        // OpenMetrics type does not change with `?filter`.
        let names: HashSet<&str> = families.iter().map(|f| f.name()).collect();
        let mut out = String::with_capacity(4096);
        for f in &families {
            let base_taken = f.kind() == Kind::Counter
                && f.name()
                    .strip_suffix("_total")
                    .is_some_and(|base| names.contains(base));
            f.render_as(&mut out, opts, base_taken);
        }
        if opts.format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }

    fn snapshot(&self) -> Vec<Arc<Family>> {
        self.families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
    /// Envoy's pair of families: `X_total` and `X`, both counters.
    fn envoy_pair() -> Registry {
        let r = Registry::new();
        r.family(
            "envoy_cluster_upstream_rq_total",
            "Total requests",
            Kind::Counter,
        )
        .counter(&[("cluster_name", "a")])
        .add(7);
        r.family(
            "envoy_cluster_upstream_rq",
            "Requests by code",
            Kind::Counter,
        )
        .counter(&[("response_code", "200"), ("cluster_name", "a")])
        .add(7);
        r.family("gateway_config_reloads_total", "Reloads", Kind::Counter)
            .counter(&[("result", "applied")])
            .inc();
        r
    }

    #[test]
    fn openmetrics_never_declares_a_family_name_twice() {
        let r = envoy_pair();
        r.set_retention(Duration::from_secs(3600));
        let om = RenderOptions {
            format: Format::OpenMetrics,
            ..Default::default()
        };
        assert_eq!(
            r.render_with(&om),
            "# HELP envoy_cluster_upstream_rq Requests by code\n\
             # TYPE envoy_cluster_upstream_rq unknown\n\
             envoy_cluster_upstream_rq{response_code=\"200\",cluster_name=\"a\"} 7\n\
             # HELP envoy_cluster_upstream_rq_total Total requests\n\
             # TYPE envoy_cluster_upstream_rq_total unknown\n\
             envoy_cluster_upstream_rq_total{cluster_name=\"a\"} 7\n\
             # HELP gateway_config_reloads Reloads\n\
             # TYPE gateway_config_reloads counter\n\
             gateway_config_reloads_total{result=\"applied\"} 1\n\
             # EOF\n"
        );
        // Same declaration when a filter leaves the other family out.
        let filtered = RenderOptions {
            filter: Some(regex::Regex::new("rq_total").unwrap()),
            ..om.clone()
        };
        assert!(r
            .render_with(&filtered)
            .contains("# TYPE envoy_cluster_upstream_rq_total unknown\n"));
        // The text format is as before, without `# EOF`.
        let text = r.render();
        assert!(text.contains("# TYPE envoy_cluster_upstream_rq_total counter\n"));
        assert!(!text.contains("EOF"));
        let samples = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(samples(&text), samples(&r.render_with(&om)));
    }

    #[test]
    fn scrape_callbacks_run_before_anything_is_read() {
        let r = Arc::new(Registry::new());
        let uptime = r.family("up", "help", Kind::Gauge).gauge(&[]);
        let n = std::sync::atomic::AtomicI64::new(0);
        let registry = Arc::downgrade(&r);
        r.on_scrape(move || {
            uptime.set(n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
            // A callback may use the registry.
            if let Some(r) = registry.upgrade() {
                r.family("late", "help", Kind::Gauge);
            }
        });
        assert!(r.render().contains("\nup 1\n"));
        assert!(r.render().contains("\nup 2\n"));
        assert!(r.render().contains("# TYPE late gauge\n"));
    }

    #[test]
    fn renders_prune_series_past_their_retention() {
        let r = Registry::new();
        assert_eq!(r.retention(), DEFAULT_RETENTION);
        let f = r.family("c_total", "help", Kind::Counter);
        let held = f.counter(&[("cluster_name", "live")]);
        f.counter(&[("cluster_name", "removed")]).add(3);
        assert!(r.render().contains("c_total{cluster_name=\"removed\"} 3\n"));
        assert_eq!(r.prune(), 0, "within the default retention");
        r.set_retention(Duration::ZERO);
        let out = r.render();
        assert!(!out.contains("removed"), "{out}");
        assert!(out.contains("c_total{cluster_name=\"live\"} 0\n"));
        drop(held);
        assert_eq!(r.prune(), 1);
        assert_eq!(
            r.render(),
            "# HELP c_total help\n# TYPE c_total counter\n",
            "the family outlives its series"
        );
    }
}
