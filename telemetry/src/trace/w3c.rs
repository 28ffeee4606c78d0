//! W3C Trace Context: `traceparent` and `tracestate`
//! (w3c/trace-context `spec/20-http_request_header_format.md`).
//!
//! Decoding follows the spec, not Envoy: upper-case hex and version `ff` are rejected
//! (Envoy's OpenTelemetry extractor accepts both), and a higher version is parsed by
//! position as the spec's versioning section asks (Envoy rejects anything but 55
//! characters). `tracestate` is validated but kept as one opaque string; an invalid
//! one is dropped while the `traceparent` is kept, as the processing model allows.

use thiserror::Error;

use super::context::SpanContext;
use super::ids::{push_hex, SpanId, TraceId};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Trace-flags bit 0: the caller may have recorded the trace.
pub const FLAG_SAMPLED: u8 = 0x01;
/// Trace-flags bit 1 (Trace Context Level 2): the right-most 7 bytes of the trace id
/// are random. It must be passed on unchanged with the same trace id.
pub const FLAG_RANDOM_TRACE_ID: u8 = 0x02;
/// The flags this implementation knows; the others are cleared on the way out, as
/// the spec requires.
const KNOWN_FLAGS: u8 = FLAG_SAMPLED | FLAG_RANDOM_TRACE_ID;

/// Length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;
/// `tracestate` limits kept here: the spec's list-member maximum and the length it
/// asks vendors to propagate at least (we keep no more than that).
const TRACESTATE_MAX_MEMBERS: usize = 32;
const TRACESTATE_MAX_LEN: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum W3cError {
    #[error("traceparent version is not two lower-case hex digits followed by '-'")]
    Version,
    #[error("traceparent version ff is forbidden")]
    ForbiddenVersion,
    #[error("traceparent has the wrong length for its version")]
    Length,
    #[error("traceparent fields are not separated by '-' where expected")]
    Separator,
    #[error("traceparent trace-id is not 32 lower-case hex digits, or is all zeros")]
    TraceId,
    #[error("traceparent parent-id is not 16 lower-case hex digits, or is all zeros")]
    ParentId,
    #[error("traceparent trace-flags is not two lower-case hex digits")]
    Flags,
}

/// Decode `traceparent` (and `tracestate`, when the request had one: several
/// `tracestate` fields must be joined with `,` in order first) into the caller's
/// context. `sampled` is the flag's bit 0; an invalid `tracestate` is dropped.
pub fn decode(traceparent: &str, tracestate: Option<&str>) -> Result<SpanContext, W3cError> {
    decode_with_flags(traceparent, tracestate).map(|(ctx, _)| ctx)
}

/// [`decode`], also returning the known trace-flags bits ([`FLAG_SAMPLED`],
/// [`FLAG_RANDOM_TRACE_ID`]). `SpanContext` has no room for the random-trace-id bit,
/// which the spec requires to be propagated unchanged; pass these flags to
/// [`encode_with_flags`] when continuing the trace.
pub fn decode_with_flags(
    traceparent: &str,
    tracestate: Option<&str>,
) -> Result<(SpanContext, u8), W3cError> {
    let v = trim_ows(traceparent).as_bytes();
    // Version: two lower-case hex digits then '-', else the header is unparseable.
    if v.len() < 3 || v[2] != b'-' {
        return Err(W3cError::Version);
    }
    let version = parse_hex_u64(&v[..2], false).ok_or(W3cError::Version)?;
    if version == 0xff {
        return Err(W3cError::ForbiddenVersion);
    }
    // Version 00 is exactly 55 characters. A higher version has at least those 55,
    // and whatever follows the flags must start with '-' (fields we cannot know).
    if v.len() < TRACEPARENT_LEN || (version == 0 && v.len() != TRACEPARENT_LEN) {
        return Err(W3cError::Length);
    }
    if v[35] != b'-' || v[52] != b'-' || v.get(TRACEPARENT_LEN).is_some_and(|&c| c != b'-') {
        return Err(W3cError::Separator);
    }
    let trace = parse_hex_u128(&v[3..35], false)
        .filter(|&t| t != 0)
        .ok_or(W3cError::TraceId)?;
    let parent = parse_hex_u64(&v[36..52], false)
        .filter(|&p| p != 0)
        .ok_or(W3cError::ParentId)?;
    let flags = parse_hex_u64(&v[53..55], false).ok_or(W3cError::Flags)? as u8;
    let ctx = SpanContext {
        trace_id: TraceId::Hex(trace),
        span_id: SpanId(parent),
        sampled: Some(flags & FLAG_SAMPLED != 0),
        debug: false,
        tracestate: tracestate.and_then(checked_tracestate),
        sw: None,
    };
    Ok((ctx, flags & KNOWN_FLAGS))
}

