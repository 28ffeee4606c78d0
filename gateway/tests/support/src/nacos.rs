//! `nacos_standin.py`, a loopback Nacos 2.x server (the v1 HTTP open API under `/nacos`
//! and the gRPC API on the HTTP port + 1000), and `nacos_client.py`, which drives a
//! server with the official Python SDK (PyPI `nacos-sdk-python`).

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::tracing_peers::{peers_dir, post, python, Peer};
use crate::Response;

/// A running stand-in.
pub struct NacosStandin {
    pub peer: Peer,
}

impl NacosStandin {
    /// Start it with extra flags (`--auth user:pass`, `--heartbeat-timeout 1`, ...).
    pub fn start(args: &[&str]) -> NacosStandin {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        NacosStandin {
            peer: Peer::start("nacos_standin.py", &args),
        }
    }

    /// The HTTP listener (`/nacos/v1/...`).
    pub fn http(&self) -> SocketAddr {
        self.peer.addr("http")
    }

    /// The gRPC listener: always the HTTP port + 1000, as clients derive it.
    pub fn grpc(&self) -> SocketAddr {
        self.peer.addr("grpc")
    }

    /// `127.0.0.1:<http port>`: what clients are given as the server address.
    pub fn server_addr(&self) -> String {
        self.http().to_string()
    }

    /// POST a test control (`/instance`, `/drop-grpc`, `/down`, `/up`); its JSON answer.
    pub fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let r = post(
            self.peer.addr("control"),
            path,
            "application/json",
            body.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("nacos stand-in control {path}: {e}"));
        (r.status, r.json())
    }

    /// The store as JSON: `services`, `configs`, `connections`, `up`.
    pub fn state(&self) -> Value {
        crate::get(self.peer.addr("control"), "control", "/state")
            .expect("nacos stand-in /state")
            .json()
    }

    /// One request to the HTTP API (`path` includes `/nacos`), with a form body if given.
    pub fn http_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        form: Option<&str>,
    ) -> std::io::Result<Response> {
        let host = self.server_addr();
        match form {
            Some(body) => {
                let mut h = headers.to_vec();
                h.push(("content-type", "application/x-www-form-urlencoded"));
                crate::client::request_with_body(
                    self.http(),
                    method,
                    &host,
                    path,
                    &h,
                    body.as_bytes(),
                )
            }
            None => crate::request(self.http(), method, &host, path, headers),
        }
    }
}

/// What one run of `nacos_client.py` did.
pub struct SdkRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl SdkRun {
    /// The `STEP <name> <json>` lines: name -> what the SDK saw.
    pub fn steps(&self) -> Vec<(String, Value)> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("STEP "))
            .filter_map(|l| {
                let (name, json) = l.split_once(' ')?;
                Some((name.to_string(), serde_json::from_str(json).ok()?))
            })
            .collect()
    }

    /// The JSON of step `name`, or a panic that shows the run.
    pub fn step(&self, name: &str) -> Value {
        self.steps()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no step {name:?} in the SDK run:\n{}", self.show()))
    }

    pub fn show(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr (last 60 lines)\n{}",
            self.stdout,
            self.stderr
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

/// Run `nacos_client.py <mode> --server <server> <args>`, killed after `bound`.
pub fn run_sdk(mode: &str, server: &str, args: &[&str], bound: Duration) -> SdkRun {
    let work = tempfile::tempdir().unwrap();
    let mut child = Command::new(python())
        .arg("-u")
        .arg(peers_dir().join("nacos_client.py"))
        .arg(mode)
        .arg("--server")
        .arg(server)
        .arg("--work")
        .arg(work.path())
        .args(args)
        // The SDKs write their cache and log files relative to it.
        .current_dir(work.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("grpc_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nacos_client.py");
    // Readers fill shared buffers: a process the SDK forked may keep the pipes open after
    // the driver exits, so they are read for a bounded time, not to EOF.
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let settle = Instant::now();
    while !(out.1.is_finished() && err.1.is_finished()) && settle.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdout = out.0.lock().unwrap().clone();
    let mut stderr = err.0.lock().unwrap().clone();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {bound:?})"));
    }
    SdkRun {
        success: status.is_some_and(|s| s.success()) && stdout.lines().any(|l| l == "DONE"),
        stdout,
        stderr,
    }
}

/// Read `r` into a shared buffer on a thread of its own.
fn drain(mut r: impl Read + Send + 'static) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    let t = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    (buf, t)
}
