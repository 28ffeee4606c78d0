//! The JSON access log with the Higress keys, one object per line.
//!
//! Lines are handed to a writer thread through a bounded queue, so a slow terminal or
//! disk never stalls a request; if the queue is full the line is dropped and counted.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use pingora_proxy::Session;

use super::context::RequestCtx;

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Off,
    Stdout,
    File(std::path::PathBuf),
}

impl std::str::FromStr for Target {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "off" => Target::Off,
            "stdout" | "-" => Target::Stdout,
            p => Target::File(p.into()),
        })
    }
}

enum Msg {
    Line(String),
    Flush(std::sync::mpsc::Sender<()>),
}

pub struct AccessLog {
    tx: Option<SyncSender<Msg>>,
    dropped: telemetry::stats::Counter,
}

const QUEUE: usize = 16 * 1024;

impl AccessLog {
    /// Open `target`; lines dropped when the writer falls behind are counted in `dropped`.
    pub fn open(target: &Target, dropped: telemetry::stats::Counter) -> std::io::Result<AccessLog> {
        let mut out: Box<dyn Write + Send> = match target {
            Target::Off => return Ok(AccessLog { tx: None, dropped }),
            Target::Stdout => Box::new(std::io::stdout()),
            Target::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = sync_channel::<Msg>(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut acks = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Line(line) => {
                                buf.extend_from_slice(line.as_bytes());
                                buf.push(b'\n');
                            }
                            Msg::Flush(ack) => acks.push(ack),
                        }
                        if buf.len() < 60 * 1024 {
                            next = rx.try_recv().ok();
                        }
                    }
                    let _ = out.write_all(&buf).and_then(|_| out.flush());
                    buf.clear();
                    for ack in acks.drain(..) {
                        let _ = ack.send(());
                    }
                }
            })?;
        Ok(AccessLog {
            tx: Some(tx),
            dropped,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn write(&self, line: String) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Line(line)) {
                self.dropped.inc();
            }
        }
    }

    /// Wait (at most `within`) until every line queued so far is written.
    pub fn flush(&self, within: std::time::Duration) {
        if let Some(tx) = &self.tx {
            let (ack_tx, ack_rx) = std::sync::mpsc::channel();
            if tx.send(Msg::Flush(ack_tx)).is_ok() {
                let _ = ack_rx.recv_timeout(within);
            }
        }
    }
}

/// The access log line of a finished request, with the Higress keys; `path` is the
/// client's (the `x-envoy-original-path` a rewrite leaves, else the target), as Higress's
/// format `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`.
pub fn line(session: &Session, ctx: &RequestCtx, status: u16, trace_id: Option<&str>) -> String {
    let req = session.req_header();
    let hv = |name| req.headers.get(name).and_then(|v| v.to_str().ok());
    let host = super::request_host(req);
    serde_json::json!({
        "authority": if host.is_empty() { None } else { Some(host) },
        "bytes_received": session.body_bytes_read(),
        "bytes_sent": session.body_bytes_sent(),
        // Set by key-auth (it drops a client's own value), as Higress's consumer.
        "consumer": hv(http::HeaderName::from_static(crate::model::http_filter::CONSUMER_HEADER)),
        "downstream_remote_address": session.client_addr().map(|a| a.to_string()),
        "duration": ctx.start.elapsed().as_millis() as u64,
        "method": req.method.as_str(),
        "path": hv(super::rewrite::X_ENVOY_ORIGINAL_PATH).or_else(|| req.uri.path_and_query().map(|p| p.as_str())),
        "protocol": if session.is_http2() { "HTTP/2" } else { "HTTP/1.1" },
        "request_id": ctx.request_id.as_ref().and_then(|v| v.to_str().ok()).or_else(|| hv(super::headers::X_REQUEST_ID)),
        "requested_server_name": super::https::server_name(session),
        "response_code": status,
        "response_flags": ctx.flags.render(),
        "route_name": ctx.route.as_ref().map(|r| &*r.name),
        "start_time": crate::clock::rfc3339(std::time::SystemTime::now() - ctx.start.elapsed()),
        "trace_id": trace_id,
        "upstream_cluster": ctx.cluster_name(),
        "upstream_host": ctx.upstream_host().map(|h| h.to_string()),
        "upstream_service_time": ctx.upstream_service_time_ms(),
        "upstream_transport_failure_reason": ctx.transport_failure.as_deref().map(String::as_str),
        "user_agent": hv(http::header::USER_AGENT),
        "x_forwarded_for": hv(super::headers::X_FORWARDED_FOR),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("off".parse::<Target>().unwrap(), Target::Off);
        assert_eq!("stdout".parse::<Target>().unwrap(), Target::Stdout);
        assert_eq!(
            "/tmp/x".parse::<Target>().unwrap(),
            Target::File("/tmp/x".into())
        );
    }
}
