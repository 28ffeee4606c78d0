//! `proxy_http_call` (the call is recorded here and sent by `wasm/http_call.rs` once the
//! callback returns), the status of the last call, the clock and the tick timer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::memory::{code, give, ok, read, read_str, write_u32, write_u64, Ret};
use super::state::{CallRequest, HttpRequest, PendingCall};
use crate::wasm::abi::{self, Status};

host_fns! { "env" -> Ret;
    fn proxy_http_call(
        mut c,
        up: i32,
        ul: i32,
        hp: i32,
        hl: i32,
        bp: i32,
        bl: i32,
        _tp: i32,
        _tl: i32,
        timeout: i32,
        tokp: i32,
    ) {
        let args = (read_str(&c, up, ul), read(&c, hp, hl), read(&c, bp, bl));
        let (cluster, raw, body) = match args {
            (Ok(u), Ok(h), Ok(b)) => (u, h, b),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return ok(s),
        };
        let Some(headers) = abi::deserialize_pairs(&raw) else {
            return ok(Status::BadArgument);
        };
        let has = |n: &[u8]| headers.iter().any(|(k, _)| k.as_slice() == n);
        if !(has(b":path") && has(b":method") && has(b":authority")) {
            return ok(Status::BadArgument);
        }
        if (c.data().plugin.resolve)(&cluster).is_none() {
            tracing::debug!(
                plugin = %c.data().plugin.name,
                cluster = %cluster,
                "proxy_http_call to a cluster with no endpoint: BadArgument"
            );
            return ok(Status::BadArgument);
        }
        let st = c.data_mut();
        st.next_token += 1;
        let token = st.next_token;
        let context = st.effective;
        st.pending_calls.push(PendingCall {
            token,
            context,
            request: CallRequest::Http(HttpRequest {
                cluster,
                headers,
                body,
                timeout: (timeout > 0).then(|| Duration::from_millis(timeout as u32 as u64)),
            }),
        });
        code(write_u32(&mut c, tokp, token))
    }

    fn proxy_get_status(mut c, cp: i32, mpp: i32, msp: i32) {
        let (status, msg) = c.data().last_status.clone();
        if let Err(s) = write_u32(&mut c, cp, status) {
            return ok(s);
        }
        give(&mut c, &msg, mpp, msp)
    }

    fn proxy_get_current_time_nanoseconds(mut c, ptr: i32) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        code(write_u64(&mut c, ptr, now))
    }

    fn proxy_set_tick_period_milliseconds(mut c, ms: i32) {
        c.data_mut().tick_ms = ms as u32;
        ok(Status::Ok)
    }
}
