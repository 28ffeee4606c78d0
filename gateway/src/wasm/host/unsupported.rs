//! Host functions linked so that modules of every SDK instantiate, but not supported
//! yet (gRPC calls, data injection, upstream hosts): each returns
//! `Unimplemented` and is logged once per VM.

use wasmtime::Caller;

use super::memory::{ok, Ret};
use super::state::HostState;
use crate::wasm::abi::Status;

/// `Unimplemented`, with a warning the first time this VM calls `name`.
pub(super) fn unimplemented(caller: &mut Caller<'_, HostState>, name: &'static str) -> Ret {
    if caller.data_mut().unimplemented.insert(name) {
        tracing::warn!(
            plugin = %caller.data().plugin.name,
            function = name,
            "Wasm host function not supported yet; it returns Unimplemented"
        );
    }
    ok(Status::Unimplemented)
}

host_fns! { "env" -> Ret;
    fn proxy_grpc_call(
        mut c,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
    ) {
        unimplemented(&mut c, NAME)
    }

    fn proxy_grpc_stream(
        mut c,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
    ) {
        unimplemented(&mut c, NAME)
    }

    fn proxy_grpc_send(mut c, _: i32, _: i32, _: i32, _: i32) {
        unimplemented(&mut c, NAME)
    }

    fn proxy_grpc_cancel(mut c, _: i32) {
        unimplemented(&mut c, NAME)
    }

    fn proxy_grpc_close(mut c, _: i32) {
        unimplemented(&mut c, NAME)
    }

    fn proxy_inject_encoded_data_to_filter_chain(mut c, _: i32, _: i32, _: i32) {
        unimplemented(&mut c, NAME)
    }

    fn proxy_get_upstream_hosts(mut c, _: i32, _: i32) {
        unimplemented(&mut c, NAME)
    }

    fn proxy_set_upstream_override_host(mut c, _: i32, _: i32) {
        unimplemented(&mut c, NAME)
    }
}
