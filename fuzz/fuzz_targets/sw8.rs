//! Any `sw8` value: decoding never panics, and what decodes re-encodes to a value
//! that decodes to the same context (empty fields as "-").
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
    // An empty field comes back as "-", which the encoder sends instead.
    if again.len() <= sw8::MAX_LEN {
        let mut want = c.clone();
        let w = want.sw.as_mut().unwrap();
        for f in [&mut w.service, &mut w.instance, &mut w.endpoint, &mut w.address] {
            if f.is_empty() {
                *f = "-".into();
            }
        }
        assert_eq!(sw8::decode(&again), Ok(want));
    }
});
