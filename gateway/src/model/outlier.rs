//! Passive outlier detection: Envoy's consecutive 5xx and consecutive gateway failure
//! detectors, as an Istio DestinationRule's `outlierDetection` configures them.
//!
//! - Every upstream attempt's result reaches its endpoint's counters
//!   ([`OutlierDetector::report`]): a response's status, or for a failure the status
//!   Envoy charges it with (503 for a connect failure or a reset, 504 for a timeout).
//!   A 5xx adds to the consecutive 5xx count (and a 502/503/504 to the gateway failure
//!   count); anything else clears them. Per request this is an atomic add or load: no
//!   lock.
//! - The count reaching its threshold ejects the endpoint at once, unless that would
//!   eject more than `max_ejection_percent` of the cluster's endpoints; at least one
//!   endpoint may always be ejected (Envoy's `always_eject_one_host`, so that the
//!   10 % default still acts on the small clusters Kubernetes services have). An
//!   ejection not made counts in `ejections_overflow`.
//! - Ejected endpoints are skipped by the load balancer. Every `interval`, a sweep
//!   returns those ejected for `base_ejection_time` times their ejection count (at
//!   most `max_ejection_time`), and lowers the count of endpoints that stayed in.
//!
//! A detector lives as long as a snapshot uses its cluster; a new snapshot with the
//! same settings and endpoints for the cluster keeps it (ejections survive reloads).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::stats::ClusterStats;

/// A cluster's outlier detection settings (Envoy's `OutlierDetection`, with its
/// defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierConfig {
    /// 5xx in a row that eject an endpoint; 0: never. Default 5.
    pub consecutive_5xx: u32,
    /// Whether a consecutive 5xx detection ejects. Default true.
    pub enforcing_consecutive_5xx: bool,
    /// 502/503/504 in a row that make a detection; 0: never. Default 5.
    pub consecutive_gateway_failure: u32,
    /// Whether a consecutive gateway failure detection ejects. Default false (Envoy's
    /// `enforcing_consecutive_gateway_failure` 0; Istio enables it with
    /// `consecutiveGatewayErrors`).
    pub enforcing_consecutive_gateway_failure: bool,
    /// Time between sweeps. Default 10 s.
    pub interval: Duration,
    /// The first ejection's length; later ones are multiples. Default 30 s.
    pub base_ejection_time: Duration,
    /// The longest ejection. Default 300 s, or `base_ejection_time` if longer.
    pub max_ejection_time: Duration,
    /// Endpoints that may be ejected at once, in percent of the cluster's (at least
    /// one). Default 10.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            enforcing_consecutive_5xx: true,
            consecutive_gateway_failure: 5,
            enforcing_consecutive_gateway_failure: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// Which detector found an outlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detection {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
}

/// The counters a request touches.
#[derive(Debug, Default)]
struct HostCounters {
    consecutive_5xx: AtomicU32,
    consecutive_gateway_failure: AtomicU32,
    ejected: AtomicBool,
}

/// What only ejections and sweeps touch (under the detector's lock).
#[derive(Clone, Copy, Debug, Default)]
struct HostEjection {
    /// Envoy's ejection time backoff: the next ejection lasts this many base times.
    backoff: u32,
    last_ejection: Option<Instant>,
    last_unejection: Option<Instant>,
}

struct Ejections {
    hosts: Vec<HostEjection>,
    active: usize,
}

/// One cluster's detector over its endpoints (by index, as the cluster lists them).
pub struct OutlierDetector {
    config: OutlierConfig,
    endpoints: Vec<SocketAddr>,
    counters: Box<[HostCounters]>,
    state: Mutex<Ejections>,
    stats: Arc<ClusterStats>,
}

impl std::fmt::Debug for OutlierDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutlierDetector")
            .field("config", &self.config)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// Live detectors by cluster stat name, so a new snapshot keeps its cluster's.
