//! Contexts and the stream: which context host calls act on, `proxy_done`, and what a
//! plugin asks of its stream (continue, close, a local reply, a new route lookup).

use super::memory::{ok, read, Ret};
use super::unsupported::unimplemented;
use crate::wasm::abi::{self, Status};
use crate::wasm::stream::LocalResponse;

host_fns! { "env" -> Ret;
    fn proxy_set_effective_context(mut c, id: i32) {
        let id = id as u32;
        if id == c.data().root_id || c.data().contexts.contains(&id) {
            c.data_mut().effective = id;
            ok(Status::Ok)
        } else {
            ok(Status::BadArgument)
        }
    }

    fn proxy_done(mut c) {
        let st = c.data_mut();
        let ctx = st.effective;
        if st.awaiting_done.remove(&ctx) {
            st.done_later.push(ctx);
        } else {
            st.done = true;
        }
        ok(Status::Ok)
    }

    fn proxy_continue_stream(mut c, st: i32) {
        match st {
            0 => c.data_mut().actions.continue_request = true,
            1 => c.data_mut().actions.continue_response = true,
            // Downstream and upstream (TCP) streams: plugins here filter HTTP.
            2 | 3 => return unimplemented(&mut c, "proxy_continue_stream(downstream/upstream)"),
            _ => return ok(Status::BadArgument),
        }
        ok(Status::Ok)
    }

    fn proxy_continue_request(mut c) {
        c.data_mut().actions.continue_request = true;
        ok(Status::Ok)
    }

    fn proxy_continue_response(mut c) {
        c.data_mut().actions.continue_response = true;
        ok(Status::Ok)
    }

    fn proxy_close_stream(mut c, st: i32) {
        if !(0..=3).contains(&st) {
            return ok(Status::BadArgument);
        }
        c.data_mut().actions.close = true;
        ok(Status::Ok)
    }

    fn proxy_clear_route_cache(mut c) {
        let actions = &mut c.data_mut().actions;
        actions.request_headers_changed = true;
        actions.route_keys_changed = true;
        ok(Status::Ok)
    }

    fn proxy_send_local_response(
        mut c,
        status: i32,
        dp: i32,
        dl: i32,
        bp: i32,
        bl: i32,
        hp: i32,
        hl: i32,
        _grpc: i32,
    ) {
        let (details, body, raw) = match (read(&c, dp, dl), read(&c, bp, bl), read(&c, hp, hl)) {
            (Ok(d), Ok(b), Ok(h)) => (d, b, h),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return ok(s),
        };
        let Some(headers) = abi::deserialize_pairs(&raw) else {
            return ok(Status::BadArgument);
        };
        let status = match u16::try_from(status) {
            Ok(s) if (100..=999).contains(&s) => s,
            _ => return ok(Status::BadArgument),
        };
        let st = c.data_mut();
        if st.view().is_none() || st.actions.local_response.is_some() {
            return ok(Status::BadArgument);
        }
        st.actions.local_response = Some(LocalResponse {
            status,
            details: String::from_utf8_lossy(&details).replace(' ', "_"),
            body,
            headers,
        });
        ok(Status::Ok)
    }
}
