//! Header maps: the request's and response's headers (pseudo-headers included, as
//! Envoy shows them), an HTTP call's response headers and trailers, read and edited.

use http::{HeaderName, HeaderValue};

use super::memory::{code, give, ok, read, two_slices, write_u32, Ret};
use super::state::HostState;
use crate::wasm::abi::{self, map, Pairs, Status};
use crate::wasm::stream::StreamView;

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

/// A request pseudo-header's value.
fn request_pseudo(v: &StreamView, name: &[u8]) -> Option<Vec<u8>> {
    // SAFETY: inside the guest call the view was lent for.
    let (req, info) = unsafe { (v.request(), v.info()) };
    match name {
        b":method" => Some(req.method.as_str().as_bytes().to_vec()),
        b":path" => Some(
            req.uri
                .path_and_query()
                .map_or(req.uri.path(), |p| p.as_str())
                .as_bytes()
                .to_vec(),
        ),
        b":authority" => req
            .headers
            .get(http::header::HOST)
            .map(|h| h.as_bytes().to_vec())
            .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes().to_vec())),
        b":scheme" => Some(info.scheme.as_bytes().to_vec()),
        _ => None,
    }
}

fn set_request_pseudo(v: &StreamView, name: &[u8], value: &[u8]) -> Result<(), Status> {
    // SAFETY: as above.
    let req = unsafe { v.request() };
    match name {
        b":method" => {
            let m = http::Method::from_bytes(value).map_err(|_| Status::BadArgument)?;
            req.set_method(m);
        }
        b":path" => {
            let pq = http::uri::PathAndQuery::try_from(value).map_err(|_| Status::BadArgument)?;
            let mut parts = req.uri.clone().into_parts();
            parts.path_and_query = Some(pq);
            let uri = http::Uri::from_parts(parts).map_err(|_| Status::BadArgument)?;
            req.set_uri(uri);
        }
        b":authority" => {
            let hv = HeaderValue::from_bytes(value).map_err(|_| Status::BadArgument)?;
            if req.uri.authority().is_some() {
                let mut parts = req.uri.clone().into_parts();
                parts.authority =
                    Some(http::uri::Authority::try_from(value).map_err(|_| Status::BadArgument)?);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    req.set_uri(uri);
                }
            }
            req.insert_header(http::header::HOST, hv)
                .map_err(|_| Status::BadArgument)?;
        }
        // `:scheme` is the listener's; other pseudo names are not ours to set.
        _ => {}
    }
    Ok(())
}

/// The first value of `key` (lowercase) in a map, without building the whole map.
fn map_value(state: &HostState, map_type: i32, key: &[u8]) -> Result<Option<Vec<u8>>, Status> {
    match map_type {
        map::REQUEST_HEADERS => {
            let v = state.view().ok_or(Status::BadArgument)?;
            if key.starts_with(b":") {
                return Ok(request_pseudo(&v, key));
            }
            if key == b"host" {
                return Ok(None);
            }
            let Ok(name) = HeaderName::from_bytes(key) else {
                return Ok(None);
            };
            // SAFETY: inside the lent call.
            let req = unsafe { v.request() };
            Ok(req.headers.get(name).map(|h| h.as_bytes().to_vec()))
        }
        map::RESPONSE_HEADERS => {
            let v = state.view().ok_or(Status::BadArgument)?;
            // SAFETY: as above.
            let resp = unsafe { v.response() }.ok_or(Status::BadArgument)?;
            if key == b":status" {
                return Ok(Some(resp.status.as_str().as_bytes().to_vec()));
            }
            let Ok(name) = HeaderName::from_bytes(key) else {
                return Ok(None);
            };
            Ok(resp.headers.get(name).map(|h| h.as_bytes().to_vec()))
        }
        _ => Ok(map_pairs(state, map_type)?
            .into_iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, v)| v)),
    }
}

/// Pingora's request and response headers, edited alike.
trait HeaderEdits {
    fn add(&mut self, name: HeaderName, value: HeaderValue) -> bool;
    fn put(&mut self, name: HeaderName, value: HeaderValue) -> bool;
    fn drop_header(&mut self, name: &HeaderName);
}

