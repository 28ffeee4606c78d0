//! Per-route stats (`gateway_route_*`), labelled `route` with the route's name, so the
//! console and dashboards can show traffic per route, local replies included.
//!
//! Envoy has no per-route request stats of this shape (its virtual cluster stats need
//! config); the names follow Envoy's vocabulary: `rq_total` by `response_code_class`,
//! `rq_time` in milliseconds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use telemetry::stats::{Counter, Family, Histogram, Kind, Registry, ENVOY_DEFAULT_BUCKETS};

use super::flag_counts::FlagCounts;
use super::roster::Roster;
use super::{class_index, CLASSES};
use crate::proxy::flags::ResponseFlags;

/// The stats of one route name, shared by every snapshot whose routes have that name,
/// so counts survive reloads. Its series are registered with the route's first request:
/// a route that never matches (most of 10,000 Ingresses at any moment) costs no series,
/// no scrape lines and no histogram.
pub struct RouteStats {
    /// The `route` label value.
    pub name: Arc<str>,
    families: Arc<RouteFamilies>,
    series: OnceLock<RouteSeries>,
    /// Requests per response flag (not exported; the console reads them).
    flags: FlagCounts,
}

/// The exported series of a route that has had a request.
struct RouteSeries {
    /// `gateway_route_rq_total` by `response_code_class` 1xx..5xx.
    rq_class: [Counter; 5],
    /// `gateway_route_rq_time`: the downstream request's time (ms), as
    /// `envoy_http_downstream_rq_time` measures it.
    rq_time: Histogram,
}

impl std::fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteStats")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RouteStats {
    fn new(families: Arc<RouteFamilies>, name: Arc<str>) -> Self {
        RouteStats {
            name,
            families,
            series: OnceLock::new(),
            flags: FlagCounts::default(),
        }
    }

    fn series(&self) -> &RouteSeries {
        self.series.get_or_init(|| {
            let f = &self.families;
            let l = ("route", &*self.name);
            RouteSeries {
                // All five classes at once, as the cluster's, so `rate()` sees the
                // first 5xx.
                rq_class: CLASSES.map(|c| f.rq_total.counter(&[l, ("response_code_class", c)])),
                rq_time: f.rq_time.histogram(&[l]),
            }
        })
    }

    /// A request on this route has ended with `status` (0: none was sent) after
    /// `elapsed`; a sampled request's trace id becomes the latency bucket's exemplar.
    /// One counter add and one histogram record (two adds) once the series exist;
    /// flagged requests (failures) also count their flags.
    #[inline]
    pub fn request_done(
        &self,
        status: u16,
        elapsed: Duration,
        trace_id: Option<&str>,
        flags: ResponseFlags,
    ) {
        let s = self.series();
        if let Some(i) = class_index(status) {
            s.rq_class[i].inc();
        }
        super::hcm::record_time(&s.rq_time, elapsed, trace_id);
        if flags != ResponseFlags::default() {
            self.flags.add(flags);
        }
    }

    /// Requests by class, `1xx` first.
    pub fn class_counts(&self) -> [u64; 5] {
        self.series
            .get()
            .map_or([0; 5], |s| s.rq_class.each_ref().map(Counter::get))
    }

    /// `gateway_route_rq_time`, once the route has had a request.
    pub fn rq_time(&self) -> Option<&Histogram> {
        self.series.get().map(|s| &s.rq_time)
    }

    /// Requests per response flag, by bit position ([`ResponseFlags::short_name`]).
    pub fn flag_counts(&self) -> [u64; ResponseFlags::COUNT] {
        self.flags.get()
    }
}

struct RouteFamilies {
    rq_total: Arc<Family>,
    rq_time: Arc<Family>,
}

impl RouteFamilies {
    fn register(r: &Registry) -> Self {
        RouteFamilies {
            rq_total: r.family(
                "gateway_route_rq_total",
                "Requests that matched a route, by the class of the status sent downstream (local replies included).",
                Kind::Counter,
            ),
            rq_time: r.histogram_family(
                "gateway_route_rq_time",
                "Request time of requests that matched a route, first byte in to last byte out (ms).",
                ENVOY_DEFAULT_BUCKETS,
            ),
        }
    }
}