/// `00-<trace-id>-<span-id>-<01|00>`. `None` for a SkyWalking text trace id, which
/// has no `traceparent` form. The random-trace-id bit is not set; see
/// [`encode_with_flags`].
pub fn encode(trace_id: &TraceId, span_id: SpanId, sampled: bool) -> Option<String> {
    encode_with_flags(trace_id, span_id, if sampled { FLAG_SAMPLED } else { 0 })
}

/// `00-<trace-id>-<span-id>-<flags>`, with the bits this version does not define
/// cleared. `None` for a text trace id.
pub fn encode_with_flags(trace_id: &TraceId, span_id: SpanId, flags: u8) -> Option<String> {
    let trace = trace_id.as_u128()?;
    let mut s = String::with_capacity(TRACEPARENT_LEN);
    s.push_str("00-");
    push_hex(&mut s, trace, 32);
    s.push('-');
    push_hex(&mut s, u128::from(span_id.0), 16);
    s.push('-');
    push_hex(&mut s, u128::from(flags & KNOWN_FLAGS), 2);
    Some(s)
}

/// Whether `value` is a `tracestate` this implementation keeps: at most 512
/// characters, at most 32 list members, each `key=value` per the spec's grammar
/// (empty and whitespace-only members allowed). Duplicate keys are not looked for:
/// the value is opaque to a proxy, and the spec lets a receiver keep either.
pub fn valid_tracestate(value: &str) -> bool {
    tracestate_members(value).is_some()
}

/// The number of non-empty list members of a valid `tracestate`.
fn tracestate_members(value: &str) -> Option<usize> {
    if value.len() > TRACESTATE_MAX_LEN {
        return None;
    }
    let mut members = 0;
    for member in value.split(',') {
        let member = trim_ows(member);
        if member.is_empty() {
            continue;
        }
        members += 1;
        if members > TRACESTATE_MAX_MEMBERS {
            return None;
        }
        let (key, val) = member.split_once('=')?;
        if !valid_key(key) || !valid_value(val) {
            return None;
        }
    }
    Some(members)
}

/// The `tracestate` to keep: trimmed, `None` when it has no members or is invalid.
fn checked_tracestate(value: &str) -> Option<String> {
    let value = trim_ows(value);
    (tracestate_members(value)? > 0).then(|| value.to_owned())
}

