//! A raw HTTP/1.1 client: explicit bytes out, parsed status/headers/body in.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// What a connection's bytes go through: the socket, or TLS over it.
pub trait Wire: Read + Write + Send {}
impl<T: Read + Write + Send> Wire for T {}

/// A keep-alive connection.
pub struct Conn {
    reader: BufReader<Box<dyn Wire>>,
    /// The socket under the wire (for timeouts).
    tcp: TcpStream,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = connect(addr)?;
        Ok(Conn {
            tcp: s.try_clone()?,
            reader: BufReader::new(Box::new(s)),
        })
    }

    /// A connection whose bytes go through `wire` (e.g. TLS) over the socket `tcp`.
    pub fn over(tcp: TcpStream, wire: Box<dyn Wire>) -> Conn {
        Conn {
            tcp,
            reader: BufReader::new(wire),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.tcp
    }

    /// Send a request with `Host: host` and extra header lines; read the response.
    pub fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes())?;
        self.read_response(method == "HEAD")
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    pub fn read_response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(resp);
        }
        if let Some(n) = resp
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            let mut body = vec![0; n];
            self.reader.read_exact(&mut body)?;
            resp.body = body;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                    .map_err(|e| std::io::Error::other(format!("bad chunk size {line:?}: {e}")))?;
                if n == 0 {
                    line.clear();
                    self.reader.read_line(&mut line)?;
                    break;
                }
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                resp.body.extend_from_slice(&chunk[..n]);
            }
        } else {
            self.reader.read_to_end(&mut resp.body)?;
        }
        Ok(resp)
    }

    /// Whether the peer has closed the connection (reads EOF within `within`).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream().set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        let r = matches!(self.reader.read(&mut b), Ok(0));
        self.stream()
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        r
    }
}

/// A loopback TCP connection with the client's timeouts.
pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    Conn::open(addr)?.request(method, host, path, headers)
}

pub fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<Response> {
    request(addr, "GET", host, path, &[])
}

/// A request with a body (framed by `content-length`) on a new connection.
pub fn request_with_body(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let mut conn = Conn::open(addr)?;
    conn.send_raw(&bytes)?;
    conn.read_response(method == "HEAD")
}
