//! Segments written straight in protobuf wire format, into one buffer kept from batch
//! to batch: the bytes prost gives for the `SegmentObject` the exporter used to build
//! (same fields, in tag order as prost writes them, proto3 defaults left out, minimal
//! varint lengths), without the message tree. That tree cost a `String` per id,
//! operation name, peer, tag key and tag value, for every span, all freed again once
//! encoded.
//!
//! Field numbers are the skywalking crate's (0.10: `language-agent/Tracing.proto`,
//! `common/Common.proto`); the tests hold the bytes to prost's encoding of the same
//! segment.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use skywalking::proto::v3::{RefType, SpanLayer, SpanType};

use super::super::proto_wire::{
    close, key, open, put_str, put_varint, put_varint_field, str_field_len, varint_len, with_text,
    LEN, VARINT,
};
use super::super::unix_nanos;
use crate::trace::ids::hex_digits;
use crate::trace::{RequestTrace, SpanKind, SwParent, Tag, TraceId};

/// EnvoyProxy in SkyWalking's component-libraries.yml.
pub(super) const COMPONENT_ENVOY_PROXY: i32 = 9000;

// SegmentObject (`isSizeLimited` stays false, so left out).
const SEGMENT_TRACE_ID: u8 = key(1, LEN);
const SEGMENT_SEGMENT_ID: u8 = key(2, LEN);
const SEGMENT_SPANS: u8 = key(3, LEN);
const SEGMENT_SERVICE: u8 = key(4, LEN);
const SEGMENT_INSTANCE: u8 = key(5, LEN);
// SpanObject (no `logs`; `skipAnalysis` stays false).
const SPAN_ID: u8 = key(1, VARINT);
const SPAN_PARENT_ID: u8 = key(2, VARINT);
const SPAN_START: u8 = key(3, VARINT);
const SPAN_END: u8 = key(4, VARINT);
const SPAN_REFS: u8 = key(5, LEN);
const SPAN_OPERATION: u8 = key(6, LEN);
const SPAN_PEER: u8 = key(7, LEN);
const SPAN_TYPE: u8 = key(8, VARINT);
const SPAN_LAYER: u8 = key(9, VARINT);
const SPAN_COMPONENT: u8 = key(10, VARINT);
const SPAN_IS_ERROR: u8 = key(11, VARINT);
const SPAN_TAGS: u8 = key(12, LEN);
// SegmentReference (`refType` is always CrossProcess, the default: left out).
const REF_TRACE_ID: u8 = key(2, LEN);
const REF_PARENT_SEGMENT_ID: u8 = key(3, LEN);
const REF_PARENT_SPAN_ID: u8 = key(4, VARINT);
const REF_PARENT_SERVICE: u8 = key(5, LEN);
const REF_PARENT_INSTANCE: u8 = key(6, LEN);
const REF_PARENT_ENDPOINT: u8 = key(7, LEN);
const REF_PEER_ADDRESS: u8 = key(8, LEN);
// KeyStringValuePair.
const KV_KEY: u8 = key(1, LEN);
const KV_VALUE: u8 = key(2, LEN);

// Entry spans and CrossProcess refs carry the enums' defaults, which are left out;
// the others are below 128: one varint byte each.
const _: () = assert!(
    SpanType::Entry as i32 == 0
        && RefType::CrossProcess as i32 == 0
        && (SpanType::Exit as i32) < 0x80
        && (SpanLayer::Http as i32) < 0x80
);
const TYPE_EXIT: u8 = SpanType::Exit as u8;
const LAYER_HTTP: u8 = SpanLayer::Http as u8;

/// Writes segments. What every segment repeats is encoded once.
pub(crate) struct Encoder {
    /// `SegmentObject.service` and `.service_instance`, keys and lengths included:
    /// every segment ends with them.
    tail: Vec<u8>,
    /// Where segments are written. The bytes handed out share its allocation, which
    /// it takes back for a later batch once they are all dropped (after the send).
    buf: BytesMut,
    /// The last batch's size: the next one starts with that much room.
    last_len: usize,
}

