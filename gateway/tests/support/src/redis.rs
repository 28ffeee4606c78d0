//! Debian's `redis-server` as a real Redis on loopback: its own process and directory
//! (never the system service), no persistence, stopped when dropped. It can be stopped
//! and started again on the same port, to test what a client does while it is gone.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::{free_port, wait_for};

pub struct RedisServer {
    pub addr: SocketAddr,
    password: Option<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server on a free port; `password` sets `requirepass` (AUTH then required).
    pub fn start(password: Option<&str>) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            password: password.map(str::to_owned),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.resume();
        server
    }

    /// Kills the server (SIGKILL: open connections see a reset or EOF at once) and waits
    /// until its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_for("redis-server to stop", || {
            TcpStream::connect(self.addr).is_err().then_some(())
        });
    }

    /// Starts the server again on the same port (empty: nothing was saved).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let bin = ["/usr/bin/redis-server", "/usr/sbin/redis-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect(
                "redis-server is not installed: run scripts/test.sh, which installs the \
                 Debian package redis-server (NEED_DEBS)",
            );
        let mut cmd = Command::new(bin);
        cmd.current_dir(self.dir.path())
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--enable-debug-command", "local"])
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        self.child = Some(cmd.spawn().expect("start redis-server"));
        wait_for("redis-server to answer PING", || {
            let out = self.cli(&["PING"]);
            (out.trim() == "PONG").then_some(())
        });
    }

    /// Runs `redis-cli` against this server (authenticated when it has a password) and
    /// returns its output, trimmed of the trailing newline.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p"])
            .arg(self.addr.port().to_string())
            .arg("--no-auth-warning");
        if let Some(p) = &self.password {
            cmd.args(["-a", p]);
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// The server's log (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
