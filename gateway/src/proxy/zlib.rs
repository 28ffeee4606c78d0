//! A streaming gzip encoder on zlib-ng with every knob Envoy's gzip compressor passes
//! to `deflateInit2` (level, window bits, memory level, strategy). `flate2`, the usual
//! binding, takes only the level and window bits, so this calls zlib-ng itself; the
//! `unsafe` is confined to this file.

use std::os::raw::{c_int, c_uint, c_void};

use libz_ng_sys as z;
use thiserror::Error;

use crate::model::filter_settings::DeflateParams;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeflateError {
    #[error("zlib deflateInit2 failed with code {0}")]
    Init(i32),
    #[error("zlib deflate failed with code {0}")]
    Deflate(i32),
}

/// One response's compressor. The stream lives in a `Box`: zlib keeps a pointer back to
/// it, so it must not move after init.
pub struct GzipEncoder {
    stream: Box<z::z_stream>,
    chunk_size: usize,
    finished: bool,
}

// The stream is owned by one encoder and touched through `&mut self` only (no `&self`
// method reads it), and zlib keeps no thread-local state: moving or sharing the
// encoder between threads is sound.
unsafe impl Send for GzipEncoder {}
unsafe impl Sync for GzipEncoder {}

unsafe extern "C" fn zalloc(_opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    // SAFETY: plain C allocation; zlib frees it with `zfree` below.
    unsafe { libc::calloc(items as usize, size as usize) }
}

unsafe extern "C" fn zfree(_opaque: *mut c_void, p: *mut c_void) {
    // SAFETY: `p` came from `zalloc` (or is null, which `free` accepts).
    unsafe { libc::free(p) }
}

impl GzipEncoder {
    pub fn new(p: &DeflateParams) -> Result<Self, DeflateError> {
        let mut stream = Box::new(z::z_stream {
            next_in: std::ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: std::ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: std::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        });
        // SAFETY: `stream` is a fully initialised z_stream at a stable address.
        let rc = unsafe {
            z::zng_deflateInit2(
                &mut *stream,
                p.level as c_int,
                z::Z_DEFLATED,
                (p.window_bits | 16) as c_int,
                p.mem_level as c_int,
                p.strategy as c_int,
            )
        };
        if rc != z::Z_OK {
            return Err(DeflateError::Init(rc));
        }
        Ok(GzipEncoder {
            stream,
            chunk_size: p.chunk_size.max(64),
            finished: false,
        })
    }

    /// Compress `input` and append the output to `out`: a sync flush when `finish` is
    /// false (what was given so far can be decoded: streaming responses stay prompt),
    /// the gzip trailer when it is true.
    pub fn write(
        &mut self,
        input: &[u8],
        finish: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        if self.finished {
            return Ok(());
        }
        let flush = if finish { z::Z_FINISH } else { z::Z_SYNC_FLUSH };
        self.stream.next_in = input.as_ptr() as *mut u8;
        self.stream.avail_in = input.len() as c_uint;
        loop {
            if out.capacity() - out.len() < 16 {
                out.reserve(self.chunk_size);
            }
            let spare = out.capacity() - out.len();
            let avail = spare.min(c_uint::MAX as usize);
            // SAFETY: `next_out` points at `avail` writable bytes past `out.len()`;
            // zlib reads only `avail_in` bytes of `input`, which outlives the call.
            let (rc, written) = unsafe {
                self.stream.next_out = out.as_mut_ptr().add(out.len());
                self.stream.avail_out = avail as c_uint;
                let rc = z::deflate(&mut *self.stream, flush);
                let written = avail - self.stream.avail_out as usize;
                out.set_len(out.len() + written);
                (rc, written)
            };
            match rc {
                z::Z_STREAM_END => {
                    self.finished = true;
                    break;
                }
                // A buffer error only means no progress was possible: more room helps.
                z::Z_OK | z::Z_BUF_ERROR => {
                    // Done with a flush when input is used up and output was not full.
                    if !finish && self.stream.avail_in == 0 && self.stream.avail_out > 0 {
                        break;
                    }
                    if rc == z::Z_BUF_ERROR && written == 0 && self.stream.avail_out > 0 {
                        break;
                    }
                }
                rc => return Err(DeflateError::Deflate(rc)),
            }
        }
        self.stream.next_in = std::ptr::null_mut();
        self.stream.avail_in = 0;
        Ok(())
    }
}

