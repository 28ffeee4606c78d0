//! How a cluster picks an endpoint: Envoy's `lb_policy` as Istio writes it from a
//! DestinationRule's `loadBalancer` (which Higress builds from the `load-balance`,
//! `upstream-hash-by` and cookie `affinity` annotations).
//!
//! - `ROUND_ROBIN` (the default): an atomic cursor.
//! - `LEAST_REQUEST` (`least_conn`): Envoy's power of two choices: two endpoints drawn
//!   at random (with replacement), the one with fewer active requests wins (the first on
//!   a tie). Active requests are counted per endpoint from the pick until the request
//!   ends ([`LoadBalancer::begin`] / [`LoadBalancer::end`]).
//! - `RANDOM`: uniform.
//!
//! Endpoints of unequal weights (a registry's instances) are picked in proportion to
//! them by round robin (a precomputed smooth schedule) and random; least request and
//! the ring treat them alike.
//! - `RING_HASH` (a `consistentHash`): the request's hash (its [`HashPolicy`], computed
//!   by the data plane) on Envoy's ring ([`ring_hash::Ring`]), built with the snapshot. A
//!   request without the key (no such header, cookie or parameter) gets a random hash,
//!   as in Envoy.
//!
//! Every policy lets a retry avoid the endpoints already tried while one is left.

pub mod ring_hash;
pub mod xxhash;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

pub use ring_hash::Ring;
pub use xxhash::{xxh64, xxh64_chain};

/// A cluster's load balancing policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    /// Istio's `LEAST_CONN` / `LEAST_REQUEST`: Envoy's `LEAST_REQUEST`, two choices.
    LeastRequest,
    Random,
    /// Istio's `consistentHash`: Envoy's `RING_HASH` keyed by the route's hash policy.
    RingHash(HashPolicy),
}

/// What a request is hashed by (Envoy's route `hash_policy`, as Istio converts a
/// `consistentHash` key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashPolicy {
    /// A request header's value. `alt` is a second name read when the first is absent:
    /// nginx's spelling with dashes of a `$http_x_y` name that Higress keeps as `x_y`.
    Header {
        name: http::HeaderName,
        alt: Option<http::HeaderName>,
    },
    /// `:path` (path and query), from `$request_uri`.
    Path,
    /// `:authority` (the `Host` header as sent), from `$host`.
    Authority,
    /// The downstream peer's IP address as text, from `$remote_addr`.
    SourceIp,
    /// The first value of a query parameter (not decoded), from `$arg_<name>`.
    QueryParameter(String),
    /// A cookie's value; a request without it gets one made by the gateway.
    Cookie(CookiePolicy),
}

/// Envoy's hash policy cookie with a `ttl`: when the request lacks the cookie, the
/// gateway makes a value, hashes it, and sends it back in `Set-Cookie`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookiePolicy {
    /// `session-cookie-name`; default `INGRESSCOOKIE`.
    pub name: String,
    /// `session-cookie-path`; default `/`. Empty: no `Path` attribute.
    pub path: String,
    /// `session-cookie-max-age`, else `session-cookie-expires`, in whole seconds;
    /// zero (the default) makes a session cookie (no `Max-Age`).
    pub ttl: Duration,
}

impl CookiePolicy {
    /// The `Set-Cookie` value Envoy writes for a made cookie:
    /// `name="value"; Max-Age=<ttl>; Path=<path>; HttpOnly`.
    pub fn set_cookie(&self, value: &str) -> String {
        let mut s = format!("{}=\"{value}\"", self.name);
        if !self.ttl.is_zero() {
            s.push_str(&format!("; Max-Age={}", self.ttl.as_secs()));
        }
        if !self.path.is_empty() {
            s.push_str("; Path=");
            s.push_str(&self.path);
        }
        s.push_str("; HttpOnly");
        s
    }

    /// The cookie's value in a `Cookie` header, as Envoy parses it (`; `-separated
    /// pairs, surrounding double quotes removed); `None` when absent or empty.
    pub fn value_in<'a>(&self, cookie_header: &'a str) -> Option<&'a str> {
        cookie_header.split(';').find_map(|pair| {
            let (k, v) = pair.trim_start_matches(' ').split_once('=')?;
            if k != self.name {
                return None;
            }
            let v = match v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                true => &v[1..v.len() - 1],
                false => v,
            };
            (!v.is_empty()).then_some(v)
        })
    }
}

