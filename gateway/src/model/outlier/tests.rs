use super::*;
use crate::stats::{ClusterIdentity, ClusterStatsCache};

fn stats(cache: &mut ClusterStatsCache, host: &str) -> Arc<ClusterStats> {
    let name = format!("outbound|80||{host}");
    cache.get(&ClusterIdentity {
        name: &name,
        host,
        port: 80,
        target_port: 80,
        port_name: "http",
        subset: "",
    })
}

fn endpoints(n: u16) -> Vec<SocketAddr> {
    (1..=n)
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect()
}

fn config() -> OutlierConfig {
    OutlierConfig {
        consecutive_5xx: 3,
        interval: Duration::from_secs(1),
        base_ejection_time: Duration::from_secs(10),
        ..OutlierConfig::default()
    }
}

#[test]
fn envoy_defaults() {
    let c = OutlierConfig::default();
    assert_eq!((c.consecutive_5xx, c.consecutive_gateway_failure), (5, 5));
    assert!(c.enforcing_consecutive_5xx && !c.enforcing_consecutive_gateway_failure);
    assert_eq!(c.interval, Duration::from_secs(10));
    assert_eq!(c.base_ejection_time, Duration::from_secs(30));
    assert_eq!(c.max_ejection_time, Duration::from_secs(300));
    assert_eq!(c.max_ejection_percent, 10);
}

#[test]
fn consecutive_5xx_eject_and_a_success_clears_the_count() {
    let mut cache = ClusterStatsCache::detached();
    let s = stats(&mut cache, "a.static");
    let d = OutlierDetector::new(config(), &endpoints(2), &s);
    for status in [500, 503, 200, 502, 503] {
        d.report(0, status);
    }
    assert!(!d.is_ejected(0), "a 200 broke the run");
    d.report(0, 504);
    assert!(d.is_ejected(0));
    assert!(!d.is_ejected(1));
    let o = s.outlier();
    assert_eq!(o.ejections_active.get(), 1);
    assert_eq!(o.ejections_enforced_total.get(), 1);
    assert_eq!(o.ejections_enforced_consecutive_5xx.get(), 1);
    assert_eq!(o.ejections_detected_consecutive_5xx.get(), 1);
    // Three gateway failures in a row: under the default threshold of 5.
    assert_eq!(o.ejections_detected_consecutive_gateway_failure.get(), 0);
    assert_eq!(s.membership_healthy.get(), 1);
}

#[test]
fn at_least_one_endpoint_may_go_then_the_percentage_holds() {
    let mut cache = ClusterStatsCache::detached();
    let s = stats(&mut cache, "b.static");
    // 10 % of 3 endpoints is none: the first ejection is allowed anyway.
    let d = OutlierDetector::new(config(), &endpoints(3), &s);
    for i in 0..3 {
        for _ in 0..3 {
            d.report(i, 503);
        }
    }
    assert_eq!(d.ejected(), 1);
    assert!(d.is_ejected(0));
    let o = s.outlier();
    assert_eq!(o.ejections_overflow.get(), 2);
    assert_eq!(o.ejections_detected_consecutive_5xx.get(), 3);
    // 67 % allows two of three, not three.
    let s = stats(&mut cache, "c.static");
    let d = OutlierDetector::new(
        OutlierConfig {
            max_ejection_percent: 67,
            ..config()
        },
        &endpoints(3),
        &s,
    );
    for i in 0..3 {
        for _ in 0..3 {
            d.report(i, 503);
        }
    }
    assert_eq!(d.ejected(), 2);
    assert_eq!(s.outlier().ejections_overflow.get(), 1);
}

#[test]
fn ejections_last_the_base_time_times_their_count_and_the_count_decays() {
    let mut cache = ClusterStatsCache::detached();
    let s = stats(&mut cache, "d.static");
    let d = OutlierDetector::new(config(), &endpoints(2), &s);
    let eject = || {
        for _ in 0..3 {
            d.report(0, 503);
        }
    };
    eject();
    assert!(d.is_ejected(0));
    let t0 = d.lock().hosts[0].last_ejection.unwrap();
    d.sweep(t0 + Duration::from_secs(9));
    assert!(d.is_ejected(0), "within the 10 s base time");
    d.sweep(t0 + Duration::from_secs(10));
    assert!(!d.is_ejected(0));
    assert_eq!(s.outlier().ejections_active.get(), 0);
    assert_eq!(s.membership_healthy.get(), 2);
    // Ejected again at once: the second ejection lasts twice the base time.
    eject();
    let t1 = d.lock().hosts[0].last_ejection.unwrap();
    d.sweep(t1 + Duration::from_secs(19));
    assert!(d.is_ejected(0));
    d.sweep(t1 + Duration::from_secs(20));
    assert!(!d.is_ejected(0));
    // Two intervals in service lower the backoff by one each: back to a base ejection.
    let back = t1 + Duration::from_secs(20);
    d.sweep(back + Duration::from_secs(1));
    d.sweep(back + Duration::from_secs(2));
    assert_eq!(d.lock().hosts[0].backoff, 0);
}

#[test]
fn gateway_failures_eject_only_when_enforced() {
    let mut cache = ClusterStatsCache::detached();
    let s = stats(&mut cache, "e.static");
    let cfg = OutlierConfig {
        consecutive_5xx: 0,
        consecutive_gateway_failure: 2,
        ..config()
    };
    let d = OutlierDetector::new(cfg.clone(), &endpoints(2), &s);
    d.report(0, 502);
    d.report(0, 504);
    assert!(!d.is_ejected(0));
    assert_eq!(
        s.outlier()
            .ejections_detected_consecutive_gateway_failure
            .get(),
        1
    );
    let s = stats(&mut cache, "f.static");
    let d = OutlierDetector::new(
        OutlierConfig {
            enforcing_consecutive_gateway_failure: true,
            ..cfg
        },
        &endpoints(2),
        &s,
    );
    // A 500 is a 5xx but not a gateway failure: it breaks the run.
    for status in [503, 500, 503, 503] {
        d.report(1, status);
    }
    assert!(d.is_ejected(1));
    assert_eq!(
        s.outlier()
            .ejections_enforced_consecutive_gateway_failure
            .get(),
        1
    );
}

#[test]
fn a_new_snapshot_keeps_the_live_detector_and_its_ejections() {
    let mut cache = ClusterStatsCache::detached();
    let s = stats(&mut cache, "g.static");
    let eps = endpoints(2);
    let d = OutlierDetector::for_cluster(config(), &eps, &s);
    for _ in 0..3 {
        d.report(1, 503);
    }
    let again = OutlierDetector::for_cluster(config(), &eps, &s);
    assert!(Arc::ptr_eq(&d, &again));
    assert!(again.is_ejected(1));
    // Other endpoints: a new detector; the old one's ejection ends with it.
    let other = OutlierDetector::for_cluster(config(), &endpoints(3), &s);
    assert!(!Arc::ptr_eq(&d, &other));
    drop((d, again));
    assert_eq!(s.outlier().ejections_active.get(), 0);
}
