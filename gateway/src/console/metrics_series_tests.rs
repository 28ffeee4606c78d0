//! The store driven by hand (`sample_at`) over real route and cluster stats handles of a
//! real registry.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::stats::{ClusterIdentity, ClusterStatsCache, RequestProtocol, RouteStatsCache};

/// A second boundary, so `T0 + k * 1000` samples second `T0 / 1000 + k - 1`.
const T0: u64 = 1_700_000_000_000;

struct Fixture {
    routes: RouteStatsCache,
    clusters: ClusterStatsCache,
    series: Series,
}

impl Fixture {
    fn new(max: usize) -> Self {
        let routes = RouteStatsCache::detached();
        let clusters = ClusterStatsCache::new(routes.registry().clone(), "higress-system");
        let series = Series::with_max_entities(routes.roster(), clusters.roster(), max);
        Fixture {
            routes,
            clusters,
            series,
        }
    }

    /// Publish these route names as the config loop does after a snapshot build.
    fn routes(&mut self, names: &[&str]) -> Vec<Arc<RouteStats>> {
        let handles = names
            .iter()
            .map(|n| self.routes.get(&(*n).into()))
            .collect();
        let keep: HashSet<&str> = names.iter().copied().collect();
        self.routes.retain(&keep);
        handles
    }

    fn cluster(&mut self, host: &str) -> Arc<ClusterStats> {
        let name = format!("outbound|80||{host}");
        let s = self.clusters.get(&ClusterIdentity {
            name: &name,
            host,
            port: 80,
            target_port: 80,
            port_name: "http",
            subset: "",
        });
        let keep: HashSet<&str> = [s.stat_name.as_str()].into_iter().collect();
        self.clusters.retain(&keep);
        s
    }

