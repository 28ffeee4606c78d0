//! The `zookeeper` registry end to end, against a real ZooKeeper server (Debian's
//! `zookeeper` package, run with `java` by the test on its own data directory and a free
//! loopback port, admin server off) and instances registered the way Dubbo and Spring
//! Cloud write them (`peers/zk_registrar.py`, with the kazoo client): Spring Cloud
//! services are routed to their instances through `higress.io/destination`, Dubbo
//! providers become clusters, a deleted instance stops receiving traffic without a failed
//! request, and a ZooKeeper outage keeps the last endpoints, counts failures, and is
//! followed again once ZooKeeper is back.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::tracing_peers::{post, Peer};
use test_support::*;

/// The jar Debian's `zookeeper` package installs; its manifest's Class-Path names the
/// jars it needs, so `java -cp` of it alone runs the server.
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// Bound for ZooKeeper to answer `ruok` (a JVM start on a loaded 2-core machine).
const ZK_START: Duration = Duration::from_secs(60);

/// A standalone ZooKeeper server owned by the test.
struct ZkServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl ZkServer {
    fn start() -> ZkServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        // tickTime 500 ms: sessions of 1 s to 10 s are allowed (2 to 20 ticks), so the
        // gateway's 10 s and kazoo's 10 s are granted as asked.
        let cfg = format!(
            "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=ruok\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("zoo.cfg"), cfg).unwrap();
        let mut zk = ZkServer {
            child: None,
            dir,
            port,
        };
        zk.run();
        zk
    }

