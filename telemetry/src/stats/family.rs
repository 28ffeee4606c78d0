use std::fmt::Write;
use std::sync::Mutex;

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
}

/// What a scrape asked for: Envoy's admin `?usedonly` and `?filter=<regex>`.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    pub used_only: bool,
    /// Matched against each series as `name{labels}`; a family none of whose series
    /// match is left out whole.
    pub filter: Option<regex::Regex>,
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
    series: Mutex<Vec<(String, Value)>>,
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
            series: Mutex::new(Vec::new()),
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

    fn series_for(&self, labels: &[(&str, &str)], make: impl FnOnce() -> Value) -> Value {
        let key = render_labels(labels);
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, v)) = series.iter().find(|(k, _)| *k == key) {
            return v.clone();
        }
        let v = make();
        series.push((key, v.clone()));
        v
    }

    pub(super) fn render(&self, out: &mut String, opts: &RenderOptions) {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut header = false;
        for (labels, value) in series.iter() {
            if opts.used_only && !value.used() {
                continue;
            }
            if let Some(re) = &opts.filter {
                if !re.is_match(&format!("{}{}", self.name, labels)) {
                    continue;
                }
            }
            if !header {
                let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
                let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.as_str());
                header = true;
            }
            match value {
                Value::Counter(c) => sample(
                    out,
                    &self.name,
                    "",
                    labels,
                    itoa::Buffer::new().format(c.get()),
                ),
                Value::Gauge(g) => sample(
                    out,
                    &self.name,
                    "",
                    labels,
                    itoa::Buffer::new().format(g.get()),
                ),
                Value::Histogram(h) => self.render_histogram(out, labels, h),
            }
        }
    }

    /// `_bucket` lines with cumulative counts and an `le` label, then `_sum` and `_count`.
    fn render_histogram(&self, out: &mut String, labels: &str, h: &Histogram) {
        let open = labels.strip_suffix('}').unwrap_or("{");
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0;
        for (bound, cumulative) in h.cumulative() {
            let with_le = format!("{open}{sep}le=\"{}\"}}", format_value(bound));
            sample(
                out,
                &self.name,
                "_bucket",
                &with_le,
                itoa::Buffer::new().format(cumulative),
            );
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
}