impl Encoder {
    pub(crate) fn new(service: &str, instance: &str) -> Self {
        let mut b = BytesMut::new();
        put_str(&mut b, SEGMENT_SERVICE, service);
        put_str(&mut b, SEGMENT_INSTANCE, instance);
        Encoder {
            tail: b.to_vec(),
            buf: BytesMut::new(),
            last_len: 4096,
        }
    }

    /// Each request's segment, in order: one message each of the `collect` stream.
    pub(crate) fn segments(&mut self, batch: &[Arc<RequestTrace>]) -> Vec<Bytes> {
        let buf = &mut self.buf;
        buf.clear();
        buf.reserve(self.last_len);
        let mut len = 0;
        let mut out = Vec::with_capacity(batch.len());
        for t in batch {
            put_segment(buf, t, &self.tail);
            len += buf.len();
            out.push(buf.split().freeze());
        }
        self.last_len = len;
        out
    }
}

/// An int32 as prost writes it: sign-extended to 64 bits (ten bytes when negative).
fn int32(v: i32) -> u64 {
    i64::from(v) as u64
}

/// The request's segment: the server span as the entry span (id 0), each client span
/// as an exit span (ids 1.. in order) whose parent is the entry span.
fn put_segment(buf: &mut BytesMut, t: &RequestTrace, tail: &[u8]) {
    let mut hex = [0; 32];
    // As `TraceId`'s `Display` writes it.
    let trace_id: &str = match &t.trace_id {
        TraceId::Hex(v) => hex_digits(&mut hex, *v),
        TraceId::Text(s) => s,
    };
    put_str(buf, SEGMENT_TRACE_ID, trace_id);
    put_str(buf, SEGMENT_SEGMENT_ID, &t.segment_id);
    let has_entry = t.spans.iter().any(|s| s.kind == SpanKind::Server);
    let mut next_exit = 1;
    for s in &t.spans {
        let (span_id, parent_span_id) = match s.kind {
            SpanKind::Server => (0, -1),
            SpanKind::Client => {
                let id = next_exit;
                next_exit += 1;
                (id, if has_entry { 0 } else { -1 })
            }
        };
        buf.put_u8(SEGMENT_SPANS);
        // Two bytes of length: a span with its tags is 128 bytes to 16 KiB.
        let at = open(buf, 2);
        put_varint_field(buf, SPAN_ID, int32(span_id));
        put_varint_field(buf, SPAN_PARENT_ID, int32(parent_span_id));
        put_varint_field(buf, SPAN_START, unix_nanos(s.start) / 1_000_000);
        put_varint_field(buf, SPAN_END, unix_nanos(s.end) / 1_000_000);
        if let (Some(p), SpanKind::Server) = (&t.sw_parent, s.kind) {
            put_ref(buf, trace_id, p);
        }
        put_str(buf, SPAN_OPERATION, &t.span_name(s));
        if let Some(peer) = s.peer {
            with_text(Tag::Addr(peer), |p| put_str(buf, SPAN_PEER, p));
        }
        if s.kind == SpanKind::Client {
            buf.put_slice(&[SPAN_TYPE, TYPE_EXIT]);
        }
        buf.put_slice(&[SPAN_LAYER, LAYER_HTTP]);
        put_varint_field(buf, SPAN_COMPONENT, int32(COMPONENT_ENVOY_PROXY));
        if s.error {
            buf.put_slice(&[SPAN_IS_ERROR, 1]);
        }
        // SkyWalking's tags are strings: every value as its text.
        t.for_each_tag(s, |k, v| with_text(v, |v| put_tag(buf, k, v)));
        close(buf, at);
    }
    buf.put_slice(tail);
}

