//! An OpenAI-compatible model API on loopback, for the AI gateway tests:
//! - `POST /v1/completions` (the legacy completions API the chatgpt-proxy article
//!   calls): `{"choices": [{"text": "Hello from <model>: <prompt>"}], "usage"}`;
//! - `POST /v1/chat/completions`: JSON with `usage`, or with `"stream": true` server-sent
//!   events in chunked encoding, one HTTP chunk per event; the last event (with `usage`)
//!   and `[DONE]` wait until [`Llm::finish_stream`] is called, so a test can see the
//!   first chunk arrive while the upstream has not finished.
//!
//! Every request is recorded (method, path, lowercase headers, body).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A request the model API received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    /// Streams may send their last event.
    finished: Mutex<bool>,
    cv: Condvar,
}

pub struct Llm {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Llm {
    pub fn start() -> Llm {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Llm { addr, shared }
    }

    /// What was received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Let held streams send their last event.
    pub fn finish_stream(&self) {
        *self.shared.finished.lock().unwrap() = true;
        self.shared.cv.notify_all();
    }
}

fn serve(conn: TcpStream, shared: &Shared) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut first = String::new();
        if r.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = first.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        let (mut len, mut chunked) = (0usize, false);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                }
                chunked |= k == "transfer-encoding" && v.contains("chunked");
                headers.push((k, v));
            }
        }
        let body = if chunked {
            read_chunked(&mut r)
        } else {
            let mut b = vec![0; len];
            if r.read_exact(&mut b).is_err() {
                return;
            }
            b
        };
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        shared.seen.lock().unwrap().push(Seen {
            method,
            path: path.clone(),
            headers,
            body: body.clone(),
        });
        let model = body["model"].as_str().unwrap_or("unknown").to_string();
        let ok = if path.ends_with("/chat/completions") && body["stream"] == true {
            stream(&mut w, &model, shared)
        } else if path.ends_with("/chat/completions") {
            let j = serde_json::json!({"id": "c1", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}});
            reply(&mut w, 200, "application/json", &j.to_string())
        } else if path.ends_with("/completions") {
            let prompt = body["prompt"].as_str().unwrap_or("");
            let j = serde_json::json!({"id": "cmpl-1", "object": "text_completion", "model": model,
                "choices": [{"index": 0, "text": format!("Hello from {model}: {prompt}"), "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}});
            reply(&mut w, 200, "application/json", &j.to_string())
        } else {
            reply(&mut w, 404, "text/plain", "no such API")
        };
        if !ok {
            return;
        }
    }
}

fn reply(w: &mut TcpStream, status: u16, ctype: &str, body: &str) -> bool {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).is_ok() && w.write_all(body.as_bytes()).is_ok()
}

/// Server-sent events, one chunk each; the last waits for `finish_stream` (at most
/// 30 s, so a failing test cannot hang the server).
fn stream(w: &mut TcpStream, model: &str, shared: &Shared) -> bool {
    let chunk = |w: &mut TcpStream, data: &str| {
        let event = format!("data: {data}\n\n");
        let c = format!("{:x}\r\n{event}\r\n", event.len());
        w.write_all(c.as_bytes()).is_ok() && w.flush().is_ok()
    };
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    if w.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let first = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]});
    if !chunk(w, &first.to_string()) {
        return false;
    }
    {
        let done = shared.finished.lock().unwrap();
        let _ = shared
            .cv
            .wait_timeout_while(done, Duration::from_secs(30), |d| !*d)
            .unwrap();
    }
    let last = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}});
    chunk(w, &last.to_string()) && chunk(w, "[DONE]") && w.write_all(b"0\r\n\r\n").is_ok()
}

fn read_chunked(r: &mut impl BufRead) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return out;
        }
        let n =
            usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut buf = vec![0; n + 2];
        if r.read_exact(&mut buf).is_err() {
            return out;
        }
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}