impl HeaderEdits for pingora_http::RequestHeader {
    fn add(&mut self, name: HeaderName, value: HeaderValue) -> bool {
        self.append_header(name, value).is_ok()
    }
    fn put(&mut self, name: HeaderName, value: HeaderValue) -> bool {
        self.insert_header(name, value).is_ok()
    }
    fn drop_header(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

impl HeaderEdits for pingora_http::ResponseHeader {
    fn add(&mut self, name: HeaderName, value: HeaderValue) -> bool {
        self.append_header(name, value).is_ok()
    }
    fn put(&mut self, name: HeaderName, value: HeaderValue) -> bool {
        self.insert_header(name, value).is_ok()
    }
    fn drop_header(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

fn apply_edit(h: &mut impl HeaderEdits, name: HeaderName, edit: Edit) -> Result<(), Status> {
    let value = |v: &[u8]| HeaderValue::from_bytes(v).map_err(|_| Status::BadArgument);
    let ok = match edit {
        Edit::Add(v) => h.add(name, value(v)?),
        Edit::Replace(v) => h.put(name, value(v)?),
        Edit::Remove => {
            h.drop_header(&name);
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Status::BadArgument)
    }
}

/// The entries of a map, pseudo-headers first, as `(name, value)`.
fn map_pairs(state: &HostState, map_type: i32) -> Result<Pairs, Status> {
    let header_pairs = |h: &http::HeaderMap| -> Vec<(Vec<u8>, Vec<u8>)> {
        h.iter()
            .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    };
    match map_type {
        map::REQUEST_HEADERS => {
            let v = state.view().ok_or(Status::BadArgument)?;
            let mut out = Vec::new();
            for p in [&b":authority"[..], b":path", b":method", b":scheme"] {
                if let Some(val) = request_pseudo(&v, p) {
                    out.push((p.to_vec(), val));
                }
            }
            // SAFETY: inside the lent call.
            let req = unsafe { v.request() };
            out.extend(
                header_pairs(&req.headers)
                    .into_iter()
                    .filter(|(k, _)| k.as_slice() != b"host"),
            );
            Ok(out)
        }
        map::RESPONSE_HEADERS => {
            let v = state.view().ok_or(Status::BadArgument)?;
            // SAFETY: as above.
            let resp = unsafe { v.response() }.ok_or(Status::BadArgument)?;
            let mut out = vec![(
                b":status".to_vec(),
                resp.status.as_str().as_bytes().to_vec(),
            )];
            out.extend(header_pairs(&resp.headers));
            Ok(out)
        }
        map::HTTP_CALL_RESPONSE_HEADERS => Ok(state
            .call_response
            .as_ref()
            .ok_or(Status::BadArgument)?
            .headers
            .clone()),
        map::HTTP_CALL_RESPONSE_TRAILERS => Ok(state
            .call_response
            .as_ref()
            .ok_or(Status::BadArgument)?
            .trailers
            .clone()),
        // No trailers or gRPC metadata reach plugins yet: empty maps.
        map::REQUEST_TRAILERS
        | map::RESPONSE_TRAILERS
        | map::GRPC_INITIAL_METADATA
        | map::GRPC_TRAILING_METADATA => Ok(Vec::new()),
        _ => Err(Status::BadArgument),
    }
}

enum Edit<'a> {
    Add(&'a [u8]),
    Replace(&'a [u8]),
    Remove,
}

fn edit_header(
    state: &mut HostState,
    map_type: i32,
    key: &[u8],
    edit: Edit<'_>,
) -> Result<(), Status> {
    let mut buf = [0u8; 64];
    let lowered;
    let key: &[u8] = match buf.get_mut(..key.len()) {
        Some(b) => {
            b.copy_from_slice(key);
            b.make_ascii_lowercase();
            b
        }
        None => {
            lowered = lower(key);
            &lowered
        }
    };
    let v = match map_type {
        map::REQUEST_HEADERS | map::RESPONSE_HEADERS => state.view().ok_or(Status::BadArgument)?,
        map::REQUEST_TRAILERS | map::RESPONSE_TRAILERS => return Err(Status::NotFound),
        map::HTTP_CALL_RESPONSE_HEADERS | map::HTTP_CALL_RESPONSE_TRAILERS => {
            return Err(Status::BadArgument)
        }
        _ => return Err(Status::BadArgument),
    };
    if map_type == map::REQUEST_HEADERS {
        state.actions.request_headers_changed = true;
        if key.starts_with(b":") {
            return match edit {
                Edit::Add(val) | Edit::Replace(val) => set_request_pseudo(&v, key, val),
                Edit::Remove => Ok(()),
            };
        }
    }
    if map_type == map::RESPONSE_HEADERS && key == b":status" {
        if let Edit::Add(val) | Edit::Replace(val) = edit {
            let code: u16 = std::str::from_utf8(val)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Status::BadArgument)?;
            // SAFETY: inside the lent call.
            let resp = unsafe { v.response_mut() }.ok_or(Status::BadArgument)?;
            resp.set_status(code).map_err(|_| Status::BadArgument)?;
        }
        return Ok(());
    }
    let name = HeaderName::from_bytes(key).map_err(|_| Status::BadArgument)?;
    // SAFETY: inside the lent call.
    unsafe {
        match map_type {
            map::REQUEST_HEADERS => apply_edit(v.request(), name, edit),
            _ => apply_edit(v.response_mut().ok_or(Status::BadArgument)?, name, edit),
        }
    }
}

fn set_pairs(
    state: &mut HostState,
    map_type: i32,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), Status> {
    let v = match map_type {
        map::REQUEST_HEADERS | map::RESPONSE_HEADERS => state.view().ok_or(Status::BadArgument)?,
        _ => return Err(Status::BadArgument),
    };
    // SAFETY: inside the lent call.
    let names: Vec<HeaderName> = unsafe {
        match map_type {
            map::REQUEST_HEADERS => v.request().headers.keys().cloned().collect(),
            _ => v
                .response_mut()
                .ok_or(Status::BadArgument)?
                .headers
                .keys()
                .cloned()
                .collect(),
        }
    };
    for n in names {
        // The authority lives on as `:authority` if the new map has it.
        if map_type == map::REQUEST_HEADERS && n == http::header::HOST {
            continue;
        }
        edit_header(state, map_type, n.as_str().as_bytes(), Edit::Remove)?;
    }
    for (k, val) in pairs {
        edit_header(state, map_type, &k, Edit::Add(&val))?;
    }
    Ok(())
}

/// `proxy_add_header_map_value` and `proxy_replace_header_map_value`.
fn add_or_replace(
    c: &mut wasmtime::Caller<'_, HostState>,
    mt: i32,
    (kp, kl): (i32, i32),
    (vp, vl): (i32, i32),
    replace: bool,
) -> Ret {
    // Plugins add headers on most requests: name and value are read in place.
    let (key, val, state) = match two_slices(c, (kp, kl), (vp, vl)) {
        Ok(t) => t,
        Err(s) => return ok(s),
    };
    let edit = if replace {
        Edit::Replace(val)
    } else {
        Edit::Add(val)
    };
    code(edit_header(state, mt, key, edit))
}

host_fns! { "env" -> Ret;
    fn proxy_get_header_map_value(mut c, mt: i32, kp: i32, kl: i32, vpp: i32, vsp: i32) {
        let key = match read(&c, kp, kl) {
            Ok(k) => lower(&k),
            Err(s) => return ok(s),
        };
        let found = match map_value(c.data(), mt, &key) {
            Ok(v) => v,
            Err(s) => return ok(s),
        };
        tracing::trace!(
            map = mt,
            key = %String::from_utf8_lossy(&key),
            found = found.is_some(),
            "{}",
            NAME
        );
        match found {
            Some(v) => give(&mut c, &v, vpp, vsp),
            None => ok(Status::NotFound),
        }
    }

    fn proxy_get_header_map_pairs(mut c, mt: i32, pp: i32, sp: i32) {
        let pairs = match map_pairs(c.data(), mt) {
            Ok(p) => p,
            // Envoy answers Ok with nothing when the map is not available.
            Err(Status::BadArgument) if (0..=7).contains(&mt) => Vec::new(),
            Err(s) => return ok(s),
        };
        if pairs.is_empty() {
            return give(&mut c, &[], pp, sp);
        }
        let bytes = abi::serialize_pairs(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        give(&mut c, &bytes, pp, sp)
    }

    fn proxy_get_header_map_size(mut c, mt: i32, sp: i32) {
        match map_pairs(c.data(), mt) {
            Ok(p) => {
                let size: usize = p.iter().map(|(k, v)| k.len() + v.len()).sum();
                code(write_u32(&mut c, sp, size as u32))
            }
            Err(s) => ok(s),
        }
    }

    fn proxy_add_header_map_value(mut c, mt: i32, kp: i32, kl: i32, vp: i32, vl: i32) {
        add_or_replace(&mut c, mt, (kp, kl), (vp, vl), false)
    }

    fn proxy_replace_header_map_value(mut c, mt: i32, kp: i32, kl: i32, vp: i32, vl: i32) {
        add_or_replace(&mut c, mt, (kp, kl), (vp, vl), true)
    }

    fn proxy_remove_header_map_value(mut c, mt: i32, kp: i32, kl: i32) {
        let key = match read(&c, kp, kl) {
            Ok(k) => k,
            Err(s) => return ok(s),
        };
        code(edit_header(c.data_mut(), mt, &key, Edit::Remove))
    }

    fn proxy_set_header_map_pairs(mut c, mt: i32, p: i32, len: i32) {
        let raw = match read(&c, p, len) {
            Ok(r) => r,
            Err(s) => return ok(s),
        };
        let Some(pairs) = abi::deserialize_pairs(&raw) else {
            return ok(Status::BadArgument);
        };
        code(set_pairs(c.data_mut(), mt, pairs))
    }
}
