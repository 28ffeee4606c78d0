//! The console's 15 minutes of per-route and per-cluster metrics: a sampler reads the
//! routes' (`gateway_route_*`) and clusters' (`upstream_rq_<class>`, `upstream_rq_time`)
//! stats once a second and keeps one point per second per entity (see
//! [`EntityRing`]), which the console's endpoints read as JSON.
//!
//! The sampler reads atomics and the stats caches' rosters only: no lock a request
//! takes. Its own lock is shared with the JSON readers alone.
//!
//! Memory is bounded: at most `max_entities` routes and as many clusters (512 each by
//! default), each 26.6 KB to 41.3 KB (see [`EntityRing`]) plus [`ENTITY_OVERHEAD`]. The
//! ones past that are not tracked (`dropped_entities` counts them; 40 B each while
//! listed) until one gets requests while a tracked one has had none for the whole
//! window: that one makes room. An entity out of its cache's roster for 15 minutes is
//! forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use telemetry::stats::{Histogram, ENVOY_DEFAULT_BUCKETS};

use super::metrics_quantile::histogram_quantile;
use super::metrics_ring::{
    EntityRing, BUCKETS, EXEMPLARS_PER_POINT, FLAGS, QUANTILES, STEP_MS, WINDOW_S,
};
use crate::proxy::flags::ResponseFlags;
use crate::stats::{ClusterStats, Roster, RosterList, RouteStats};

/// Routes and, separately, clusters tracked at most by default.
pub const DEFAULT_MAX_ENTITIES: usize = 512;

/// Bytes of an entity besides its ring's history: the map entry, the sampler's
/// baseline and the ring's fixed part (its name is counted on top).
pub const ENTITY_OVERHEAD: usize =
    std::mem::size_of::<Entity>() + std::mem::size_of::<Arc<str>>() + 16;

/// What the sampler reads of a stats handle.
trait Source {
    fn key(&self) -> &str;
    /// The key as the store keeps it.
    fn key_arc(&self) -> Arc<str> {
        self.key().into()
    }
    fn classes(&self) -> [u64; 5];
    /// `None` until the handle has recorded (a route's series start with its first
    /// request).
    fn histogram(&self) -> Option<&Histogram>;
    fn flags(&self) -> [u64; FLAGS];
}

impl Source for RouteStats {
    fn key(&self) -> &str {
        &self.name
    }
    fn key_arc(&self) -> Arc<str> {
        self.name.clone()
    }
    fn classes(&self) -> [u64; 5] {
        self.class_counts()
    }
    fn histogram(&self) -> Option<&Histogram> {
        self.rq_time()
    }
    fn flags(&self) -> [u64; FLAGS] {
        self.flag_counts()
    }
}

impl Source for ClusterStats {
    fn key(&self) -> &str {
        &self.stat_name
    }
    fn classes(&self) -> [u64; 5] {
        self.class_counts()
    }
    fn histogram(&self) -> Option<&Histogram> {
        Some(&self.rq_time)
    }
    fn flags(&self) -> [u64; FLAGS] {
        self.istio.flag_counts()
    }
}

/// The cumulative counts of one handle at one sample.
#[derive(Clone, Copy, Default, PartialEq)]
struct Reading {
    classes: [u64; 5],
    buckets: [u64; BUCKETS],
    flags: [u64; FLAGS],
}

impl Reading {
    fn of(s: &impl Source) -> Self {
        let mut buckets = [0; BUCKETS];
        if let Some(h) = s.histogram() {
            h.bucket_counts(&mut buckets);
        }
        Reading {
            classes: s.classes(),
            buckets,
            flags: s.flags(),
        }
    }

    /// Some count is below `base`'s: a new series that started from zero.
    fn went_back(&self, base: &Reading) -> bool {
        let back = |a: &[u64], b: &[u64]| a.iter().zip(b).any(|(x, y)| x < y);
        back(&self.classes, &base.classes)
            || back(&self.buckets, &base.buckets)
            || back(&self.flags, &base.flags)
    }
}

struct Entity {
    base: Reading,
    ring: EntityRing,
    /// The last second it was in its roster.
    seen_sec: u32,
    /// Exemplars up to this time (ms) were looked at already.
    exemplar_mark_ms: u64,
    /// The last second it had requests or latency samples in; 0: none yet.
    active_sec: u32,
}

