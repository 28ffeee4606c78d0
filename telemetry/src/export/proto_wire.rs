//! Protobuf wire-format writing shared by the exporters that encode their messages
//! straight into a byte buffer (OTLP's `otlp::wire`, SkyWalking's
//! `skywalking::wire`) instead of building prost's message trees: field keys,
//! varints, length-delimited fields whose length is only known once written, and tag
//! values as text without a heap allocation.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, BytesMut};

use crate::trace::{ipv4_text, Tag};

pub(crate) const VARINT: u8 = 0;
pub(crate) const I64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const I32: u8 = 5;

/// A field's key, for fields 1 to 15 (one byte).
pub(crate) const fn key(field: u8, wire_type: u8) -> u8 {
    field << 3 | wire_type
}

/// A field's key, for fields 16 to 2047 (two bytes).
pub(crate) const fn key2(field: u16, wire_type: u8) -> [u8; 2] {
    let k = field << 3 | wire_type as u16;
    [k as u8 & 0x7f | 0x80, (k >> 7) as u8]
}

/// A string field, left out when empty (proto3's default).
pub(crate) fn put_str(buf: &mut BytesMut, key: u8, s: &str) {
    if s.is_empty() {
        return;
    }
    buf.put_u8(key);
    put_varint(buf, s.len() as u64);
    buf.put_slice(s.as_bytes());
}

/// [`put_str`] of the pieces of `parts` as one string, without joining them first.
pub(crate) fn put_str_parts(buf: &mut BytesMut, key: u8, parts: &[&str]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len == 0 {
        return;
    }
    buf.put_u8(key);
    put_varint(buf, len as u64);
    for p in parts {
        buf.put_slice(p.as_bytes());
    }
}

/// The bytes [`put_str`] writes for a string of `len` bytes under a one-byte key.
pub(crate) fn str_field_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + varint_len(len as u64) + len
    }
}

/// A varint field (uint32/64, int64, enum, bool; an int32 sign-extended to 64 bits
/// first), left out when 0 (proto3's default).
pub(crate) fn put_varint_field(buf: &mut BytesMut, key: u8, v: u64) {
    if v != 0 {
        buf.put_u8(key);
        put_varint(buf, v);
    }
}

/// A fixed64 field, left out when 0 (proto3's default).
pub(crate) fn put_fixed64(buf: &mut BytesMut, key: u8, v: u64) {
    if v != 0 {
        buf.put_u8(key);
        buf.put_u64_le(v);
    }
}