    fn at(&self, k: u64) {
        self.series.sample_at(T0 + k * 1000);
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn uf() -> ResponseFlags {
    let mut f = ResponseFlags::default();
    f.set(ResponseFlags::CONNECT_FAILURE);
    f
}

#[test]
fn seconds_become_points_and_windows_add_them_up() {
    let mut f = Fixture::new(DEFAULT_MAX_ENTITIES);
    let [a, b] = <[_; 2]>::try_from(f.routes(&["a", "b"])).unwrap();
    let c = f.cluster("be.static");
    // Counted before the sampler's first look: not part of any point.
    a.request_done(200, ms(7), None, ResponseFlags::default());
    f.at(0);
    for _ in 0..18 {
        a.request_done(200, ms(7), None, ResponseFlags::default());
        c.response(200);
        c.response_complete(ms(6), None);
    }
    for _ in 0..2 {
        a.request_done(503, ms(300), None, uf());
        c.response(503);
        c.istio
            .record(503, RequestProtocol::Http, uf(), ms(300), 10, 10);
    }
    b.request_done(404, ms(1), None, ResponseFlags::default());
    f.at(1);
    f.at(2);

    let s = f.series.series("route", "a").unwrap();
    let sec = T0 / 1000;
    assert_eq!(s["t"], json!([sec * 1000, (sec + 1) * 1000]));
    assert_eq!(s["start_ms"], json!(sec * 1000));
    assert_eq!(s["step_ms"], json!(1000));
    assert_eq!(s["rq"], json!([20, 0]));
    assert_eq!(s["err"], json!([2, 0]));
    // 18 in (5, 10], 2 in (250, 500]: p50 at rank 10 of 18 in (5, 10].
    assert_eq!(s["p50"], json!([round2(5.0 + 5.0 * 10.0 / 18.0), null]));
    assert_eq!(s["p90"], json!([10.0, null]), "rank 18: the bucket's top");
    assert_eq!(s["p99"], json!([round2(250.0 + 250.0 * 0.9), null]));

    let o = f.series.overview();
    assert_eq!(o["step_ms"], json!(1000));
    assert_eq!(o["window_s"], json!(900));
    assert_eq!(o["now_ms"], json!(T0 + 2000));
    assert_eq!(o["dropped_entities"], json!(0));
    let routes = o["routes"].as_array().unwrap();
    assert_eq!(routes[0]["name"], "a", "most requests first");
    assert_eq!(routes[0]["requests"], json!(20));
    assert_eq!(routes[0]["errors"], json!(2));
    assert_eq!(routes[0]["success_rate"], json!(0.9));
    assert_eq!(routes[0]["rps_60s"], json!(10.0), "20 over the 2 s held");
    assert_eq!(routes[0]["response_flags"], json!({"UF": 2}));
    assert_eq!(routes[0]["p50_ms"], s["p50"][0]);
    assert_eq!(routes[1]["name"], "b");
    assert_eq!(routes[1]["errors"], json!(0));
    assert_eq!(routes[1]["response_flags"], json!({}));
    assert_eq!(o["totals"]["requests"], json!(21));
    assert_eq!(o["totals"]["errors"], json!(2));
    assert_eq!(o["totals"]["success_rate"], json!(round4(1.0 - 2.0 / 21.0)));
    assert_eq!(o["totals"]["rps_60s"], json!(10.5));
    // 19 samples at or below 10 ms of 21: p50 and p90 in (5, 10], below 1 ms none.
    assert!(o["totals"]["p50_ms"].as_f64().unwrap() > 5.0);
    let clusters = o["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0]["name"], "outbound|80||be.static");
    assert_eq!(clusters[0]["requests"], json!(20));
    assert_eq!(clusters[0]["errors"], json!(2));
    assert_eq!(clusters[0]["response_flags"], json!({"UF": 2}));
    assert_eq!(
        clusters[0]["p50_ms"],
        json!(round2(5.0 + 5.0 * 9.0 / 18.0)),
        "18 samples, rank 9"
    );

    assert_eq!(f.series.series("route", "nope"), None);
    assert_eq!(f.series.series("listener", "a"), None);
    let w = f.series.window_percentiles("route", "a", 60).unwrap();
    assert_eq!(w[0], Some(round2(5.0 + 5.0 * 10.0 / 18.0)));
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[test]
fn a_counter_that_goes_back_resets_the_baseline_without_a_negative_point() {
    let mut f = Fixture::new(DEFAULT_MAX_ENTITIES);
    f.routes.registry().set_retention(Duration::ZERO);
    let old = f.routes(&["r"]).remove(0);
    f.at(0);
    for _ in 0..5 {
        old.request_done(200, ms(2), None, ResponseFlags::default());
    }
    f.at(1);
    // The route goes, its series is forgotten, and it comes back from zero.
    f.routes(&[]);
    drop(old);
    f.routes.registry().prune();
    let new = f.routes(&["r"]).remove(0);
    new.request_done(200, ms(2), None, ResponseFlags::default());
    f.at(2);
    new.request_done(200, ms(2), None, ResponseFlags::default());
    f.at(3);
    let s = f.series.series("route", "r").unwrap();
    assert_eq!(s["rq"], json!([5, 0, 1]), "the reset second counts nothing");
    assert!(s["p50"][1].is_null());
}

#[test]
fn routes_listed_after_a_sample_count_from_zero() {
    let mut f = Fixture::new(DEFAULT_MAX_ENTITIES);
    f.routes(&["a"]);
    f.at(0);
    let new = f.routes(&["a", "late"]).remove(1);
    for _ in 0..4 {
        new.request_done(201, ms(1), None, ResponseFlags::default());
    }
    f.at(1);
    let s = f.series.series("route", "late").unwrap();
    assert_eq!(
        s["rq"],
        json!([4]),
        "listed since the last sample: all its counts are new"
    );
}

#[test]
fn the_ring_keeps_fifteen_minutes() {
    let mut f = Fixture::new(DEFAULT_MAX_ENTITIES);
    let r = f.routes(&["r"]).remove(0);
    for k in 0..1000 {
        r.request_done(200, ms(1), None, ResponseFlags::default());
        f.at(k);
    }
    let s = f.series.series("route", "r").unwrap();
    let t = s["t"].as_array().unwrap();
    assert_eq!(t.len(), 900);
    assert_eq!(t[899], json!((T0 / 1000 + 998) * 1000));
    assert_eq!(s["start_ms"], t[0]);
    let o = f.series.overview();
    assert_eq!(o["routes"][0]["requests"], json!(900));
    assert_eq!(o["routes"][0]["rps_60s"], json!(1.0));
}

#[test]
fn entities_past_the_cap_are_counted_and_the_unseen_forgotten() {
    let mut f = Fixture::new(2);
    f.routes(&["a", "b", "c", "d"]);
    f.at(0);
    let o = f.series.overview();
    assert_eq!(o["routes"].as_array().unwrap().len(), 2);
    assert_eq!(o["dropped_entities"], json!(2));
    let mem = o["memory_bytes"].as_u64().unwrap() as usize;
    let per_entity = ENTITY_OVERHEAD + 5_040;
    assert!(
        mem >= 2 * per_entity && mem < 2 * per_entity + 1024,
        "{mem} for two entities without points yet"
    );
    f.at(1);
    let mem = f.series.memory_bytes();
    assert!(
        mem >= 2 * (per_entity + 900 * 24),
        "a point ring is 900 x 24 B: {mem}"
    );

    // They leave the roster: kept for 15 minutes, then forgotten, and others get room.
    let held = f.routes(&["e"]);
    f.at(2);
    assert_eq!(f.series.overview()["routes"].as_array().unwrap().len(), 2);
    assert_eq!(f.series.overview()["dropped_entities"], json!(1));
    let kept: Vec<String> = f.series.overview()["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    f.at(900);
    assert!(
        f.series.series("route", &kept[0]).is_some(),
        "unseen for 899 s"
    );
    assert!(f.series.series("route", "e").is_none());
    f.at(901);
    assert!(
        f.series.series("route", &kept[0]).is_none(),
        "unseen for 900 s"
    );
    assert!(f.series.series("route", "e").is_some(), "room again");
    assert_eq!(f.series.overview()["dropped_entities"], json!(0));
    drop(held);
}

#[test]
fn exemplars_of_sampled_requests_are_kept_by_time() {
    let mut f = Fixture::new(DEFAULT_MAX_ENTITIES);
    let r = f.routes(&["r"]).remove(0);
    f.at(0);
    let before = unix_ms();
    r.request_done(
        200,
        ms(3),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        ResponseFlags::default(),
    );
    r.request_done(
        200,
        ms(700),
        Some("00f067aa0ba902b7"),
        ResponseFlags::default(),
    );
    r.request_done(200, ms(2), None, ResponseFlags::default());
    f.at(1);
    // Nothing new: the same exemplars are not taken twice.
    r.request_done(200, ms(2), None, ResponseFlags::default());
    f.at(2);
    let e = f.series.exemplars("route", "r", 0, u64::MAX).unwrap();
    let list = e["exemplars"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{e}");
    let ids: HashSet<&str> = list
        .iter()
        .map(|x| x["trace_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains("4bf92f3577b34da6a3ce929d0e0e4736") && ids.contains("00f067aa0ba902b7"));
    assert!(
        list[0]["t_ms"].as_u64() >= list[1]["t_ms"].as_u64(),
        "newest first"
    );
    let slow = list
        .iter()
        .find(|x| x["trace_id"] == "00f067aa0ba902b7")
        .unwrap();
    assert_eq!(slow["value_ms"], json!(700.0));
    assert!(slow["t_ms"].as_u64().unwrap() >= before);
    let none = f.series.exemplars("route", "r", 0, before - 1).unwrap();
    assert_eq!(none, json!({"exemplars": []}));
    assert_eq!(f.series.exemplars("cluster", "r", 0, u64::MAX), None);
}

#[test]
fn a_second_sampled_twice_is_skipped() {
    let mut f = Fixture::new(DEFAULT_MAX_ENTITIES);
    let r = f.routes(&["r"]).remove(0);
    f.at(0);
    r.request_done(200, ms(1), None, ResponseFlags::default());
    f.at(1);
    f.series.sample_at(T0 + 1500);
    f.series.sample_at(T0 + 500);
    let s = f.series.series("route", "r").unwrap();
    assert_eq!(s["rq"], json!([1]));
}

#[test]
fn the_sampler_thread_samples_every_second() {
    let mut f = Fixture::new(DEFAULT_MAX_ENTITIES);
    let r = f.routes(&["r"]).remove(0);
    let series = Arc::new(Series::new(f.routes.roster(), f.clusters.roster()));
    series.start_sampler().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        r.request_done(200, ms(1), None, ResponseFlags::default());
        let held = series
            .series("route", "r")
            .map_or(0, |s| s["t"].as_array().unwrap().len());
        if held >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no points after 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let threads = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .any(|c| c.trim() == "console-sampler");
    assert!(threads, "the sampler runs on its named thread");
}

#[test]
fn a_busy_entity_past_the_cap_takes_the_room_of_an_idle_one() {
    let mut f = Fixture::new(2);
    let handles = f.routes(&["a", "b", "c", "d"]);
    f.at(0);
    let tracked = |f: &Fixture| -> Vec<String> {
        let mut v: Vec<String> = f.series.overview()["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let first = tracked(&f);
    let by_name = |n: &str| handles.iter().find(|h| &*h.name == n).unwrap().clone();
    let waiting: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| n.to_string())
        .filter(|n| !first.contains(n))
        .collect();
    // Both tracked ones get requests; a waiting one too: no tracked one is idle.
    for n in &first {
        by_name(n).request_done(200, ms(1), None, ResponseFlags::default());
    }
    f.at(1);
    let busy = by_name(&waiting[0]);
    busy.request_done(200, ms(1), None, ResponseFlags::default());
    f.at(2);
    assert_eq!(
        tracked(&f),
        first,
        "the tracked ones had requests in the window"
    );
    assert_eq!(f.series.overview()["dropped_entities"], json!(2));

    // Past the window without requests on one of them: it makes room.
    by_name(&first[1]).request_done(200, ms(1), None, ResponseFlags::default());
    f.at(902);
    busy.request_done(200, ms(1), None, ResponseFlags::default());
    f.at(903);
    let now = tracked(&f);
    assert!(now.contains(&waiting[0]), "{now:?}");
    assert!(
        now.contains(&first[1]),
        "the one with requests stays: {now:?}"
    );
    busy.request_done(200, ms(1), None, ResponseFlags::default());
    busy.request_done(200, ms(1), None, ResponseFlags::default());
    f.at(904);
    let s = f.series.series("route", &waiting[0]).unwrap();
    assert_eq!(s["rq"], json!([2]), "counted from when it got room");
    assert!(
        f.series.memory_bytes() >= 2 * WAITING_ENTRY,
        "the waiting ones are counted"
    );
}
