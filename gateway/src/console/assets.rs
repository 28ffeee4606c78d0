//! The page: HTML, script and style compiled into the binary (no build step, nothing
//! fetched from elsewhere: the page works without internet).

use http::Response;

use crate::admin::reply;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The asset at `path`, if it is one.
pub fn get(path: &str) -> Option<Response<Vec<u8>>> {
    let (body, content_type) = match path {
        "/ui" | "/ui/" | "/ui/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/ui/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/ui/app.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut r = reply(200, content_type, body.as_bytes().to_vec());
    let h = r.headers_mut();
    // The page may talk to its own origin only.
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    Some(r)
}

/// Bytes the page weighs in all (the budget is 300 KB).
pub fn total_bytes() -> usize {
    INDEX.len() + SCRIPT.len() + STYLE.len()
}
