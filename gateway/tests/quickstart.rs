//! The Higress standalone quick-start (`examples/quickstart`, the seeds' files as they
//! stand): its `dns` registry resolved by dnsmasq on loopback, changes of the DNS answer
//! followed after `--dns-refresh`, the last good endpoints kept when DNS fails; and the
//! same with the registry switched to `static`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use test_support::*;

fn quickstart_copy() -> ConfigDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let cfg = ConfigDir::new();
    for kind in ["configmaps", "ingresses", "mcpbridges"] {
        for e in std::fs::read_dir(src.join(kind)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), cfg.path().join(kind).join(e.file_name())).unwrap();
        }
    }
    cfg
}

struct Dnsmasq {
    child: Child,
    hosts: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// dnsmasq on 127.0.0.1:<free port>, answering only from its hosts file.
    fn start(hosts_line: &str) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, format!("{hosts_line}\n")).unwrap();
        let port = free_port();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--conf-file=/dev/null",
                "--user=root",
                "--pid-file=",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian dnsmasq-base) must be installed: scripts/test.sh installs it");
        let d = Dnsmasq {
            child,
            hosts,
            port,
            _dir: dir,
        };
        wait_for("dnsmasq to listen", || {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.connect(("127.0.0.1", port)).map(|_| s))
                .ok()
                .filter(|_| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        });
        d
    }

    /// Change the answer and make dnsmasq reread its hosts file.
    fn answer(&self, hosts_line: &str) {
        std::fs::write(&self.hosts, format!("{hosts_line}\n")).unwrap();
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

fn from(gw: &Gateway) -> String {
    let r = get(gw.http, "foo.bar.com", "/get?foo=bar").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["path"], "/get?foo=bar");
    j["backend"].as_str().unwrap().to_string()
}

#[test]
fn seed_quickstart_through_a_dns_registry() {
    // The seed's registry says port 80: the backends listen there, on their own
    // loopback addresses.
    let one = Backend::start_on("127.0.0.11:80", "one");
    let two = Backend::start_on("127.0.0.12:80", "two");
    let mut dns = Dnsmasq::start("127.0.0.11 httpbin.org");
    let cfg = quickstart_copy();
    let resolver = format!("127.0.0.1:{}", dns.port);
    let gw = Gateway::start_with(
        cfg.path(),
        &["--dns-resolver", &resolver, "--dns-refresh", "1s"],
    );
    assert_eq!(from(&gw), "one");
    let z = gw.configz();
    assert_eq!(z["clusters"][0]["name"], "outbound|80||httpbin.dns");
    assert_eq!(z["clusters"][0]["endpoints"][0], "127.0.0.11:80");

    dns.answer("127.0.0.12 httpbin.org");
    wait_for("the new DNS answer to be followed", || {
        (from(&gw) == "two").then_some(())
    });

    // DNS goes away: the last good endpoints keep serving.
    dns.stop();
    wait_for("a failed re-resolution", || {
        gw.log().contains("dns resolution failed").then_some(())
    });
    assert_eq!(from(&gw), "two");
    assert!(one.requests() >= 1 && two.requests() >= 2);
}

#[test]
fn seed_quickstart_with_a_static_registry() {
    let be = Backend::start("static");
    let cfg = quickstart_copy();
    let bridge = std::fs::read_to_string(cfg.path().join("mcpbridges/default.yaml"))
        .unwrap()
        .replace(
            "domain: httpbin.org",
            &format!("domain: 127.0.0.1:{}", be.addr.port()),
        )
        .replace("type: dns", "type: static");
    cfg.write("mcpbridges/default.yaml", &bridge);
    let ing = std::fs::read_to_string(cfg.path().join("ingresses/route-foo-bar.yaml"))
        .unwrap()
        .replace(
            "higress.io/destination: httpbin.dns",
            "higress.io/destination: httpbin.static",
        );
    cfg.write("ingresses/route-foo-bar.yaml", &ing);
    let gw = Gateway::start(cfg.path());
    assert_eq!(from(&gw), "static");
    assert_eq!(
        gw.configz()["clusters"][0]["name"],
        "outbound|80||httpbin.static"
    );
}
