//! The trace-context codecs (`telemetry::trace`) and the Redis RESP2 parser: decoding
//! never panics, and what decodes survives re-encoding.

use crate::redis::resp::{self, Reply};
use telemetry::trace::b3::{self, B3};
use telemetry::trace::{sw8, w3c, SpanContext};

/// Any `sw8` value: decoding never panics, and what decodes re-encodes to a value
/// that decodes to the same context (empty fields as "-").
pub fn sw8(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = sw8::decode(value) else {
        return;
    };
    let p = c.sw.as_ref().expect("sw8 always has a parent");
    let again = sw8::encode(
        &c.trace_id,
        &p.segment_id,
        p.span_id,
        &p.service,
        &p.instance,
        &p.endpoint,
        &p.address,
        c.sampled.expect("sw8 always has a flag"),
    );
    // Re-encoding may add padding: a value at the length limit may no longer fit.
    // An empty field comes back as "-", which the encoder sends instead.
    if again.len() <= sw8::MAX_LEN {
        let mut want = c.clone();
        let w = want.sw.as_mut().unwrap();
        for f in [
            &mut w.service,
            &mut w.instance,
            &mut w.endpoint,
            &mut w.address,
        ] {
            if f.is_empty() {
                *f = "-".into();
            }
        }
        assert_eq!(sw8::decode(&again), Ok(want));
    }
}

/// Any `traceparent` + `tracestate` pair (split at the first newline): decoding never
/// panics, a kept `tracestate` is valid, and the context survives re-encoding.
pub fn w3c(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (tp, ts) = match input.split_once('\n') {
        Some((tp, ts)) => (tp, Some(ts)),
        None => (input, None),
    };
    let Ok((c, flags)) = w3c::decode_with_flags(tp, ts) else {
        return;
    };
    if let Some(kept) = &c.tracestate {
        assert!(w3c::valid_tracestate(kept));
    }
    let again = w3c::encode_with_flags(&c.trace_id, c.span_id, flags).expect("hex trace id");
    assert_eq!(
        w3c::decode_with_flags(&again, c.tracestate.as_deref()),
        Ok((c, flags))
    );
}

/// Any `b3` value: decoding never panics, and what decodes re-encodes to a value
/// that decodes to the same thing.
pub fn b3_single(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(b) = b3::decode_single(value) else {
        return;
    };
    let again = match &b {
        B3::Context(c) => {
            b3::encode_single(&c.trace_id, c.span_id, c.sampled, c.debug, None).expect("hex id")
        }
        B3::SamplingOnly { debug: true, .. } => "d".to_owned(),
        B3::SamplingOnly { sampled, .. } => if *sampled { "1" } else { "0" }.to_owned(),
    };
    assert_eq!(b3::decode_single(&again), Ok(b));
}

/// Any set of `x-b3-*` values (the input's lines, in header order; an empty line is
/// an absent header): decoding never panics, and a decoded context survives
/// `encode_multi`.
pub fn b3_multi(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let mut values = [None; 5];
    for (slot, line) in values.iter_mut().zip(input.split('\n')) {
        // "\r" alone stands for a present but empty header.
        *slot = match line {
            "" => None,
            "\r" => Some(""),
            v => Some(v),
        };
    }
    let get = |name: &str| {
        NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values[i])
    };
    let Ok(Some(B3::Context(c))) = b3::decode_multi(get) else {
        return;
    };
    let sampled = c.sampled.unwrap_or(false);
    let out = b3::encode_multi(&c.trace_id, c.span_id, None, sampled).expect("hex id");
    let again = |name: &str| {
        out.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    };
    let expected = SpanContext {
        sampled: Some(sampled),
        debug: false,
        ..c
    };
    assert_eq!(b3::decode_multi(again), Ok(Some(B3::Context(expected))));
}

/// The `x-b3-*` headers, in the order of `b3_multi`'s input lines.
const NAMES: [&str; 5] = [
    b3::X_B3_TRACE_ID,
    b3::X_B3_SPAN_ID,
    b3::X_B3_PARENT_SPAN_ID,
    b3::X_B3_SAMPLED,
    b3::X_B3_FLAGS,
];

/// Any bytes as a Redis reply stream: the RESP2 parser never panics, measuring and
/// parsing agree on where a reply ends, and a parsed reply re-encoded parses the same.
/// Depth: re-encoding recurses at most resp::MAX_DEPTH levels.
pub fn resp(data: &[u8]) {
    let measured = resp::reply_len(data);
    let parsed = resp::parse(data);
    match (measured, parsed) {
        (Ok(Some(len)), Ok(Some((reply, used)))) => {
            assert_eq!(len, used);
            let mut again = Vec::new();
            encode(&reply, &mut again);
            // Leading zeros or `-0` come back canonical; the value is the same.
            assert_eq!(resp::parse(&again).unwrap(), Some((reply, again.len())));
        }
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        other => panic!("reply_len and parse disagree: {other:?}"),
    }
}

/// `reply` on the wire again (RESP2 has one encoding per value).
fn encode(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Simple(s) | Reply::Error(s) => {
            out.push(if matches!(reply, Reply::Simple(_)) {
                b'+'
            } else {
                b'-'
            });
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Integer(n) => out.extend(format!(":{n}\r\n").bytes()),
        Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Reply::Bulk(Some(b)) => {
            out.extend(format!("${}\r\n", b.len()).bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(Some(items)) => {
            out.extend(format!("*{}\r\n", items.len()).bytes());
            for item in items {
                encode(item, out);
            }
        }
    }
}