/// The stats of every route name of the current snapshot. The config loop resolves each
/// route of a snapshot it builds here, then forgets the names the snapshot does not
/// use; as for clusters, the registry exports a forgotten route's series for
/// `--stats-retention` after the last handle goes, and a name that comes back within
/// it continues its counts.
pub struct RouteStatsCache {
    registry: Arc<Registry>,
    families: Arc<RouteFamilies>,
    by_name: HashMap<Arc<str>, Arc<RouteStats>>,
    roster: Roster<RouteStats>,
}

impl RouteStatsCache {
    pub fn new(registry: Arc<Registry>) -> Self {
        RouteStatsCache {
            families: Arc::new(RouteFamilies::register(&registry)),
            registry,
            by_name: HashMap::new(),
            roster: Roster::default(),
        }
    }

    /// A cache on a registry of its own (unit tests, `gateway validate`).
    pub fn detached() -> Self {
        Self::new(Arc::new(Registry::new()))
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The stats of route `name`, the same as last time for the same name.
    pub fn get(&mut self, name: &Arc<str>) -> Arc<RouteStats> {
        if let Some(s) = self.by_name.get(name) {
            return s.clone();
        }
        let s = Arc::new(RouteStats::new(self.families.clone(), name.clone()));
        self.by_name.insert(name.clone(), s.clone());
        s
    }

    /// Forget route names not in `keep`, and publish the rest to the roster.
    pub fn retain(&mut self, keep: &HashSet<&str>) {
        self.by_name.retain(|name, _| keep.contains(&**name));
        self.roster.publish(self.by_name.values().cloned());
    }

    /// The handles in use, as of the last [`RouteStatsCache::retain`].
    pub fn roster(&self) -> Roster<RouteStats> {
        self.roster.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_route_has_no_series() {
        let mut cache = RouteStatsCache::detached();
        let idle = cache.get(&Arc::from("idle"));
        assert_eq!(idle.class_counts(), [0; 5]);
        assert!(idle.rq_time().is_none());
        assert!(!cache.registry().render().contains("idle"));
    }

    #[test]
    fn routes_count_by_class_and_time_and_keep_counts_by_name() {
        let mut cache = RouteStatsCache::detached();
        let name: Arc<str> = "default/echo".into();
        let s = cache.get(&name);
        let mut uf = ResponseFlags::default();
        uf.set(ResponseFlags::CONNECT_FAILURE);
        for (status, flags) in [
            (200, ResponseFlags::default()),
            (200, ResponseFlags::default()),
            (503, uf),
            (0, ResponseFlags::default()),
        ] {
            s.request_done(status, Duration::from_millis(3), Some("abc"), flags);
        }
        assert_eq!(s.class_counts(), [0, 2, 0, 0, 1]);
        assert_eq!(s.flag_counts()[3], 1, "UF");
        let m = cache.registry().render();
        for line in [
            "gateway_route_rq_total{route=\"default/echo\",response_code_class=\"2xx\"} 2",
            "gateway_route_rq_total{route=\"default/echo\",response_code_class=\"5xx\"} 1",
            "gateway_route_rq_total{route=\"default/echo\",response_code_class=\"1xx\"} 0",
            "gateway_route_rq_time_bucket{route=\"default/echo\",le=\"5\"} 4",
            "gateway_route_rq_time_count{route=\"default/echo\"} 4",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        assert!(
            s.rq_time().unwrap().exemplar(2).is_some(),
            "sampled: an exemplar"
        );
        assert!(Arc::ptr_eq(&s, &cache.get(&name)), "same name, same stats");
        cache.retain(&["other"].into_iter().collect());
        assert!(cache.by_name.is_empty());
        assert_eq!(cache.roster().load().entries.len(), 0);
        let kept: HashSet<&str> = ["default/echo"].into_iter().collect();
        let again = cache.get(&name);
        cache.retain(&kept);
        assert!(
            again.rq_time().is_none(),
            "no series before its first request"
        );
        again.request_done(
            200,
            Duration::from_millis(3),
            None,
            ResponseFlags::default(),
        );
        assert_eq!(
            again.class_counts(),
            [0, 3, 0, 0, 1],
            "asked for again while the old handle lives: its first request finds the same cells"
        );
        assert_eq!(cache.roster().load().entries.len(), 1);
    }
}