/// The value Envoy makes for a missing affinity cookie: the hex XXH64 of the
/// connection's remote then local address (`ip:port` each), so requests racing on one
/// connection get the same cookie.
pub fn cookie_value(remote: &SocketAddr, local: &SocketAddr) -> String {
    format!("{:016x}", xxh64(format!("{remote}{local}").as_bytes()))
}

/// A cluster's balancer: its policy and the state built for its endpoints.
#[derive(Debug)]
pub struct LoadBalancer {
    policy: LbPolicy,
    state: State,
}

#[derive(Debug)]
enum State {
    /// The cursor; a new snapshot starts a new rotation, which is harmless.
    RoundRobin(AtomicUsize),
    /// Endpoints of unequal weights (a registry's): a cursor over a schedule, built
    /// once, in which each endpoint appears as often as its weight, spread out.
    WeightedRoundRobin {
        next: AtomicUsize,
        schedule: Box<[u32]>,
    },
    /// Random over unequal weights: the running sums of the weights.
    WeightedRandom(Box<[u64]>),
    /// Active requests per endpoint (this snapshot's; a reload starts from zero).
    LeastRequest(Box<[AtomicU32]>),
    Random,
    Ring(Ring),
}

impl Default for LoadBalancer {
    fn default() -> Self {
        LoadBalancer {
            policy: LbPolicy::RoundRobin,
            state: State::RoundRobin(AtomicUsize::new(0)),
        }
    }
}

impl LoadBalancer {
    /// The balancer of `policy` over `endpoints` (a ring is built here, never per request).
    pub fn new(policy: LbPolicy, endpoints: &[SocketAddr]) -> LoadBalancer {
        Self::weighted(policy, endpoints, None)
    }

    /// [`Self::new`] with endpoint weights (`None`, or all equal: unweighted). Round
    /// robin and random follow them; least request and the ring treat endpoints alike.
    pub fn weighted(
        policy: LbPolicy,
        endpoints: &[SocketAddr],
        weights: Option<&[u32]>,
    ) -> LoadBalancer {
        let weights = weights.filter(|w| {
            w.len() == endpoints.len() && w.iter().any(|x| *x != w[0]) && w.len() > 1
        });
        let state = match (&policy, weights) {
            (LbPolicy::RoundRobin, Some(w)) => State::WeightedRoundRobin {
                next: AtomicUsize::new(0),
                schedule: schedule(w),
            },
            (LbPolicy::Random, Some(w)) => State::WeightedRandom(
                w.iter()
                    .scan(0u64, |sum, x| {
                        *sum += u64::from((*x).max(1));
                        Some(*sum)
                    })
                    .collect(),
            ),
            (LbPolicy::RoundRobin, None) => State::RoundRobin(AtomicUsize::new(0)),
            (LbPolicy::LeastRequest, _) => {
                State::LeastRequest(endpoints.iter().map(|_| AtomicU32::new(0)).collect())
            }
            (LbPolicy::Random, None) => State::Random,
            (LbPolicy::RingHash(_), _) => State::Ring(Ring::new(endpoints)),
        };
        LoadBalancer { policy, state }
    }

    pub fn policy(&self) -> &LbPolicy {
        &self.policy
    }

    /// What a request is hashed by, for a hashing policy.
    pub fn hash_policy(&self) -> Option<&HashPolicy> {
        match &self.policy {
            LbPolicy::RingHash(h) => Some(h),
            _ => None,
        }
    }

    /// Whether picks must be followed by [`Self::begin`] / [`Self::end`].
    pub fn counts_active(&self) -> bool {
        matches!(self.state, State::LeastRequest(_))
    }

