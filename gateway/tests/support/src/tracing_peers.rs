//! The tracing tests' real peers, Python programs in `gateway/tests/peers/` run with the
//! venv `scripts/test.sh` builds (`target/peers-venv`, or `$GATEWAY_TEST_PYTHON`): a
//! SkyWalking collector and an app traced by the real SkyWalking Python agent, an app
//! using the OpenTelemetry SDK's W3C and B3 propagators, and OTLP and Zipkin receivers.
//!
//! Each peer binds its own loopback ports (no pick-then-bind race), says `READY {ports}`
//! on stdout, and appends what it receives to a JSON-lines file this side reads. It exits
//! when its stdin closes, so a test that dies leaves nothing running; `Drop` kills it too.
//! A missing venv fails the test with how to build it; nothing is skipped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Conn, Response};

/// Bound for a peer to start: a Python interpreter importing grpc and the SDKs takes about
/// a second, much longer on a loaded machine.
pub const PEER_START: Duration = Duration::from_secs(30);
/// Bound for something to reach a peer (an agent's or exporter's report).
pub const PEER_WAIT: Duration = Duration::from_secs(20);

/// The venv's python: `$GATEWAY_TEST_PYTHON`, else `target/peers-venv/bin/python`.
pub fn python() -> PathBuf {
    let p = std::env::var_os("GATEWAY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target/peers-venv/bin/python"));
    if !p.exists() {
        panic!(
            "the tracing peers' Python venv is missing ({}): run scripts/test.sh, or just \
             `NEED_PEERS_VENV=1 bash scripts/prereqs.sh`, which builds target/peers-venv \
             from gateway/tests/peers/requirements.txt",
            p.display()
        );
    }
    p
}

pub fn peers_dir() -> PathBuf {
    crate::repo_root().join("gateway/tests/peers")
}

/// What a receiver does to calls: answer HTTP `status` (0 = normally), abort gRPC calls
/// with `grpc_code` (a `grpc.StatusCode` name such as "UNAVAILABLE"), after `delay`.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub status: u16,
    pub grpc_code: Option<&'static str>,
    pub delay: Duration,
}

/// One running peer process.
pub struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
    ports: Value,
}

