//! Any bytes as a Redis reply stream: the RESP2 parser never panics, measuring and
//! parsing agree on where a reply ends, and a parsed reply re-encoded parses the same.
//! Depth: re-encoding recurses at most resp::MAX_DEPTH levels.
#![no_main]

use gateway::redis::resp::{self, Reply};
use libfuzzer_sys::fuzz_target;

/// `reply` on the wire again (RESP2 has one encoding per value).
fn encode(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Simple(s) | Reply::Error(s) => {
            out.push(if matches!(reply, Reply::Simple(_)) { b'+' } else { b'-' });
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

fuzz_target!(|data: &[u8]| {
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
});
