//! Response compression with Envoy's compressor filter rules (gzip only, as Higress
//! configures it): the `Accept-Encoding` choice made on the request, the checks on the
//! response headers, the header rewrites, and the streaming encoder per response.

use std::sync::Arc;

use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    ETAG, TRANSFER_ENCODING, VARY,
};
use http::{HeaderMap, HeaderValue};
use pingora_http::ResponseHeader;

use super::zlib::{DeflateError, GzipEncoder};
use crate::model::filter_settings::GzipSettings;
use crate::stats::CompressorStats;
use telemetry::stats::Counter;

/// What the request's `Accept-Encoding` allows (Envoy's `chooseEncoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptChoice {
    NoHeader,
    Identity,
    /// Nothing we have is acceptable (or the best has q=0).
    NotValid,
    Gzip,
    /// `*` picked, which means our only compressor.
    Wildcard,
}

impl AcceptChoice {
    pub fn allows_gzip(self) -> bool {
        matches!(self, AcceptChoice::Gzip | AcceptChoice::Wildcard)
    }

    fn count(self, s: &CompressorStats) {
        match self {
            AcceptChoice::NoHeader => s.no_accept_header.inc(),
            AcceptChoice::Identity => s.header_identity.inc(),
            AcceptChoice::NotValid => s.header_not_valid.inc(),
            AcceptChoice::Gzip => s.header_compressor_used.inc(),
            AcceptChoice::Wildcard => s.header_wildcard.inc(),
        }
    }
}

/// Envoy's algorithm: every listed coding with its q (default 1, unparsable q: the
/// entry is skipped); among `gzip`, `identity` and `*` the highest q wins, the earlier
/// one on a tie; q=0 on `gzip` also rules out `*` meaning gzip.
pub fn choose(headers: &HeaderMap) -> AcceptChoice {
    let mut values = headers.get_all(ACCEPT_ENCODING).iter().peekable();
    if values.peek().is_none() {
        return AcceptChoice::NoHeader;
    }
    let mut best: Option<(&str, f32)> = None;
    let mut gzip_refused = false;
    for v in values {
        // Entry by entry, as Envoy reads the joined header: bytes that are not visible
        // ASCII spoil their own entry only, not the codings beside it.
        for entry in v.as_bytes().split(|&b| b == b',') {
            let Ok(entry) = std::str::from_utf8(entry) else {
                continue;
            };
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let mut q = 1.0f32;
            let mut bad_q = false;
            for p in parts {
                if let Some((k, val)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        match val.trim().parse::<f32>() {
                            Ok(x) if (0.0..=1.0).contains(&x) => q = x,
                            _ => bad_q = true,
                        }
                    }
                }
            }
            if bad_q || coding.is_empty() {
                continue;
            }
            let known = if coding.eq_ignore_ascii_case("gzip") {
                if q == 0.0 {
                    gzip_refused = true;
                }
                "gzip"
            } else if coding.eq_ignore_ascii_case("identity") {
                "identity"
            } else if coding == "*" {
                "*"
            } else {
                continue;
            };
            if best.is_none_or(|(_, bq)| q > bq) {
                best = Some((known, q));
            }
        }
    }
    match best {
        Some((_, q)) if q <= 0.0 => AcceptChoice::NotValid,
        Some(("gzip", _)) => AcceptChoice::Gzip,
        Some(("identity", _)) => AcceptChoice::Identity,
        Some(("*", _)) if !gzip_refused => AcceptChoice::Wildcard,
        _ => AcceptChoice::NotValid,
    }
}

/// Why a response is left as it is, before the `Accept-Encoding` choice counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    ContentLengthTooSmall,
    Upgrade,
    ContentType,
    NoTransform,
    Etag,
    AlreadyEncoded,
    NoBody,
}

