//! Metrics that plugins define (`proxy_define_metric`), exported in `/stats/prometheus`
//! as Envoy exports its custom `wasmcustom.` namespace: the prefix dropped, no `envoy_`
//! prefix, names made Prometheus-safe, and Higress's tag extraction for the ai-statistics
//! names `route.<r>.upstream.<c>.model.<m>.consumer.<co>.metric.<name>`, which become
//! `route_upstream_model_consumer_metric_<name>{ai_route, ai_cluster, ai_model,
//! ai_consumer}` (the Higress AI dashboard's queries).
//!
//! Every VM of a plugin shares one table, so a name defined on two threads is one series.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use telemetry::stats::{Counter, Gauge, Histogram, Kind, Registry, ENVOY_DEFAULT_BUCKETS};

use super::abi::{metric, Status};

enum Metric {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Default)]
struct Table {
    metrics: Vec<Metric>,
    by_name: HashMap<(i32, String), u32>,
}

pub struct PluginMetrics {
    registry: Arc<Registry>,
    table: Mutex<Table>,
}

/// Prometheus-safe: `[a-zA-Z0-9_:]`, everything else `_`, not starting with a digit.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// The family name and labels a plugin's metric name is exported under.
pub fn export_name(name: &str) -> (String, Vec<(&'static str, String)>) {
    // Lazy matches, as Higress's tag regexes (`route\.((.*?)\.)upstream` ...).
    let ai = (|| {
        let rest = name.strip_prefix("route.")?;
        let (route, rest) = rest.split_once(".upstream.")?;
        let (cluster, rest) = rest.split_once(".model.")?;
        let (model, rest) = rest.split_once(".consumer.")?;
        let (consumer, metric) = rest.split_once(".metric.")?;
        Some((route, cluster, model, consumer, metric))
    })();
    match ai {
        Some((route, cluster, model, consumer, metric)) => (
            format!("route_upstream_model_consumer_metric_{}", sanitize(metric)),
            vec![
                ("ai_route", route.to_string()),
                ("ai_cluster", cluster.to_string()),
                ("ai_model", model.to_string()),
                ("ai_consumer", consumer.to_string()),
            ],
        ),
        None => (sanitize(name), Vec::new()),
    }
}

impl PluginMetrics {
    pub fn new(registry: Arc<Registry>) -> Self {
        PluginMetrics {
            registry,
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of metric `name` of `kind`, defined on first use.
    pub fn define(&self, kind: i32, name: &str, plugin: &str) -> Result<u32, Status> {
        if !(metric::COUNTER..=metric::HISTOGRAM).contains(&kind) {
            return Err(Status::BadArgument);
        }
        let mut t = self.lock();
        if let Some(&id) = t.by_name.get(&(kind, name.to_string())) {
            return Ok(id);
        }
        let (family, labels) = export_name(name);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let help = format!("Defined by Wasm plugin {plugin}.");
        let (family_kind, bounds) = match kind {
            metric::COUNTER => (Kind::Counter, &[][..]),
            metric::GAUGE => (Kind::Gauge, &[][..]),
            _ => (Kind::Histogram, ENVOY_DEFAULT_BUCKETS),
        };
        // Two plugin names can export as one family (`a.b`, `a_b`), and a name can be a
        // gateway family's: of another kind, the definition is refused.
        let family = self
            .registry
            .try_family(&family, &help, family_kind, bounds)
            .map_err(|e| {
                tracing::warn!(plugin, metric = name, error = %e, "Wasm metric not defined");
                Status::BadArgument
            })?;
        let m = match family_kind {
            Kind::Counter => Metric::Counter(family.counter(&labels)),
            Kind::Gauge => Metric::Gauge(family.gauge(&labels)),
            _ => Metric::Histogram(family.histogram(&labels)),
        };
        let id = t.metrics.len() as u32 + 1;
        t.metrics.push(m);
        t.by_name.insert((kind, name.to_string()), id);
        Ok(id)
    }

    pub fn increment(&self, id: u32, delta: i64) -> Status {
        let t = self.lock();
        match t.metrics.get((id as usize).wrapping_sub(1)) {
            Some(Metric::Counter(c)) if delta >= 0 => {
                c.add(delta as u64);
                Status::Ok
            }
            Some(Metric::Gauge(g)) => {
                g.add(delta);
                Status::Ok
            }
            Some(_) => Status::BadArgument,
            None => Status::NotFound,
        }
    }

    pub fn record(&self, id: u32, value: i64) -> Status {
        let t = self.lock();
        match t.metrics.get((id as usize).wrapping_sub(1)) {
            Some(Metric::Gauge(g)) => {
                g.set(value);
                Status::Ok
            }
            Some(Metric::Histogram(h)) => {
                h.record(value as f64);
                Status::Ok
            }
            Some(Metric::Counter(c)) if value >= 0 => {
                // Envoy sets counters only through increments; a record moves it up.
                let cur = c.get();
                c.add((value as u64).saturating_sub(cur));
                Status::Ok
            }
            Some(_) => Status::BadArgument,
            None => Status::NotFound,
        }
    }

    pub fn get(&self, id: u32) -> Result<u64, Status> {
        let t = self.lock();
        match t.metrics.get((id as usize).wrapping_sub(1)) {
            Some(Metric::Counter(c)) => Ok(c.get()),
            Some(Metric::Gauge(g)) => Ok(g.get() as u64),
            Some(Metric::Histogram(h)) => Ok(h.count()),
            None => Err(Status::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_envoy_and_higress_tags() {
        let (f, l) = export_name("route.ai-route.upstream.outbound|80||llm.dns.model.gpt-3.5-turbo.consumer.none.metric.input_token");
        assert_eq!(f, "route_upstream_model_consumer_metric_input_token");
        assert_eq!(
            l,
            vec![
                ("ai_route", "ai-route".to_string()),
                ("ai_cluster", "outbound|80||llm.dns".to_string()),
                ("ai_model", "gpt-3.5-turbo".to_string()),
                ("ai_consumer", "none".to_string()),
            ]
        );
        assert_eq!(export_name("my.counter-1").0, "my_counter_1");
        assert_eq!(export_name("9lives").0, "_9lives");
    }

    #[test]
    fn a_name_taken_by_another_kind_is_refused() {
        let r = Arc::new(Registry::new());
        r.family("envoy_server_live", "1 when live.", Kind::Gauge)
            .gauge(&[]);
        let m = PluginMetrics::new(r.clone());
        let c = m.define(metric::COUNTER, "a.b", "p").unwrap();
        // `a_b` exports as the counter's family: as a histogram or gauge it is refused.
        assert_eq!(
            m.define(metric::HISTOGRAM, "a_b", "p"),
            Err(Status::BadArgument)
        );
        assert_eq!(
            m.define(metric::GAUGE, "a_b", "p"),
            Err(Status::BadArgument)
        );
        assert_eq!(
            m.define(metric::COUNTER, "envoy_server_live", "p"),
            Err(Status::BadArgument)
        );
        // What was defined still works, and the same kind shares the family.
        assert_eq!(m.increment(c, 2), Status::Ok);
        let c2 = m.define(metric::COUNTER, "a_b", "p").unwrap();
        assert_eq!(m.get(c2), Ok(2));
    }

    #[test]
    fn metrics_are_shared_by_name_and_rendered() {
        let r = Arc::new(Registry::new());
        let m = PluginMetrics::new(r.clone());
        let c = m.define(metric::COUNTER, "hits", "p").unwrap();
        assert_eq!(m.define(metric::COUNTER, "hits", "p").unwrap(), c);
        let g = m.define(metric::GAUGE, "level", "p").unwrap();
        let h = m.define(metric::HISTOGRAM, "latency", "p").unwrap();
        assert_eq!(m.increment(c, 3), Status::Ok);
        assert_eq!(m.increment(c, -1), Status::BadArgument);
        assert_eq!(m.record(g, 42), Status::Ok);
        assert_eq!(m.record(h, 12), Status::Ok);
        assert_eq!(m.get(c), Ok(3));
        assert_eq!(m.get(99), Err(Status::NotFound));
        assert_eq!(m.define(7, "x", "p"), Err(Status::BadArgument));
        let text = r.render();
        assert!(text.lines().any(|l| l == "hits 3"), "{text}");
        assert!(text.lines().any(|l| l == "level 42"), "{text}");
        assert!(text.contains("latency_bucket{le=\"25\"} 1"), "{text}");
    }
}
