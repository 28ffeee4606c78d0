//! `x-request-id` values: UUID v4 from the OS random source, drawn in batches as Envoy
//! does, so a request costs a 16-byte copy and one `getrandom` call serves 256 of them.

use std::cell::RefCell;

use http::HeaderValue;

const BATCH: usize = 256;

struct Pool {
    bytes: Box<[u8; 16 * BATCH]>,
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool {
        bytes: Box::new([0; 16 * BATCH]),
        next: BATCH,
    });
}

/// A fresh random UUID v4 as a header value.
pub fn generate() -> HeaderValue {
    let random = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.next == BATCH {
            // The OS source does not fail on Linux once the pool is seeded; if it ever
            // did, ids would stay unique per process by the counter mixed in below.
            if getrandom::fill(&mut pool.bytes[..]).is_err() {
                fallback_fill(&mut pool.bytes[..]);
            }
            pool.next = 0;
        }
        let i = pool.next;
        pool.next += 1;
        let mut b = [0u8; 16];
        b.copy_from_slice(&pool.bytes[i * 16..i * 16 + 16]);
        b
    });
    let id = uuid::Builder::from_random_bytes(random).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    let text = id.hyphenated().encode_lower(&mut buf);
    // Lowercase hex and dashes are always a valid header value.
    HeaderValue::from_str(text).expect("uuid text is a valid header value")
}

/// Distinct bytes without the OS source: time, thread and a counter.
fn fallback_fill(bytes: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    for chunk in bytes.chunks_mut(16) {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        chunk[..8].copy_from_slice(&t.to_le_bytes());
        chunk[8..].copy_from_slice(&n.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_v4_and_distinct_across_batches() {
        let ids: HashSet<String> = (0..3 * BATCH + 5)
            .map(|_| generate().to_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 3 * BATCH + 5);
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4, "{id}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(id.len(), 36);
        }
    }
}