impl Entity {
    /// One second of `s`: the counts since the last sample become a point.
    fn sample(&mut self, s: &impl Source, sec: u32) {
        self.seen_sec = sec;
        let now = Reading::of(s);
        if now.went_back(&self.base) {
            // A new handle whose counts started over: a new baseline, no negative point.
            self.base = now;
            self.ring.push(sec, 0, 0, &[0; BUCKETS], &[]);
            return;
        }
        let delta = |a: u64, b: u64| u32::try_from(a - b).unwrap_or(u32::MAX);
        let classes: [u32; 5] =
            std::array::from_fn(|i| delta(now.classes[i], self.base.classes[i]));
        let buckets: [u32; BUCKETS] =
            std::array::from_fn(|i| delta(now.buckets[i], self.base.buckets[i]));
        let flags: [u32; FLAGS] = std::array::from_fn(|i| delta(now.flags[i], self.base.flags[i]));
        let rq = classes.iter().fold(0u32, |a, &n| a.saturating_add(n));
        if rq > 0 || buckets.iter().any(|&n| n > 0) {
            self.active_sec = sec;
        }
        let h = s.histogram();
        let bounds = h.map_or(ENVOY_DEFAULT_BUCKETS, |h| h.bounds());
        self.ring.push(sec, rq, classes[4], &buckets, bounds);
        self.ring.add_flags(sec, &flags);
        if let Some(h) = h.filter(|_| buckets.iter().any(|&n| n > 0)) {
            self.take_exemplars(h);
        }
        self.base = now;
    }

    /// The exemplars recorded since the last look, slowest buckets first.
    fn take_exemplars(&mut self, h: &Histogram) {
        let mark = self.exemplar_mark_ms;
        let mut taken = 0;
        for bucket in (0..BUCKETS).rev() {
            let Some(e) = h.exemplar(bucket) else {
                continue;
            };
            if e.timestamp_ms() <= mark {
                continue;
            }
            self.exemplar_mark_ms = self.exemplar_mark_ms.max(e.timestamp_ms());
            if taken < EXEMPLARS_PER_POINT {
                self.ring.add_exemplar(e);
                taken += 1;
            }
        }
    }

    fn bytes(&self, name: &str) -> usize {
        ENTITY_OVERHEAD + name.len() + self.ring.heap_bytes()
    }
}

/// The entities of one kind.
#[derive(Default)]
struct Tracked {
    by_name: HashMap<Arc<str>, Entity>,
    /// Roster entries without room, by name: their request count at the last sample
    /// and that sample's second. One that counts more gets the room of an entity
    /// without requests for the whole window, if there is one.
    waiting: HashMap<Arc<str>, (u64, u32)>,
    /// The roster generation at the previous sample.
    generation: u64,
    /// Roster entries not tracked at the last sample for want of room.
    dropped: usize,
}

/// Bytes of one `waiting` entry (key, value, the map's control byte, rounded up).
const WAITING_ENTRY: usize = 40;

