//! What a plugin callback can reach of the request it runs for.
//!
//! Guest calls are synchronous: the data plane lends the request's headers and the body
//! piece being filtered to the VM for the length of one call ([`StreamView`], raw
//! pointers set right before the call and cleared right after, see `vm.rs`), so host
//! functions edit Pingora's own header maps without copying them. Facts that do not
//! change during a request (route, cluster, addresses) are copied once into
//! [`StreamInfo`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::BytesMut;
use pingora_http::{RequestHeader, ResponseHeader};

/// Facts about a request that properties read.
#[derive(Debug, Default, Clone)]
pub struct StreamInfo {
    pub route_name: Option<Arc<str>>,
    pub cluster_name: Option<Arc<str>>,
    pub peer: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'static str,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The TLS server name the client asked for.
    pub sni: Option<Arc<str>>,
    /// The TLS version of the client's connection, when it is TLS.
    pub tls_version: Option<Arc<str>>,
    pub start: Option<SystemTime>,
    /// HTTP/1 connections only (HTTP/2 streams do not carry their connection's).
    pub connection_id: Option<u64>,
    pub upstream: Option<SocketAddr>,
    pub response_code: u16,
    pub response_flags: u64,
    pub request_size: u64,
    pub response_size: u64,
}

/// The parts of a request a callback may read and edit, lent for one guest call.
#[derive(Clone, Copy)]
pub struct StreamView {
    pub request: *mut RequestHeader,
    /// Present from the response phase on.
    pub response: Option<*const ResponseHeader>,
    /// `response` is being filtered and may be edited (it came from a `&mut`); once
    /// its headers are sent it is read-only.
    pub response_editable: bool,
    /// The request body as the callback sees it (during a request body callback).
    pub request_body: Option<*mut BytesMut>,
    /// The response body piece (during a response body callback).
    pub response_body: Option<*mut BytesMut>,
    pub info: *const StreamInfo,
}

// SAFETY: a view only lives inside one synchronous guest call made by the thread that
// owns the pointed-to request; it is never used after the call returns (see `vm.rs`).
unsafe impl Send for StreamView {}

impl StreamView {
    /// # Safety
    /// Only during the guest call the view was lent for.
    pub unsafe fn request<'a>(self) -> &'a mut RequestHeader {
        &mut *self.request
    }

    /// # Safety
    /// As [`StreamView::request`].
    pub unsafe fn response<'a>(self) -> Option<&'a ResponseHeader> {
        self.response.map(|p| &*p)
    }

    /// The response to edit, while its headers are not sent.
    ///
    /// # Safety
    /// As [`StreamView::request`].
    pub unsafe fn response_mut<'a>(self) -> Option<&'a mut ResponseHeader> {
        self.response
            .filter(|_| self.response_editable)
            .map(|p| &mut *(p as *mut ResponseHeader))
    }

    /// # Safety
    /// As [`StreamView::request`].
    pub unsafe fn info<'a>(self) -> &'a StreamInfo {
        &*self.info
    }

    /// # Safety
    /// As [`StreamView::request`].
    pub unsafe fn body<'a>(self, which: i32) -> Option<&'a mut BytesMut> {
        match which {
            super::abi::buffer::REQUEST_BODY => self.request_body.map(|p| &mut *p),
            super::abi::buffer::RESPONSE_BODY => self.response_body.map(|p| &mut *p),
            _ => None,
        }
    }
}

/// A reply a plugin asked for with `proxy_send_local_response`.
#[derive(Debug, Clone)]
pub struct LocalResponse {
    pub status: u16,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What the guest asked of its stream during a call.
#[derive(Debug, Default)]
pub struct Actions {
    pub continue_request: bool,
    pub continue_response: bool,
    pub local_response: Option<LocalResponse>,
    pub close: bool,
    /// Request headers were edited (the route may have to be looked up again).
    pub request_headers_changed: bool,
    /// What every route lookup reads was edited (`:authority`, `host`, `:path`,
    /// `:method`), or the plugin cleared the route cache itself.
    pub route_keys_changed: bool,
    /// `proxy_set_property(["clear_route_cache"], "off")`.
    pub keep_route: bool,
}