/// The entry span's cross-process ref to the `sw8` parent.
fn put_ref(buf: &mut BytesMut, trace_id: &str, p: &SwParent) {
    let strings = [
        (REF_TRACE_ID, trace_id),
        (REF_PARENT_SEGMENT_ID, &p.segment_id),
        (REF_PARENT_SERVICE, &p.service),
        (REF_PARENT_INSTANCE, &p.instance),
        (REF_PARENT_ENDPOINT, &p.endpoint),
        (REF_PEER_ADDRESS, &p.address),
    ];
    let span_id = int32(p.span_id);
    // The length is known before writing, so nothing is moved afterwards.
    let len = strings
        .iter()
        .map(|(_, s)| str_field_len(s.len()))
        .sum::<usize>()
        + if span_id == 0 {
            0
        } else {
            1 + varint_len(span_id)
        };
    buf.reserve(1 + varint_len(len as u64) + len);
    buf.put_u8(SPAN_REFS);
    put_varint(buf, len as u64);
    // Tag order: the span id (4) comes between the segment id (3) and the service (5).
    let (ids, names) = strings.split_at(2);
    for (k, s) in ids {
        put_str(buf, *k, s);
    }
    put_varint_field(buf, REF_PARENT_SPAN_ID, span_id);
    for (k, s) in names {
        put_str(buf, *k, s);
    }
}

