use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::format::{push_help, Format};
use super::handle::{Counter, Gauge};
use super::histogram::{format_value, Histogram};

/// Prometheus metric type of a family, as written on its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Clone)]
enum Value {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Value {
    /// Envoy's "used": a counter that counted, a gauge ever set, a histogram with samples.
    fn used(&self) -> bool {
        match self {
            Value::Counter(c) => c.get() > 0,
            Value::Gauge(g) => g.used(),
            Value::Histogram(h) => h.count() > 0,
        }
    }

    /// Handles to the cells, the family's own included.
    fn holders(&self) -> usize {
        match self {
            Value::Counter(c) => c.holders(),
            Value::Gauge(g) => g.holders(),
            Value::Histogram(h) => h.holders(),
        }
    }
}

/// What a scrape asked for: Envoy's admin `?usedonly` and `?filter=<regex>`, and the
/// format the scraper accepts (see [`negotiate`](super::negotiate)).
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    pub used_only: bool,
    /// Matched against each series as `name{labels}`; a family none of whose series
    /// match is left out whole.
    pub filter: Option<regex::Regex>,
    pub format: Format,
}

struct Series {
    labels: String,
    value: Value,
    /// When a prune first found no handle outside the family; cleared when one is
    /// handed out again.
    idle_since: Option<Instant>,
}

/// The series of a family in creation order (the order they render in), with an index
/// by the hash of their labels, so finding one does not scan a family of many thousand
/// series (a per-route family of 10,000 routes).
#[derive(Default)]
struct SeriesList {
    list: Vec<Series>,
    /// Label hash -> index of a series with those labels' hash. Every series' hash is
    /// here: a hash not found means no such series; a hash found for other labels (a
    /// collision) falls back to a scan.
    at: HashMap<u64, usize>,
}

