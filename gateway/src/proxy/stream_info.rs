//! What plugins read of a request and its connection, copied once per request.

use std::sync::Arc;

use pingora_proxy::Session;

use super::context::RequestCtx;
use super::{https, idle, Gateway};
use crate::wasm::stream::StreamInfo;

impl Gateway {
    /// What plugins read of the request and its connection.
    pub(super) fn stream_info(&self, session: &Session, ctx: &RequestCtx) -> StreamInfo {
        if !ctx.snapshot.wasm_plugins {
            // Native filters read only these; the rest is for Wasm properties.
            return StreamInfo {
                route_name: ctx.route.as_ref().map(|r| r.name.clone()),
                cluster_name: ctx.cluster_name_shared().cloned(),
                peer: session.client_addr().and_then(|a| a.as_inet()).copied(),
                ..StreamInfo::default()
            };
        }
        StreamInfo {
            route_name: ctx.route.as_ref().map(|r| r.name.clone()),
            cluster_name: ctx.cluster_name_shared().cloned(),
            peer: session.client_addr().and_then(|a| a.as_inet()).copied(),
            local: session.server_addr().and_then(|a| a.as_inet()).copied(),
            protocol: if session.is_http2() {
                "HTTP/2"
            } else if session.req_header().version == http::Version::HTTP_10 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
            scheme: if self.listener.tls { "https" } else { "http" },
            sni: https::server_name(session).map(Arc::from),
            tls_version: session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .map(|d| Arc::from(d.version.as_ref())),
            start: Some(std::time::SystemTime::now() - ctx.start.elapsed()),
            connection_id: idle::ConnActivity::of(session).map(|c| c.id),
            ..StreamInfo::default()
        }
    }
}