impl Tracked {
    fn sample<T: Source>(
        &mut self,
        list: &RosterList<T>,
        sec: u32,
        now_ms: u64,
        first: bool,
        cap: usize,
    ) {
        // Forgotten first, so their room is free for this sample.
        self.by_name
            .retain(|_, e| sec.saturating_sub(e.seen_sec) < WINDOW_S);
        // Entities that may give their room to a busier one, made when first needed.
        let mut idle: Option<Vec<Arc<str>>> = None;
        let mut dropped = 0;
        for (handle, born) in &list.entries {
            let s = &**handle;
            if let Some(e) = self.by_name.get_mut(s.key()) {
                e.sample(s, sec);
                continue;
            }
            // Listed since the last sample: everything it counted is new. Otherwise (the
            // first sample, or an entity that waited for room) only what comes next.
            let mut fresh = !first && *born > self.generation;
            let mut active_sec = 0;
            if self.by_name.len() >= cap {
                let total: u64 = s.classes().iter().sum();
                let busy = match self.waiting.get_mut(s.key()) {
                    Some(w) => {
                        let busy = w.0 != total;
                        *w = (total, sec);
                        busy
                    }
                    None => {
                        self.waiting.insert(s.key_arc(), (total, sec));
                        false
                    }
                };
                let victim = busy
                    .then(|| idle.get_or_insert_with(|| self.idle_entities(sec)).pop())
                    .flatten();
                let Some(victim) = victim else {
                    dropped += 1;
                    continue;
                };
                self.by_name.remove(&victim);
                self.waiting.remove(s.key());
                fresh = false;
                // Busy: not a victim for the next one.
                active_sec = sec;
            }
            let mut e = Entity {
                base: if fresh {
                    Reading::default()
                } else {
                    Reading::of(s)
                },
                ring: EntityRing::new(),
                seen_sec: sec,
                exemplar_mark_ms: if fresh { 0 } else { now_ms },
                active_sec,
            };
            if fresh {
                e.sample(s, sec);
            }
            self.by_name.insert(s.key_arc(), e);
        }
        // Only the names still listed wait.
        self.waiting.retain(|_, w| w.1 == sec);
        self.generation = list.generation;
        self.dropped = dropped;
    }

    /// Tracked entities without requests for the whole window, the longest idle last
    /// (taken first).
    fn idle_entities(&self, sec: u32) -> Vec<Arc<str>> {
        let mut v: Vec<(u32, &Arc<str>)> = self
            .by_name
            .iter()
            .filter(|(_, e)| sec.saturating_sub(e.active_sec) >= WINDOW_S)
            .map(|(name, e)| (e.active_sec, name))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(a.1)));
        v.into_iter().map(|(_, name)| name.clone()).collect()
    }
}

struct Inner {
    routes: Tracked,
    clusters: Tracked,
    /// The second of the last sample's points and when it was taken; None before one.
    last: Option<(u32, u64)>,
}

/// The console's metric store. Make one with [`Series::new`], start its sampler with
/// [`Series::start_sampler`], and read it with [`Series::overview`], [`Series::series`]
/// and [`Series::exemplars`].
pub struct Series {
    routes: Roster<RouteStats>,
    clusters: Roster<ClusterStats>,
    max_entities: usize,
    inner: Mutex<Inner>,
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn ms_or_null(v: Option<f64>) -> Value {
    v.filter(|v| v.is_finite())
        .map_or(Value::Null, |v| json!(round2(v)))
}

fn quantiles(buckets: &[u64; BUCKETS]) -> [Option<f64>; 3] {
    let bounds = telemetry::stats::ENVOY_DEFAULT_BUCKETS;
    QUANTILES.map(|q| histogram_quantile(q, bounds, buckets))
}

/// Window totals of one entity.
#[derive(Default)]
struct Totals {
    requests: u64,
    errors: u64,
    /// Requests and points in the last 60 s.
    rq_60: u64,
    points_60: u64,
    buckets: [u64; BUCKETS],
}

impl Totals {
    fn of(ring: &EntityRing, now_sec: u32) -> Self {
        let mut t = Totals::default();
        let from = (now_sec + 1).saturating_sub(WINDOW_S);
        let from_60 = (now_sec + 1).saturating_sub(60);
        for p in ring.points_since(from) {
            t.requests += u64::from(p.rq);
            t.errors += u64::from(p.err);
            if p.sec >= from_60 {
                t.rq_60 += u64::from(p.rq);
                t.points_60 += 1;
            }
        }
        ring.window_buckets(now_sec, WINDOW_S, &mut t.buckets);
        t
    }

    fn rps_60s(&self) -> f64 {
        round2(self.rq_60 as f64 / self.points_60.max(1) as f64)
    }

    fn json(&self, name: &str, flags: Value, rps: f64) -> Value {
        let [p50, p90, p99] = quantiles(&self.buckets);
        json!({
            "name": name,
            "requests": self.requests,
            "errors": self.errors,
            "rps_60s": rps,
            "success_rate": success_rate(self.requests, self.errors),
            "p50_ms": ms_or_null(p50),
            "p90_ms": ms_or_null(p90),
            "p99_ms": ms_or_null(p99),
            "response_flags": flags,
        })
    }
}

fn success_rate(requests: u64, errors: u64) -> Value {
    if requests == 0 {
        return Value::Null;
    }
    let r = 1.0 - errors as f64 / requests as f64;
    json!((r * 10_000.0).round() / 10_000.0)
}

fn flags_json(counts: &[u64; FLAGS]) -> Value {
    let m: Map<String, Value> = counts
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, &n)| (ResponseFlags::short_name(i).to_string(), json!(n)))
        .collect();
    Value::Object(m)
}

