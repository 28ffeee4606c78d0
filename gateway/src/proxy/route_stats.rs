//! The per-route stats of a finished request (`gateway_route_*`).

use std::time::Duration;

use super::context::RequestCtx;

/// Count a request that matched a route, local replies included: `status` as sent
/// downstream (0: none), `elapsed` the downstream request time. Called only while
/// stats record.
#[inline]
pub(super) fn record(ctx: &RequestCtx, status: u16, elapsed: Duration, trace_id: Option<&str>) {
    if let Some(stats) = ctx.route.as_ref().and_then(|r| r.stats.get()) {
        stats.request_done(status, elapsed, trace_id, ctx.flags);
    }
}
