//! Trace and span ids.
//!
//! W3C, B3 and OTLP ids are 128-bit trace ids and 64-bit span ids (B3's 64-bit trace
//! ids are kept left-padded with zeros, as B3 says). SkyWalking trace ids are opaque
//! strings; when a request arrives with one, it is kept as text end to end.

use std::fmt;
use std::sync::Arc;

/// A trace id: 128 bits (W3C, B3, OTLP; never zero) or SkyWalking's opaque text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceId {
    Hex(u128),
    Text(Arc<str>),
}

/// A 64-bit span id (never zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(pub u64);

impl TraceId {
    /// A new random, non-zero 128-bit id.
    pub fn random() -> Self {
        loop {
            let v = (u128::from(random_u64()) << 64) | u128::from(random_u64());
            if v != 0 {
                return TraceId::Hex(v);
            }
        }
    }

    /// 32 lowercase hex digits, or 16 (B3's 64-bit form, left-padded here) that are
    /// not all zero.
    pub fn from_hex(s: &str) -> Option<Self> {
        if !(s.len() == 32 || s.len() == 16) || !is_lower_hex(s) {
            return None;
        }
        let v = u128::from_str_radix(s, 16).ok()?;
        (v != 0).then_some(TraceId::Hex(v))
    }

    /// The 128-bit value, when there is one.
    pub fn as_u128(&self) -> Option<u128> {
        match self {
            TraceId::Hex(v) => Some(*v),
            TraceId::Text(_) => None,
        }
    }
}

impl TraceId {
    /// The text `Display` writes, without going through `fmt` (made once per sampled
    /// request).
    pub fn to_text(&self) -> String {
        match self {
            TraceId::Hex(v) => {
                let mut s = String::with_capacity(32);
                push_hex(&mut s, *v, 32);
                s
            }
            TraceId::Text(t) => t.to_string(),
        }
    }
}

impl fmt::Display for TraceId {
    /// 32 lowercase hex digits, or the SkyWalking text as received.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceId::Hex(v) => f.write_str(hex_digits(&mut [0; 32], *v)),
            TraceId::Text(t) => f.write_str(t),
        }
    }
}

impl SpanId {
    /// A new random, non-zero id.
    pub fn random() -> Self {
        loop {
            let v = random_u64();
            if v != 0 {
                return SpanId(v);
            }
        }
    }

    /// 16 lowercase hex digits, not all zero.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 16 || !is_lower_hex(s) {
            return None;
        }
        let v = u64::from_str_radix(s, 16).ok()?;
        (v != 0).then_some(SpanId(v))
    }
}

impl fmt::Display for SpanId {
    /// 16 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(hex_digits(&mut [0; 16], u128::from(self.0)))
    }
}

/// `v`'s low `buf.len()` hex digits, lower case, zero-padded. Ids are written for
/// every sampled request; `{:032x}` through `fmt` costs several times more, and a
/// digit at a time costs a 128-bit shift per digit: this writes two digits per byte,
/// from the right.
pub fn hex_digits(buf: &mut [u8], v: u128) -> &str {
    let mut v = v;
    let mut i = buf.len();
    while i >= 2 {
        let pair = &HEX_PAIRS[(v as u8 as usize) * 2..][..2];
        buf[i - 2..i].copy_from_slice(pair);
        v >>= 8;
        i -= 2;
    }
    if i == 1 {
        buf[0] = HEX_PAIRS[(v as usize & 0xf) * 2 + 1];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(buf).unwrap_or_default()
}

/// "000102…feff": the two hex digits of every byte value.
static HEX_PAIRS: [u8; 512] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [0u8; 512];
    let mut b = 0;
    while b < 256 {
        t[b * 2] = DIGITS[b >> 4];
        t[b * 2 + 1] = DIGITS[b & 0xf];
        b += 1;
    }
    t
};

/// Append `v`'s low `width` hex digits (lower case, zero-padded).
pub fn push_hex(out: &mut String, v: u128, width: u32) {
    out.push_str(hex_digits(&mut [0; 32][..width as usize], v));
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fast per-thread random number (xorshift64*, seeded from the OS once per thread):
/// ids need to be unique, not secret.
pub fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to the clock and the thread's stack address.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        return (t ^ (&t as *const u64 as u64)) | 1;
    }
    u64::from_ne_bytes(b) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_match_fmt_at_every_width() {
        let values = [
            0u128,
            1,
            0xabc,
            u128::from(u64::MAX),
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            u128::MAX,
        ];
        for v in values {
            for width in 1..=32usize {
                let expected = format!("{v:032x}");
                assert_eq!(
                    hex_digits(&mut vec![0; width], v),
                    &expected[32 - width..],
                    "{v:x} at width {width}"
                );
            }
        }
    }

    #[test]
    fn hex_round_trips_and_rejects_zero_and_upper_case() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            TraceId::from_hex("a3ce929d0e0e4736").unwrap().to_string(),
            "0000000000000000a3ce929d0e0e4736"
        );
        assert!(TraceId::from_hex(&"0".repeat(32)).is_none());
        assert!(TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736").is_none());
        assert!(TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e473").is_none());
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        assert_eq!(s.to_string(), "00f067aa0ba902b7");
        assert!(SpanId::from_hex("0000000000000000").is_none());
        assert_eq!(
            TraceId::Text("a.b.c".into()).to_string(),
            "a.b.c",
            "SkyWalking ids stay as text"
        );
    }

    #[test]
    fn random_ids_differ() {
        let a = TraceId::random();
        let b = TraceId::random();
        assert_ne!(a, b);
        assert_ne!(SpanId::random(), SpanId::random());
    }
}