impl Series {
    /// A store over the rosters of the route and cluster stats caches
    /// ([`crate::stats::RouteStatsCache::roster`], [`crate::stats::ClusterStatsCache::roster`]).
    pub fn new(routes: Roster<RouteStats>, clusters: Roster<ClusterStats>) -> Self {
        Self::with_max_entities(routes, clusters, DEFAULT_MAX_ENTITIES)
    }

    /// As [`Series::new`], tracking at most `max_entities` routes and as many clusters.
    pub fn with_max_entities(
        routes: Roster<RouteStats>,
        clusters: Roster<ClusterStats>,
        max_entities: usize,
    ) -> Self {
        Series {
            routes,
            clusters,
            max_entities,
            inner: Mutex::new(Inner {
                routes: Tracked::default(),
                clusters: Tracked::default(),
                last: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sample every second on a thread of its own (`console-sampler`), just after each
    /// wall-clock second, until the store is dropped.
    pub fn start_sampler(self: &Arc<Self>) -> std::io::Result<()> {
        let weak: Weak<Series> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("console-sampler".into())
            .spawn(move || loop {
                let now = unix_ms();
                // A few ms into the next second, so a point is one wall-clock second.
                let next = (now / STEP_MS + 1) * STEP_MS + 5;
                std::thread::sleep(Duration::from_millis(next - now));
                let Some(series) = weak.upgrade() else { return };
                series.sample_at(unix_ms());
            })?;
        Ok(())
    }

    /// Take one sample at `now_ms`: its points are for the second before (the one the
    /// sampler just saw end). A second already sampled is skipped (a clock that went back).
    pub fn sample_at(&self, now_ms: u64) {
        let sec = u32::try_from((now_ms / STEP_MS).saturating_sub(1)).unwrap_or(u32::MAX);
        let routes = self.routes.load();
        let clusters = self.clusters.load();
        let mut inner = self.lock();
        let first = match inner.last {
            Some((last, _)) if sec <= last => return,
            Some(_) => false,
            None => true,
        };
        let cap = self.max_entities;
        inner.routes.sample(&routes, sec, now_ms, first, cap);
        inner.clusters.sample(&clusters, sec, now_ms, first, cap);
        inner.last = Some((sec, now_ms));
    }

    /// Bytes the store holds (an estimate: the rings' allocations, the entities' names
    /// and fixed parts).
    pub fn memory_bytes(&self) -> usize {
        let inner = self.lock();
        std::mem::size_of::<Series>()
            + [&inner.routes, &inner.clusters]
                .iter()
                .flat_map(|t| t.by_name.iter())
                .map(|(name, e)| e.bytes(name))
                .sum::<usize>()
            + [&inner.routes, &inner.clusters]
                .iter()
                .map(|t| t.waiting.capacity() * WAITING_ENTRY)
                .sum::<usize>()
    }

    fn tracked<'a>(inner: &'a Inner, kind: &str) -> Option<&'a Tracked> {
        match kind {
            "route" => Some(&inner.routes),
            "cluster" => Some(&inner.clusters),
            _ => None,
        }
    }

    /// Everything at a glance: totals over the routes, and every route and cluster with
    /// its 900 s window, by requests, most first.
    pub fn overview(&self) -> Value {
        let inner = self.lock();
        let (now_sec, now_ms) = inner.last.unwrap_or((0, unix_ms()));
        let mut all = Totals::default();
        let mut rps_total = 0.0;
        let list = |t: &Tracked, add: &mut dyn FnMut(&Totals, f64)| {
            let mut rows: Vec<(u64, &str, Value)> = t
                .by_name
                .iter()
                .map(|(name, e)| {
                    let w = Totals::of(&e.ring, now_sec);
                    let rps = w.rps_60s();
                    add(&w, rps);
                    let flags = flags_json(&e.ring.window_flags(now_sec, WINDOW_S));
                    (w.requests, &**name, w.json(name, flags, rps))
                })
                .collect();
            rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            rows.into_iter().map(|r| r.2).collect::<Vec<_>>()
        };
        let routes = list(&inner.routes, &mut |w, rps| {
            all.requests += w.requests;
            all.errors += w.errors;
            rps_total += rps;
            for (s, n) in all.buckets.iter_mut().zip(&w.buckets) {
                *s += n;
            }
        });
        let clusters = list(&inner.clusters, &mut |_, _| {});
        let [p50, p90, p99] = quantiles(&all.buckets);
        let dropped = inner.routes.dropped + inner.clusters.dropped;
        drop(inner);
        json!({
            "now_ms": now_ms,
            "step_ms": STEP_MS,
            "window_s": WINDOW_S,
            "memory_bytes": self.memory_bytes(),
            "dropped_entities": dropped,
            "totals": {
                "requests": all.requests,
                "errors": all.errors,
                "rps_60s": round2(rps_total),
                "success_rate": success_rate(all.requests, all.errors),
                "p50_ms": ms_or_null(p50),
                "p90_ms": ms_or_null(p90),
                "p99_ms": ms_or_null(p99),
            },
            "routes": routes,
            "clusters": clusters,
        })
    }

    /// The points of one route or cluster (`kind` `"route"` or `"cluster"`), oldest
    /// first, as columns; None when it is not tracked.
    pub fn series(&self, kind: &str, name: &str) -> Option<Value> {
        let inner = self.lock();
        let e = Self::tracked(&inner, kind)?.by_name.get(name)?;
        let now_sec = inner.last.map_or(0, |l| l.0);
        let from = (now_sec + 1).saturating_sub(WINDOW_S);
        let (mut t, mut rq, mut err) = (Vec::new(), Vec::new(), Vec::new());
        let mut p: [Vec<Value>; 3] = Default::default();
        for pt in e.ring.points_since(from) {
            t.push(u64::from(pt.sec) * STEP_MS);
            rq.push(pt.rq);
            err.push(pt.err);
            for (col, v) in p.iter_mut().zip(pt.p) {
                col.push(ms_or_null(Some(f64::from(v))));
            }
        }
        let [p50, p90, p99] = p;
        Some(json!({
            "kind": kind,
            "name": name,
            "start_ms": t.first().copied(),
            "step_ms": STEP_MS,
            "t": t,
            "rq": rq,
            "err": err,
            "p50": p50,
            "p90": p90,
            "p99": p99,
        }))
    }

    /// The exemplars (trace ids of sampled requests) of one route or cluster recorded in
    /// `[from_ms, to_ms]`, newest first; None when it is not tracked.
    pub fn exemplars(&self, kind: &str, name: &str, from_ms: u64, to_ms: u64) -> Option<Value> {
        let inner = self.lock();
        let e = Self::tracked(&inner, kind)?.by_name.get(name)?;
        let list: Vec<Value> = e
            .ring
            .exemplars_between(from_ms, to_ms)
            .iter()
            .map(|x| {
                json!({
                    "t_ms": x.timestamp_ms(),
                    "trace_id": x.trace_id(),
                    "value_ms": round2(x.value()),
                })
            })
            .collect();
        Some(json!({ "exemplars": list }))
    }

    /// p50, p90, p99 (ms) of one route or cluster over the last `window_s` seconds (in
    /// 15-second blocks: 60 and 900 are the windows the console shows); None when it is
    /// not tracked.
    pub fn window_percentiles(
        &self,
        kind: &str,
        name: &str,
        window_s: u32,
    ) -> Option<[Option<f64>; 3]> {
        let inner = self.lock();
        let e = Self::tracked(&inner, kind)?.by_name.get(name)?;
        let mut b = [0; BUCKETS];
        e.ring
            .window_buckets(inner.last.map_or(0, |l| l.0), window_s, &mut b);
        Some(quantiles(&b).map(|v| v.map(round2)))
    }
}

#[cfg(test)]
#[path = "metrics_series_tests.rs"]
mod tests;
