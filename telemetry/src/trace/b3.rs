//! Zipkin B3 propagation (openzipkin/b3-propagation `README.md`): the single `b3`
//! header and the `x-b3-*` headers.
//!
//! Strict where the spec says so (lengths, separators, empty or junk values are
//! malformed, zero ids are no ids), lenient where Envoy's extractor is and the spec
//! allows it: upper-case hex in ids (Envoy parses them with `strtoull`) and
//! `x-b3-sampled: true|false`. The incoming `ParentSpanId` is validated and then
//! dropped: the gateway's server span takes the incoming span id as its parent and
//! never shares it, so the grandparent is not needed.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderValue;

use thiserror::Error;

use super::context::SpanContext;
use super::ids::{hex_digits, push_hex, SpanId, TraceId};
use super::w3c::{parse_hex_u128, parse_hex_u64, trim_ows};

pub const B3: &str = "b3";
pub const X_B3_TRACE_ID: &str = "x-b3-traceid";
pub const X_B3_SPAN_ID: &str = "x-b3-spanid";
pub const X_B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
pub const X_B3_SAMPLED: &str = "x-b3-sampled";
pub const X_B3_FLAGS: &str = "x-b3-flags";

/// What B3 headers carried.
// Unboxed on purpose: it lives for one request's extraction, and a Box would cost
// an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum B3 {
    /// Trace and span ids, with the caller's sampling state (`sampled: None` is
    /// B3's "defer"; debug sets `debug` and `sampled: Some(true)`).
    Context(SpanContext),
    /// A decision without ids (`b3: 0|1|d`, or `x-b3-sampled` / `x-b3-flags` alone):
    /// start a new trace and honour it. `debug` implies `sampled`.
    SamplingOnly { sampled: bool, debug: bool },
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum B3Error {
    #[error("b3 is empty")]
    Empty,
    #[error(
        "b3 does not have the {{TraceId}}-{{SpanId}}[-{{SamplingState}}[-{{ParentSpanId}}]] shape"
    )]
    Shape,
    #[error("B3 trace id is not 16 or 32 hex digits, or is zero")]
    TraceId,
    #[error("B3 span id is not 16 hex digits, or is zero")]
    SpanId,
    #[error("B3 parent span id is not 16 hex digits")]
    ParentSpanId,
    #[error("b3 sampling state is not 0, 1 or d")]
    SamplingState,
    #[error("x-b3-sampled is not 1, 0, true or false")]
    Sampled,
    #[error("x-b3-traceid and x-b3-spanid must both be present, or neither")]
    MissingId,
}

/// Decode from a request's headers: `b3` when present (it takes precedence, as the
/// spec says; a malformed `b3` is an error even if `x-b3-*` are fine, as in Envoy),
/// else the `x-b3-*` headers. `get` returns a header's first value by lower-case
/// name (B3: "the first value wins"). `Ok(None)`: no B3 headers at all.
pub fn decode<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Option<B3>, B3Error> {
    match get(B3) {
        Some(v) => decode_single(v).map(Some),
        None => decode_multi(get),
    }
}

/// Decode a `b3` value: `{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`, or a
/// sampling state alone.
pub fn decode_single(value: &str) -> Result<B3, B3Error> {
    let v = trim_ows(value);
    if v.is_empty() {
        return Err(B3Error::Empty);
    }
    if v.len() == 1 {
        let (sampled, debug) = sampling_state(v)?;
        return Ok(B3::SamplingOnly {
            sampled: sampled == Some(true),
            debug,
        });
    }
    let mut fields = [""; 4];
    let mut n = 0;
    for f in v.split('-') {
        if n == fields.len() {
            return Err(B3Error::Shape);
        }
        fields[n] = f;
        n += 1;
    }
    if n < 2 {
        return Err(B3Error::Shape);
    }
    let trace_id = trace_id(fields[0])?;
    let span_id = span_id(fields[1])?;
    let (sampled, debug) = if n >= 3 {
        sampling_state(fields[2])?
    } else {
        (None, false)
    };
    if n == 4 {
        parent_span_id(fields[3])?;
    }
    Ok(B3::Context(context(trace_id, span_id, sampled, debug)))
}