/// A tag as a `KeyStringValuePair` in `SpanObject.tags`.
fn put_tag(buf: &mut BytesMut, key: &str, value: &str) {
    let len = str_field_len(key.len()) + str_field_len(value.len());
    buf.reserve(1 + varint_len(len as u64) + len);
    buf.put_u8(SPAN_TAGS);
    put_varint(buf, len as u64);
    put_str(buf, KV_KEY, key);
    put_str(buf, KV_VALUE, value);
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use http::{HeaderValue, Method};
    use prost::Message;
    use skywalking::proto::v3::{KeyStringValuePair, SegmentObject, SegmentReference, SpanObject};

    use super::*;
    use crate::export::test_support::{edge_attributes, sample_trace};
    use crate::trace::{AttrValue, Provider};

    /// The segment as the exporter built it before, from the skywalking crate's
    /// types: what the encoder's bytes must decode to.
    fn segment(t: &RequestTrace, service: &str, instance: &str) -> SegmentObject {
        let trace_id = t.trace_id.to_string();
        let has_entry = t.spans.iter().any(|s| s.kind == SpanKind::Server);
        let mut next_exit = 1;
        let mut spans = Vec::with_capacity(t.spans.len());
        for s in &t.spans {
            let (span_id, parent_span_id, span_type) = match s.kind {
                SpanKind::Server => (0, -1, SpanType::Entry),
                SpanKind::Client => {
                    let id = next_exit;
                    next_exit += 1;
                    (id, if has_entry { 0 } else { -1 }, SpanType::Exit)
                }
            };
            let refs = match (&t.sw_parent, s.kind) {
                (Some(p), SpanKind::Server) => vec![SegmentReference {
                    ref_type: RefType::CrossProcess as i32,
                    trace_id: trace_id.clone(),
                    parent_trace_segment_id: p.segment_id.clone(),
                    parent_span_id: p.span_id,
                    parent_service: p.service.clone(),
                    parent_service_instance: p.instance.clone(),
                    parent_endpoint: p.endpoint.clone(),
                    network_address_used_at_peer: p.address.clone(),
                }],
                _ => Vec::new(),
            };
            spans.push(SpanObject {
                span_id,
                parent_span_id,
                start_time: (unix_nanos(s.start) / 1_000_000) as i64,
                end_time: (unix_nanos(s.end) / 1_000_000) as i64,
                refs,
                operation_name: t.span_name(s).into_owned(),
                peer: s
                    .peer
                    .as_ref()
                    .map(crate::trace::socket_addr_text)
                    .unwrap_or_default(),
                span_type: span_type as i32,
                span_layer: SpanLayer::Http as i32,
                component_id: COMPONENT_ENVOY_PROXY,
                is_error: s.error,
                tags: {
                    let mut tags = Vec::with_capacity(10);
                    t.for_each_tag(s, |k, v| {
                        tags.push(KeyStringValuePair {
                            key: k.to_string(),
                            value: v.text().into_owned(),
                        })
                    });
                    tags
                },
                logs: Vec::new(),
                skip_analysis: false,
            });
        }
        SegmentObject {
            trace_id,
            trace_segment_id: t.segment_id.clone(),
            spans,
            service: service.to_string(),
            service_instance: instance.to_string(),
            is_size_limited: false,
        }
    }

    /// Each segment encoded, then decoded by prost: equal to the old segment, and
    /// byte for byte what prost writes for it (same field order, defaults left out,
    /// minimal lengths). Returns the segments' sizes.
    fn assert_as_prost(
        enc: &mut Encoder,
        service: &str,
        instance: &str,
        batch: &[RequestTrace],
    ) -> Vec<usize> {
        let batch: Vec<_> = batch.iter().cloned().map(Arc::new).collect();
        let got = enc.segments(&batch);
        assert_eq!(got.len(), batch.len());
        got.iter()
            .zip(&batch)
            .map(|(got, t)| {
                let want = segment(t, service, instance);
                assert_eq!(SegmentObject::decode(got.clone()).unwrap(), want);
                assert!(*got == want.encode_to_vec(), "bytes differ from prost's");
                got.len()
            })
            .collect()
    }

    fn parent(span_id: i32) -> SwParent {
        SwParent {
            segment_id: "a4ec.80.1621838110455".into(),
            span_id,
            service: "onemore-a".into(),
            instance: "inst-a@10.0.0.3".into(),
            endpoint: "/onemore-a/get".into(),
            address: "192.168.1.102:80".into(),
        }
    }

    /// Requests as the gateway records them (with facts, in every vocabulary) and as
    /// the demo and tests do (named and tagged span by span), in the shapes that
    /// change what is written.
    fn traces() -> Vec<RequestTrace> {
        let providers = [
            Some(Provider::SkyWalking),
            Some(Provider::Zipkin),
            Some(Provider::OpenTelemetry),
            None,
        ];
        let mut out = Vec::new();
        for (i, p) in providers.into_iter().enumerate() {
            // An `sw8` parent; three exits, one failed, one to an IPv6 upstream.
            let mut t = sample_trace(i as u64, 3);
            t.http = Some(crate::trace::http_tags::sample_facts(p));
            t.trace_id = TraceId::Text("a4ec.79.1621838110455".into());
            t.sw_parent = Some(parent(3));
            t.spans[1].status = 502;
            t.spans[1].error = true;
            t.spans[2].peer = Some("[2001:db8::7]:8443".parse().unwrap());
            out.push(t);

            // A new trace: no parent, no answer, IPv6 downstream and upstream with a
            // scope id, escapes and non-ASCII text everywhere, no error.
            let mut t = sample_trace(10 + i as u64, 1);
            let url = "https://h\u{e9}.example/caf\u{e9}/\"q\"\\x?\u{1f600}=\n\t";
            let mut f = crate::trace::http_tags::sample_facts(p);
            f.method = Method::from_bytes(b"PURGE").unwrap();
            f.path = url.find("/caf").unwrap()..url.find('?').unwrap();
            f.url = url.into();
            f.status = 0;
            f.flags = Cow::Owned("UF,URX".into());
            f.cluster = None;
            f.route = (i % 2 == 0).then(|| "/caf\u{e9}/{id}\u{0}".into());
            // Not text: left out.
            f.request_id = (i % 2 == 1).then(|| HeaderValue::from_bytes(b"r\xe9q").unwrap());
            f.peer = Some("[fe80::1%2]:5000".parse().unwrap());
            t.http = Some(f);
            t.spans[0].error = false;
            t.spans[0].peer = Some("[::1]:0".parse().unwrap());
            t.spans[1].peer = Some("[fe80::1:2%4294967295]:65535".parse().unwrap());
            out.push(t);
        }

        // No facts: own names and tags of every kind; a parent whose strings are all
        // empty and whose span id is 0 (all left out: an empty ref), no peers.
        let mut t = sample_trace(20, 2);
        t.trace_id = TraceId::Hex(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        t.segment_id.clear();
        t.sw_parent = Some(SwParent {
            segment_id: String::new(),
            span_id: 0,
            service: String::new(),
            instance: String::new(),
            endpoint: String::new(),
            address: String::new(),
        });
        t.spans[0].name = "GET /a\"b\\c\n\u{1}\u{e9}\u{1f600}".into();
        t.spans[0].peer = None;
        t.spans[0].attributes = edge_attributes();
        t.spans[0]
            .attributes
            .push(("".into(), AttrValue::Str("".into())));
        // A span under 128 bytes (one byte of length), a nameless one, times at or
        // before the epoch (0, left out).
        t.spans[1].attributes.clear();
        t.spans[1].name.clear();
        t.spans[1].peer = None;
        t.spans[2].start = std::time::UNIX_EPOCH - Duration::from_secs(1);
        t.spans[2].end = std::time::UNIX_EPOCH;
        out.push(t);

        // Exits without an entry span (roots, parent -1); a negative parent span id
        // and a ref over 128 bytes on the entry span of another; a span over 16 KiB
        // (three bytes of length).
        let mut t = sample_trace(21, 2);
        t.sw_parent = Some(parent(-7));
        t.spans.remove(0);
        out.push(t);
        let mut t = sample_trace(22, 0);
        t.trace_id = TraceId::Text("".into());
        let mut p = parent(i32::MAX);
        p.endpoint = "/\u{e9}".repeat(100);
        t.sw_parent = Some(p);
        t.spans[0].attributes.push((
            "big".into(),
            AttrValue::Shared("\u{e9}".repeat(10_000).into()),
        ));
        out.push(t);
        let mut t = sample_trace(23, 1);
        t.sw_parent = Some(parent(i32::MIN));
        out.push(t);
        out
    }

    #[test]
    fn segments_are_prosts_encoding_of_the_old_segment() {
        let all = traces();
        let service = "higress-gateway.higress-system";
        let mut enc = Encoder::new(service, "gw-0");
        // Each alone, none, then all in one batch, then a batch bigger than the last
        // (the buffer grows mid-batch).
        for t in &all {
            assert_as_prost(&mut enc, service, "gw-0", std::slice::from_ref(t));
        }
        assert!(assert_as_prost(&mut enc, service, "gw-0", &[]).is_empty());
        let sizes = assert_as_prost(&mut enc, service, "gw-0", &all);
        assert!(sizes.iter().any(|&n| n > 1 << 14));
        let big: Vec<_> = (0..20).flat_map(|_| all.iter().cloned()).collect();
        assert_as_prost(&mut enc, service, "gw-0", &big);

        // Empty and escaped names of the gateway's own.
        for (service, instance) in [("caf\u{e9} \"gw\"\n", ""), ("", "gw-\u{1f600}")] {
            let mut enc = Encoder::new(service, instance);
            assert_as_prost(&mut enc, service, instance, &all);
        }
    }

    #[test]
    fn exit_spans_without_an_entry_span_are_roots() {
        let mut t = sample_trace(1, 1);
        t.spans.remove(0);
        let seg = &Encoder::new("s", "i").segments(&[Arc::new(t)])[0];
        let seg = SegmentObject::decode(seg.clone()).unwrap();
        assert_eq!((seg.spans[0].span_id, seg.spans[0].parent_span_id), (1, -1));
    }

    #[test]
    fn segments_handed_out_are_not_touched_by_the_next_batch() {
        let mut enc = Encoder::new("svc", "gw-0");
        let all: Vec<_> = traces().into_iter().map(Arc::new).collect();
        let first = enc.segments(&all[..3]);
        let copy: Vec<_> = first.iter().map(|b| b.to_vec()).collect();
        let second = enc.segments(&all[3..]);
        assert_eq!(first, copy);
        for (b, t) in second.into_iter().zip(&all[3..]) {
            assert_eq!(SegmentObject::decode(b).unwrap(), segment(t, "svc", "gw-0"));
        }
        drop(first);
        // Its room taken back, the buffer writes the same segments again.
        assert_eq!(enc.segments(&all[..3]), copy);
    }
}
