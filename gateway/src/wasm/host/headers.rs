//! Header maps: the request's and response's headers (pseudo-headers included, as
//! Envoy shows them), an HTTP call's response headers and trailers, read and edited.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora_http::IntoCaseHeaderName;

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

/// Pingora's request and response headers, edited alike. Names come with the bytes
/// Pingora keeps for the wire (`case`), which it parses again itself.
trait HeaderEdits {
    fn add(&mut self, case: Bytes, value: HeaderValue) -> bool;
    fn put(&mut self, case: Bytes, value: HeaderValue) -> bool;
    fn drop_header(&mut self, name: &HeaderName);
}

impl HeaderEdits for pingora_http::RequestHeader {
    fn add(&mut self, case: Bytes, value: HeaderValue) -> bool {
        self.append_header(case, value).is_ok()
    }
    fn put(&mut self, case: Bytes, value: HeaderValue) -> bool {
        self.insert_header(case, value).is_ok()
    }
    fn drop_header(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

impl HeaderEdits for pingora_http::ResponseHeader {
    fn add(&mut self, case: Bytes, value: HeaderValue) -> bool {
        self.append_header(case, value).is_ok()
    }
    fn put(&mut self, case: Bytes, value: HeaderValue) -> bool {
        self.insert_header(case, value).is_ok()
    }
    fn drop_header(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

fn apply_edit(h: &mut impl HeaderEdits, known: &mut KnownHeader, edit: Edit) -> Result<(), Status> {
    let ok = match edit {
        Edit::Add(v) => h.add(known.case.clone(), known.value(v)?),
        Edit::Replace(v) => h.put(known.case.clone(), known.value(v)?),
        Edit::Remove => {
            h.drop_header(&known.name);
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Status::BadArgument)
    }
}

/// How many header names a VM keeps.
const KNOWN_HEADERS: usize = 16;

/// A header name a VM edited lately. Plugins edit the same few names, often with the
/// same values, on every request: kept, an edit neither lowercases nor parses the name
/// nor copies the value again (Pingora still parses the name itself).
pub(super) struct KnownHeader {
    /// The name as the plugin gave it.
    key: Box<[u8]>,
    name: HeaderName,
    /// The name Pingora writes: what it makes of `name` (standard names title-cased,
    /// others as they are).
    case: Bytes,
    /// The value last added or set under it.
    value: Option<HeaderValue>,
}

impl KnownHeader {
    fn value(&mut self, v: &[u8]) -> Result<HeaderValue, Status> {
        if let Some(known) = self.value.as_ref().filter(|k| k.as_bytes() == v) {
            return Ok(known.clone());
        }
        let value = HeaderValue::from_bytes(v).map_err(|_| Status::BadArgument)?;
        self.value = Some(value.clone());
        Ok(value)
    }
}

/// The known header of `key` (the name as the plugin gave it), made if new;
/// `BadArgument` for what is not a header name.
fn known_header<'s>(state: &'s mut HostState, key: &[u8]) -> Result<&'s mut KnownHeader, Status> {
    let names = &mut state.header_names;
    if let Some(i) = names.iter().position(|k| &*k.key == key) {
        return Ok(&mut names[i]);
    }
    let name = HeaderName::from_bytes(&lower(key)).map_err(|_| Status::BadArgument)?;
    let case = Bytes::copy_from_slice(name.clone().into_case_header_name().as_slice());
    if names.len() == KNOWN_HEADERS {
        names.remove(0);
    }
    names.push(KnownHeader {
        key: key.into(),
        name,
        case,
        value: None,
    });
    Ok(names.last_mut().expect("just pushed"))
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
    let v = match map_type {
        map::REQUEST_HEADERS | map::RESPONSE_HEADERS => state.view().ok_or(Status::BadArgument)?,
        map::REQUEST_TRAILERS | map::RESPONSE_TRAILERS => return Err(Status::NotFound),
        map::HTTP_CALL_RESPONSE_HEADERS | map::HTTP_CALL_RESPONSE_TRAILERS => {
            return Err(Status::BadArgument)
        }
        _ => return Err(Status::BadArgument),
    };
    let pseudo = key.starts_with(b":");
    if map_type == map::REQUEST_HEADERS {
        state.actions.request_headers_changed = true;
        if pseudo || key.eq_ignore_ascii_case(b"host") {
            state.actions.route_keys_changed = true;
        }
    }
    if pseudo {
        // By their lowercase names; other pseudo names of the response are refused as
        // header names below.
        let key = lower(key);
        if map_type == map::REQUEST_HEADERS {
            return match edit {
                Edit::Add(val) | Edit::Replace(val) => set_request_pseudo(&v, &key, val),
                Edit::Remove => Ok(()),
            };
        }
        if key == b":status" {
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
    }
    let known = known_header(state, key)?;
    // SAFETY: inside the lent call.
    unsafe {
        match map_type {
            map::REQUEST_HEADERS => apply_edit(v.request(), known, edit),
            _ => apply_edit(v.response_mut().ok_or(Status::BadArgument)?, known, edit),
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