/// Decode the `x-b3-*` headers (`get` as for [`decode`]). `Ok(None)` when none of
/// them is present. `x-b3-flags: 1` is debug; other flag values are ignored, as the
/// spec allows. A parent span id without trace and span ids is malformed.
pub fn decode_multi<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Option<B3>, B3Error> {
    let sampled = match get(X_B3_SAMPLED).map(trim_ows) {
        None => None,
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        Some(_) => return Err(B3Error::Sampled),
    };
    let debug = get(X_B3_FLAGS).map(trim_ows) == Some("1");
    let parent = get(X_B3_PARENT_SPAN_ID);
    match (get(X_B3_TRACE_ID), get(X_B3_SPAN_ID)) {
        (Some(t), Some(s)) => {
            let trace_id = trace_id(trim_ows(t))?;
            let span_id = span_id(trim_ows(s))?;
            if let Some(p) = parent {
                parent_span_id(trim_ows(p))?;
            }
            let sampled = if debug { Some(true) } else { sampled };
            Ok(Some(B3::Context(context(
                trace_id, span_id, sampled, debug,
            ))))
        }
        (None, None) if parent.is_none() => Ok(match (sampled, debug) {
            (None, false) => None,
            (s, d) => Some(B3::SamplingOnly {
                sampled: d || s == Some(true),
                debug: d,
            }),
        }),
        _ => Err(B3Error::MissingId),
    }
}

/// The `x-b3-*` headers the gateway sends upstream (Envoy's set: never `x-b3-flags`,
/// always `x-b3-sampled`). The trace id is 16 hex digits when its high 64 bits are
/// zero (a 64-bit trace stays 64-bit, as Envoy and Brave write it), else 32. `None`
/// for a SkyWalking text trace id.
pub fn encode_multi(
    trace_id: &TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    sampled: bool,
) -> Option<Vec<(&'static str, Cow<'static, str>)>> {
    let ids = encode_ids(trace_id, span_id, parent)?;
    let mut headers = Vec::with_capacity(4);
    headers.push((X_B3_TRACE_ID, ids.trace().to_string().into()));
    headers.push((X_B3_SPAN_ID, ids.span().to_string().into()));
    if let Some(p) = ids.parent() {
        headers.push((X_B3_PARENT_SPAN_ID, p.to_string().into()));
    }
    headers.push((X_B3_SAMPLED, if sampled { "1" } else { "0" }.into()));
    Some(headers)
}

/// The id headers' values of [`encode_multi`] in one buffer (trace id, span id, then
/// the parent's), for a caller that writes them into a header map itself (the sampled
/// flag is a literal).
#[derive(Debug, PartialEq, Eq)]
pub struct MultiIds {
    buf: Bytes,
    trace_end: usize,
    span_end: usize,
}

impl MultiIds {
    fn text(&self, r: std::ops::Range<usize>) -> &str {
        // Only hex digits were written.
        std::str::from_utf8(&self.buf[r]).unwrap_or_default()
    }

    /// `x-b3-traceid`.
    pub fn trace(&self) -> &str {
        self.text(0..self.trace_end)
    }

    /// `x-b3-spanid`.
    pub fn span(&self) -> &str {
        self.text(self.trace_end..self.span_end)
    }

    /// `x-b3-parentspanid`.
    pub fn parent(&self) -> Option<&str> {
        (self.span_end < self.buf.len()).then(|| self.text(self.span_end..self.buf.len()))
    }

    /// The three as header values, slices of the one buffer: no copy, and no
    /// validation (the request path writes them on every traced request).
    pub fn values(&self) -> (HeaderValue, HeaderValue, Option<HeaderValue>) {
        let value = |r: std::ops::Range<usize>| {
            // SAFETY: lowercase hex digits are visible ASCII, valid in a header value.
            unsafe { HeaderValue::from_maybe_shared_unchecked(self.buf.slice(r)) }
        };
        let parent = (self.span_end < self.buf.len()).then(|| value(self.span_end..self.buf.len()));
        (
            value(0..self.trace_end),
            value(self.trace_end..self.span_end),
            parent,
        )
    }
}

