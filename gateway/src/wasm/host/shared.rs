//! Shared data (key/value with compare-and-swap) and shared queues, across the VMs of a
//! plugin (`wasm/shared.rs` holds them).

use super::memory::{code, give, ok, read, read_str, write_u32, Ret};
use crate::wasm::abi::Status;
use crate::wasm::shared::SharedSpace;

host_fns! { "env" -> Ret;
    fn proxy_get_shared_data(mut c, kp: i32, kl: i32, vpp: i32, vsp: i32, casp: i32) {
        let key = match read(&c, kp, kl) {
            Ok(k) => k,
            Err(s) => return ok(s),
        };
        match c.data().plugin.shared.get(&key) {
            None => ok(Status::NotFound),
            Some((v, cas)) => {
                if let Err(s) = write_u32(&mut c, casp, cas) {
                    return ok(s);
                }
                give(&mut c, &v, vpp, vsp)
            }
        }
    }

    fn proxy_set_shared_data(c, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32) {
        match (read(&c, kp, kl), read(&c, vp, vl)) {
            (Ok(k), Ok(v)) => ok(c.data().plugin.shared.set(&k, &v, cas as u32)),
            (Err(s), _) | (_, Err(s)) => ok(s),
        }
    }

    fn proxy_register_shared_queue(mut c, np: i32, nl: i32, idp: i32) {
        let name = match read_str(&c, np, nl) {
            Ok(n) => n,
            Err(s) => return ok(s),
        };
        let st = c.data();
        let Some(owner) = st.queue_owner.clone() else {
            return ok(Status::InternalFailure);
        };
        let id = st.plugin.shared.register_queue(&name, owner, st.root_id);
        code(write_u32(&mut c, idp, id))
    }

    fn proxy_resolve_shared_queue(mut c, vp: i32, vl: i32, np: i32, nl: i32, idp: i32) {
        let (vm, name) = match (read_str(&c, vp, vl), read_str(&c, np, nl)) {
            (Ok(v), Ok(n)) => (v, n),
            (Err(s), _) | (_, Err(s)) => return ok(s),
        };
        let space = if vm.is_empty() || vm == c.data().plugin.vm_id {
            c.data().plugin.shared.clone()
        } else {
            SharedSpace::of(&vm)
        };
        match space.resolve_queue(&name) {
            Some(id) => code(write_u32(&mut c, idp, id)),
            None => ok(Status::NotFound),
        }
    }

    fn proxy_enqueue_shared_queue(c, id: i32, vp: i32, vl: i32) {
        match read(&c, vp, vl) {
            Ok(v) => ok(c.data().plugin.shared.enqueue(id as u32, &v)),
            Err(s) => ok(s),
        }
    }

    fn proxy_dequeue_shared_queue(mut c, id: i32, pp: i32, sp: i32) {
        let item = c.data().plugin.shared.dequeue(id as u32);
        match item {
            Ok(v) => give(&mut c, &v, pp, sp),
            Err(s) => ok(s),
        }
    }
}
