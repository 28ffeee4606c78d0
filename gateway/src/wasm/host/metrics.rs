//! Plugin-defined metrics (counters, gauges, histograms), kept in `wasm/metrics.rs`.

use super::memory::{code, ok, read_str, write_u32, write_u64, Ret};

host_fns! { "env" -> Ret;
    fn proxy_define_metric(mut c, kind: i32, np: i32, nl: i32, idp: i32) {
        let name = match read_str(&c, np, nl) {
            Ok(n) => n,
            Err(s) => return ok(s),
        };
        let p = c.data().plugin.clone();
        match p.metrics.define(kind, &name, &p.name) {
            Ok(id) => code(write_u32(&mut c, idp, id)),
            Err(s) => ok(s),
        }
    }

    fn proxy_increment_metric(c, id: i32, delta: i64) {
        ok(c.data().plugin.metrics.increment(id as u32, delta))
    }

    fn proxy_record_metric(c, id: i32, value: i64) {
        ok(c.data().plugin.metrics.record(id as u32, value))
    }

    fn proxy_get_metric(mut c, id: i32, rp: i32) {
        match c.data().plugin.metrics.get(id as u32) {
            Ok(v) => code(write_u64(&mut c, rp, v)),
            Err(s) => ok(s),
        }
    }
}
