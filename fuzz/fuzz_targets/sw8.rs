//! Any `sw8` value: decoding never panics, and what decodes re-encodes to a value
//! that decodes to the same context.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry::trace::sw8;

fuzz_target!(|value: &str| {
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
    if again.len() <= sw8::MAX_LEN {
        assert_eq!(sw8::decode(&again).as_ref(), Ok(&c));
    }
});
