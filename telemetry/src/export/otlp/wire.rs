//! The export request written straight in protobuf wire format, into one buffer kept
//! from batch to batch: the bytes prost gives for the `ExportTraceServiceRequest` the
//! exporter used to build (same fields, in tag order as prost writes them, proto3
//! defaults left out, minimal varint lengths), without the message tree. That tree
//! cost a `Vec` per id and a `String` per name, trace state, attribute key and value,
//! for every span, all freed again once encoded.
//!
//! Field numbers are opentelemetry-proto 0.29's (`trace.proto`, `common.proto`,
//! `resource.proto`, `trace_service.proto`); the tests hold the bytes to prost's
//! encoding of the same request.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use opentelemetry_proto::tonic::trace::v1::{span, status};

use super::super::proto_wire::{
    close, key, key2, open, put_fixed64, put_str, put_str_parts, put_varint, varint_len, with_text,
    I32, I64, LEN, VARINT,
};
use super::super::{trace_id_u128, unix_nanos};
use crate::trace::{RequestTrace, SpanKind, Tag};

/// W3C trace flags `sampled`; only sampled requests are exported.
const FLAG_SAMPLED: u32 = 0x01;
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` / `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`:
/// whether the parent is known to be remote (the server span's caller) or local.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

// ExportTraceServiceRequest.
const REQUEST_RESOURCE_SPANS: u8 = key(1, LEN);
// ResourceSpans.
const RESOURCE_SPANS_RESOURCE: u8 = key(1, LEN);
const RESOURCE_SPANS_SCOPE_SPANS: u8 = key(2, LEN);
// Resource.
const RESOURCE_ATTRIBUTES: u8 = key(1, LEN);
// ScopeSpans.
const SCOPE_SPANS_SCOPE: u8 = key(1, LEN);
const SCOPE_SPANS_SPANS: u8 = key(2, LEN);
// InstrumentationScope.
const SCOPE_NAME: u8 = key(1, LEN);
const SCOPE_VERSION: u8 = key(2, LEN);
// Span.
const SPAN_TRACE_ID: u8 = key(1, LEN);
const SPAN_SPAN_ID: u8 = key(2, LEN);
const SPAN_TRACE_STATE: u8 = key(3, LEN);
const SPAN_PARENT_SPAN_ID: u8 = key(4, LEN);
const SPAN_NAME: u8 = key(5, LEN);
const SPAN_KIND: u8 = key(6, VARINT);
const SPAN_START: u8 = key(7, I64);
const SPAN_END: u8 = key(8, I64);
const SPAN_ATTRIBUTES: u8 = key(9, LEN);
const SPAN_STATUS: u8 = key(15, LEN);
const SPAN_FLAGS: [u8; 2] = key2(16, I32);
// Status (its `message` stays empty, so left out).
const STATUS_CODE: u8 = key(3, VARINT);
// KeyValue.
const KV_KEY: u8 = key(1, LEN);
const KV_VALUE: u8 = key(2, LEN);
// AnyValue (a oneof: the field set is written even when its value is the default).
const ANY_STRING: u8 = key(1, LEN);
const ANY_BOOL: u8 = key(2, VARINT);
const ANY_INT: u8 = key(3, VARINT);

// Enum values below 128: one varint byte each.
const KIND_SERVER: u8 = span::SpanKind::Server as u8;
const KIND_CLIENT: u8 = span::SpanKind::Client as u8;
const STATUS_ERROR: u8 = status::StatusCode::Error as u8;
const _: () = assert!(
    (span::SpanKind::Server as i32) < 0x80
        && (span::SpanKind::Client as i32) < 0x80
        && (status::StatusCode::Error as i32) < 0x80
);

/// The scope the gateway's spans are reported under.
const SCOPE: &str = "higress-gateway";

/// Writes export requests. What every request repeats is encoded once.
pub(crate) struct Encoder {
    /// `ResourceSpans.resource`, key and length included.
    resource: Vec<u8>,
    /// `ScopeSpans.scope`, key and length included.
    scope: Vec<u8>,
    /// Where requests are written. The bytes handed out share its allocation, which
    /// it takes back for a later batch once they are dropped (after the send).
    buf: BytesMut,
    /// The last request's size: the next one starts with that much room.
    last_len: usize,
}

impl Encoder {
    pub(crate) fn new(service: &str, instance: &str) -> Self {
        let mut b = BytesMut::new();
        b.put_u8(RESOURCE_SPANS_RESOURCE);
        let resource = open(&mut b, 1);
        for (k, v) in [
            ("service.name", service),
            ("service.instance.id", instance),
            ("host.name", instance),
        ] {
            put_attr(&mut b, RESOURCE_ATTRIBUTES, k, Tag::Text(v));
        }
        close(&mut b, resource);
        let resource = b.split().to_vec();

        b.put_u8(SCOPE_SPANS_SCOPE);
        let scope = open(&mut b, 1);
        put_str(&mut b, SCOPE_NAME, SCOPE);
        put_str(&mut b, SCOPE_VERSION, env!("CARGO_PKG_VERSION"));
        close(&mut b, scope);
        Encoder {
            resource,
            scope: b.to_vec(),
            buf: BytesMut::new(),
            last_len: 4096,
        }
    }

    /// One `ResourceSpans` (the gateway) with one scope holding every span of `batch`.
    pub(crate) fn request(&mut self, batch: &[Arc<RequestTrace>]) -> Bytes {
        let buf = &mut self.buf;
        buf.clear();
        buf.reserve(self.last_len);
        buf.put_u8(REQUEST_RESOURCE_SPANS);
        // Three bytes of length: batches of 16 KiB to 2 MiB, as a loaded gateway's are.
        let resource_spans = open(buf, 3);
        buf.put_slice(&self.resource);
        buf.put_u8(RESOURCE_SPANS_SCOPE_SPANS);
        let scope_spans = open(buf, 3);
        buf.put_slice(&self.scope);
        for t in batch {
            put_spans(buf, t);
        }
        close(buf, scope_spans);
        close(buf, resource_spans);
        self.last_len = buf.len();
        buf.split().freeze()
    }
}

/// Each span of `t` as a `ScopeSpans.spans` entry.
fn put_spans(buf: &mut BytesMut, t: &RequestTrace) {
    let trace_id = trace_id_u128(&t.trace_id).to_be_bytes();
    let trace_state = t.tracestate.as_deref().unwrap_or_default();
    for s in &t.spans {
        buf.put_u8(SCOPE_SPANS_SPANS);
        // Two bytes of length: a span with its tags is 128 bytes to 16 KiB.
        let at = open(buf, 2);
        buf.put_slice(&[SPAN_TRACE_ID, 16]);
        buf.put_slice(&trace_id);
        buf.put_slice(&[SPAN_SPAN_ID, 8]);
        buf.put_slice(&s.span_id.0.to_be_bytes());
        put_str(buf, SPAN_TRACE_STATE, trace_state);
        if let Some(p) = s.parent_span_id {
            buf.put_slice(&[SPAN_PARENT_SPAN_ID, 8]);
            buf.put_slice(&p.0.to_be_bytes());
        }
        put_str_parts(buf, SPAN_NAME, &t.span_name_parts(s));
        let (kind, remote_parent) = match s.kind {
            SpanKind::Server => (KIND_SERVER, s.parent_span_id.is_some()),
            SpanKind::Client => (KIND_CLIENT, false),
        };
        buf.put_slice(&[SPAN_KIND, kind]);
        put_fixed64(buf, SPAN_START, unix_nanos(s.start));
        put_fixed64(buf, SPAN_END, unix_nanos(s.end));
        t.for_each_tag(s, |k, v| put_attr(buf, SPAN_ATTRIBUTES, k, v));
        if s.error {
            buf.put_slice(&[SPAN_STATUS, 2, STATUS_CODE, STATUS_ERROR]);
        }
        let mut flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
        if remote_parent {
            flags |= FLAG_IS_REMOTE;
        }
        buf.put_slice(&SPAN_FLAGS);
        buf.put_u32_le(flags);
        close(buf, at);
    }
}

/// An `AnyValue`.
#[derive(Clone, Copy)]
enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

/// A tag as a `KeyValue` in field `field` (the resource's or a span's attributes).
fn put_attr(buf: &mut BytesMut, field: u8, key: &str, v: Tag<'_>) {
    let value = match v {
        Tag::Lit(s) | Tag::Text(s) => Value::Str(s),
        Tag::Int(i) => Value::Int(i),
        Tag::Bool(b) => Value::Bool(b),
        Tag::Addr(_) | Tag::Ip(_) => {
            return with_text(v, |s| put_kv(buf, field, key, Value::Str(s)));
        }
    };
    put_kv(buf, field, key, value);
}

fn put_kv(buf: &mut BytesMut, field: u8, key: &str, value: Value<'_>) {
    // The lengths are known before writing, so nothing is moved afterwards.
    let any_len = 1 + match value {
        Value::Str(s) => varint_len(s.len() as u64) + s.len(),
        Value::Int(i) => varint_len(i as u64),
        Value::Bool(_) => 1,
    };
    let key_len = if key.is_empty() {
        0
    } else {
        1 + varint_len(key.len() as u64) + key.len()
    };
    let kv_len = key_len + 1 + varint_len(any_len as u64) + any_len;
    buf.reserve(1 + varint_len(kv_len as u64) + kv_len);
    buf.put_u8(field);
    put_varint(buf, kv_len as u64);
    put_str(buf, KV_KEY, key);
    buf.put_u8(KV_VALUE);
    put_varint(buf, any_len as u64);
    match value {
        Value::Str(s) => {
            buf.put_u8(ANY_STRING);
            put_varint(buf, s.len() as u64);
            buf.put_slice(s.as_bytes());
        }
        // int64: negative numbers as their two's complement, ten bytes.
        Value::Int(i) => {
            buf.put_u8(ANY_INT);
            put_varint(buf, i as u64);
        }
        Value::Bool(b) => buf.put_slice(&[ANY_BOOL, b.into()]),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use http::{HeaderValue, Method};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    use super::*;
    use crate::export::test_support::{edge_attributes, sample_trace, t0};
    use crate::trace::{AttrValue, HttpFacts, Provider, SpanId, TraceId};

    // The request as the exporter built it before, from prost's types: what the
    // encoder's bytes must decode to.

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(v) }),
        }
    }

    fn resource(service: &str, instance: &str) -> Resource {
        Resource {
            attributes: vec![
                kv(
                    "service.name",
                    any_value::Value::StringValue(service.into()),
                ),
                kv(
                    "service.instance.id",
                    any_value::Value::StringValue(instance.into()),
                ),
                kv("host.name", any_value::Value::StringValue(instance.into())),
            ],
            ..Default::default()
        }
    }

    fn request(resource: &Resource, batch: &[Arc<RequestTrace>]) -> ExportTraceServiceRequest {
        let spans = batch.iter().flat_map(|t| spans(t)).collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "higress-gateway".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn spans(t: &RequestTrace) -> impl Iterator<Item = Span> + '_ {
        let trace_id = trace_id_u128(&t.trace_id).to_be_bytes().to_vec();
        let trace_state = t.tracestate.clone().unwrap_or_default();
        t.spans.iter().map(move |s| {
            let (kind, remote_parent) = match s.kind {
                SpanKind::Server => (span::SpanKind::Server, s.parent_span_id.is_some()),
                SpanKind::Client => (span::SpanKind::Client, false),
            };
            let mut flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
            if remote_parent {
                flags |= FLAG_IS_REMOTE;
            }
            Span {
                trace_id: trace_id.clone(),
                span_id: s.span_id.0.to_be_bytes().to_vec(),
                trace_state: trace_state.clone(),
                parent_span_id: s
                    .parent_span_id
                    .map(|p| p.0.to_be_bytes().to_vec())
                    .unwrap_or_default(),
                flags,
                name: t.span_name(s).into_owned(),
                kind: kind as i32,
                start_time_unix_nano: unix_nanos(s.start),
                end_time_unix_nano: unix_nanos(s.end),
                attributes: {
                    let mut a = Vec::with_capacity(12);
                    t.for_each_tag(s, |k, v| {
                        a.push(kv(
                            k,
                            match v {
                                Tag::Int(i) => any_value::Value::IntValue(i),
                                Tag::Bool(b) => any_value::Value::BoolValue(b),
                                text => any_value::Value::StringValue(text.text().into_owned()),
                            },
                        ))
                    });
                    a
                },
                status: s.error.then(|| Status {
                    code: status::StatusCode::Error as i32,
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
    }

    /// Encoded, then decoded by prost: equal to the old request, and byte for byte
    /// what prost writes for it (same field order, defaults left out, minimal
    /// lengths).
    /// Returns the request's size.
    fn assert_as_prost(
        enc: &mut Encoder,
        service: &str,
        instance: &str,
        batch: &[RequestTrace],
    ) -> usize {
        let batch: Vec<_> = batch.iter().cloned().map(Arc::new).collect();
        let got = enc.request(&batch);
        let want = request(&resource(service, instance), &batch);
        assert_eq!(
            ExportTraceServiceRequest::decode(got.clone()).unwrap(),
            want
        );
        assert!(got == want.encode_to_vec(), "bytes differ from prost's");
        got.len()
    }

    fn facts(provider: Option<Provider>) -> HttpFacts {
        crate::trace::http_tags::sample_facts(provider)
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
            // A W3C parent with tracestate; a plain client; an IPv6 client.
            let mut t = sample_trace(i as u64, 2);
            t.http = Some(facts(p));
            t.trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
            t.spans[0].parent_span_id = Some(SpanId(0x00f0_67aa_0ba9_02b7));
            t.tracestate = Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into());
            t.spans[1].status = 502;
            t.spans[1].error = true;
            t.spans[2].peer = Some("[2001:db8::7]:8443".parse().unwrap());
            out.push(t);

            // A new trace: no parent, no tracestate, no answer, IPv6 downstream and
            // upstream with a scope id, escapes and non-ASCII text everywhere.
            let mut t = sample_trace(10 + i as u64, 1);
            let url = "https://h\u{e9}.example/caf\u{e9}/\"q\"\\x?\u{1f600}=\n\t";
            let mut f = facts(p);
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
            t.spans[1].peer = Some("[fe80::1:2%4294967295]:65535".parse().unwrap());
            t.tracestate = Some(String::new());
            out.push(t);
        }

        // No facts: own names and attributes of every kind.
        let mut t = sample_trace(20, 2);
        t.trace_id = TraceId::Text("a4ec.79.1621838110455".into());
        t.tracestate = Some("k=v".into());
        t.spans[0].name = "GET /a\"b\\c\n\u{1}\u{e9}\u{1f600}".into();
        t.spans[0].attributes = edge_attributes();
        // A span under 128 bytes (one byte of length), a nameless one, times at or
        // before the epoch (0, left out).
        t.spans[1].attributes.clear();
        t.spans[1].name.clear();
        t.spans[2].start = std::time::UNIX_EPOCH - Duration::from_secs(1);
        t.spans[2].end = std::time::UNIX_EPOCH;
        out.push(t);

        // A span over 16 KiB (three bytes of length).
        let mut t = sample_trace(21, 0);
        t.trace_id = TraceId::Hex(0);
        t.spans[0].attributes.push((
            "big".into(),
            AttrValue::Shared("\u{e9}".repeat(10_000).into()),
        ));
        out.push(t);
        out
    }

    #[test]
    fn requests_are_prosts_encoding_of_the_old_request() {
        let all = traces();
        let mut enc = Encoder::new("higress-gateway.higress-system", "gw-0");
        let service = "higress-gateway.higress-system";
        // Each alone, and none: small requests, whose lengths take fewer bytes than
        // set aside. Then all in one.
        for t in &all {
            assert_as_prost(&mut enc, service, "gw-0", std::slice::from_ref(t));
        }
        assert!(assert_as_prost(&mut enc, service, "gw-0", &[]) < 1 << 14);
        assert!(assert_as_prost(&mut enc, service, "gw-0", &all) > 1 << 14);
        // Over 2 MiB: four bytes of length, more than set aside.
        let big: Vec<_> = (0..100).flat_map(|_| all.iter().cloned()).collect();
        assert!(assert_as_prost(&mut enc, service, "gw-0", &big) > 1 << 21);

        let (service, instance) = ("caf\u{e9} \"gw\"\n", "");
        let mut enc = Encoder::new(service, instance);
        assert_as_prost(&mut enc, service, instance, &all[..2]);
    }

    #[test]
    fn a_request_handed_out_is_not_touched_by_the_next() {
        let mut enc = Encoder::new("svc", "gw-0");
        let all: Vec<_> = traces().into_iter().map(Arc::new).collect();
        let first = enc.request(&all[..3]);
        let copy = first.to_vec();
        let second = enc.request(&all[3..]);
        assert_eq!(first, copy);
        assert_eq!(
            ExportTraceServiceRequest::decode(second).unwrap(),
            request(&resource("svc", "gw-0"), &all[3..])
        );
        drop(first);
        // Its room taken back, the buffer writes the same request again.
        assert_eq!(enc.request(&all[..3]), copy);
    }

    #[test]
    fn a_skywalking_text_trace_id_maps_to_a_stable_128_bit_id() {
        let mut t = sample_trace(1, 1);
        t.trace_id = TraceId::Text("a4ec.79.1621838110455".into());
        let batch = [Arc::new(t)];
        let mut enc = Encoder::new("svc", "gw-0");
        let decode = |b: Bytes| {
            let req = ExportTraceServiceRequest::decode(b).unwrap();
            req.resource_spans[0].scope_spans[0].spans.clone()
        };
        let a = decode(enc.request(&batch));
        let b = decode(enc.request(&batch));
        assert_eq!(a[0].trace_id.len(), 16);
        assert_eq!(a[0].trace_id, b[0].trace_id);
        assert_eq!(a[0].trace_id, a[1].trace_id);
        assert_ne!(a[0].trace_id, [0u8; 16]);
        assert_eq!(a[0].start_time_unix_nano, unix_nanos(t0()));
    }
}