impl Peer {
    /// Run `peers/<script>` with `args` (plus `--record`), and wait for its READY line.
    pub fn start(script: &str, args: &[String]) -> Peer {
        let python = python();
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.jsonl");
        let log = dir.path().join("peer.log");
        let mut cmd = Command::new(&python);
        cmd.arg("-u")
            .arg(peers_dir().join(script))
            .arg("--record")
            .arg(&record)
            .args(args)
            .current_dir(peers_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            // No .pyc files in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            // Everything stays on loopback: no proxy for gRPC or HTTP.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        // Settings the SDKs read from the environment must not leak in from the shell.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            let lower = k.to_ascii_lowercase();
            if k.starts_with("OTEL_")
                || k.starts_with("SW_")
                || lower.ends_with("_proxy") && !lower.starts_with("no_")
            {
                cmd.env_remove(&k);
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {} {script}: {e}", python.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the READY line, then keeps draining stdout so the peer never blocks on it.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(rest) = line.strip_prefix("READY ") {
                        let _ = tx.send(rest.to_string());
                        sent = true;
                    }
                }
            }
        });
        let mut peer = Peer {
            name: script.to_string(),
            child,
            stdin,
            dir,
            ports: Value::Null,
        };
        match rx.recv_timeout(PEER_START) {
            Ok(ports) => {
                peer.ports = serde_json::from_str(&ports)
                    .unwrap_or_else(|e| panic!("{script}: bad READY line {ports:?}: {e}"));
            }
            Err(_) => {
                let status = peer.child.try_wait().ok().flatten();
                let _ = peer.child.kill();
                let _ = peer.child.wait();
                panic!(
                    "{script} not ready within {PEER_START:?} (exit: {status:?}):\n{}",
                    peer.log()
                );
            }
        }
        peer
    }

    /// The port the peer reported as `key` in its READY line.
    pub fn port(&self, key: &str) -> u16 {
        self.ports[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no port {key:?} in {}", self.name, self.ports))
            as u16
    }

    pub fn addr(&self, key: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port(key)))
    }

    /// Everything recorded so far, in order.
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("record.jsonl"))
            .unwrap_or_default()
            .lines()
            // The last line may be mid-write.
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Records with `"kind": kind`.
    pub fn records_of(&self, kind: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["kind"] == kind)
            .collect()
    }

    /// The peer's stderr (its own log, and the agent's or SDK's).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }

    /// Poll `f` over the records until it returns `Some`, or panic after `bound` with
    /// `what`, the records and the peer's log.
    pub fn wait<T>(
        &self,
        what: &str,
        bound: Duration,
        mut f: impl FnMut(&[Value]) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            let records = self.records();
            if let Some(v) = f(&records) {
                return v;
            }
            if start.elapsed() > bound {
                panic!(
                    "{}: timed out after {bound:?} waiting for {what}; records:\n{}\nlog:\n{}",
                    self.name,
                    records
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Replace the fault on the peer's control listener.
    pub fn set_fault(&self, fault: &Fault) {
        let body = serde_json::json!({
            "status": fault.status,
            "grpc_code": fault.grpc_code.unwrap_or(""),
            "delay_ms": fault.delay.as_millis() as u64,
        })
        .to_string();
        let r = post(
            self.addr("control"),
            "/fault",
            "application/json",
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{}: set fault: {e}", self.name));
        assert_eq!(r.status, 200, "{}: set fault: {}", self.name, r.text());
    }

    /// Close the peer's stdin, as a test process that dies does.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait up to `bound` for the peer to exit.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if start.elapsed() > bound {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST `body` to `path` on `addr` (HTTP/1.1, one connection).
pub fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let mut c = Conn::open(addr)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.send_raw(head.as_bytes())?;
    c.send_raw(body)?;
    c.read_response(false)
}

// ---- SkyWalking -------------------------------------------------------------------

/// `sw_collector.py`: SkyWalking's segment report and management gRPC services.
pub struct SwCollector {
    pub peer: Peer,
    /// The gRPC listener (`service`/`port` of a tracing config).
    pub addr: SocketAddr,
}

impl SwCollector {
    pub fn start() -> SwCollector {
        let peer = Peer::start("sw_collector.py", &[]);
        let addr = peer.addr("grpc");
        SwCollector { peer, addr }
    }

    /// Segment records: `{"service", "method", "authentication", "metadata", "segment"}`
    /// (`service` is the gRPC service path, `skywalking.v3.TraceSegmentReportService` or
    /// the package-less compat one).
    pub fn segment_records(&self) -> Vec<Value> {
        self.peer.records_of("segment")
    }

    /// The `SegmentObject`s received (proto3 JSON, every field present).
    pub fn segments(&self) -> Vec<Value> {
        self.segment_records()
            .into_iter()
            .map(|r| r["segment"].clone())
            .collect()
    }

    /// Wait for a segment record whose segment matches `pred`; returns the record.
    pub fn wait_segment_record(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.peer.wait(what, PEER_WAIT, |rs| {
            rs.iter()
                .find(|r| r["kind"] == "segment" && pred(&r["segment"]))
                .cloned()
        })
    }

    /// Wait for a segment matching `pred`.
    pub fn wait_segment(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_segment_record(what, pred)["segment"].clone()
    }

    /// `keepAlive` messages (`{"service", "serviceInstance", "layer"}`).
    pub fn keepalives(&self) -> Vec<Value> {
        self.peer
            .records_of("keepalive")
            .into_iter()
            .map(|r| r["message"].clone())
            .collect()
    }

    pub fn set_fault(&self, fault: &Fault) {
        self.peer.set_fault(fault)
    }
}

/// `sw_app.py`: an HTTP upstream traced by the SkyWalking Python agent, reporting to a
/// collector. Answers JSON `{"app", "method", "path", "headers", "sw": {"trace_id",
/// "segment_id"} | null}`; `/status/<code>` and `/delay/<ms>` paths.
pub struct SwApp {
    pub peer: Peer,
    pub addr: SocketAddr,
    pub service: String,
    pub instance: String,
}

impl SwApp {
    /// Service `backend-app`, no token.
    pub fn start(collector: &SwCollector) -> SwApp {
        Self::start_with(collector, "backend-app", None)
    }

    /// Report to `collector` as `service`, sending `authentication`. Returns once the
    /// agent's heartbeat reached the collector, i.e. its channel is up: a segment the
    /// agent tries to report before that may be lost with a failed first stream.
    pub fn start_with(
        collector: &SwCollector,
        service: &str,
        authentication: Option<&str>,
    ) -> SwApp {
        let app = Self::start_reporting_to(collector.addr, service, authentication);
        app.wait_registered(collector);
        app
    }

    /// Report to any gRPC collector at `collector`, without waiting for anything.
    pub fn start_reporting_to(
        collector: SocketAddr,
        service: &str,
        authentication: Option<&str>,
    ) -> SwApp {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let instance = format!(
            "{service}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut args = vec![
            "--collector".to_string(),
            collector.to_string(),
            "--service".into(),
            service.into(),
            "--instance".into(),
            instance.clone(),
        ];
        if let Some(t) = authentication {
            args.extend(["--authentication".to_string(), t.to_string()]);
        }
        let peer = Peer::start("sw_app.py", &args);
        let addr = peer.addr("http");
        SwApp {
            peer,
            addr,
            service: service.to_string(),
            instance,
        }
    }

    /// Wait until `collector` got this app's heartbeat.
    pub fn wait_registered(&self, collector: &SwCollector) {
        collector
            .peer
            .wait("the agent's keepAlive", PEER_WAIT, |rs| {
                rs.iter()
                    .find(|r| {
                        r["kind"] == "keepalive"
                            && r["message"]["serviceInstance"] == self.instance.as_str()
                    })
                    .map(|_| ())
            });
    }
}

/// An `sw8` header value (Cross Process Propagation Headers Protocol v3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sw8 {
    pub sampled: bool,
    pub trace_id: String,
    pub segment_id: String,
    pub span_id: i32,
    pub service: String,
    pub instance: String,
    pub endpoint: String,
    pub target: String,
}

impl Sw8 {
    /// `1-b64(trace)-b64(segment)-span-b64(service)-b64(instance)-b64(endpoint)-b64(target)`,
    /// BASE64 with padding (the Python agent rejects unpadded fields).
    pub fn encode(&self) -> String {
        format!(
            "{}-{}-{}-{}-{}-{}-{}-{}",
            if self.sampled { 1 } else { 0 },
            b64(&self.trace_id),
            b64(&self.segment_id),
            self.span_id,
            b64(&self.service),
            b64(&self.instance),
            b64(&self.endpoint),
            b64(&self.target)
        )
    }

    /// Parse a header value strictly: 8 fields, flag 0/1, integer span id, valid BASE64.
    pub fn decode(v: &str) -> Option<Sw8> {
        let f: Vec<&str> = v.split('-').collect();
        if f.len() != 8 {
            return None;
        }
        let s = |i: usize| unb64(f[i]).and_then(|b| String::from_utf8(b).ok());
        Some(Sw8 {
            sampled: match f[0] {
                "1" => true,
                "0" => false,
                _ => return None,
            },
            trace_id: s(1)?,
            segment_id: s(2)?,
            span_id: f[3].parse().ok()?,
            service: s(4)?,
            instance: s(5)?,
            endpoint: s(6)?,
            target: s(7)?,
        })
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard BASE64 with `=` padding.
pub fn b64(s: &str) -> String {
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard BASE64 (padding optional); `None` on any other character.
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for ch in s.bytes() {
        let v = B64.iter().position(|&b| b == ch)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---- OpenTelemetry ----------------------------------------------------------------

/// How `OtelApp` exports its spans besides recording them.
#[derive(Debug, Clone, Copy, Default)]
pub enum Export {
    #[default]
    None,
    /// OTLP gRPC to this address.
    Grpc(SocketAddr),
    /// OTLP/HTTP protobuf to `http://<addr>/v1/traces`.
    Http(SocketAddr),
}

/// `otel_app.py`: an HTTP upstream using the OpenTelemetry SDK with the W3C and B3
/// propagators. Answers JSON `{"app", "method", "path", "headers", "extracted":
/// {"tracecontext"|"b3"|"composite": {"trace_id", "span_id", "sampled", "trace_state"} |
/// null}, "trace_id", "parent_span_id", "span_id"}`.
pub struct OtelApp {
    pub peer: Peer,
    pub addr: SocketAddr,
}

impl OtelApp {
    /// Service `otel-app`, spans only recorded.
    pub fn start() -> OtelApp {
        Self::start_with("otel-app", Export::None)
    }

    pub fn start_with(service: &str, export: Export) -> OtelApp {
        let mut args = vec!["--service".to_string(), service.to_string()];
        match export {
            Export::None => {}
            Export::Grpc(a) => args.extend(["--otlp-grpc".to_string(), a.to_string()]),
            Export::Http(a) => {
                args.extend(["--otlp-http".to_string(), format!("http://{a}/v1/traces")])
            }
        }
        let peer = Peer::start("otel_app.py", &args);
        let addr = peer.addr("http");
        OtelApp { peer, addr }
    }

    /// The SERVER spans it finished and sampled: `{"name", "trace_id", "span_id",
    /// "parent_span_id", "kind", "attributes", "status", "sampled", "service"}`.
    pub fn spans(&self) -> Vec<Value> {
        self.peer
            .records_of("span")
            .into_iter()
            .map(|r| r["span"].clone())
            .collect()
    }

    pub fn wait_span(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.peer.wait(what, PEER_WAIT, |rs| {
            rs.iter()
                .find(|r| r["kind"] == "span" && pred(&r["span"]))
                .map(|r| r["span"].clone())
        })
    }
}

/// `otlp_receiver.py`: OTLP gRPC `TraceService/Export` and OTLP/HTTP `/v1/traces`.
pub struct OtlpReceiver {
    pub peer: Peer,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let peer = Peer::start("otlp_receiver.py", &[]);
        let (grpc, http) = (peer.addr("grpc"), peer.addr("http"));
        OtlpReceiver { peer, grpc, http }
    }

    /// Records `{"transport": "grpc"|"http", "metadata", "resource_spans"}`, one per
    /// ResourceSpans, in OTLP/JSON (hex ids, integer enums).
    pub fn resource_spans(&self) -> Vec<Value> {
        self.peer.records_of("resource_spans")
    }

    /// Every span received, each with its resource's attributes added as `"resource"`
    /// and the transport as `"transport"`.
    pub fn spans(&self) -> Vec<Value> {
        flatten_otlp(&self.peer.records())
    }

    pub fn wait_span(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.peer.wait(what, PEER_WAIT, |rs| {
            flatten_otlp(rs).into_iter().find(|s| pred(s))
        })
    }

    pub fn set_fault(&self, fault: &Fault) {
        self.peer.set_fault(fault)
    }
}

fn flatten_otlp(records: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r["kind"] == "resource_spans") {
        let rs = &r["resource_spans"];
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                let mut s = s.clone();
                s["resource"] = rs["resource"]["attributes"].clone();
                s["scope"] = ss["scope"].clone();
                s["transport"] = r["transport"].clone();
                out.push(s);
            }
        }
    }
    out
}

/// The value of attribute `key` in an OTLP/JSON attribute list, unwrapped from its
/// AnyValue (`{"stringValue": "x"}` → `"x"`; int64 stays a decimal string).
pub fn otlp_attr(attributes: &Value, key: &str) -> Option<Value> {
    let kv = attributes.as_array()?.iter().find(|kv| kv["key"] == key)?;
    kv["value"].as_object()?.values().next().cloned()
}

// ---- Zipkin -----------------------------------------------------------------------

/// `zipkin_receiver.py`: Zipkin v2 `POST /api/v2/spans`.
pub struct ZipkinReceiver {
    pub peer: Peer,
    pub addr: SocketAddr,
}

impl ZipkinReceiver {
    pub fn start() -> ZipkinReceiver {
        let peer = Peer::start("zipkin_receiver.py", &[]);
        let addr = peer.addr("http");
        ZipkinReceiver { peer, addr }
    }

    /// Accepted POSTs: `{"headers", "spans"}`.
    pub fn posts(&self) -> Vec<Value> {
        self.peer.records_of("post")
    }

    /// Every span of every accepted POST, in order.
    pub fn spans(&self) -> Vec<Value> {
        flatten_zipkin(&self.peer.records())
    }

    /// POSTs refused by a fault: `{"status", "headers"}`.
    pub fn rejected(&self) -> Vec<Value> {
        self.peer.records_of("rejected")
    }

    pub fn wait_span(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.peer.wait(what, PEER_WAIT, |rs| {
            flatten_zipkin(rs).into_iter().find(|s| pred(s))
        })
    }

    pub fn set_fault(&self, fault: &Fault) {
        self.peer.set_fault(fault)
    }
}

fn flatten_zipkin(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["kind"] == "post")
        .flat_map(|r| r["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}
