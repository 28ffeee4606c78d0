//! Buffers: the request and response bodies a callback is lent, an HTTP call's response
//! body, a Redis call's reply, and the plugin's and VM's configuration.

use bytes::BytesMut;

use super::memory::{code, give, ok, read, write_u32, Ret};
use super::state::HostState;
use crate::wasm::abi::{buffer, Status};

fn buffer_bytes(state: &HostState, which: i32) -> Result<Vec<u8>, Status> {
    match which {
        buffer::REQUEST_BODY | buffer::RESPONSE_BODY => {
            let v = state.view().ok_or(Status::NotFound)?;
            // SAFETY: inside the lent call.
            unsafe { v.body(which) }
                .map(|b| b.to_vec())
                .ok_or(Status::NotFound)
        }
        buffer::HTTP_CALL_RESPONSE_BODY => state
            .call_response
            .as_ref()
            .map(|r| r.body.clone())
            .ok_or(Status::NotFound),
        buffer::REDIS_CALL_RESPONSE => state
            .redis_response
            .as_ref()
            .map(|r| r.to_vec())
            .ok_or(Status::NotFound),
        buffer::PLUGIN_CONFIGURATION => Ok(state.plugin.config.clone()),
        buffer::VM_CONFIGURATION => Ok(state.plugin.vm_config.clone()),
        buffer::DOWNSTREAM_DATA
        | buffer::UPSTREAM_DATA
        | buffer::GRPC_RECEIVE
        | buffer::CALL_DATA => Err(Status::NotFound),
        _ => Err(Status::BadArgument),
    }
}

/// Envoy's `Buffer::copyFrom` rules: prepend, replace all, or append.
fn set_buffer(
    state: &mut HostState,
    which: i32,
    start: u32,
    size: u32,
    data: &[u8],
) -> Result<(), Status> {
    let body: &mut BytesMut = match which {
        buffer::REQUEST_BODY | buffer::RESPONSE_BODY => {
            let v = state.view().ok_or(Status::NotFound)?;
            // SAFETY: inside the lent call.
            unsafe { v.body(which) }.ok_or(Status::NotFound)?
        }
        buffer::HTTP_CALL_RESPONSE_BODY
        | buffer::PLUGIN_CONFIGURATION
        | buffer::VM_CONFIGURATION => return Err(Status::BadArgument),
        0..=9 => return Err(Status::NotFound),
        _ => return Err(Status::BadArgument),
    };
    let len = body.len() as u32;
    if start == 0 && size == 0 {
        let mut next = BytesMut::with_capacity(data.len() + body.len());
        next.extend_from_slice(data);
        next.extend_from_slice(body);
        *body = next;
    } else if start == 0 && size >= len {
        body.clear();
        body.extend_from_slice(data);
    } else if start >= len {
        body.extend_from_slice(data);
    } else {
        return Err(Status::BadArgument);
    }
    Ok(())
}

host_fns! { "env" -> Ret;
    fn proxy_get_buffer_bytes(mut c, bt: i32, start: i32, max: i32, pp: i32, sp: i32) {
        let data = match buffer_bytes(c.data(), bt) {
            Ok(d) => d,
            Err(s) => return ok(s),
        };
        let (start, max) = (start as u32 as usize, max as u32 as usize);
        if start.checked_add(max).is_none() {
            return ok(Status::BadArgument);
        }
        let from = start.min(data.len());
        let to = (start + max).min(data.len());
        give(&mut c, &data[from..to], pp, sp)
    }

    fn proxy_set_buffer_bytes(mut c, bt: i32, start: i32, size: i32, dp: i32, dl: i32) {
        let data = match read(&c, dp, dl) {
            Ok(d) => d,
            Err(s) => return ok(s),
        };
        code(set_buffer(c.data_mut(), bt, start as u32, size as u32, &data))
    }

    fn proxy_get_buffer_status(mut c, bt: i32, lp: i32, fp: i32) {
        match buffer_bytes(c.data(), bt) {
            Ok(d) => code(write_u32(&mut c, lp, d.len() as u32).and(write_u32(&mut c, fp, 0))),
            Err(s) => ok(s),
        }
    }

    /// ABI 0.1.0's way to read the plugin configuration.
    fn proxy_get_configuration(mut c, pp: i32, sp: i32) {
        let cfg = c.data().plugin.config.clone();
        give(&mut c, &cfg, pp, sp)
    }
}
