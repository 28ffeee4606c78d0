//! A real HTTP/1.1 backend on loopback that tells who it is and what it received, and
//! counts its connections (accepted and closed by the peer).
//!
//! Paths: `/delay/<ms>...` waits before answering; anything else answers at once with
//! JSON `{"backend", "method", "path", "headers", "body"}` (bodies by content-length or
//! chunked).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicUsize,
    pub closed_by_peer: AtomicUsize,
    pub requests: AtomicUsize,
    /// Body bytes written for `/big` (a 200 MB response written as fast as possible).
    pub big_bytes: AtomicUsize,
}

pub struct Backend {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Self::start_on("127.0.0.1:0", name)
    }

    pub fn start_on(addr: &str, name: &str) -> Backend {
        let listener = TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("bind backend {name} on {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, n) = (counters.clone(), stop.clone(), name.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                c.accepted.fetch_add(1, Ordering::Relaxed);
                let (c, n) = (c.clone(), n.clone());
                std::thread::spawn(move || serve(conn, &n, &c));
            }
        });
        Backend {
            addr,
            counters,
            stop,
        }
    }

    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    pub fn closed_by_peer(&self) -> usize {
        self.counters.closed_by_peer.load(Ordering::Relaxed)
    }

    pub fn big_bytes(&self) -> usize {
        self.counters.big_bytes.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, name: &str, c: &Counters) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                c.closed_by_peer.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                c.closed_by_peer.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers
                    .entry(k.trim().to_ascii_lowercase())
                    .and_modify(|e: &mut String| {
                        e.push_str(", ");
                        e.push_str(v.trim());
                    })
                    .or_insert_with(|| v.trim().to_string());
            }
        }
        let chunked = headers
            .get("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            match read_chunked(&mut reader) {
                Some(b) => b,
                None => return,
            }
        } else {
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        c.requests.fetch_add(1, Ordering::Relaxed);
        if path == "/big" {
            let total = 200 << 20;
            if out
                .write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n").as_bytes())
                .is_err()
            {
                return;
            }
            let chunk = vec![b'x'; 64 << 10];
            let mut sent = 0;
            while sent < total {
                if out.write_all(&chunk).is_err() {
                    return;
                }
                sent += chunk.len();
                c.big_bytes.fetch_add(chunk.len(), Ordering::Relaxed);
            }
            continue;
        }
        if let Some(ms) = path
            .strip_prefix("/delay/")
            .and_then(|r| r.split(['/', '?']).next())
            .and_then(|m| m.parse().ok())
        {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let json = serde_json::json!({
            "backend": name,
            "method": method,
            "path": path,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A chunked request body; `None` when the stream breaks off.
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        if n == 0 {
            // Trailers (none expected) end with an empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..n]);
    }
}
