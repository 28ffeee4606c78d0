//! SkyWalking `sw8` (Cross Process Propagation Headers Protocol v3):
//! `sample-traceId-segmentId-spanId-service-instance-endpoint-address`, the string
//! fields in standard BASE64 (whose alphabet has no `-`, so splitting is exact).
//!
//! Acceptance follows cpp2sky (what Envoy uses): exactly 8 fields, sample flag `0` or
//! `1`, padding optional, empty descriptive fields allowed. Stricter where cpp2sky
//! would carry garbage into the segment: invalid BASE64 (cpp2sky silently decodes it
//! to an empty string), non-UTF-8 text, an empty trace or segment id, and a parent
//! span id that is not a plain non-negative decimal (cpp2sky's `SimpleAtoi` also
//! takes a sign and surrounding spaces) are errors, so the gateway starts a new trace.
//! `sw8-x` and `sw8-correlation` are not handled (Envoy ignores them too).

use std::sync::Arc;

use thiserror::Error;

use super::context::{SpanContext, SwParent};
use super::ids::push_hex;
use super::ids::{SpanId, TraceId};
use super::w3c::trim_ows;

pub const HEADER: &str = "sw8";

/// Longest value decoded. The protocol has agents keep the header under 2 KB by
/// default; we take twice that before calling it abuse, so a peer with a raised
/// limit still joins the trace.
pub const MAX_LEN: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Sw8Error {
    #[error("sw8 is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("sw8 must have exactly 8 fields separated by '-'")]
    FieldCount,
    #[error("sw8 sample flag must be 0 or 1")]
    SampleFlag,
    #[error("sw8 parent span id must be a non-negative 32-bit decimal integer")]
    SpanId,
    #[error("sw8 {0} is not BASE64 of UTF-8 text")]
    Base64(&'static str),
    #[error("sw8 {0} is empty")]
    Empty(&'static str),
}

/// Decode an `sw8` value. The trace id is kept as text; `sampled` is the caller's
/// flag (`0` means "may be ignored": the sampler traces a valid `sw8` anyway, as
/// cpp2sky and the Java agent do); `sw` holds the parent segment's fields.
///
/// `span_id` has no SkyWalking meaning: it is a stable non-zero digest of the parent
/// segment id and span id, so code that needs a 64-bit parent id has a unique one.
pub fn decode(value: &str) -> Result<SpanContext, Sw8Error> {
    let value = trim_ows(value);
    if value.len() > MAX_LEN {
        return Err(Sw8Error::TooLong);
    }
    let mut fields = [""; 8];
    let mut parts = value.split('-');
    for f in &mut fields {
        *f = parts.next().ok_or(Sw8Error::FieldCount)?;
    }
    if parts.next().is_some() {
        return Err(Sw8Error::FieldCount);
    }
    let sampled = match fields[0] {
        "1" => true,
        "0" => false,
        _ => return Err(Sw8Error::SampleFlag),
    };
    let trace_id = text(fields[1], "trace id")?;
    let segment_id = text(fields[2], "parent segment id")?;
    if trace_id.is_empty() {
        return Err(Sw8Error::Empty("trace id"));
    }
    if segment_id.is_empty() {
        return Err(Sw8Error::Empty("parent segment id"));
    }
    let span_id = parse_span_id(fields[3]).ok_or(Sw8Error::SpanId)?;
    let parent = SwParent {
        span_id,
        service: text(fields[4], "parent service")?,
        instance: text(fields[5], "parent service instance")?,
        endpoint: text(fields[6], "parent endpoint")?,
        address: text(fields[7], "target address")?,
        segment_id,
    };
    Ok(SpanContext {
        trace_id: TraceId::Text(Arc::from(trace_id)),
        span_id: digest(&parent.segment_id, span_id),
        sampled: Some(sampled),
        debug: false,
        tracestate: None,
        sw: Some(parent),
    })
}

/// The `sw8` the gateway sends upstream: its own segment and exit span as the
/// parent. A hex trace id (a trace that did not start in SkyWalking) is written as
/// its 32 hex digits. Envoy always writes sample flag `1`. A negative `span_id` (not
/// a valid exit span) is written as 0 so the header stays well-formed.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    trace_id: &TraceId,
    segment_id: &str,
    span_id: i32,
    service: &str,
    instance: &str,
    endpoint: &str,
    address: &str,
    sampled: bool,
) -> String {
    debug_assert!(span_id >= 0, "sw8 span ids start at 0");
    let mut hex = String::new();
    let trace: &str = match trace_id {
        TraceId::Text(t) => t,
        TraceId::Hex(v) => {
            push_hex(&mut hex, *v, 32);
            &hex
        }
    };
    // An empty field is legal BASE64 but agents refuse it (the SkyWalking Python
    // agent 1.2.0 stops tracing the request): send "-" instead.
    let strings = [trace, segment_id, service, instance, endpoint, address].map(|s| {
        if s.is_empty() {
            "-"
        } else {
            s
        }
    });
    let len = 8 + 11 + strings.iter().map(|s| b64_len(s.len())).sum::<usize>();
    let mut out = String::with_capacity(len);
    out.push(if sampled { '1' } else { '0' });
    for (i, s) in strings.iter().enumerate() {
        out.push('-');
        push_b64(&mut out, s.as_bytes());
        if i == 1 {
            out.push('-');
            out.push_str(itoa::Buffer::new().format(span_id.max(0)));
        }
    }
    out
}

/// A non-negative `i32` in plain decimal: digits only (leading zeros allowed).
fn parse_span_id(s: &str) -> Option<i32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A BASE64 field as text.
fn text(field: &str, what: &'static str) -> Result<String, Sw8Error> {
    b64_decode(field)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(Sw8Error::Base64(what))
}

/// FNV-1a over the segment id and span id, never zero.
fn digest(segment_id: &str, span_id: i32) -> SpanId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in segment_id.as_bytes().iter().chain(&span_id.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    SpanId(h.max(1))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Standard BASE64 with `=` padding (what the Java agent and Envoy write).
fn push_b64(out: &mut String, data: &[u8]) {
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

fn b64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Standard BASE64, padded or not (cpp2sky takes both). Padding, when present, must
/// complete the last quantum; the unused bits of the last character must be zero
/// (cpp2sky checks that too), so every accepted value has one canonical form.
fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    let body = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    let pad = s.len() - body.len();
    let rem = body.len() % 4;
    if rem == 1 || (pad > 0 && rem + pad != 4) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut quanta = body.chunks_exact(4);
    for q in &mut quanta {
        let mut n = 0u32;
        for &c in q {
            n = (n << 6) | b64_value(c)?;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let tail = quanta.remainder();
    if !tail.is_empty() {
        let mut n = 0u32;
        for &c in tail {
            n = (n << 6) | b64_value(c)?;
        }
        // 2 characters carry 1 byte (4 spare bits), 3 carry 2 bytes (2 spare bits).
        let (bytes, spare) = if tail.len() == 2 { (1, 4) } else { (2, 2) };
        if n & ((1 << spare) - 1) != 0 {
            return None;
        }
        let n = n >> spare;
        if bytes == 2 {
            out.push((n >> 8) as u8);
        }
        out.push(n as u8);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From the public write-up the research cites: service onemore-a calling
    /// onemore-b.
    const EXAMPLE: &str = "1-YTRlYzZmYzhjY2FiNGJiNGI2ODIwNjQ2OThjYzk3ZTYuNzQuMTYyMTgzODExMDQ1NTAwMDk=-YTRlYzZmYzhjY2FiNGJiNGI2ODIwNjQ2OThjYzk3ZTYuNzQuMTYyMTgzODExMDQ1NTAwMDg=-2-b25lbW9yZS1h-ZTFkMmZiYjYzYmJhNDMwNDk5YWY4OTVjMDQwZTMyZmVAMTkyLjE2OC4xLjEwMQ==-L29uZW1vcmUtYS9nZXQ=-MTkyLjE2OC4xLjEwMjo4MA==";

    #[test]
    fn decodes_the_published_example() {
        let c = decode(EXAMPLE).unwrap();
        assert_eq!(
            c.trace_id,
            TraceId::Text("a4ec6fc8ccab4bb4b682064698cc97e6.74.16218381104550009".into())
        );
        assert_eq!(c.sampled, Some(true));
        let p = c.sw.as_ref().unwrap();
        assert_eq!(
            p.segment_id,
            "a4ec6fc8ccab4bb4b682064698cc97e6.74.16218381104550008"
        );
        assert_eq!(p.span_id, 2);
        assert_eq!(p.service, "onemore-a");
        assert_eq!(p.instance, "e1d2fbb63bba430499af895c040e32fe@192.168.1.101");
        assert_eq!(p.endpoint, "/onemore-a/get");
        assert_eq!(p.address, "192.168.1.102:80");
        assert_ne!(c.span_id.0, 0);
        // The Java agent pads, so re-encoding gives the same bytes back.
        let again = encode(
            &c.trace_id,
            &p.segment_id,
            p.span_id,
            &p.service,
            &p.instance,
            &p.endpoint,
            &p.address,
            true,
        );
        assert_eq!(again, EXAMPLE);
    }

    #[test]
    fn sample_flag_zero_is_kept_as_not_sampled() {
        let c = decode(&EXAMPLE.replacen('1', "0", 1)).unwrap();
        assert_eq!(c.sampled, Some(false));
    }

    #[test]
    fn accepts_what_cpp2sky_accepts() {
        // Unpadded BASE64, empty descriptive fields, leading zeros in the span id.
        let c = decode("1-dA-cw-007----").unwrap();
        assert_eq!(c.trace_id, TraceId::Text("t".into()));
        let p = c.sw.unwrap();
        assert_eq!((p.segment_id.as_str(), p.span_id), ("s", 7));
        assert!(p.service.is_empty() && p.endpoint.is_empty() && p.address.is_empty());
        assert_eq!(
            decode("0-dA==-cw==-2147483647-YQ-Yg-Yw-ZA")
                .unwrap()
                .sampled,
            Some(false)
        );
    }

    #[test]
    fn rejects_malformed_values() {
        let bad = [
            "",
            "1",
            "1-dA-cw-0-YQ-Yg-Yw",             // 7 fields
            "1-dA-cw-0-YQ-Yg-Yw-ZA-",         // 9 fields
            "1-dA-cw-0-YQ-Yg-Yw-ZA-ZA",       // 9 fields
            "2-dA-cw-0-YQ-Yg-Yw-ZA",          // sample flag
            "-dA-cw-0-YQ-Yg-Yw-ZA",           // empty sample flag
            "11-dA-cw-0-YQ-Yg-Yw-ZA",         // sample flag
            "1--cw-0-YQ-Yg-Yw-ZA",            // empty trace id
            "1-dA--0-YQ-Yg-Yw-ZA",            // empty segment id
            "1-dA-cw--YQ-Yg-Yw-ZA",           // empty span id
            "1-dA-cw--1-YQ-Yg-Yw-ZA",         // negative span id (and 9 fields)
            "1-dA-cw-+1-YQ-Yg-Yw-ZA",         // sign
            "1-dA-cw- 1-YQ-Yg-Yw-ZA",         // space
            "1-dA-cw-2147483648-YQ-Yg-Yw-ZA", // i32 overflow
            "1-dA-cw-99999999999-YQ-Yg-Yw-ZA",
            "1-dA-cw-1x-YQ-Yg-Yw-ZA",
            "1-d!-cw-0-YQ-Yg-Yw-ZA",  // not BASE64
            "1-dA-cw-0-Y-Yg-Yw-ZA",   // 1 character left over
            "1-dA-cw-0-YR-Yg-Yw-ZA",  // spare bits set
            "1-dA-cw-0-YQ=-Yg-Yw-ZA", // padding that does not complete
            "1-dA-cw-0-YQ===-Yg-Yw-ZA",
            "1-dA-cw-0-=-Yg-Yw-ZA",
            "1-dA-cw-0-==-Yg-Yw-ZA",
            "1-dA-cw-0-YQ-Yg-Yw-_w", // URL-safe alphabet
            "1-dA-cw-0-YQ-Yg-Yw-/w", // 0xff: not UTF-8
            "1-dA-cw-0-YQ-Yg-Yw-Z\u{e9}",
        ];
        for b in bad {
            assert!(decode(b).is_err(), "{b:?} decoded");
        }
        let huge = format!("1-{}-cw-0-YQ-Yg-Yw-ZA", "A".repeat(MAX_LEN));
        assert_eq!(decode(&huge), Err(Sw8Error::TooLong));
    }

    #[test]
    fn hex_trace_ids_are_written_as_text() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let v = encode(&t, "seg", 1, "svc", "inst", "/p", "10.0.0.1:80", false);
        let c = decode(&v).unwrap();
        assert_eq!(
            c.trace_id,
            TraceId::Text("4bf92f3577b34da6a3ce929d0e0e4736".into())
        );
        assert_eq!(c.sampled, Some(false));
        let p = c.sw.unwrap();
        assert_eq!(
            (p.segment_id.as_str(), p.span_id, p.address.as_str()),
            ("seg", 1, "10.0.0.1:80")
        );
    }

    #[test]
    fn encoded_fields_are_padded_and_never_empty() {
        // Field lengths 0..=4 cover every padding case; the Python agent drops the
        // connection on unpadded BASE64 and stops tracing on an empty field.
        for n in 0..=4 {
            let v = "é".repeat(n).chars().take(n).collect::<String>();
            let a = "a".repeat(n);
            let sw = encode(
                &TraceId::Text(a.as_str().into()),
                &a,
                3,
                &v,
                &a,
                &a,
                &a,
                true,
            );
            let fields: Vec<&str> = sw.split('-').collect();
            assert_eq!(fields.len(), 8, "{sw}");
            for (i, f) in fields.iter().enumerate() {
                assert!(!f.is_empty(), "field {i} empty in {sw}");
                if i >= 1 && i != 3 {
                    assert_eq!(f.len() % 4, 0, "field {i} unpadded in {sw}");
                }
            }
            let back = decode(&sw).unwrap();
            let want = if n == 0 { "-".to_string() } else { a.clone() };
            assert_eq!(back.sw.as_ref().unwrap().segment_id, want);
            assert_eq!(back.sw.unwrap().endpoint, want);
        }
    }

    #[test]
    fn base64_round_trips() {
        let data: Vec<u8> = (0..=255).collect();
        for n in 0..data.len() {
            let mut s = String::new();
            push_b64(&mut s, &data[..n]);
            assert_eq!(s.len(), b64_len(n));
            assert_eq!(b64_decode(&s).unwrap(), &data[..n]);
            assert_eq!(b64_decode(s.trim_end_matches('=')).unwrap(), &data[..n]);
        }
    }

    #[test]
    fn span_id_digest_is_stable_and_distinct() {
        assert_eq!(digest("a", 1), digest("a", 1));
        assert_ne!(digest("a", 1), digest("a", 2));
        assert_ne!(digest("a", 1), digest("b", 1));
    }
}