fn label_hash(labels: &str) -> u64 {
    let mut h = DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

impl SeriesList {
    fn find(&mut self, labels: &str) -> Option<&mut Series> {
        let i = *self.at.get(&label_hash(labels))?;
        if self.list[i].labels == labels {
            return self.list.get_mut(i);
        }
        self.list.iter_mut().find(|s| s.labels == labels)
    }

    fn push(&mut self, s: Series) {
        self.at
            .entry(label_hash(&s.labels))
            .or_insert(self.list.len());
        self.list.push(s);
    }

    fn reindex(&mut self) {
        self.at.clear();
        for (i, s) in self.list.iter().enumerate() {
            self.at.entry(label_hash(&s.labels)).or_insert(i);
        }
    }
}

/// One metric name with its help text and its labelled series.
///
/// Series are created off the hot path (start-up, snapshot build); the lock only guards
/// the list of series, never a request.
pub struct Family {
    name: String,
    help: String,
    kind: Kind,
    /// Bucket bounds, for a histogram family.
    bounds: &'static [f64],
    series: Mutex<SeriesList>,
}

impl Family {
    #[cfg(test)]
    pub(super) fn new(name: &str, help: &str, kind: Kind) -> Self {
        Self::with_bounds(name, help, kind, &[])
    }

    pub(super) fn with_bounds(name: &str, help: &str, kind: Kind, bounds: &'static [f64]) -> Self {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            bounds,
            series: Mutex::new(SeriesList::default()),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The counter for these label pairs, created at zero on first use.
    pub fn counter(&self, labels: &[(&str, &str)]) -> Counter {
        assert_eq!(self.kind, Kind::Counter, "{} is not a counter", self.name);
        match self.series_for(labels, || Value::Counter(Counter::default())) {
            Value::Counter(c) => c,
            _ => unreachable!("kind checked above"),
        }
    }

    /// The gauge for these label pairs, created at zero on first use.
    pub fn gauge(&self, labels: &[(&str, &str)]) -> Gauge {
        assert_eq!(self.kind, Kind::Gauge, "{} is not a gauge", self.name);
        match self.series_for(labels, || Value::Gauge(Gauge::default())) {
            Value::Gauge(g) => g,
            _ => unreachable!("kind checked above"),
        }
    }

    /// The histogram for these label pairs, created empty on first use.
    pub fn histogram(&self, labels: &[(&str, &str)]) -> Histogram {
        assert_eq!(
            self.kind,
            Kind::Histogram,
            "{} is not a histogram",
            self.name
        );
        let bounds = self.bounds;
        match self.series_for(labels, || Value::Histogram(Histogram::new(bounds))) {
            Value::Histogram(h) => h,
            _ => unreachable!("kind checked above"),
        }
    }

    /// Series currently in the family, retained ones included.
    pub fn len(&self) -> usize {
        self.lock().list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeriesList> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn series_for(&self, labels: &[(&str, &str)], make: impl FnOnce() -> Value) -> Value {
        let key = render_labels(labels);
        let mut series = self.lock();
        if let Some(s) = series.find(&key) {
            // Asked for again within its retention: the same cells, counts kept.
            s.idle_since = None;
            return s.value.clone();
        }
        let v = make();
        series.push(Series {
            labels: key,
            value: v.clone(),
            idle_since: None,
        });
        v
    }

    /// Drop series that no handle outside the family has held for `retention`; returns
    /// how many were dropped.
    ///
    /// Idleness is noticed here, so a series goes between `retention` and `retention`
    /// plus one prune interval after its last handle. Under the lock a count of one
    /// cannot grow (new handles come from other handles or from `series_for`), so a
    /// dropped series has no one left to count into it.
    pub(super) fn prune(&self, now: Instant, retention: Duration) -> usize {
        let mut series = self.lock();
        let before = series.list.len();
        series.list.retain_mut(|s| {
            if s.value.holders() > 1 {
                s.idle_since = None;
                return true;
            }
            let since = *s.idle_since.get_or_insert(now);
            now.saturating_duration_since(since) < retention
        });
        let dropped = before - series.list.len();
        if dropped > 0 {
            series.reindex();
        }
        dropped
    }

    /// The name and type this family is declared with in OpenMetrics.
    ///
    /// A counter is the family `X` with samples `X_total`; a counter without the
    /// suffix (Envoy's `envoy_cluster_upstream_rq`) cannot keep its sample name as a
    /// counter, so it is `unknown`. When `X` is itself a family (Envoy has both
    /// `envoy_cluster_upstream_rq` and `envoy_cluster_upstream_rq_total`),
    /// `base_taken` makes the `_total` one `unknown` under its full name too, so no
    /// family name is declared twice and every sample name stays as in text format.
    fn openmetrics_type(&self, base_taken: bool) -> (&str, &'static str) {
        match self.kind {
            Kind::Counter => match self.name.strip_suffix("_total") {
                Some(base) if !base.is_empty() && !base_taken => (base, "counter"),
                _ => (&self.name, "unknown"),
            },
            k => (&self.name, k.as_str()),
        }
    }

    #[cfg(test)]
    pub(super) fn render(&self, out: &mut String, opts: &RenderOptions) {
        self.render_as(out, opts, false)
    }

    /// Append this family. `base_taken`: another family is named like this counter
    /// without its `_total` (see [`Family::openmetrics_type`]).
    pub(super) fn render_as(&self, out: &mut String, opts: &RenderOptions, base_taken: bool) {
        let series = self.lock();
        let om = opts.format == Format::OpenMetrics;
        // A family without series still says what it is, so families that exist from
        // start-up show up; a scrape that selects series shows only what it selected.
        let mut header = false;
        if !opts.used_only && opts.filter.is_none() {
            self.header(out, opts.format, base_taken);
            header = true;
        }
        for s in series.list.iter() {
            if opts.used_only && !s.value.used() {
                continue;
            }
            if let Some(re) = &opts.filter {
                if !re.is_match(&format!("{}{}", self.name, s.labels)) {
                    continue;
                }
            }
            if !header {
                self.header(out, opts.format, base_taken);
                header = true;
            }
            match &s.value {
                Value::Counter(c) => sample(
                    out,
                    &self.name,
                    "",
                    &s.labels,
                    itoa::Buffer::new().format(c.get()),
                ),
                Value::Gauge(g) => sample(
                    out,
                    &self.name,
                    "",
                    &s.labels,
                    itoa::Buffer::new().format(g.get()),
                ),
                Value::Histogram(h) => self.render_histogram(out, &s.labels, h, om),
            }
        }
    }

    fn header(&self, out: &mut String, format: Format, base_taken: bool) {
        let (name, kind) = match format {
            Format::Prometheus => (self.name.as_str(), self.kind.as_str()),
            Format::OpenMetrics => self.openmetrics_type(base_taken),
        };
        for line in ["# HELP ", name, " "] {
            out.push_str(line);
        }
        push_help(out, &self.help, format);
        for line in ["\n# TYPE ", name, " ", kind, "\n"] {
            out.push_str(line);
        }
    }

    /// `_bucket` lines with cumulative counts and an `le` label, then `_sum` and
    /// `_count`; in OpenMetrics a bucket's latest exemplar follows its count.
    fn render_histogram(&self, out: &mut String, labels: &str, h: &Histogram, om: bool) {
        let open = labels.strip_suffix('}').unwrap_or("{");
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0;
        for (i, (bound, cumulative)) in h.cumulative().into_iter().enumerate() {
            for part in [self.name.as_str(), "_bucket", open, sep, "le=\""] {
                out.push_str(part);
            }
            out.push_str(&format_value(bound));
            out.push_str("\"} ");
            out.push_str(itoa::Buffer::new().format(cumulative));
            if let Some(e) = h.exemplar(i).filter(|_| om) {
                out.push_str(" # {trace_id=\"");
                out.push_str(e.trace_id());
                out.push_str("\"} ");
                out.push_str(&format_value(e.value()));
                out.push(' ');
                out.push_str(itoa::Buffer::new().format(e.timestamp_ms() / 1000));
                out.push('.');
                let ms = e.timestamp_ms() % 1000;
                out.push_str(&format!("{ms:03}"));
            }
            out.push('\n');
            total = cumulative;
        }
        sample(out, &self.name, "_sum", labels, &format_value(h.sum()));
        sample(
            out,
            &self.name,
            "_count",
            labels,
            itoa::Buffer::new().format(total),
        );
    }
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &str, value: &str) {
    out.push_str(name);
    out.push_str(suffix);
    out.push_str(labels);
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// `{a="x",b="y"}` with Prometheus escaping, or the empty string for no labels.
fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(render_labels(&[]), "");
        assert_eq!(
            render_labels(&[("a", "x\"y"), ("b", "p\\q\nr")]),
            r#"{a="x\"y",b="p\\q\nr"}"#
        );
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        static BOUNDS: &[f64] = &[0.5, 10.0];
        let f = Family::with_bounds("t", "time", Kind::Histogram, BOUNDS);
        let h = f.histogram(&[("c", "x")]);
        h.record(0.2);
        h.record(3.0);
        h.record(11.5);
        f.histogram(&[]).record(1.0);
        let mut out = String::new();
        f.render(&mut out, &RenderOptions::default());
        assert_eq!(
            out,
            "# HELP t time\n# TYPE t histogram\n\
             t_bucket{c=\"x\",le=\"0.5\"} 1\n\
             t_bucket{c=\"x\",le=\"10\"} 2\n\
             t_bucket{c=\"x\",le=\"+Inf\"} 3\n\
             t_sum{c=\"x\"} 14.7\n\
             t_count{c=\"x\"} 3\n\
             t_bucket{le=\"0.5\"} 0\n\
             t_bucket{le=\"10\"} 1\n\
             t_bucket{le=\"+Inf\"} 1\n\
             t_sum 1\n\
             t_count 1\n"
        );
    }

    #[test]
    fn used_only_and_filter_select_series() {
        let f = Family::new("c_total", "help", Kind::Counter);
        f.counter(&[("cluster_name", "a")]).inc();
        f.counter(&[("cluster_name", "b")]);
        let g = Family::new("g", "help", Kind::Gauge);
        g.gauge(&[("x", "set-to-zero")]).set(0);
        g.gauge(&[("x", "never-set")]);
        let used = RenderOptions {
            used_only: true,
            ..Default::default()
        };
        let mut out = String::new();
        f.render(&mut out, &used);
        g.render(&mut out, &used);
        assert_eq!(
            out,
            "# HELP c_total help\n# TYPE c_total counter\nc_total{cluster_name=\"a\"} 1\n\
             # HELP g help\n# TYPE g gauge\ng{x=\"set-to-zero\"} 0\n"
        );
        let only_b = RenderOptions {
            filter: Some(regex::Regex::new("cluster_name=\"b").unwrap()),
            ..Default::default()
        };
        let mut out = String::new();
        f.render(&mut out, &only_b);
        g.render(&mut out, &only_b);
        assert_eq!(
            out,
            "# HELP c_total help\n# TYPE c_total counter\nc_total{cluster_name=\"b\"} 0\n"
        );
    }

    #[test]
    fn same_labels_share_one_series() {
        let f = Family::new("c_total", "help", Kind::Counter);
        f.counter(&[("result", "ok")]).inc();
        f.counter(&[("result", "ok")]).add(2);
        f.counter(&[("result", "bad")]).inc();
        let mut out = String::new();
        f.render(&mut out, &RenderOptions::default());
        assert_eq!(
            out,
            "# HELP c_total help\n# TYPE c_total counter\nc_total{result=\"ok\"} 3\nc_total{result=\"bad\"} 1\n"
        );
    }
    #[test]
    fn families_without_series_still_declare_themselves() {
        let f = Family::new("gateway_wasm_calls_total", "calls", Kind::Counter);
        let mut out = String::new();
        f.render(&mut out, &RenderOptions::default());
        assert_eq!(
            out,
            "# HELP gateway_wasm_calls_total calls\n# TYPE gateway_wasm_calls_total counter\n"
        );
        for opts in [
            RenderOptions {
                used_only: true,
                ..Default::default()
            },
            RenderOptions {
                filter: Some(regex::Regex::new("wasm").unwrap()),
                ..Default::default()
            },
        ] {
            let mut out = String::new();
            f.render(&mut out, &opts);
            assert_eq!(out, "", "{opts:?}");
        }
    }

    fn om() -> RenderOptions {
        RenderOptions {
            format: Format::OpenMetrics,
            ..Default::default()
        }
    }

    #[test]
    fn openmetrics_declares_counters_by_their_base_name_or_as_unknown() {
        let total = Family::new("istio_requests_total", "requests", Kind::Counter);
        total.counter(&[("reporter", "source")]).add(3);
        let envoy = Family::new("envoy_cluster_upstream_rq", "by code", Kind::Counter);
        envoy.counter(&[("response_code", "200")]).add(2);
        let g = Family::new("envoy_server_live", "say \"live\"", Kind::Gauge);
        g.gauge(&[]).set(1);
        let mut out = String::new();
        total.render(&mut out, &om());
        envoy.render(&mut out, &om());
        g.render(&mut out, &om());
        assert_eq!(
            out,
            "# HELP istio_requests requests\n\
                   # TYPE istio_requests counter\n\
                   istio_requests_total{reporter=\"source\"} 3\n\
                   # HELP envoy_cluster_upstream_rq by code\n\
                   # TYPE envoy_cluster_upstream_rq unknown\n\
                   envoy_cluster_upstream_rq{response_code=\"200\"} 2\n\
                   # HELP envoy_server_live say \\\"live\\\"\n\
                   # TYPE envoy_server_live gauge\n\
                   envoy_server_live 1\n"
        );
        let mut out = String::new();
        total.render_as(&mut out, &om(), true);
        assert_eq!(
            out,
            "# HELP istio_requests_total requests\n# TYPE istio_requests_total unknown\n\
             istio_requests_total{reporter=\"source\"} 3\n",
            "the base name is another family's: unknown under the full name"
        );
    }

    #[test]
    fn exemplars_only_in_openmetrics() {
        static BOUNDS: &[f64] = &[0.5, 10.0];
        let f = Family::with_bounds("t", "time", Kind::Histogram, BOUNDS);
        let h = f.histogram(&[("c", "x")]);
        h.record(0.2);
        h.record_with_exemplar(3.0, "4bf92f3577b34da6a3ce929d0e0e4736");
        let e = h.exemplar(1).unwrap();
        let ts = format!("{}.{:03}", e.timestamp_ms() / 1000, e.timestamp_ms() % 1000);
        let mut text = String::new();
        f.render(&mut text, &RenderOptions::default());
        assert!(!text.contains("trace_id"), "{text}");
        let mut out = String::new();
        f.render(&mut out, &om());
        assert_eq!(
            out,
            format!(
                "# HELP t time\n# TYPE t histogram\n\
                 t_bucket{{c=\"x\",le=\"0.5\"}} 1\n\
                 t_bucket{{c=\"x\",le=\"10\"}} 2 # {{trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"}} 3 {ts}\n\
                 t_bucket{{c=\"x\",le=\"+Inf\"}} 2\n\
                 t_sum{{c=\"x\"}} 3.2\n\
                 t_count{{c=\"x\"}} 2\n"
            )
        );
        // Without the exemplar, the sample lines are the text format's, byte for byte.
        let stripped: String = out
            .lines()
            .map(|l| l.split(" # ").next().unwrap().to_string() + "\n")
            .collect();
        assert_eq!(stripped, text);
    }

    #[test]
    fn dropped_series_are_kept_for_the_retention_then_forgotten() {
        let f = Family::new("c_total", "help", Kind::Counter);
        let held = f.counter(&[("cluster_name", "kept")]);
        f.counter(&[("cluster_name", "gone")]).add(5);
        let t0 = Instant::now();
        let keep = Duration::from_secs(300);
        assert_eq!(f.prune(t0, keep), 0, "idle from now on");
        assert_eq!(f.prune(t0 + Duration::from_secs(299), keep), 0);
        assert_eq!(f.len(), 2, "still exported within the retention");

        // Asked for again: the same cells, and the idle clock starts over.
        let back = f.counter(&[("cluster_name", "gone")]);
        assert_eq!(back.get(), 5);
        back.inc();
        drop(back);
        assert_eq!(f.prune(t0 + Duration::from_secs(400), keep), 0);
        assert_eq!(f.prune(t0 + Duration::from_secs(699), keep), 0);
        assert_eq!(f.prune(t0 + Duration::from_secs(700), keep), 1);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f.counter(&[("cluster_name", "gone")]).get(),
            0,
            "forgotten: a new series"
        );

        // A held handle is never pruned, however long; the new idle one goes a
        // retention after a prune first saw it idle.
        assert_eq!(f.prune(t0 + Duration::from_secs(1_000), keep), 0);
        assert_eq!(f.prune(t0 + Duration::from_secs(100_000), keep), 1);
        held.inc();
        let mut out = String::new();
        f.render(&mut out, &RenderOptions::default());
        assert_eq!(
            out,
            "# HELP c_total help\n# TYPE c_total counter\nc_total{cluster_name=\"kept\"} 1\n"
        );
    }

    #[test]
    fn many_series_are_found_again_after_prunes() {
        let f = Family::new("c_total", "help", Kind::Counter);
        let names: Vec<String> = (0..2000).map(|i| format!("r{i}")).collect();
        let held: Vec<Counter> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let c = f.counter(&[("route", n)]);
                c.add(i as u64);
                c
            })
            .collect();
        assert_eq!(f.len(), 2000);
        // Keep the odd ones; the even ones go at once.
        let kept: Vec<Counter> = held.into_iter().skip(1).step_by(2).collect();
        assert_eq!(f.prune(Instant::now(), Duration::ZERO), 1000);
        for (i, n) in names.iter().enumerate() {
            let c = f.counter(&[("route", n)]);
            let want = if i % 2 == 1 { i as u64 } else { 0 };
            assert_eq!(c.get(), want, "{n}");
        }
        assert_eq!(
            f.len(),
            2000,
            "the even ones made again, the odd ones found"
        );
        drop(kept);
    }

    #[test]
    fn clones_of_a_handle_keep_the_series() {
        static BOUNDS: &[f64] = &[1.0];
        let f = Family::with_bounds("h", "help", Kind::Histogram, BOUNDS);
        let h = f.histogram(&[]);
        let clone = h.clone();
        drop(h);
        let t0 = Instant::now();
        assert_eq!(f.prune(t0, Duration::ZERO), 0);
        drop(clone);
        assert_eq!(f.prune(t0, Duration::ZERO), 1, "zero retention: at once");
        assert!(f.is_empty());
    }
}