/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`,
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    match b.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.len() <= 255
                && rest.iter().all(|&c| {
                    c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@')
                })
        }
        None => false,
    }
}

/// `value = 0*255(chr) nblk-chr`: 1 to 256 printable ASCII characters other than
/// `,` and `=`, not ending in a space. (Trailing spaces were trimmed as OWS.)
fn valid_value(val: &str) -> bool {
    let b = val.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b[b.len() - 1] != b' '
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

/// Strip HTTP optional whitespace (spaces and tabs) at both ends; the W3C test
/// suite expects it tolerated around `traceparent` and list members.
pub(crate) fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Hex digits to a number: `None` unless every byte is a hex digit (lower case
/// only unless `upper` is allowed) and there are at most 32 of them.
pub(crate) fn parse_hex_u128(s: &[u8], upper: bool) -> Option<u128> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let mut v: u128 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' if upper => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(d);
    }
    Some(v)
}

/// [`parse_hex_u128`] for at most 16 digits.
pub(crate) fn parse_hex_u64(s: &[u8], upper: bool) -> Option<u64> {
    if s.len() > 16 {
        return None;
    }
    parse_hex_u128(s, upper).map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn trace(s: &str) -> TraceId {
        TraceId::from_hex(s).unwrap()
    }

    #[test]
    fn spec_examples() {
        let c = decode(TP, None).unwrap();
        assert_eq!(c.trace_id, trace("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(c.span_id, SpanId(0x00f067aa0ba902b7));
        assert_eq!(c.sampled, Some(true));
        assert!(!c.debug && c.sw.is_none() && c.tracestate.is_none());

        let c = decode(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        )
        .unwrap();
        assert_eq!(c.sampled, Some(false));
        assert_eq!(
            c.tracestate.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(encode(&c.trace_id, c.span_id, true).unwrap(), TP);
        assert_eq!(
            encode(&c.trace_id, c.span_id, false).unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }

    #[test]
    fn flags_are_bits() {
        // 03 = sampled + random; 02 = random only; unknown bits are dropped.
        let (c, f) = decode_with_flags(&TP.replace("-01", "-03"), None).unwrap();
        assert_eq!((c.sampled, f), (Some(true), 3));
        let (c, f) = decode_with_flags(&TP.replace("-01", "-02"), None).unwrap();
        assert_eq!((c.sampled, f), (Some(false), 2));
        let (c, f) = decode_with_flags(&TP.replace("-01", "-ff"), None).unwrap();
        assert_eq!((c.sampled, f), (Some(true), 3));
        assert!(encode_with_flags(&c.trace_id, c.span_id, 0xff)
            .unwrap()
            .ends_with("-03"));
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        let bad = [
            "",
            "00",
            "00-",
            // Upper case (Envoy would take these; the spec says lower-case only).
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // The test suite's cases (w3c/trace-context test/test.py).
            "00-12345678901234567890123456789012-1234567890123456-01.",
            "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
            "ff-12345678901234567890123456789012-1234567890123456-01",
            ".0-12345678901234567890123456789012-1234567890123456-01",
            "0.-12345678901234567890123456789012-1234567890123456-01",
            "000-12345678901234567890123456789012-1234567890123456-01",
            "0000-12345678901234567890123456789012-1234567890123456-01",
            "0-12345678901234567890123456789012-1234567890123456-01",
            "00-00000000000000000000000000000000-1234567890123456-01",
            "00-.2345678901234567890123456789012-1234567890123456-01",
            "00-1234567890123456789012345678901.-1234567890123456-01",
            "00-123456789012345678901234567890123-1234567890123456-01",
            "00-1234567890123456789012345678901-1234567890123456-01",
            "00-12345678901234567890123456789012-0000000000000000-01",
            "00-12345678901234567890123456789012-.234567890123456-01",
            "00-12345678901234567890123456789012-123456789012345.-01",
            "00-12345678901234567890123456789012-12345678901234567-01",
            "00-12345678901234567890123456789012-123456789012345-01",
            "00-12345678901234567890123456789012-1234567890123456-.0",
            "00-12345678901234567890123456789012-1234567890123456-0.",
            "00-12345678901234567890123456789012-1234567890123456-001",
            "00-12345678901234567890123456789012-1234567890123456-1",
            // A higher version still needs 55 characters.
            "01-12345678901234567890123456789012-1234567890123456-1",
            "00_12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012_1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456_01",
            "00-+2345678901234567890123456789012-1234567890123456-01",
        ];
        for b in bad {
            assert!(decode(b, None).is_err(), "{b:?} decoded");
        }
    }

    #[test]
    fn higher_versions_parse_the_first_four_fields() {
        for v in [
            "cc-12345678901234567890123456789012-1234567890123456-01",
            "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            "01-12345678901234567890123456789012-1234567890123456-00-",
        ] {
            let c = decode(v, None).unwrap();
            assert_eq!(c.trace_id, trace("12345678901234567890123456789012"), "{v}");
            assert_eq!(c.span_id, SpanId(0x1234567890123456));
        }
    }

    #[test]
    fn optional_whitespace_around_the_value_is_tolerated() {
        for v in [
            " 00-12345678901234567890123456789012-1234567890123456-01",
            "\t00-12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-01 ",
            "\t 00-12345678901234567890123456789012-1234567890123456-01 \t",
        ] {
            assert!(decode(v, None).is_ok(), "{v:?}");
        }
    }

    #[test]
    fn tracestate_validation() {
        let keep = |ts: &str| decode(TP, Some(ts)).unwrap().tracestate;
        assert_eq!(keep("foo=1").as_deref(), Some("foo=1"));
        assert_eq!(
            keep("foo=1 \t , \t bar=2, \t baz=3").as_deref(),
            Some("foo=1 \t , \t bar=2, \t baz=3")
        );
        assert_eq!(keep("\t foo=1 \t").as_deref(), Some("foo=1"));
        assert_eq!(keep("foo=1,,bar=2").as_deref(), Some("foo=1,,bar=2"));
        assert_eq!(keep("foo=1,foo=2").as_deref(), Some("foo=1,foo=2"));
        assert_eq!(keep("foo@=1,bar=2").as_deref(), Some("foo@=1,bar=2"));
        assert_eq!(keep("foo@bar@baz=1").as_deref(), Some("foo@bar@baz=1"));
        assert_eq!(
            keep("a= leading-space").as_deref(),
            Some("a= leading-space")
        );
        // Empty or member-less: nothing worth sending on.
        assert_eq!(keep(""), None);
        assert_eq!(keep(" , ,\t"), None);
        // Every allowed character, and the longest key.
        let key: String = ('a'..='z').chain('0'..='9').chain("_-*/".chars()).collect();
        let value: String = (0x20u8..=0x7e)
            .filter(|c| *c != b',' && *c != b'=')
            .map(char::from)
            .collect();
        assert!(keep(&format!("{key}={value}")).is_some());
        assert!(keep(&format!("{key}@a-z0-9_-*/={value}")).is_some());
        assert!(keep(&format!("{}=1", "z".repeat(256))).is_some());
        // Invalid: the whole tracestate is dropped, the traceparent kept.
        for bad in [
            "foo =1",
            "FOO=1",
            "foo.bar=1",
            "@foo=1,bar=2",
            "foo=bar=baz",
            "foo=,bar=3",
            "foo",
            "=1",
            "foo=1\u{e9}",
            "foo=a\tb",
        ] {
            assert_eq!(keep(bad), None, "{bad:?}");
        }
        assert_eq!(keep(&format!("foo=1,{}=1", "z".repeat(257))), None);
        assert_eq!(keep(&format!("k={}", "v".repeat(257))), None);
        let members = |n: usize| -> String {
            (1..=n)
                .map(|i| format!("bar{i:02}={i:02}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert!(keep(&members(32)).is_some());
        assert_eq!(keep(&members(33)), None);
        let long = format!("k={}", "v".repeat(256));
        let over = format!("{long},{long}");
        assert!(over.len() > 512);
        assert_eq!(keep(&over), None);
    }

    #[test]
    fn text_trace_ids_have_no_traceparent() {
        assert_eq!(
            encode(&TraceId::Text("a.b.c".into()), SpanId(1), true),
            None
        );
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(
            parse_hex_u64(b"00f067aa0ba902b7", false),
            Some(0x00f067aa0ba902b7)
        );
        assert_eq!(parse_hex_u64(b"00F067AA0BA902B7", false), None);
        assert_eq!(
            parse_hex_u64(b"00F067AA0BA902B7", true),
            Some(0x00f067aa0ba902b7)
        );
        assert_eq!(parse_hex_u64(b"00f067aa0ba902b70", false), None);
        assert_eq!(parse_hex_u64(b"", false), None);
        let mut s = String::new();
        push_hex(&mut s, 0xab, 4);
        assert_eq!(s, "00ab");
    }
}
