//! Proxy-Wasm ABI numbers (status codes, map and buffer types, filter statuses) and the
//! "pairs" serialization of header maps (`shared/research/proxywasm.md` §1-2).

/// `proxy_status_t` / `WasmResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

/// `proxy_map_type_t`.
pub mod map {
    pub const REQUEST_HEADERS: i32 = 0;
    pub const REQUEST_TRAILERS: i32 = 1;
    pub const RESPONSE_HEADERS: i32 = 2;
    pub const RESPONSE_TRAILERS: i32 = 3;
    pub const GRPC_INITIAL_METADATA: i32 = 4;
    pub const GRPC_TRAILING_METADATA: i32 = 5;
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
}

/// `proxy_buffer_type_t` (Higress adds 9, the Redis call response).
pub mod buffer {
    pub const REQUEST_BODY: i32 = 0;
    pub const RESPONSE_BODY: i32 = 1;
    pub const DOWNSTREAM_DATA: i32 = 2;
    pub const UPSTREAM_DATA: i32 = 3;
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    pub const GRPC_RECEIVE: i32 = 5;
    pub const VM_CONFIGURATION: i32 = 6;
    pub const PLUGIN_CONFIGURATION: i32 = 7;
    pub const CALL_DATA: i32 = 8;
    pub const REDIS_CALL_RESPONSE: i32 = 9;
}

/// Envoy's `FilterHeadersStatus`, which ABI 0.2.x header callbacks return.
pub mod headers_status {
    pub const CONTINUE: i32 = 0;
    pub const STOP_ITERATION: i32 = 1;
    pub const CONTINUE_AND_DONT_END_STREAM: i32 = 2;
    pub const STOP_ALL_ITERATION_AND_BUFFER: i32 = 3;
    pub const STOP_ALL_ITERATION_AND_WATERMARK: i32 = 4;
}

/// Envoy's `FilterDataStatus`, which body callbacks return.
pub mod data_status {
    pub const CONTINUE: i32 = 0;
    pub const STOP_ITERATION_AND_BUFFER: i32 = 1;
    pub const STOP_ITERATION_AND_WATERMARK: i32 = 2;
    pub const STOP_ITERATION_NO_BUFFER: i32 = 3;
}

/// `proxy_log_level_t`.
pub const LOG_CRITICAL: i32 = 5;

/// `proxy_metric_type_t`.
pub mod metric {
    pub const COUNTER: i32 = 0;
    pub const GAUGE: i32 = 1;
    pub const HISTOGRAM: i32 = 2;
}

/// The ABI versions a module may declare by export name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiVersion {
    V0_1_0,
    V0_2_0,
    V0_2_1,
    /// Higress's: 0.2.1 plus its extra host calls, and a header `StopIteration` keeps its
    /// meaning (no rewrite to `StopAllIterationAndWatermark`).
    V0_2_100,
}

impl AbiVersion {
    pub fn from_exports<'a>(mut names: impl Iterator<Item = &'a str>) -> Option<AbiVersion> {
        names.find_map(|n| match n {
            "proxy_abi_version_0_2_100" => Some(AbiVersion::V0_2_100),
            "proxy_abi_version_0_2_1" => Some(AbiVersion::V0_2_1),
            "proxy_abi_version_0_2_0" => Some(AbiVersion::V0_2_0),
            "proxy_abi_version_0_1_0" => Some(AbiVersion::V0_1_0),
            _ => None,
        })
    }

    /// What a header callback's return value means on this ABI (the Higress host rewrites
    /// `StopIteration` for the older ABIs).
    pub fn headers_result(self, raw: i32) -> i32 {
        match (self, raw) {
            (AbiVersion::V0_2_100, r) => r,
            (_, headers_status::STOP_ITERATION) => headers_status::STOP_ALL_ITERATION_AND_WATERMARK,
            (_, r) => r,
        }
    }
}

/// Serialize pairs: `u32 N`, then `N × (u32 key_len, u32 value_len)`, then each key and
/// value followed by a NUL.
pub fn serialize_pairs<'a, I>(pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let n = pairs.clone().into_iter().count();
    let size: usize = 4 + pairs
        .clone()
        .into_iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parse pairs; an empty input, a single NUL or `N = 0` is an empty map. `None` for
/// malformed input (a size that does not add up, a missing NUL, trailing bytes).
/// Header (or trailer) pairs as the ABI serializes them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

pub fn deserialize_pairs(data: &[u8]) -> Option<Pairs> {
    if data.is_empty() || data == [0] {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = u32_at(0)?;
    // Higress's limit (and what keeps a bogus N from allocating).
    if n > 1024 {
        return None;
    }
    let mut sizes = Vec::with_capacity(n);
    for i in 0..n {
        sizes.push((u32_at(4 + 8 * i)?, u32_at(8 + 8 * i)?));
    }
    let mut at = 4 + 8 * n;
    let mut out = Vec::with_capacity(n);
    for (kl, vl) in sizes {
        let key = data.get(at..at + kl)?.to_vec();
        at += kl;
        if data.get(at) != Some(&0) {
            return None;
        }
        at += 1;
        let value = data.get(at..at + vl)?.to_vec();
        at += vl;
        if data.get(at) != Some(&0) {
            return None;
        }
        at += 1;
        out.push((key, value));
    }
    (at == data.len()).then_some(out)
}

/// A property path: segments joined by NUL (a trailing NUL tolerated).
pub fn property_path(raw: &[u8]) -> Vec<&[u8]> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    raw.split(|b| *b == 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_in_the_wire_layout() {
        let bytes = serialize_pairs([(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"22"[..])]);
        assert_eq!(
            bytes,
            [
                2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'1', 0, b'b',
                0, b'2', b'2', 0
            ]
        );
        let back = deserialize_pairs(&bytes).unwrap();
        assert_eq!(
            back,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"22".to_vec())
            ]
        );
        for empty in [&[][..], &[0][..], &[0, 0, 0, 0][..]] {
            assert_eq!(deserialize_pairs(empty), Some(vec![]));
        }
        // Malformed: a size past the end, a missing NUL, trailing garbage, a huge count.
        assert_eq!(deserialize_pairs(&bytes[..bytes.len() - 1]), None);
        let mut bad = bytes.clone();
        bad[21] = b'x';
        assert_eq!(deserialize_pairs(&bad), None);
        let mut long = bytes.clone();
        long.push(7);
        assert_eq!(deserialize_pairs(&long), None);
        assert_eq!(deserialize_pairs(&[0xff, 0xff, 0, 0]), None);
    }

    #[test]
    fn paths_and_abi_versions() {
        assert_eq!(
            property_path(b"request\0headers\0x-a"),
            vec![&b"request"[..], b"headers", b"x-a"]
        );
        assert_eq!(property_path(b"route_name\0"), vec![&b"route_name"[..]]);
        let v = AbiVersion::from_exports(["memory", "proxy_abi_version_0_2_100"].into_iter());
        assert_eq!(v, Some(AbiVersion::V0_2_100));
        assert_eq!(v.unwrap().headers_result(1), 1);
        assert_eq!(AbiVersion::V0_2_1.headers_result(1), 4);
        assert_eq!(AbiVersion::from_exports(["memory"].into_iter()), None);
    }
}
