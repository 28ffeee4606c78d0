//! RESP2, the Redis wire protocol, as plain functions: commands out (an array of bulk
//! strings, what `redis-cli` and every client send) and replies in, either parsed into a
//! [`Reply`] or only measured ([`reply_len`]) when the raw bytes are what is wanted (the
//! Wasm host hands a plugin the raw bytes of one reply).
//!
//! Parsing is incremental: `Ok(None)` means "not all of it has arrived yet". Nesting,
//! line lengths, bulk sizes and array lengths are bounded, so a broken or hostile
//! server cannot make the gateway recurse deeply or buffer without end.

use bytes::Bytes;

/// Arrays nested deeper than this are refused (Redis itself nests a few levels at most).
pub const MAX_DEPTH: usize = 32;
/// The longest simple string, error or integer line, CRLF excluded.
pub const MAX_LINE: usize = 64 * 1024;
/// The largest bulk string (Redis's own `proto-max-bulk-len` is 512 MiB; a gateway that
/// keeps counters has no use for more than this).
pub const MAX_BULK: usize = 64 * 1024 * 1024;
/// The most elements of one array.
pub const MAX_ARRAY: usize = 1024 * 1024;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(Bytes),
    /// `-ERR ...`: the whole line after `-`.
    Error(Bytes),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`; `None` is the null bulk string `$-1`.
    Bulk(Option<Bytes>),
    /// `*2\r\n...`; `None` is the null array `*-1`.
    Array(Option<Vec<Reply>>),
}

/// Why bytes are not RESP2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("unknown RESP type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("line not terminated by CRLF")]
    BadLineEnd,
    #[error("bad length or integer {0:?}")]
    BadInteger(String),
    #[error("bulk string of {0} bytes exceeds {MAX_BULK}")]
    BulkTooLarge(i64),
    #[error("array of {0} elements exceeds {MAX_ARRAY}")]
    ArrayTooLarge(i64),
    #[error("arrays nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("bulk string not followed by CRLF")]
    BadBulkEnd,
}

/// `args` as a RESP array of bulk strings: `*<n>\r\n` then `$<len>\r\n<arg>\r\n` each.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let size = 16 + args.iter().map(|a| a.len() + 16).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    encode_command_into(args, &mut out);
    out
}

/// [`encode_command`] appending to `out`, for a caller that reuses a buffer.
pub fn encode_command_into(args: &[&[u8]], out: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(num.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(num.format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The length of the first complete reply in `buf`, without building it; `Ok(None)` when
/// `buf` holds only part of one.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, RespError> {
    measure(buf, 0, 0)
}

/// The first complete reply in `buf` and how many bytes it took; `Ok(None)` when `buf`
/// holds only part of one.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    // Measuring first means a partial reply allocates nothing however often it is retried.
    let Some(len) = reply_len(buf)? else {
        return Ok(None);
    };
    let (reply, used) = build(buf, 0)?;
    debug_assert_eq!(used, len);
    Ok(Some((reply, used)))
}

/// The line starting at `at` (without CRLF) and the offset after its CRLF.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = &buf[at..];
    // A line of MAX_LINE bytes and its CRLF: nothing past that needs looking at.
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        // A bare LF is not RESP; refusing it early avoids waiting for a CR that a
        // confused peer will never send.
        Some(i) if window[i] == b'\n' => Err(RespError::BadLineEnd),
        Some(cr) if cr > MAX_LINE => Err(RespError::LineTooLong),
        Some(cr) => match window.get(cr + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((&rest[..cr], at + cr + 2))),
            Some(_) => Err(RespError::BadLineEnd),
        },
        None if window.len() > MAX_LINE => Err(RespError::LineTooLong),
        None => Ok(None),
    }
}

fn integer(text: &[u8]) -> Result<i64, RespError> {
    let bad = || RespError::BadInteger(String::from_utf8_lossy(text).into_owned());
    let (neg, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let mut v: i64 = 0;
    for &d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| {
                let d = i64::from(d - b'0');
                if neg {
                    v.checked_sub(d)
                } else {
                    v.checked_add(d)
                }
            })
            .ok_or_else(bad)?;
    }
    Ok(v)
}

/// A bulk or array length: -1 (null) or 0..=max.
fn length(text: &[u8], max: usize, too_large: fn(i64) -> RespError) -> Result<i64, RespError> {
    let n = integer(text)?;
    if n < -1 {
        return Err(RespError::BadInteger(
            String::from_utf8_lossy(text).into_owned(),
        ));
    }
    if n > max as i64 {
        return Err(too_large(n));
    }
    Ok(n)
}

fn measure(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, RespError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    // A stray byte is refused at once, not after waiting for a line end.
    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(RespError::UnknownType(kind));
    }
    let Some((text, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' => Ok(Some(next)),
        b':' => integer(text).map(|_| Some(next)),
        b'$' => {
            let n = length(text, MAX_BULK, RespError::BulkTooLarge)?;
            if n < 0 {
                return Ok(Some(next));
            }
            let end = next + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::BadBulkEnd);
            }
            Ok(Some(end + 2))
        }
        b'*' => {
            let n = length(text, MAX_ARRAY, RespError::ArrayTooLarge)?;
            if n > 0 && depth + 1 >= MAX_DEPTH {
                return Err(RespError::TooDeep);
            }
            let mut at = next;
            for _ in 0..n.max(0) {
                match measure(buf, at, depth + 1)? {
                    Some(end) => at = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(RespError::UnknownType(other)),
    }
}

/// Builds the reply at `at`, which [`measure`] has already found complete and valid.
fn build(buf: &[u8], at: usize) -> Result<(Reply, usize), RespError> {
    let kind = buf[at];
    let (text, next) = line(buf, at + 1)?.expect("measured complete");
    Ok(match kind {
        b'+' => (Reply::Simple(Bytes::copy_from_slice(text)), next),
        b'-' => (Reply::Error(Bytes::copy_from_slice(text)), next),
        b':' => (Reply::Integer(integer(text)?), next),
        b'$' => {
            let n = length(text, MAX_BULK, RespError::BulkTooLarge)?;
            if n < 0 {
                (Reply::Bulk(None), next)
            } else {
                let end = next + n as usize;
                (
                    Reply::Bulk(Some(Bytes::copy_from_slice(&buf[next..end]))),
                    end + 2,
                )
            }
        }
        b'*' => {
            let n = length(text, MAX_ARRAY, RespError::ArrayTooLarge)?;
            if n < 0 {
                (Reply::Array(None), next)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                let mut at = next;
                for _ in 0..n {
                    let (item, end) = build(buf, at)?;
                    items.push(item);
                    at = end;
                }
                (Reply::Array(Some(items)), at)
            }
        }
        other => return Err(RespError::UnknownType(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn encodes_an_array_of_bulk_strings() {
        assert_eq!(
            encode_command(&[b"SET", b"k", b""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
        assert_eq!(encode_command(&[]), b"*0\r\n");
        // Binary arguments go through untouched.
        let enc = encode_command(&[b"a\r\nb"]);
        assert_eq!(enc, b"*1\r\n$4\r\na\r\nb\r\n");
        assert_eq!(
            parse(&enc).unwrap().unwrap().0,
            Reply::Array(Some(vec![bulk("a\r\nb")]))
        );
    }

    #[test]
    fn parses_every_type() {
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", Reply::Simple(Bytes::from_static(b"OK"))),
            (b"-ERR no\r\n", Reply::Error(Bytes::from_static(b"ERR no"))),
            (b":-42\r\n", Reply::Integer(-42)),
            (b":9223372036854775807\r\n", Reply::Integer(i64::MAX)),
            (b":-9223372036854775808\r\n", Reply::Integer(i64::MIN)),
            (b"$3\r\nfoo\r\n", bulk("foo")),
            (b"$0\r\n\r\n", bulk("")),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"*-1\r\n", Reply::Array(None)),
            (b"*0\r\n", Reply::Array(Some(vec![]))),
            (
                b"*3\r\n:1\r\n*1\r\n$1\r\nx\r\n$-1\r\n",
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Array(Some(vec![bulk("x")])),
                    Reply::Bulk(None),
                ])),
            ),
        ];
        for (wire, want) in cases {
            let mut buf = wire.to_vec();
            buf.extend_from_slice(b"+next\r\n");
            assert_eq!(
                parse(&buf).unwrap(),
                Some((want.clone(), wire.len())),
                "{wire:?}"
            );
            assert_eq!(reply_len(&buf).unwrap(), Some(wire.len()));
        }
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let wire: &[u8] = b"*4\r\n+OK\r\n-E x\r\n$5\r\nhello\r\n*2\r\n:7\r\n$-1\r\n";
        for cut in 0..wire.len() {
            assert_eq!(reply_len(&wire[..cut]), Ok(None), "cut at {cut}");
            assert_eq!(parse(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(reply_len(wire), Ok(Some(wire.len())));
    }

    #[test]
    fn refuses_malformed_input() {
        let cases: &[(&[u8], RespError)] = &[
            (b"?x\r\n", RespError::UnknownType(b'?')),
            (b"x", RespError::UnknownType(b'x')),
            (b"*2\r\n:1\r\nHTTP/1.1", RespError::UnknownType(b'H')),
            (b"+OK\rX", RespError::BadLineEnd),
            (b"+O\nK", RespError::BadLineEnd),
            (b":12a\r\n", RespError::BadInteger("12a".into())),
            (b":\r\n", RespError::BadInteger("".into())),
            (
                b":99999999999999999999\r\n",
                RespError::BadInteger("99999999999999999999".into()),
            ),
            (b"$-2\r\n", RespError::BadInteger("-2".into())),
            (b"$3\r\nfooXY", RespError::BadBulkEnd),
            (b"$999999999\r\n", RespError::BulkTooLarge(999_999_999)),
            (b"*99999999\r\n", RespError::ArrayTooLarge(99_999_999)),
        ];
        for (wire, want) in cases {
            assert_eq!(reply_len(wire).as_ref(), Err(want), "{wire:?}");
            assert_eq!(parse(wire).map(|_| ()).as_ref(), Err(want), "{wire:?}");
        }
    }

    #[test]
    fn bounds_lines_and_depth() {
        let mut long = b"+".to_vec();
        long.resize(MAX_LINE + 3, b'a');
        assert_eq!(reply_len(&long), Err(RespError::LineTooLong));
        // Exactly MAX_LINE bytes still parse.
        let mut ok = b"+".to_vec();
        ok.resize(MAX_LINE + 1, b'a');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(reply_len(&ok), Ok(Some(ok.len())));

        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(reply_len(&deep), Err(RespError::TooDeep));
        let mut fine = b"*1\r\n".repeat(MAX_DEPTH - 1);
        fine.extend_from_slice(b":1\r\n");
        assert_eq!(reply_len(&fine), Ok(Some(fine.len())));
        assert!(parse(&fine).unwrap().is_some());
    }

    /// A cheap stand-in for the fuzz target in `fuzz/`: arbitrary bytes never panic, and
    /// whatever parses re-measures to the same length.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet = b"+-:$*\r\n0123456789-1ab";
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 8 * 8)) as usize + i) % alphabet.len()])
                .collect();
            let measured = reply_len(&bytes);
            let parsed = parse(&bytes);
            match (&measured, &parsed) {
                (Ok(Some(n)), Ok(Some((_, m)))) => assert_eq!(n, m),
                (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
    }
}