    /// One more active request on endpoint `index` (least request only).
    pub fn begin(&self, index: u32) {
        if let State::LeastRequest(active) = &self.state {
            if let Some(a) = active.get(index as usize) {
                a.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A request on endpoint `index` ended (least request only).
    pub fn end(&self, index: u32) {
        if let State::LeastRequest(active) = &self.state {
            if let Some(a) = active.get(index as usize) {
                // Never below zero, whatever the order of events.
                let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
            }
        }
    }

    /// Active requests on endpoint `index` (least request only; else 0).
    pub fn active(&self, index: u32) -> u32 {
        match &self.state {
            State::LeastRequest(active) => active
                .get(index as usize)
                .map_or(0, |a| a.load(Ordering::Relaxed)),
            _ => 0,
        }
    }

    /// The endpoint index among `n` for a request: `hash` is its hash (hashing policies;
    /// `None`: the key was absent), `random` a uniform random number, `tried` the
    /// endpoints earlier attempts used (avoided while an untried one is left).
    pub fn pick(&self, n: usize, hash: Option<u64>, random: u64, tried: &[u32]) -> Option<u32> {
        self.pick_healthy(n, hash, random, tried, |_| true)
    }

    /// [`Self::pick`] among the endpoints `healthy` accepts (those outlier detection
    /// has not ejected); `None` when it accepts none (no panic routing: Istio turns it
    /// off with outlier detection).
    pub fn pick_healthy(
        &self,
        n: usize,
        hash: Option<u64>,
        random: u64,
        tried: &[u32],
        healthy: impl Fn(usize) -> bool,
    ) -> Option<u32> {
        if n == 0 {
            return None;
        }
        let fresh = |i: usize| !tried.contains(&(i as u32)) && healthy(i);
        // From `from` onwards: the first fresh endpoint, else the first healthy one.
        let onwards = |from: usize| {
            let order = (0..n).map(move |i| (from + i) % n);
            order
                .clone()
                .find(|&i| fresh(i))
                .or_else(|| order.clone().find(|&i| healthy(i)))
        };
        let chosen = match &self.state {
            State::RoundRobin(next) => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                return onwards(start % n).map(|i| i as u32);
            }
            State::WeightedRoundRobin { next, schedule } => {
                let at = next.fetch_add(1, Ordering::Relaxed) % schedule.len();
                schedule[at] as usize % n
            }
            State::Random => (random % n as u64) as usize,
            State::WeightedRandom(sums) => {
                let total = sums.last().copied().unwrap_or(1).max(1);
                let r = random % total;
                sums.partition_point(|s| *s <= r).min(n - 1)
            }
            State::LeastRequest(active) => {
                let load = |i: usize| active.get(i).map_or(0, |a| a.load(Ordering::Relaxed));
                let first = ((random & 0xFFFF_FFFF) % n as u64) as usize;
                let second = ((random >> 32) % n as u64) as usize;
                let pick = if load(second) < load(first) {
                    second
                } else {
                    first
                };
                if fresh(pick) {
                    return Some(pick as u32);
                }
                // A retry (or an ejected pick): the least loaded endpoint not tried yet.
                return (0..n)
                    .filter(|&i| fresh(i))
                    .min_by_key(|&i| load(i))
                    .or_else(|| healthy(pick).then_some(pick))
                    .or_else(|| (0..n).filter(|&i| healthy(i)).min_by_key(|&i| load(i)))
                    .map(|i| i as u32);
            }
            State::Ring(ring) => {
                let h = hash.unwrap_or(random);
                let first = ring.choose(h, 0)? as usize;
                if fresh(first) {
                    return Some(first as u32);
                }
                // A retry walks the ring onwards, as Envoy does under its previous-hosts
                // retry predicate, to the first endpoint not tried yet; an ejected
                // endpoint's keys go onwards too (as on Envoy's ring of healthy hosts).
                let walk = (1..ring.len()).filter_map(|a| ring.choose(h, a).map(|i| i as usize));
                if let Some(i) = walk.clone().find(|&i| fresh(i)) {
                    return Some(i as u32);
                }
                if healthy(first) {
                    return Some(first as u32);
                }
                match walk.clone().find(|&i| healthy(i)) {
                    Some(i) => return Some(i as u32),
                    None => first,
                }
            }
        };
        if fresh(chosen) {
            return Some(chosen as u32);
        }
        onwards(chosen).map(|i| i as u32)
    }
}

/// The longest weighted round robin schedule: weights whose sum (after dividing by
/// their greatest common divisor) is larger are scaled down to fit, keeping each >= 1.
const MAX_SCHEDULE: u64 = 4096;

/// Each endpoint index as often as its weight, spread out (smooth weighted round robin:
/// every step each endpoint gains its weight, the richest is picked and pays the total).
fn schedule(weights: &[u32]) -> Box<[u32]> {
    let gcd = weights.iter().fold(0u64, |g, w| gcd(g, u64::from((*w).max(1))));
    let mut w: Vec<u64> = weights
        .iter()
        .map(|x| u64::from((*x).max(1)) / gcd.max(1))
        .collect();
    let sum: u64 = w.iter().sum();
    if sum > MAX_SCHEDULE {
        for x in &mut w {
            *x = (*x * MAX_SCHEDULE / sum).max(1);
        }
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, x) in current.iter_mut().zip(&w) {
            *c += *x as i64;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .expect("weights are not empty");
        current[best] -= total;
        out.push(best as u32);
    }
    out.into_boxed_slice()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests;
