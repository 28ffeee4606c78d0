//! Fault injection on a route (Envoy's `envoy.filters.http.fault`, as Istio's
//! VirtualService `fault` configures it): a share of the requests waits `delay` before
//! going on, a share is answered with the abort status instead of going upstream. The
//! delay comes first; a request both delayed and aborted is answered after the delay.
//!
//! Each share is decided per request with a random draw, in millionths (Istio's
//! `percentage.value` keeps its decimals). A request that is neither delayed nor aborted
//! costs two random draws and no allocation.

use std::time::Duration;

use pingora_http::RequestHeader;

use crate::model::http_filter::{
    Decision, FilterStatus, HttpFilter, LocalReply, MatchInput, Pending,
};

/// Millionths: 100 % of requests.
pub const MILLION: u32 = 1_000_000;

/// The faults of one route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// (delay, requests delayed per million).
    pub delay: Option<(Duration, u32)>,
    /// (status answered, requests aborted per million).
    pub abort: Option<(u16, u32)>,
}

impl FaultConfig {
    pub fn is_empty(&self) -> bool {
        self.delay.is_none() && self.abort.is_none()
    }
}

#[derive(Debug)]
pub struct FaultFilter {
    config: FaultConfig,
}

impl FaultFilter {
    pub fn new(config: FaultConfig) -> FaultFilter {
        FaultFilter { config }
    }

    /// Whether a draw of `roll` (uniform over `u32`) falls within `per_million`.
    fn sampled(per_million: u32, roll: u32) -> bool {
        per_million >= MILLION
            || ((u64::from(roll) * u64::from(MILLION)) >> 32) < u64::from(per_million)
    }

    /// What the filter does with draws `delay_roll` and `abort_roll`.
    fn decide(&self, delay_roll: u32, abort_roll: u32) -> FilterStatus {
        let abort = self
            .config
            .abort
            .filter(|(_, pm)| Self::sampled(*pm, abort_roll))
            .map(|(status, _)| reply(status));
        let delay = self
            .config
            .delay
            .filter(|(_, pm)| Self::sampled(*pm, delay_roll))
            .map(|(d, _)| d);
        match (delay, abort) {
            (Some(d), abort) => FilterStatus::Wait(Pending::new(async move {
                tokio::time::sleep(d).await;
                Decision {
                    reply: abort,
                    response_headers: Vec::new(),
                }
            })),
            (None, Some(r)) => FilterStatus::Reply(r),
            (None, None) => FilterStatus::Continue,
        }
    }
}

/// Envoy's abort reply: the status and `fault filter abort`.
fn reply(status: u16) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: b"fault filter abort".to_vec(),
        flags: Default::default(),
    }
}

fn roll() -> u32 {
    (telemetry::trace::ids::random_u64() >> 32) as u32
}

impl HttpFilter for FaultFilter {
    fn name(&self) -> &'static str {
        "envoy.filters.http.fault"
    }

    fn on_request_headers(
        &self,
        _req: &mut RequestHeader,
        _input: &MatchInput<'_>,
    ) -> FilterStatus {
        self.decide(roll(), roll())
    }

    fn acts_on_response(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_percentages() {
        let f = FaultFilter::new(FaultConfig {
            delay: None,
            abort: Some((418, 250_000)),
        });
        // 1,000 draws spread evenly over the range: a quarter aborted.
        let aborted = (0..1000u64)
            .filter(|i| {
                let roll = ((2 * i + 1) * (1u64 << 32) / 2000) as u32;
                matches!(f.decide(0, roll), FilterStatus::Reply(ref r) if r.status == 418)
            })
            .count();
        assert_eq!(aborted, 250);
        let none = FaultFilter::new(FaultConfig {
            delay: Some((Duration::from_millis(5), 0)),
            abort: Some((500, 0)),
        });
        assert_eq!(none.decide(0, 0), FilterStatus::Continue);
    }

    #[tokio::test]
    async fn a_delayed_abort_answers_after_the_delay() {
        let f = FaultFilter::new(FaultConfig {
            delay: Some((Duration::from_millis(20), MILLION)),
            abort: Some((503, MILLION)),
        });
        let t0 = std::time::Instant::now();
        let FilterStatus::Wait(p) = f.decide(7, 7) else {
            panic!("expected a wait")
        };
        let d = p.0.await;
        assert!(t0.elapsed() >= Duration::from_millis(20));
        assert_eq!(d.reply.unwrap().status, 503);
    }
}