static LIVE: LazyLock<Mutex<HashMap<String, Weak<OutlierDetector>>>> =
    LazyLock::new(Default::default);

impl OutlierDetector {
    /// The detector of a cluster with these settings and endpoints: the live one when
    /// it has the same, else a new one (whose sweeps run on the current Tokio runtime,
    /// if any).
    pub fn for_cluster(
        config: OutlierConfig,
        endpoints: &[SocketAddr],
        stats: &Arc<ClusterStats>,
    ) -> Arc<OutlierDetector> {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, d| d.strong_count() > 0);
        if let Some(d) = live.get(&stats.stat_name).and_then(Weak::upgrade) {
            if d.config == config && d.endpoints == endpoints && Arc::ptr_eq(&d.stats, stats) {
                d.publish_healthy();
                return d;
            }
        }
        let d = Arc::new(Self::new(config, endpoints, stats));
        live.insert(stats.stat_name.clone(), Arc::downgrade(&d));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweeps(Arc::downgrade(&d), d.config.interval));
        }
        d
    }

    /// A detector without sweeps of its own (see [`Self::sweep`]).
    pub fn new(config: OutlierConfig, endpoints: &[SocketAddr], stats: &Arc<ClusterStats>) -> Self {
        // The stats exist (at zero) from the detector's start, as in Envoy.
        stats.outlier();
        OutlierDetector {
            counters: endpoints.iter().map(|_| HostCounters::default()).collect(),
            state: Mutex::new(Ejections {
                hosts: vec![HostEjection::default(); endpoints.len()],
                active: 0,
            }),
            endpoints: endpoints.to_vec(),
            config,
            stats: stats.clone(),
        }
    }

    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Whether endpoint `index` is ejected (read by every pick).
    #[inline]
    pub fn is_ejected(&self, index: usize) -> bool {
        self.counters
            .get(index)
            .is_some_and(|c| c.ejected.load(Ordering::Relaxed))
    }

    /// Endpoints ejected now.
    pub fn ejected(&self) -> usize {
        self.lock().active
    }

    /// The result of an attempt on endpoint `index`, as an HTTP status.
    pub fn report(&self, index: usize, status: u16) {
        let Some(c) = self.counters.get(index) else {
            return;
        };
        if (500..600).contains(&status) {
            let gateway_failure = matches!(status, 502..=504);
            if gateway_failure {
                let n = c
                    .consecutive_gateway_failure
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if n == self.config.consecutive_gateway_failure {
                    self.detected(index, Detection::ConsecutiveGatewayFailure);
                }
            } else {
                clear(&c.consecutive_gateway_failure);
            }
            let n = c.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
            if n == self.config.consecutive_5xx {
                self.detected(index, Detection::Consecutive5xx);
            }
        } else {
            clear(&c.consecutive_5xx);
            clear(&c.consecutive_gateway_failure);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ejections> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A detector's count reached its threshold: eject, when allowed.
    fn detected(&self, index: usize, how: Detection) {
        let mut st = self.lock();
        let c = &self.counters[index];
        if c.ejected.load(Ordering::Relaxed) {
            return;
        }
        let s = self.stats.outlier();
        let enforcing = match how {
            Detection::Consecutive5xx => {
                s.ejections_detected_consecutive_5xx.inc();
                self.config.enforcing_consecutive_5xx
            }
            Detection::ConsecutiveGatewayFailure => {
                s.ejections_detected_consecutive_gateway_failure.inc();
                self.config.enforcing_consecutive_gateway_failure
            }
        };
        // Envoy's test: (ejected + 1) / endpoints, in percent, within the maximum.
        let over =
            100 * (st.active + 1) > self.config.max_ejection_percent as usize * self.counters.len();
        if over && st.active > 0 {
            s.ejections_overflow.inc();
        } else if enforcing {
            st.active += 1;
            c.ejected.store(true, Ordering::Relaxed);
            let h = &mut st.hosts[index];
            h.last_ejection = Some(Instant::now());
            // Envoy grows the backoff while it keeps the ejection within the maximum.
            let base = self.config.base_ejection_time;
            if base * h.backoff < self.config.max_ejection_time + base {
                h.backoff += 1;
            }
            s.ejections_active.add(1);
            s.ejections_enforced_total.inc();
            match how {
                Detection::Consecutive5xx => s.ejections_enforced_consecutive_5xx.inc(),
                Detection::ConsecutiveGatewayFailure => {
                    s.ejections_enforced_consecutive_gateway_failure.inc()
                }
            }
            tracing::info!(
                cluster = %self.stats.stat_name,
                endpoint = %self.endpoints[index],
                detector = ?how,
                "outlier ejected"
            );
            self.set_healthy(st.active);
        }
        // The count starts again whether or not the endpoint went out.
        match how {
            Detection::Consecutive5xx => c.consecutive_5xx.store(0, Ordering::Relaxed),
            Detection::ConsecutiveGatewayFailure => {
                c.consecutive_gateway_failure.store(0, Ordering::Relaxed)
            }
        }
    }

    /// One interval's sweep at `now`: return endpoints whose ejection ended; lower the
    /// backoff of endpoints that stayed in for a whole interval.
    pub fn sweep(&self, now: Instant) {
        let mut st = self.lock();
        let base = self.config.base_ejection_time;
        let mut returned = 0;
        for (i, h) in st.hosts.iter_mut().enumerate() {
            let c = &self.counters[i];
            if !c.ejected.load(Ordering::Relaxed) {
                continue;
            }
            let length = (base * h.backoff).min(self.config.max_ejection_time);
            if h.last_ejection
                .is_some_and(|t| now.duration_since(t) >= length)
            {
                c.ejected.store(false, Ordering::Relaxed);
                c.consecutive_5xx.store(0, Ordering::Relaxed);
                c.consecutive_gateway_failure.store(0, Ordering::Relaxed);
                h.last_unejection = Some(now);
                returned += 1;
                tracing::info!(
                    cluster = %self.stats.stat_name,
                    endpoint = %self.endpoints[i],
                    "outlier returned"
                );
            }
        }
        for (i, h) in st.hosts.iter_mut().enumerate() {
            let stayed = !self.counters[i].ejected.load(Ordering::Relaxed)
                && h.last_unejection
                    .is_some_and(|t| now.duration_since(t) >= self.config.interval);
            if stayed && h.backoff > 0 {
                h.backoff -= 1;
            }
        }
        if returned > 0 {
            st.active -= returned;
            self.stats
                .outlier()
                .ejections_active
                .add(-(returned as i64));
            self.set_healthy(st.active);
        }
    }

    fn set_healthy(&self, active: usize) {
        self.stats
            .membership_healthy
            .set((self.endpoints.len() - active) as i64);
    }

    /// Restate `membership_healthy` (a new snapshot's cluster set it to every endpoint).
    fn publish_healthy(&self) {
        let active = self.lock().active;
        self.set_healthy(active);
    }
}

impl Drop for OutlierDetector {
    fn drop(&mut self) {
        // Its ejections end with it (Envoy's detector does the same).
        let active = self.state.get_mut().map_or(0, |s| s.active);
        if active > 0 {
            self.stats.outlier().ejections_active.add(-(active as i64));
        }
    }
}

/// Store 0 only when needed: the happy path reads the cache line without dirtying it.
#[inline]
fn clear(c: &AtomicU32) {
    if c.load(Ordering::Relaxed) != 0 {
        c.store(0, Ordering::Relaxed);
    }
}

/// Sweep every `interval` while the detector lives.
async fn sweeps(detector: Weak<OutlierDetector>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(d) = detector.upgrade() else { return };
        d.sweep(Instant::now());
    }
}

#[cfg(test)]
mod tests;