/// Steps 2-8 of Envoy's decision: could this response be compressed at all?
/// `no_body`: the response ends with its headers (HEAD, 204, 304, length 0).
pub fn compressible(s: &GzipSettings, h: &ResponseHeader, no_body: bool) -> Result<(), Skip> {
    let headers = &h.headers;
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len < s.min_content_length {
            return Err(Skip::ContentLengthTooSmall);
        }
    }
    let upgrade = h.status.as_u16() == 101
        || headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"));
    if upgrade {
        return Err(Skip::Upgrade);
    }
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        let media = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !s
            .content_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(media))
        {
            return Err(Skip::ContentType);
        }
    }
    if headers
        .get_all(CACHE_CONTROL)
        .iter()
        .any(|v| has_token(v, "no-transform"))
    {
        return Err(Skip::NoTransform);
    }
    if s.disable_on_etag_header && headers.contains_key(ETAG) {
        return Err(Skip::Etag);
    }
    if headers.contains_key(CONTENT_ENCODING) {
        return Err(Skip::AlreadyEncoded);
    }
    if no_body {
        return Err(Skip::NoBody);
    }
    Ok(())
}

/// A comma-separated header holds `token` (case-insensitive, parameters ignored).
fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str().is_ok_and(|v| {
        v.split(',').any(|t| {
            t.split(['=', ';'])
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(token)
        })
    })
}

/// `Vary: Accept-Encoding`, added or appended unless already there.
fn add_vary(h: &mut ResponseHeader) {
    let present = h
        .headers
        .get_all(VARY)
        .iter()
        .any(|v| has_token(v, "accept-encoding") || v.to_str().is_ok_and(|v| v.trim() == "*"));
    if present {
        return;
    }
    let joined = match h.headers.get(VARY).and_then(|v| v.to_str().ok()) {
        Some(old) if !old.trim().is_empty() => format!("{old}, Accept-Encoding"),
        _ => "Accept-Encoding".to_string(),
    };
    let _ = h.insert_header(VARY, joined);
}

/// A transfer coding that already compresses.
fn transfer_encoded(h: &ResponseHeader) -> bool {
    h.headers.get_all(TRANSFER_ENCODING).iter().any(|v| {
        ["gzip", "br", "deflate", "compress", "zstd"]
            .iter()
            .any(|c| has_token(v, c))
    })
}

/// One response being compressed.
pub struct ResponseGzip {
    encoder: GzipEncoder,
    /// The two byte counters (not the whole stats set: one handle clone each).
    uncompressed_bytes: Counter,
    compressed_bytes: Counter,
}