impl Drop for GzipEncoder {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by deflateInit2 and is ended once.
        unsafe {
            z::deflateEnd(&mut *self.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn params(level: i32, window_bits: i32, mem_level: i32, strategy: i32) -> DeflateParams {
        DeflateParams {
            level,
            window_bits,
            mem_level,
            strategy,
            chunk_size: 4096,
        }
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn body(n: usize) -> Vec<u8> {
        let unit = b"{\"k\":\"value\",\"n\":12345}";
        (0..n)
            .map(|i| unit[i % unit.len()] ^ (i / 997) as u8)
            .collect()
    }

    #[test]
    fn chunks_round_trip_and_each_flush_is_decodable() {
        let mut e = GzipEncoder::new(&params(9, 12, 5, 0)).unwrap();
        let data = body(100_000);
        let mut out = Vec::new();
        let mut decoded_so_far = 0;
        for part in data.chunks(7_000) {
            e.write(part, false, &mut out).unwrap();
            // After a sync flush, everything given so far decodes.
            let mut d = flate2::read::GzDecoder::new(&out[..]);
            let mut got = vec![0; part.len() + decoded_so_far];
            d.read_exact(&mut got).unwrap();
            decoded_so_far = got.len();
            assert_eq!(got, data[..decoded_so_far]);
        }
        e.write(&[], true, &mut out).unwrap();
        assert_eq!(gunzip(&out), data);
        assert!(out.len() < data.len() / 2);
        // Writes after the end add nothing.
        let len = out.len();
        e.write(b"more", true, &mut out).unwrap();
        assert_eq!(out.len(), len);
    }

    /// A 4000-byte block of letters repeated: only a window wider than the block finds
    /// the repeats.
    fn repeated_block(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let block: Vec<u8> = (0..4000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + (x % 26) as u8
            })
            .collect();
        block.iter().copied().cycle().take(n).collect()
    }

    #[test]
    fn every_parameter_reaches_zlib() {
        let data = repeated_block(200_000);
        let squeeze = |p: DeflateParams| {
            let mut e = GzipEncoder::new(&p).unwrap();
            let mut out = Vec::new();
            e.write(&data, true, &mut out).unwrap();
            assert_eq!(gunzip(&out), data, "{p:?}");
            out.len()
        };
        let base = squeeze(params(9, 15, 9, 0));
        // Each knob changes the output on its own.
        assert_ne!(squeeze(params(1, 15, 9, 0)), base, "level");
        assert_ne!(squeeze(params(9, 9, 9, 0)), base, "window bits");
        assert_ne!(squeeze(params(9, 15, 1, 0)), base, "memory level");
        assert_ne!(
            squeeze(params(9, 15, 9, 2)),
            base,
            "strategy (Huffman only)"
        );
        // Huffman-only finds no repeats: clearly bigger than the default strategy.
        assert!(squeeze(params(9, 15, 9, 2)) > base * 2);
    }

    #[test]
    fn bad_parameters_are_an_error_not_a_crash() {
        assert!(matches!(
            GzipEncoder::new(&params(9, 12, 42, 0)),
            Err(DeflateError::Init(_))
        ));
    }

    #[test]
    fn empty_body_is_a_valid_gzip_stream() {
        let mut e = GzipEncoder::new(&params(6, 12, 5, 0)).unwrap();
        let mut out = Vec::new();
        e.write(&[], true, &mut out).unwrap();
        assert_eq!(gunzip(&out), b"");
    }
}