/// [`encode_multi`]'s ids; `None` for a text trace id.
pub fn encode_ids(trace_id: &TraceId, span_id: SpanId, parent: Option<SpanId>) -> Option<MultiIds> {
    let trace = trace_id.as_u128()?;
    let mut buf = Vec::with_capacity(64);
    let mut digits = [0u8; 32];
    let width = if trace >> 64 == 0 { 16 } else { 32 };
    buf.extend_from_slice(hex_digits(&mut digits[..width], trace).as_bytes());
    let trace_end = buf.len();
    buf.extend_from_slice(hex_digits(&mut digits[..16], u128::from(span_id.0)).as_bytes());
    let span_end = buf.len();
    if let Some(p) = parent {
        buf.extend_from_slice(hex_digits(&mut digits[..16], u128::from(p.0)).as_bytes());
    }
    Some(MultiIds {
        buf: Bytes::from(buf),
        trace_end,
        span_end,
    })
}

/// A `b3` value: `{TraceId}-{SpanId}`, then the sampling state when there is one
/// (`d` for debug), then the parent when there is one. A parent needs a sampling
/// state before it; with `sampled: None` the parent is left out. `None` for a text
/// trace id.
pub fn encode_single(
    trace_id: &TraceId,
    span_id: SpanId,
    sampled: Option<bool>,
    debug: bool,
    parent: Option<SpanId>,
) -> Option<String> {
    let trace = trace_id.as_u128()?;
    let mut s = String::with_capacity(68);
    s.push_str(&trace_hex(trace));
    s.push('-');
    push_hex(&mut s, u128::from(span_id.0), 16);
    let state = match (debug, sampled) {
        (true, _) => Some('d'),
        (false, Some(true)) => Some('1'),
        (false, Some(false)) => Some('0'),
        (false, None) => None,
    };
    if let Some(c) = state {
        s.push('-');
        s.push(c);
        if let Some(p) = parent {
            s.push('-');
            push_hex(&mut s, u128::from(p.0), 16);
        }
    }
    Some(s)
}

fn trace_hex(trace: u128) -> String {
    let mut s = String::with_capacity(32);
    push_hex(&mut s, trace, if trace >> 64 == 0 { 16 } else { 32 });
    s
}

fn context(trace_id: u128, span_id: u64, sampled: Option<bool>, debug: bool) -> SpanContext {
    SpanContext {
        trace_id: TraceId::Hex(trace_id),
        span_id: SpanId(span_id),
        sampled,
        debug,
        tracestate: None,
        sw: None,
    }
}

/// 16 or 32 hex digits (64-bit ids are left-padded), not zero.
fn trace_id(s: &str) -> Result<u128, B3Error> {
    if s.len() != 16 && s.len() != 32 {
        return Err(B3Error::TraceId);
    }
    parse_hex_u128(s.as_bytes(), true)
        .filter(|&t| t != 0)
        .ok_or(B3Error::TraceId)
}

fn span_id(s: &str) -> Result<u64, B3Error> {
    hex16(s).filter(|&v| v != 0).ok_or(B3Error::SpanId)
}

/// A parent of zero is taken as "no parent", as Envoy does.
fn parent_span_id(s: &str) -> Result<u64, B3Error> {
    hex16(s).ok_or(B3Error::ParentSpanId)
}

fn hex16(s: &str) -> Option<u64> {
    (s.len() == 16).then(|| parse_hex_u64(s.as_bytes(), true))?
}