pub(crate) fn varint_len(v: u64) -> usize {
    // Seven bits a byte; 0 takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// `v` as a varint at the start of `out`; returns its length.
pub(crate) fn varint(mut v: u64, out: &mut [u8; 10]) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        out[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

pub(crate) fn put_varint(buf: &mut BytesMut, v: u64) {
    let mut b = [0; 10];
    let n = varint(v, &mut b);
    buf.put_slice(&b[..n]);
}

/// A length-delimited message being written: where its length goes, and the bytes
/// set aside for it.
pub(crate) struct Open {
    at: usize,
    room: usize,
}

/// Set aside `room` bytes for the length of the message about to be written: the
/// varint size it most likely needs, so that usually nothing moves.
pub(crate) fn open(buf: &mut BytesMut, room: usize) -> Open {
    let at = buf.len();
    buf.put_bytes(0, room);
    Open { at, room }
}

/// Write the length of the message written since `open` in front of it, as a
/// minimal varint; the message moves when that takes more or fewer bytes than were
/// set aside (no padded varints: not every decoder takes them).
pub(crate) fn close(buf: &mut BytesMut, o: Open) {
    let body = o.at + o.room;
    let len = buf.len() - body;
    let mut v = [0; 10];
    let n = varint(len as u64, &mut v);
    if n != o.room {
        let end = buf.len();
        if n > o.room {
            buf.resize(end + n - o.room, 0);
        }
        buf.copy_within(body..end, o.at + n);
        buf.truncate(o.at + n + len);
    }
    buf[o.at..o.at + n].copy_from_slice(&v[..n]);
}

/// `f` called with `v`'s text, as [`Tag::text`] gives it, made on the stack: only an
/// address too long for the stack buffer (none is) would allocate.
pub(crate) fn with_text<R>(v: Tag<'_>, f: impl FnOnce(&str) -> R) -> R {
    match v {
        Tag::Lit(s) | Tag::Text(s) => f(s),
        Tag::Int(i) => f(itoa::Buffer::new().format(i)),
        Tag::Bool(b) => f(if b { "true" } else { "false" }),
        Tag::Addr(_) | Tag::Ip(_) => {
            let mut text = StackText::default();
            match text.address(v) {
                Some(s) => f(s),
                None => f(&v.text()),
            }
        }
    }
}

/// An address's text, as [`Tag::text`] gives it, made on the stack.
struct StackText {
    /// The longest, `[v6%scope]:port`, takes 58 bytes.
    buf: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl StackText {
    /// The text of an address tag (`None`: not an address, or it did not fit).
    fn address(&mut self, v: Tag<'_>) -> Option<&str> {
        // IPv4 without `fmt`, as `Tag::text` writes it (see `push_ipv4`).
        let written = match v {
            Tag::Addr(SocketAddr::V4(a)) => self
                .write_str(ipv4_text(&mut [0; 15], *a.ip()))
                .and_then(|()| self.write_char(':'))
                .and_then(|()| self.write_str(itoa::Buffer::new().format(a.port()))),
            Tag::Ip(IpAddr::V4(ip)) => self.write_str(ipv4_text(&mut [0; 15], ip)),
            Tag::Addr(a) => write!(self, "{a}"),
            Tag::Ip(ip) => write!(self, "{ip}"),
            _ => Err(fmt::Error),
        };
        written.ok()?;
        // Only whole `str`s were copied in.
        std::str::from_utf8(&self.buf[..self.len]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_minimal_varints_whatever_room_was_set_aside() {
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152] {
            for room in 1..=3 {
                let mut buf = BytesMut::new();
                buf.put_slice(b"ab");
                let o = open(&mut buf, room);
                buf.put_bytes(7, len);
                close(&mut buf, o);
                let mut want = b"ab".to_vec();
                prost::encoding::encode_varint(len as u64, &mut want);
                want.resize(want.len() + len, 7);
                assert!(buf[..] == want[..], "len {len}, room {room}");
                assert_eq!(varint_len(len as u64), want.len() - 2 - len);
            }
        }
        assert_eq!(varint_len(u64::MAX), 10);
        // An int32 of -1, sign-extended as prost writes it: ten bytes.
        assert_eq!(varint_len(-1i32 as i64 as u64), 10);
        let mut b = [0; 10];
        assert_eq!(varint(u64::from(16u8 << 3 | I32), &mut b), 2);
        assert_eq!(b[..2], key2(16, I32));
        assert_eq!(str_field_len(0), 0);
        assert_eq!(str_field_len(127), 129);
        assert_eq!(str_field_len(128), 131);
    }

    #[test]
    fn tag_text_is_tags_own_text() {
        let tags = [
            Tag::Lit("lit"),
            Tag::Text(""),
            Tag::Text("caf\u{e9} \"q\"\n"),
            Tag::Int(0),
            Tag::Int(-1),
            Tag::Int(i64::MIN),
            Tag::Int(i64::MAX),
            Tag::Bool(true),
            Tag::Bool(false),
            Tag::Addr("10.0.0.1:80".parse().unwrap()),
            Tag::Addr("255.255.255.255:65535".parse().unwrap()),
            Tag::Addr("[::1]:9000".parse().unwrap()),
            Tag::Addr("[fe80::1:2%4294967295]:65535".parse().unwrap()),
            Tag::Ip("192.168.100.7".parse().unwrap()),
            Tag::Ip("::ffff:10.1.2.3".parse().unwrap()),
            Tag::Ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()),
        ];
        for t in tags {
            assert_eq!(with_text(t, str::to_owned), t.text(), "{t:?}");
        }
    }
}
