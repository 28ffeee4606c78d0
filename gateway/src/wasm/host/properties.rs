//! Properties: the request's attributes, the plugin's facts, and values plugins set
//! for the stream (Envoy's filter state).

use super::memory::{give, ok, read, Ret};
use crate::wasm::abi::{self, Status};
use crate::wasm::properties::{self, PluginFacts};

host_fns! { "env" -> Ret;
    fn proxy_get_property(mut c, pp: i32, pl: i32, rpp: i32, rsp: i32) {
        let raw = match read(&c, pp, pl) {
            Ok(r) => r,
            Err(s) => return ok(s),
        };
        let raw = raw.strip_suffix(&[0]).map(<[u8]>::to_vec).unwrap_or(raw);
        let st = c.data();
        let set = st.props.get(&st.effective).and_then(|m| m.get(&raw)).cloned();
        let value = set.or_else(|| {
            let memory = st.memory.map_or(0, |m| m.data_size(&c) as u64);
            let facts = PluginFacts {
                plugin_name: &st.plugin.name,
                root_id: &st.plugin.root_id,
                vm_id: &st.plugin.vm_id,
                memory_bytes: memory,
            };
            properties::get(&abi::property_path(&raw), st.view().as_ref(), &facts)
        });
        tracing::trace!(
            path = %String::from_utf8_lossy(&raw).replace('\0', "."),
            found = value.is_some(),
            "{}",
            NAME
        );
        match value {
            Some(v) => give(&mut c, &v, rpp, rsp),
            None => ok(Status::NotFound),
        }
    }

    fn proxy_set_property(mut c, pp: i32, pl: i32, vp: i32, vl: i32) {
        let (raw, value) = match (read(&c, pp, pl), read(&c, vp, vl)) {
            (Ok(p), Ok(v)) => (p, v),
            (Err(s), _) | (_, Err(s)) => return ok(s),
        };
        let raw = raw.strip_suffix(&[0]).map(<[u8]>::to_vec).unwrap_or(raw);
        let st = c.data_mut();
        if st.view().is_none() {
            // Envoy keeps properties in the stream's filter state: none without a stream.
            return ok(Status::NotFound);
        }
        if raw == b"clear_route_cache" {
            st.actions.keep_route = value == b"off";
        }
        if raw == b"wasm_need_rebuild" && value == b"true" {
            st.need_rebuild = true;
        }
        st.props.entry(st.effective).or_default().insert(raw, value);
        ok(Status::Ok)
    }
}