/// `1` accept, `0` deny, `d` debug (an emphasised accept).
fn sampling_state(s: &str) -> Result<(Option<bool>, bool), B3Error> {
    match s {
        "1" => Ok((Some(true), false)),
        "0" => Ok((Some(false), false)),
        "d" => Ok((Some(true), true)),
        _ => Err(B3Error::SamplingState),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ctx(b: B3) -> SpanContext {
        match b {
            B3::Context(c) => c,
            other => panic!("no context: {other:?}"),
        }
    }

    #[test]
    fn id_values_share_one_buffer_and_keep_64_bit_traces_short() {
        let ids = encode_ids(
            &TraceId::Hex(0x0af7_6519_16cd_43dd),
            SpanId(0x00f0_67aa_0ba9_02b7),
            Some(SpanId(1)),
        )
        .unwrap();
        let (trace, span, parent) = ids.values();
        assert_eq!(trace, "0af7651916cd43dd");
        assert_eq!(span, "00f067aa0ba902b7");
        assert_eq!(parent.unwrap(), "0000000000000001");
        let wide = encode_ids(&TraceId::Hex(1 << 64 | 0xab), SpanId(2), None).unwrap();
        let (trace, span, parent) = wide.values();
        assert_eq!(trace, "000000000000000100000000000000ab");
        assert_eq!(span, "0000000000000002");
        assert!(parent.is_none() && wide.parent().is_none());
        assert_eq!(wide.trace(), trace.to_str().unwrap());
    }

    fn multi(h: &[(&'static str, &'static str)]) -> Result<Option<B3>, B3Error> {
        let m: HashMap<&str, &str> = h.iter().copied().collect();
        decode(|n| m.get(n).copied())
    }

    #[test]
    fn readme_single_header_examples() {
        let c = ctx(decode_single(
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )
        .unwrap());
        assert_eq!(
            c.trace_id,
            TraceId::from_hex("80f198ee56343ba864fe8b2a57d3eff7").unwrap()
        );
        assert_eq!(c.span_id, SpanId(0xe457b5a2e4d86bd1));
        assert_eq!((c.sampled, c.debug), (Some(true), false));

        let c = ctx(decode_single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d").unwrap());
        assert_eq!((c.sampled, c.debug), (Some(true), true));
        let c = ctx(decode_single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1").unwrap());
        assert_eq!(c.sampled, None, "defer");
        let c = ctx(decode_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1-0").unwrap());
        assert_eq!(c.trace_id.to_string(), "000000000000000064fe8b2a57d3eff7");
        assert_eq!(c.sampled, Some(false));

        let only = |v| decode_single(v).unwrap();
        assert_eq!(
            only("0"),
            B3::SamplingOnly {
                sampled: false,
                debug: false
            }
        );
        assert_eq!(
            only("1"),
            B3::SamplingOnly {
                sampled: true,
                debug: false
            }
        );
        assert_eq!(
            only("d"),
            B3::SamplingOnly {
                sampled: true,
                debug: true
            }
        );
    }

    #[test]
    fn readme_multi_header_example() {
        let c = ctx(multi(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
        ])
        .unwrap()
        .unwrap());
        assert_eq!(
            c.trace_id,
            TraceId::from_hex("80f198ee56343ba864fe8b2a57d3eff7").unwrap()
        );
        assert_eq!(
            (c.span_id, c.sampled),
            (SpanId(0xe457b5a2e4d86bd1), Some(true))
        );
        let c = ctx(multi(&[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ])
        .unwrap()
        .unwrap());
        assert_eq!(c.sampled, None);
    }

    #[test]
    fn multi_header_sampling_and_debug() {
        let base = [
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut h = base.to_vec();
            h.extend_from_slice(extra);
            multi(&h)
        };
        for (v, s) in [("1", true), ("true", true), ("0", false), ("false", false)] {
            assert_eq!(
                ctx(with(&[("x-b3-sampled", v)]).unwrap().unwrap()).sampled,
                Some(s)
            );
        }
        let c = ctx(with(&[("x-b3-flags", "1"), ("x-b3-sampled", "0")])
            .unwrap()
            .unwrap());
        assert_eq!(
            (c.sampled, c.debug),
            (Some(true), true),
            "debug implies accept"
        );
        let c = ctx(with(&[("x-b3-flags", "2")]).unwrap().unwrap());
        assert_eq!(
            (c.sampled, c.debug),
            (None, false),
            "other flags are ignored"
        );
        for junk in ["", "yes", "2", "True"] {
            assert_eq!(
                with(&[("x-b3-sampled", junk)]),
                Err(B3Error::Sampled),
                "{junk:?}"
            );
        }
        assert_eq!(
            with(&[("x-b3-parentspanid", "-")]),
            Err(B3Error::ParentSpanId),
            "the spec's own malformed example"
        );
        assert_eq!(
            with(&[("x-b3-parentspanid", "")]),
            Err(B3Error::ParentSpanId)
        );
    }

    #[test]
    fn multi_header_sampling_only_and_absent() {
        assert_eq!(multi(&[]), Ok(None));
        assert_eq!(
            multi(&[("x-b3-sampled", "0")]),
            Ok(Some(B3::SamplingOnly {
                sampled: false,
                debug: false
            }))
        );
        assert_eq!(
            multi(&[("x-b3-flags", "1")]),
            Ok(Some(B3::SamplingOnly {
                sampled: true,
                debug: true
            }))
        );
        assert_eq!(multi(&[("x-b3-flags", "0")]), Ok(None));
        assert_eq!(
            multi(&[("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124")]),
            Err(B3Error::MissingId)
        );
        assert_eq!(
            multi(&[("x-b3-spanid", "a2fb4a1d1a96d312")]),
            Err(B3Error::MissingId)
        );
        assert_eq!(
            multi(&[("x-b3-parentspanid", "a2fb4a1d1a96d312")]),
            Err(B3Error::MissingId)
        );
    }

    #[test]
    fn single_header_takes_precedence() {
        let r = multi(&[
            ("b3", "0"),
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ]);
        assert_eq!(
            r,
            Ok(Some(B3::SamplingOnly {
                sampled: false,
                debug: false
            }))
        );
        let r = multi(&[
            ("b3", "junk"),
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ]);
        assert!(r.is_err());
    }

    #[test]
    fn upper_case_hex_is_accepted_as_envoy_does() {
        let c = ctx(decode_single("80F198EE56343BA864FE8B2A57D3EFF7-E457B5A2E4D86BD1-1").unwrap());
        assert_eq!(
            c.trace_id,
            TraceId::from_hex("80f198ee56343ba864fe8b2a57d3eff7").unwrap()
        );
        assert_eq!(c.span_id, SpanId(0xe457b5a2e4d86bd1));
    }

    #[test]
    fn rejects_malformed_single_headers() {
        let bad = [
            "",
            " ",
            "x",
            "D",
            "2",
            "-",
            "80f198ee56343ba864fe8b2a57d3eff7",
            "80f198ee56343ba864fe8b2a57d3eff7-",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-2",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-D",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-11",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b9",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b900",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-1",
            // A parent with no sampling state (Envoy rejects it too).
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-05e3ac9a4f6e3b90",
            "80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1",
            "80f198ee56343ba864fe8b2a57d3eff70-e457b5a2e4d86bd1",
            "80f198ee56343ba864fe8b2a57d3ef-e457b5a2e4d86bd1-1",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd-1",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd12-1",
            "00000000000000000000000000000000-e457b5a2e4d86bd1-1",
            "0000000000000000-e457b5a2e4d86bd1-1",
            "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1",
            "80f198ee56343ba864fe8b2a57d3eff7_e457b5a2e4d86bd1-1",
            "+0f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
            "80f198ee56343ba864fe8b2a57d3eff7-+457b5a2e4d86bd1-1",
            "0x0198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
            "80f198ee56343ba864fe8b2a57d3eff\u{e9}-e457b5a2e4d86bd1-1",
        ];
        for b in bad {
            assert!(decode_single(b).is_err(), "{b:?} decoded");
        }
    }

    #[test]
    fn encoders() {
        let t = TraceId::from_hex("80f198ee56343ba864fe8b2a57d3eff7").unwrap();
        let h = encode_multi(
            &t,
            SpanId(0xe457b5a2e4d86bd1),
            Some(SpanId(0x05e3ac9a4f6e3b90)),
            true,
        )
        .unwrap();
        assert_eq!(
            h,
            vec![
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7".into()),
                ("x-b3-spanid", "e457b5a2e4d86bd1".into()),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90".into()),
                ("x-b3-sampled", "1".into()),
            ]
        );
        let short = TraceId::from_hex("64fe8b2a57d3eff7").unwrap();
        let h = encode_multi(&short, SpanId(1), None, false).unwrap();
        assert_eq!(h[0].1, "64fe8b2a57d3eff7");
        assert_eq!(h[1].1, "0000000000000001");
        assert_eq!(h.len(), 3);
        assert_eq!(h[2], ("x-b3-sampled", "0".into()));
        assert_eq!(
            encode_single(
                &t,
                SpanId(0xe457b5a2e4d86bd1),
                Some(true),
                false,
                Some(SpanId(0x05e3ac9a4f6e3b90))
            )
            .unwrap(),
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"
        );
        assert_eq!(
            encode_single(&t, SpanId(0xe457b5a2e4d86bd1), None, false, Some(SpanId(5))).unwrap(),
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1"
        );
        assert_eq!(
            encode_single(&t, SpanId(0xe457b5a2e4d86bd1), Some(false), true, None).unwrap(),
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d"
        );
        let text = TraceId::Text("x".into());
        assert!(encode_multi(&text, SpanId(1), None, true).is_none());
        assert!(encode_single(&text, SpanId(1), None, false, None).is_none());
    }
}
