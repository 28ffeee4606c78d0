use std::fmt::Write;
use std::sync::Mutex;

use super::handle::{Counter, Gauge};

/// Prometheus metric type of a family, as written on its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

#[derive(Clone)]
enum Value {
    Counter(Counter),
    Gauge(Gauge),
}

/// One metric name with its help text and its labelled series.
///
/// Series are created off the hot path (start-up, snapshot build); the lock only guards
/// the list of series, never a request.
pub struct Family {
    name: String,
    help: String,
    kind: Kind,
    series: Mutex<Vec<(String, Value)>>,
}

impl Family {
    pub(super) fn new(name: &str, help: &str, kind: Kind) -> Self {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            series: Mutex::new(Vec::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The counter for these label pairs, created at zero on first use.
    pub fn counter(&self, labels: &[(&str, &str)]) -> Counter {
        assert_eq!(self.kind, Kind::Counter, "{} is not a counter", self.name);
        match self.series_for(labels, || Value::Counter(Counter::default())) {
            Value::Counter(c) => c,
            Value::Gauge(_) => unreachable!("kind checked above"),
        }
    }

    /// The gauge for these label pairs, created at zero on first use.
    pub fn gauge(&self, labels: &[(&str, &str)]) -> Gauge {
        assert_eq!(self.kind, Kind::Gauge, "{} is not a gauge", self.name);
        match self.series_for(labels, || Value::Gauge(Gauge::default())) {
            Value::Gauge(g) => g,
            Value::Counter(_) => unreachable!("kind checked above"),
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

    pub(super) fn render(&self, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.as_str());
        for (labels, value) in series.iter() {
            out.push_str(&self.name);
            out.push_str(labels);
            out.push(' ');
            match value {
                Value::Counter(c) => out.push_str(itoa::Buffer::new().format(c.get())),
                Value::Gauge(g) => out.push_str(itoa::Buffer::new().format(g.get())),
            }
            out.push('\n');
        }
    }
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
    fn same_labels_share_one_series() {
        let f = Family::new("c_total", "help", Kind::Counter);
        f.counter(&[("result", "ok")]).inc();
        f.counter(&[("result", "ok")]).add(2);
        f.counter(&[("result", "bad")]).inc();
        let mut out = String::new();
        f.render(&mut out);
        assert_eq!(
            out,
            "# HELP c_total help\n# TYPE c_total counter\nc_total{result=\"ok\"} 3\nc_total{result=\"bad\"} 1\n"
        );
    }
}
