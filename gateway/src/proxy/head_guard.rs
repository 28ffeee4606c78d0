//! Request heads Envoy's HTTP/1 codec refuses and Pingora's would take: a bare CR or LF
//! (line ends other than CRLF), `Content-Length` beside `Transfer-Encoding` (400), and
//! a `Transfer-Encoding` other than `chunked` (501, where Pingora answers 400). Each is
//! a way to make two HTTP parsers disagree on where a request ends (request
//! smuggling), so such a request is answered here and the connection closed before
//! Pingora parses it; nothing of it goes upstream.
//!
//! The check runs on the bytes of each new request head as they are read (`idle.rs`),
//! one pass over the head's line ends.

/// Why a head is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: bare CR or LF, or both lengths.
    BadRequest,
    /// 501: a transfer coding other than `chunked`.
    NotImplemented,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::NotImplemented => 501,
        }
    }

    /// The whole reply, connection closing.
    pub fn response(self) -> &'static [u8] {
        match self {
            Refusal::BadRequest => b"HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nBad Request",
            Refusal::NotImplemented => b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 15\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nNot Implemented",
        }
    }
}

/// What a read told about the head being received.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The head is not complete yet.
    Incomplete,
    Accept,
    Refuse(Refusal),
}

/// Longest head kept while waiting for its end; past it the check gives up and
/// Pingora's own limit applies.
const MAX_PENDING: usize = 128 * 1024;

/// The head bytes of one request seen so far, when it spans reads.
#[derive(Debug, Default)]
pub struct HeadBuffer {
    pending: Vec<u8>,
}

impl HeadBuffer {
    /// Take the next bytes read between requests.
    pub fn feed(&mut self, bytes: &[u8]) -> Verdict {
        if self.pending.is_empty() {
            let v = check(bytes);
            if v == Verdict::Incomplete && bytes.len() < MAX_PENDING {
                self.pending.extend_from_slice(bytes);
            }
            return v;
        }
        self.pending.extend_from_slice(bytes);
        let v = check(&self.pending);
        if v != Verdict::Incomplete || self.pending.len() >= MAX_PENDING {
            self.pending = Vec::new();
            if v == Verdict::Incomplete {
                return Verdict::Accept;
            }
        }
        v
    }
}

/// Check the head at the start of `b` (empty lines before it are skipped, as RFC 9112
/// allows); bytes after its blank line are not looked at.
pub fn check(b: &[u8]) -> Verdict {
    let mut start = 0;
    while b.get(start..start + 2) == Some(b"\r\n") {
        start += 2;
    }
    let (mut content_length, mut transfer_encoding) = (false, false);
    let mut te_ok = true;
    let mut line_start = start;
    let mut first = true;
    for nl in memchr::memchr_iter(b'\n', &b[start..]) {
        let nl = start + nl;
        if nl == line_start || b[nl - 1] != b'\r' {
            // A bare LF ends a line (and a bare LF on its own ends the head).
            return Verdict::Refuse(Refusal::BadRequest);
        }
        let line = &b[line_start..nl - 1];
        if memchr::memchr(b'\r', line).is_some() {
            return Verdict::Refuse(Refusal::BadRequest);
        }
        if line.is_empty() {
            return if content_length && transfer_encoding {
                Verdict::Refuse(Refusal::BadRequest)
            } else if !te_ok {
                Verdict::Refuse(Refusal::NotImplemented)
            } else {
                Verdict::Accept
            };
        }
        if !first {
            match line.first().map(u8::to_ascii_lowercase) {
                Some(b'c') if header_is(line, b"content-length") => content_length = true,
                Some(b't') if header_is(line, b"transfer-encoding") => {
                    transfer_encoding = true;
                    te_ok &= value_of(line).eq_ignore_ascii_case(b"chunked");
                }
                _ => {}
            }
        }
        first = false;
        line_start = nl + 1;
    }
    // A CR inside the unfinished last line is as bad.
    if memchr::memchr(b'\r', &b[line_start..]).is_some_and(|i| line_start + i + 1 < b.len()) {
        return Verdict::Refuse(Refusal::BadRequest);
    }
    Verdict::Incomplete
}

/// Whether `line` is header `name` (`name:`, case-insensitive).
fn header_is(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len()
        && line[name.len()] == b':'
        && line[..name.len()].eq_ignore_ascii_case(name)
}

fn value_of(line: &[u8]) -> &[u8] {
    let v = line.splitn(2, |&c| c == b':').nth(1).unwrap_or(&[]);
    v.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(head: &str) -> Option<u16> {
        match check(head.as_bytes()) {
            Verdict::Refuse(r) => Some(r.status()),
            Verdict::Accept => None,
            Verdict::Incomplete => panic!("incomplete: {head:?}"),
        }
    }

    #[test]
    fn well_formed_heads_pass() {
        for h in [
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nbody\nwith\rbare ends",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            "GET / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encoding-X: y\r\n\r\n",
        ] {
            assert_eq!(refused(h), None, "{h:?}");
        }
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for (h, status) in [
            ("GET / HTTP/1.1\nHost: x\n\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
            (
                "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n",
                400,
            ),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
                501,
            ),
        ] {
            assert_eq!(refused(h), Some(status), "{h:?}");
        }
    }

    #[test]
    fn a_head_over_several_reads_is_checked_once_complete() {
        let mut b = HeadBuffer::default();
        assert_eq!(
            b.feed(b"POST / HTTP/1.1\r\nTransfer-Enc"),
            Verdict::Incomplete
        );
        assert_eq!(b.feed(b"oding: gzip\r\n"), Verdict::Incomplete);
        assert_eq!(b.feed(b"\r\n"), Verdict::Refuse(Refusal::NotImplemented));
        let mut b = HeadBuffer::default();
        assert_eq!(b.feed(b"GET / HTTP/1.1\r\nHost: x\r"), Verdict::Incomplete);
        assert_eq!(b.feed(b"\n\r\n"), Verdict::Accept);
        assert!(b.pending.is_empty());
    }
}
