//! `gateway demo` on loopback ports of its own, for the tests that check what a new
//! user sees first (the k6 scripts, the console).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};

use crate::client::get;
use crate::{free_port, gateway_bin, wait_for};

/// `gateway demo`, running; stopped when dropped (also when a test fails).
pub struct Demo {
    child: Child,
    pub http: SocketAddr,
    pub stats: SocketAddr,
    pub admin: SocketAddr,
    /// The config directory the demo printed.
    pub dir: PathBuf,
    /// What the demo printed at start (its stderr up to the first answer).
    pub printed: String,
    log: tempfile::NamedTempFile,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Demo {
    /// Start it with `extra` arguments and wait until it answers on its demo host.
    pub fn start(extra: &[&str]) -> Demo {
        let port = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
        let (http, stats, admin) = (port(), port(), port());
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(gateway_bin())
            .args(["demo", "--http-addr", &http.to_string()])
            .args(["--https-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--local-http-addr", "off"])
            .args(["--stats-addr", &stats.to_string()])
            .args(["--admin-addr", &admin.to_string(), "--access-log", "off"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        wait_for("the demo to answer", || {
            get(http, "foo.bar.com", "/get")
                .ok()
                .filter(|r| r.status == 200)
        });
        let printed = std::fs::read_to_string(log.path()).unwrap();
        let dir = printed
            .split("config in ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|d| PathBuf::from(d.trim_end_matches('/')))
            .unwrap_or_else(|| panic!("no config dir in the demo's output: {printed}"));
        Demo {
            child,
            http,
            stats,
            admin,
            dir,
            printed,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the demo logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}
