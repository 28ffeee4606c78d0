//! The plugin's log (`proxy_log`, to the gateway log under target `wasm_plugin`), the
//! host's log level, and the foreign functions the SDKs call.

use std::sync::atomic::Ordering;

use super::memory::{code, give, ok, read, read_str, write_u32, Ret};
use crate::wasm::abi::{self, Status};

/// The host's log level as the ABI numbers it (0 trace .. 4 error).
pub(super) fn host_log_level() -> u32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        _ => 4,
    }
}

/// A line of plugin `plugin`'s log at ABI level `level`.
pub(super) fn log(plugin: &str, level: i32, msg: &str) {
    match level {
        0 => tracing::trace!(target: "wasm_plugin", plugin, "{msg}"),
        1 => tracing::debug!(target: "wasm_plugin", plugin, "{msg}"),
        2 => tracing::info!(target: "wasm_plugin", plugin, "{msg}"),
        3 => tracing::warn!(target: "wasm_plugin", plugin, "{msg}"),
        _ => tracing::error!(target: "wasm_plugin", plugin, "{msg}"),
    }
}

host_fns! { "env" -> Ret;
    fn proxy_log(mut c, level: i32, ptr: i32, len: i32) {
        if !(0..=abi::LOG_CRITICAL).contains(&level) {
            return ok(Status::BadArgument);
        }
        let msg = match read(&c, ptr, len) {
            Ok(m) => m,
            Err(s) => return ok(s),
        };
        let text = String::from_utf8_lossy(&msg).into_owned();
        log(&c.data().plugin.name, level, &text);
        // Warnings and errors say why a plugin refuses its configuration.
        let problems = &mut c.data_mut().problems;
        if level >= 3 && problems.len() < 4 {
            problems.push(text);
        }
        ok(Status::Ok)
    }

    fn proxy_get_log_level(mut c, ptr: i32) {
        code(write_u32(&mut c, ptr, host_log_level()))
    }

    fn proxy_call_foreign_function(
        mut c,
        np: i32,
        nl: i32,
        ap: i32,
        al: i32,
        rpp: i32,
        rsp: i32,
    ) {
        let (name, args) = match (read_str(&c, np, nl), read(&c, ap, al)) {
            (Ok(n), Ok(a)) => (n, a),
            (Err(s), _) | (_, Err(s)) => return ok(s),
        };
        match name.as_str() {
            "get_log_level" => give(&mut c, &host_log_level().to_le_bytes(), rpp, rsp),
            "set_global_max_requests_per_io_cycle" => {
                let mut b = [0u8; 8];
                let n = args.len().min(8);
                b[..n].copy_from_slice(&args[..n]);
                let v = u64::from_le_bytes(b);
                let p = &c.data().plugin;
                p.max_requests_per_io_cycle.store(v, Ordering::Relaxed);
                tracing::info!(
                    plugin = %p.name,
                    value = v,
                    "set_global_max_requests_per_io_cycle recorded (Pingora has no per-IO-cycle request limit)"
                );
                give(&mut c, &[], rpp, rsp)
            }
            _ => ok(Status::NotFound),
        }
    }
}
