//! Any `traceparent` + `tracestate` pair (split at the first newline): decoding never
//! panics, a kept `tracestate` is valid, and the context survives re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry::trace::w3c;

fuzz_target!(|input: &str| {
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
});