    fn jar() -> PathBuf {
        let jar = std::env::var_os("ZOOKEEPER_JAR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(ZOOKEEPER_JAR));
        assert!(
            jar.exists(),
            "{} is missing: install Debian's zookeeper package (scripts/test.sh does), or \
             point ZOOKEEPER_JAR at a zookeeper jar",
            jar.display()
        );
        jar
    }

    /// Start the server (again, on the same port and data) and wait for `imok`.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("zookeeper.log"))
            .unwrap();
        let child = Command::new("java")
            .args(["-Xmx128m", "-XX:+UseSerialGC", "-cp"])
            .arg(Self::jar())
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(self.dir.path().join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run java (Debian: default-jre-headless, a dependency of zookeeper)");
        self.child = Some(child);
        let start = Instant::now();
        while !self.ruok() {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("zookeeper exited ({s}):\n{}", self.log());
            }
            if start.elapsed() > ZK_START {
                panic!("zookeeper not serving after {ZK_START:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ruok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(self.addr()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = String::new();
        s.write_all(b"ruok").is_ok() && s.read_to_string(&mut answer).is_ok() && answer == "imok"
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Forget everything (nodes and sessions), as a new server would.
    fn wipe(&self) {
        let data = self.dir.path().join("data");
        std::fs::remove_dir_all(&data).unwrap();
        std::fs::create_dir_all(&data).unwrap();
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zookeeper.log")).unwrap_or_default()
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `zk_registrar.py`: writes instances as Dubbo and Spring Cloud do.
struct Registrar {
    peer: Peer,
}

impl Registrar {
    fn start(zk: &ZkServer) -> Registrar {
        let peer = Peer::start("zk_registrar.py", &["--zk".into(), zk.addr().to_string()]);
        Registrar { peer }
    }

    fn call(&self, path: &str, body: Value) -> Value {
        let r = post(
            self.peer.addr("control"),
            path,
            "application/json",
            body.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("registrar {path}: {e}"));
        assert_eq!(
            r.status,
            200,
            "registrar {path}: {}\n{}",
            r.text(),
            self.peer.log()
        );
        r.json()
    }

    /// A Spring Cloud instance of `service` at `addr`; returns its node's path.
    fn spring(&self, service: &str, addr: SocketAddr) -> String {
        let body = json!({"service": service, "address": addr.ip().to_string(), "port": addr.port(),
                          "metadata": {"instance_status": "UP"}});
        self.call("/spring", body)["path"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A Dubbo provider of `interface` at `addr`, with the parameters Dubbo writes.
    fn dubbo(&self, interface: &str, addr: SocketAddr) -> String {
        let body = json!({"interface": interface, "address": addr.ip().to_string(), "port": addr.port(),
            "params": {"anyhost": "true", "application": "demo-provider", "deprecated": "false",
                       "dubbo": "2.0.2", "dynamic": "true", "generic": "false",
                       "interface": interface, "methods": "sayHello,sayHelloAsync",
                       "pid": "4242", "release": "3.2.0", "side": "provider",
                       "timestamp": "1700000000000"}});
        self.call("/dubbo", body)["path"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn delete(&self, path: &str) {
        self.call("/delete", json!({ "path": path }));
    }
}

const REGISTRY: &str = "zookeeper/zk";
const ORDERS: &str = "orders.services.zookeeper";
const DEMO: &str = "com.example.DemoService";

fn config(zk: &ZkServer) -> ConfigDir {
    let cfg = ConfigDir::new();
    cfg.write(
        "mcpbridges/default.yaml",
        &format!(
            "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\n\
             spec:\n  registries:\n  - type: zookeeper\n    name: zk\n    domain: 127.0.0.1\n    port: {}\n",
            zk.port
        ),
    );
    cfg.host_route("orders", "orders.test", ORDERS);
    cfg
}

fn start_gateway(cfg: &ConfigDir) -> Gateway {
    // `--eureka-poll` also sets ZooKeeper's rescan period.
    Gateway::start_with(cfg.path(), &["--eureka-poll", "1s"])
}

fn registry(gw: &Gateway) -> Value {
    let z = gw.configz();
    z["registries"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["registry"] == REGISTRY).cloned())
        .unwrap_or_else(|| panic!("no {REGISTRY} in configz registries: {}", z["registries"]))
}

/// The endpoints of `host`'s service in the registry's last good set.
fn endpoints(gw: &Gateway, host: &str) -> BTreeSet<String> {
    registry(gw)["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["host"] == host)
        .flat_map(|s| s["endpoints"].as_array().unwrap().clone())
        .map(|e| e["address"].as_str().unwrap().to_string())
        .collect()
}

fn set(addrs: &[SocketAddr]) -> BTreeSet<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

fn wait_endpoints(gw: &Gateway, host: &str, want: &[SocketAddr]) {
    let want = set(want);
    wait_for(&format!("{host} at {want:?}"), || {
        (endpoints(gw, host) == want).then_some(())
    });
}

/// The backend that answered a request to `host`; panics on anything but 200.
fn answer(gw: &Gateway, host: &str) -> String {
    let r = get(gw.http, host, "/hello").unwrap();
    assert_eq!(r.status, 200, "{host}: {}", r.text());
    r.json()["backend"].as_str().unwrap().to_string()
}

/// Wait until requests to `host` have reached every backend of `names`.
fn wait_reached(gw: &Gateway, host: &str, names: &[&str]) {
    let mut seen = BTreeSet::new();
    wait_for(&format!("{host} to reach {names:?}"), || {
        let r = get(gw.http, host, "/hello").ok()?;
        if r.status == 200 {
            seen.insert(r.json()["backend"].as_str()?.to_string());
        }
        names.iter().all(|n| seen.contains(*n)).then_some(())
    });
}

#[test]
fn spring_cloud_and_dubbo_instances_are_discovered_and_routed() {
    let zk = ZkServer::start();
    let reg = Registrar::start(&zk);
    let (a, b, provider) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("provider"),
    );
    reg.spring("orders", a.addr);
    let b_node = reg.spring("orders", b.addr);
    // A provider pointed at an echo backend: the gateway speaks HTTP to its address.
    let dubbo_node = reg.dubbo(DEMO, provider.addr);
    assert!(
        dubbo_node.starts_with(&format!(
            "/dubbo/{DEMO}/providers/dubbo%3A%2F%2F127.0.0.1%3A"
        )),
        "{dubbo_node}"
    );

    let cfg = config(&zk);
    let dubbo_host = format!("providers:{DEMO}:0.0.0:.zookeeper");
    // A host with colons needs its port in a destination (docs/configuration.md).
    cfg.host_route(
        "demo",
        "demo.test",
        &format!("{dubbo_host}:{}", provider.addr.port()),
    );
    let gw = start_gateway(&cfg);

    wait_reached(&gw, "orders.test", &["a", "b"]);
    assert_eq!(answer(&gw, "demo.test"), "provider");

    let r = registry(&gw);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["address"], zk.addr().to_string());
    assert_eq!(endpoints(&gw, ORDERS), set(&[a.addr, b.addr]));
    let services = r["services"].as_array().unwrap();
    let dubbo = services.iter().find(|s| s["host"] == dubbo_host).unwrap();
    assert_eq!(dubbo["protocol"], "dubbo");
    assert_eq!(dubbo["port"], provider.addr.port());
    assert_eq!(dubbo["endpoints"][0]["weight"], 1);
    let orders = services.iter().find(|s| s["host"] == ORDERS).unwrap();
    assert_eq!(orders["protocol"], "http");

    // The Dubbo service is a cluster, shown with its endpoint in configz and /clusters.
    let cluster = format!("outbound|{}||{dubbo_host}", provider.addr.port());
    let z = gw.configz();
    let c = z["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster.as_str())
        .unwrap_or_else(|| panic!("no cluster {cluster}: {}", z["clusters"]));
    assert_eq!(c["endpoints"][0], provider.addr.to_string());
    let text = get(gw.admin, "admin", "/clusters").unwrap().text();
    assert!(
        text.contains(&format!("{cluster}::{}::", provider.addr)),
        "{text}"
    );

    // A provider that goes away (its ephemeral node deleted) leaves no cluster behind.
    reg.delete(&dubbo_node);
    wait_for("the Dubbo service gone", || {
        endpoints(&gw, &dubbo_host).is_empty().then_some(())
    });

    // Deleting b's node: traffic moves to a with no failed request on the way.
    let before = b.requests();
    let deleted_at = Instant::now();
    reg.delete(&b_node);
    let mut sent = 0;
    while endpoints(&gw, ORDERS) != set(&[a.addr]) {
        answer(&gw, "orders.test");
        sent += 1;
        assert!(deleted_at.elapsed() < WAIT, "b still listed after {WAIT:?}");
    }
    eprintln!(
        "b's removal applied after {:?}, {sent} requests in between, all 200",
        deleted_at.elapsed()
    );
    // The configz set is the one routed: wait for the snapshot to carry it, then b is out.
    wait_for("b's endpoint out of the cluster", || {
        let z = gw.configz();
        let c = z["clusters"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == format!("outbound|{}||{ORDERS}", a.addr.port()))?
            .clone();
        (c["endpoints"] == json!([a.addr.to_string()])).then_some(())
    });
    let b_after_removal = b.requests();
    assert!(b_after_removal >= before);
    for _ in 0..20 {
        assert_eq!(answer(&gw, "orders.test"), "a");
    }
    assert_eq!(
        b.requests(),
        b_after_removal,
        "b got traffic after its removal"
    );
}

#[test]
fn zookeeper_outage_keeps_the_last_endpoints_and_is_followed_again() {
    let mut zk = ZkServer::start();
    let reg = Registrar::start(&zk);
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let a_node = reg.spring("orders", a.addr);
    let cfg = config(&zk);
    let gw = start_gateway(&cfg);
    wait_endpoints(&gw, ORDERS, &[a.addr]);
    assert_eq!(answer(&gw, "orders.test"), "a");
    let failures = registry(&gw)["failures"].as_u64().unwrap();
    let up = format!("gateway_registry_up{{registry=\"{REGISTRY}\"}}");
    assert_eq!(gw.metric(&up), Some(1.0));

    // ZooKeeper stops: the last endpoints stay and the failures are counted.
    zk.stop();
    let stopped = Instant::now();
    wait_for("the registry failing", || {
        let r = registry(&gw);
        (r["status"] == "failing, last services kept" && r["failures"].as_u64().unwrap() > failures)
            .then_some(())
    });
    eprintln!("failure reported {:?} after the stop", stopped.elapsed());
    assert_eq!(gw.metric(&up), Some(0.0));
    let failed = registry(&gw)["failures"].as_u64().unwrap();
    // Still failing a poll later (reported again while disconnected), still routed.
    wait_for("the failure counted again while ZooKeeper is away", || {
        (registry(&gw)["failures"].as_u64().unwrap() > failed).then_some(())
    });
    assert_eq!(endpoints(&gw, ORDERS), set(&[a.addr]));
    for _ in 0..10 {
        assert_eq!(answer(&gw, "orders.test"), "a");
    }
    let series =
        format!("gateway_registry_updates_total{{registry=\"{REGISTRY}\",result=\"failure\"}}");
    assert!(gw.metric(&series).unwrap_or(0.0) >= 2.0, "{}", gw.metrics());

    // Back: the watcher reconnects and follows changes again.
    zk.run();
    let restarted = Instant::now();
    wait_for("the registry ok again", || {
        (registry(&gw)["status"] == "ok").then_some(())
    });
    eprintln!("ok again {:?} after the restart", restarted.elapsed());
    reg.spring("orders", b.addr);
    wait_reached(&gw, "orders.test", &["a", "b"]);
    reg.delete(&a_node);
    wait_endpoints(&gw, ORDERS, &[b.addr]);
    wait_for("the snapshot without a", || {
        let z = gw.configz();
        let c = z["clusters"]
            .as_array()?
            .iter()
            .find(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(&format!("||{ORDERS}")))
            })?
            .clone();
        (c["endpoints"] == json!([b.addr.to_string()])).then_some(())
    });
    let a_requests = a.requests();
    for _ in 0..10 {
        assert_eq!(answer(&gw, "orders.test"), "b");
    }
    assert_eq!(a.requests(), a_requests);
    assert_eq!(gw.metric(&up), Some(1.0));

    // A server that lost its data knows no session: the old one is expired, a new one
    // is opened, and the (now empty) registry is read from it.
    zk.stop();
    zk.wipe();
    zk.run();
    wait_for("the new session's empty set", || {
        let r = registry(&gw);
        (r["status"] == "ok" && r["services"] == json!([])).then_some(())
    });
    let ended = gw.log();
    let ended = ended
        .lines()
        .find(|l| l.contains("zookeeper session ended"))
        .unwrap_or_else(|| panic!("no session end logged:\n{ended}"));
    eprintln!("{ended}");
    // The registrar's kazoo refuses a server behind the zxid it saw: a new one registers,
    // as providers do with a new ensemble.
    drop(reg);
    let reg = Registrar::start(&zk);
    reg.spring("orders", a.addr);
    wait_reached(&gw, "orders.test", &["a"]);
}
