//! A scripted HTTP/1.1 upstream on loopback: a closure decides each answer from the
//! request and how many times its path was seen, and every request is kept for the test
//! to inspect. Plus the error-page backend of ingress-nginx's custom-errors example.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request an upstream received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// What the handler answers: status, content type, body; an optional delay first.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub delay: Duration,
}

pub fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        content_type: "text/plain",
        body: body.into(),
        delay: Duration::ZERO,
    }
}

pub type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A keep-alive HTTP/1.1 upstream whose answers a closure decides from the request
/// and how many times its path was seen (1 for the first).
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, h) = (s.clone(), handler.clone());
                std::thread::spawn(move || serve(conn, &s, &*h));
            }
        });
        Upstream { addr, seen }
    }

    /// Requests seen for `path` (query included).
    pub fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req = Seen {
            method,
            path,
            headers,
            body,
        };
        let n = {
            let mut s = seen.lock().unwrap();
            s.push(req.clone());
            s.iter().filter(|x| x.path == req.path).count()
        };
        let out = handler(&req, n);
        std::thread::sleep(out.delay);
        let head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
            out.status,
            out.content_type,
            out.body.len()
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(out.body.as_bytes()).is_err() {
            return;
        }
    }
}

/// The error-page backend of ingress-nginx's `docs/examples/customization/custom-errors`
/// (`custom-default-backend.yaml`: Service `nginx-errors`, port 80 to 8080, image
/// `ingress-nginx/nginx-errors`), as that image answers: the status of `X-Code` (404
/// without it), the page of `X-Format` (HTML without it).
pub fn nginx_errors() -> Upstream {
    Upstream::start(|req, _| {
        let code: u16 = req
            .headers
            .get("x-code")
            .and_then(|c| c.parse().ok())
            .unwrap_or(404);
        let json = req.headers.get("x-format").map(String::as_str) == Some("application/json");
        Reply {
            status: code,
            content_type: if json {
                "application/json"
            } else {
                "text/html"
            },
            body: if json {
                "{ \"message\": \"The page you're looking for could not be found\" }".into()
            } else {
                "<span>The page you're looking for could not be found.</span>".into()
            },
            delay: Duration::ZERO,
        }
    })
}
