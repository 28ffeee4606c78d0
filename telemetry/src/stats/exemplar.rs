//! The latest exemplar of one histogram bucket: a trace id with the value and time it
//! was recorded at.
//!
//! Written on the request path, read at scrape time. The slot is a seqlock over plain
//! atomics: a writer claims it with one compare-and-swap and, if another writer holds it,
//! skips (an exemplar is a sample, and the other writer's is just as recent), so writing
//! never waits and never allocates; a reader retries a torn read a few times and
//! otherwise shows no exemplar for that scrape. All fields are atomics, so a torn read is
//! detected, never undefined behaviour.

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Bytes of trace id kept inline. W3C and B3 ids are 32 hex chars; SkyWalking's are
/// dotted decimal strings that can reach ~50, so 64 covers the propagators we speak
/// and stays well under OpenMetrics' 128-char limit for an exemplar's labels.
pub const MAX_TRACE_ID_LEN: usize = 64;
const WORDS: usize = MAX_TRACE_ID_LEN / 8;

/// A copy of a bucket's exemplar, as read at scrape time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar {
    id: [u8; MAX_TRACE_ID_LEN],
    len: u8,
    value: f64,
    timestamp_ms: u64,
}

impl Exemplar {
    pub fn trace_id(&self) -> &str {
        // Only ids checked by `valid_trace_id` (ASCII) are stored.
        std::str::from_utf8(&self.id[..self.len as usize]).unwrap_or("")
    }

    /// The recorded value, in the histogram's unit.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// When it was recorded, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
}

/// Whether `id` can be stored and written as a label value without escaping:
/// printable ASCII other than `"` and `\`. Checked 8 bytes at a time: it runs twice
/// for every sampled request.
pub(super) fn valid_trace_id(id: &str) -> bool {
    let b = id.as_bytes();
    if b.is_empty() || b.len() > MAX_TRACE_ID_LEN {
        return false;
    }
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        if !word_is_label_safe(u64::from_le_bytes(a)) {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
}

/// The 8 bytes of `w` are all in `!`..=`~` and none is `"` or `\`.
fn word_is_label_safe(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    // A byte below 0x21 (the test holds for thresholds up to 0x80), 0x80 or above,
    // DEL, a quote, a backslash.
    let below = w.wrapping_sub(ONES * 0x21) & !w & HIGH;
    let bad = below
        | (w & HIGH)
        | zero_byte(w ^ (ONES * 0x7f))
        | zero_byte(w ^ (ONES * u64::from(b'"')))
        | zero_byte(w ^ (ONES * u64::from(b'\\')));
    bad == 0
}

#[derive(Default)]
pub(super) struct Slot {
    /// Even when stable, odd while a writer is in; 0 until the first write.
    seq: AtomicU64,
    len: AtomicU64,
    value: AtomicU64,
    timestamp_ms: AtomicU64,
    id: [AtomicU64; WORDS],
}

impl Slot {
    /// Store an exemplar unless another writer holds the slot. `id` must be valid.
    pub(super) fn store(&self, id: &[u8], value: f64, timestamp_ms: u64) {
        let s = self.seq.load(Ordering::Relaxed);
        if s & 1 == 1
            || self
                .seq
                .compare_exchange(s, s + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // Orders the odd seq before the data, for a reader that sees any of the data.
        fence(Ordering::Release);
        self.len.store(id.len() as u64, Ordering::Relaxed);
        self.value.store(value.to_bits(), Ordering::Relaxed);
        self.timestamp_ms.store(timestamp_ms, Ordering::Relaxed);
        for (word, chunk) in self.id.iter().zip(id.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        self.seq.store(s + 2, Ordering::Release);
    }

    pub(super) fn load(&self) -> Option<Exemplar> {
        for _ in 0..8 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = (self.len.load(Ordering::Relaxed) as usize).min(MAX_TRACE_ID_LEN);
            let value = f64::from_bits(self.value.load(Ordering::Relaxed));
            let timestamp_ms = self.timestamp_ms.load(Ordering::Relaxed);
            let mut id = [0u8; MAX_TRACE_ID_LEN];
            for (chunk, word) in id.chunks_mut(8).zip(&self.id) {
                chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
            }
            // Pairs with the writer's release fence: if any field above came from a
            // write in progress, the re-read below sees its odd or later seq.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return Some(Exemplar {
                    id,
                    len: len as u8,
                    value,
                    timestamp_ms,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn label_safety_word_check_agrees_with_the_byte_rule() {
        let byte_rule = |id: &[u8]| {
            id.iter()
                .all(|&c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
        };
        // Every byte value at every position of a 16-byte id (two whole words).
        for pos in 0..16 {
            for c in 0..=255u8 {
                let mut id = *b"0123456789abcdef";
                id[pos] = c;
                let ok = std::str::from_utf8(&id).is_ok_and(valid_trace_id);
                let want = byte_rule(&id);
                assert_eq!(ok, want, "byte {c:#x} at {pos}");
            }
        }
        assert!(valid_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(valid_trace_id("a.b-c_d~e!f#"));
        assert!(!valid_trace_id(""));
        assert!(!valid_trace_id(&"a".repeat(MAX_TRACE_ID_LEN + 1)));
    }

    #[test]
    fn stores_and_loads_the_latest() {
        let s = Slot::default();
        assert_eq!(s.load(), None);
        s.store(b"4bf92f3577b34da6a3ce929d0e0e4736", 12.5, 1_700_000_000_123);
        s.store(b"abc", 3.0, 1_700_000_000_456);
        let e = s.load().unwrap();
        assert_eq!(e.trace_id(), "abc");
        assert_eq!(e.value(), 3.0);
        assert_eq!(e.timestamp_ms(), 1_700_000_000_456);
        let long = "a".repeat(MAX_TRACE_ID_LEN);
        s.store(long.as_bytes(), 1.0, 1);
        assert_eq!(s.load().unwrap().trace_id(), long);
    }

    #[test]
    fn trace_ids_that_need_escaping_or_are_too_long_are_refused() {
        assert!(valid_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(valid_trace_id("2a60a6d0e8c64e5b.37.16788836437380001"));
        assert!(!valid_trace_id(""));
        assert!(!valid_trace_id("a\"b"));
        assert!(!valid_trace_id("a\\b"));
        assert!(!valid_trace_id("a b"));
        assert!(!valid_trace_id("é"));
        assert!(!valid_trace_id(&"a".repeat(MAX_TRACE_ID_LEN + 1)));
    }

    /// Readers racing writers see whole exemplars only: each writer stores an id whose
    /// every byte, value and timestamp agree.
    #[test]
    fn concurrent_reads_are_never_torn() {
        let slot = Arc::new(Slot::default());
        let writers: Vec<_> = (0..4u8)
            .map(|w| {
                let slot = slot.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        let c = b'a' + ((w as u32 * 7 + i) % 26) as u8;
                        let len = 1 + (i as usize % MAX_TRACE_ID_LEN);
                        let id = [c; MAX_TRACE_ID_LEN];
                        slot.store(&id[..len], c as f64, len as u64);
                    }
                })
            })
            .collect();
        let mut seen = 0;
        while !writers.iter().all(|w| w.is_finished()) {
            if let Some(e) = slot.load() {
                let id = e.trace_id().as_bytes();
                assert_eq!(id.len() as u64, e.timestamp_ms());
                assert!(id.iter().all(|&b| b as f64 == e.value()), "torn: {e:?}");
                seen += 1;
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert!(seen > 0 || slot.load().is_some());
    }
}