/// Decide on a response (and, if it could be compressed, on the `request`'s
/// `Accept-Encoding`) and rewrite its headers; `Some` when its body is to be compressed. `chunked`: the downstream is HTTP/1.1 (it needs chunked framing once the
/// length is gone).
pub fn on_response(
    settings: &Arc<GzipSettings>,
    stats: &CompressorStats,
    request: &HeaderMap,
    h: &mut ResponseHeader,
    no_body: bool,
    chunked: bool,
) -> Option<ResponseGzip> {
    match compressible(settings, h, no_body) {
        Err(skip) => {
            match skip {
                Skip::ContentLengthTooSmall => stats.content_length_too_small.inc(),
                Skip::Etag => stats.not_compressed_etag.inc(),
                _ => {}
            }
            stats.not_compressed.inc();
            return None;
        }
        // The response could be compressed: caches must key on Accept-Encoding.
        Ok(()) => add_vary(h),
    }
    let choice = choose(request);
    choice.count(stats);
    if !choice.allows_gzip() || transfer_encoded(h) {
        stats.not_compressed.inc();
        return None;
    }
    let encoder = match GzipEncoder::new(&settings.deflate) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "gzip: encoder not created, response sent as it is");
            stats.not_compressed.inc();
            return None;
        }
    };
    // Strong ETags name exact bytes; weak ones (and odd short values) stay.
    if let Some(etag) = h.headers.get(ETAG) {
        let b = etag.as_bytes();
        if b.len() > 2 && !(b.starts_with(b"W/") || b.starts_with(b"w/")) {
            h.remove_header(&ETAG);
        }
    }
    h.remove_header(&CONTENT_LENGTH);
    let _ = h.insert_header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    if chunked {
        let _ = h.insert_header(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    stats.compressed.inc();
    Some(ResponseGzip {
        encoder,
        uncompressed_bytes: stats.total_uncompressed_bytes.clone(),
        compressed_bytes: stats.total_compressed_bytes.clone(),
    })
}

impl ResponseGzip {
    /// Compress one piece of the body in place (flushed, so it can be read at once);
    /// at the end the gzip trailer goes out too.
    pub fn body(
        &mut self,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
    ) -> Result<(), DeflateError> {
        let input = body.as_deref().unwrap_or(&[]);
        if input.is_empty() && !end_of_stream {
            return Ok(());
        }
        // The output buffer becomes the body piece as it is (no copy).
        let mut out = Vec::new();
        self.encoder.write(input, end_of_stream, &mut out)?;
        self.uncompressed_bytes.add(input.len() as u64);
        self.compressed_bytes.add(out.len() as u64);
        *body = Some(bytes::Bytes::from(out));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> AcceptChoice {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, v.parse().unwrap());
        choose(&h)
    }

    #[test]
    fn accept_encoding_follows_envoy() {
        use AcceptChoice::*;
        assert_eq!(choose(&HeaderMap::new()), NoHeader);
        assert_eq!(accept("gzip"), Gzip);
        assert_eq!(accept("GZIP"), Gzip);
        assert_eq!(accept("br, gzip;q=0.8, deflate"), Gzip);
        assert_eq!(accept("br"), NotValid);
        assert_eq!(accept("identity"), Identity);
        assert_eq!(accept("identity, gzip"), Identity, "tie: the earlier wins");
        assert_eq!(accept("identity;q=0.5, gzip"), Gzip);
        assert_eq!(accept("*"), Wildcard);
        assert_eq!(accept("gzip;q=0,*;q=1"), NotValid, "Envoy docs' example");
        assert_eq!(accept("*;q=0,gzip;q=1"), Gzip, "Envoy docs' example");
        assert_eq!(accept("gzip;q=0"), NotValid);
        assert_eq!(
            accept("gzip;q=abc"),
            NotValid,
            "an unparsable q skips the entry"
        );
        assert_eq!(accept("gzip;q=abc, identity;q=0.1"), Identity);
        assert_eq!(accept("gzip;q=0.001"), Gzip);
        assert_eq!(accept(""), NotValid);
        // A coding with bytes beyond ASCII is an unknown one; the others still count.
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_bytes(b"x-\xe9t\xe9, gzip;q=0.5").unwrap(),
        );
        assert_eq!(choose(&h), Gzip);
    }

    fn settings() -> GzipSettings {
        GzipSettings {
            min_content_length: 100,
            content_types: vec!["application/json".into(), "text/html".into()],
            disable_on_etag_header: false,
            deflate: crate::model::filter_settings::DeflateParams {
                level: 6,
                window_bits: 12,
                mem_level: 5,
                strategy: 0,
                chunk_size: 4096,
            },
        }
    }

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            h.append_header(k.to_string(), *v).unwrap();
        }
        h
    }

    #[test]
    fn response_checks_in_envoys_order() {
        let s = settings();
        let ok = |hs: &[(&str, &str)]| compressible(&s, &resp(hs), false);
        assert_eq!(ok(&[("content-type", "application/json")]), Ok(()));
        assert_eq!(ok(&[]), Ok(()), "no content type is allowed");
        assert_eq!(ok(&[("content-type", "Text/HTML; charset=utf-8")]), Ok(()));
        assert_eq!(
            ok(&[("content-length", "99")]),
            Err(Skip::ContentLengthTooSmall)
        );
        assert_eq!(ok(&[("content-length", "100")]), Ok(()));
        assert_eq!(ok(&[("content-type", "image/png")]), Err(Skip::ContentType));
        assert_eq!(
            ok(&[("cache-control", "public, No-Transform")]),
            Err(Skip::NoTransform)
        );
        assert_eq!(ok(&[("content-encoding", "br")]), Err(Skip::AlreadyEncoded));
        assert_eq!(ok(&[("connection", "Upgrade")]), Err(Skip::Upgrade));
        assert_eq!(ok(&[("etag", "\"abc\"")]), Ok(()));
        let mut etag_off = settings();
        etag_off.disable_on_etag_header = true;
        assert_eq!(
            compressible(&etag_off, &resp(&[("etag", "\"abc\"")]), false),
            Err(Skip::Etag)
        );
        assert_eq!(compressible(&s, &resp(&[]), true), Err(Skip::NoBody));
    }
}
