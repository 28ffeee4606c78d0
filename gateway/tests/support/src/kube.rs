//! The Kubernetes API stand-in (`tests/peers/kube_apiserver.py`) and the real `kubectl`
//! (v1.33, put beside the peers' python by `scripts/prereqs.sh`) talking to it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{repo_root, tracing_peers, Gateway, WAIT};

pub struct ApiServer {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// kubectl v1.33 from the peers' venv.
pub fn kubectl_bin() -> PathBuf {
    let k = tracing_peers::python().with_file_name("kubectl");
    assert!(
        k.exists(),
        "{} not found: run scripts/test.sh, which puts kubectl v1.33 into the peers' venv",
        k.display()
    );
    k
}

impl ApiServer {
    pub fn start() -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
        let child = Command::new("python3")
            .arg(repo_root().join("gateway/tests/peers/kube_apiserver.py"))
            .arg(&port_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("python3 runs the API stand-in");
        let start = Instant::now();
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            assert!(start.elapsed() < WAIT, "the API stand-in did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: stand-in\n  context: {{cluster: stand-in, user: test, namespace: higress-system}}\ncurrent-context: stand-in\nusers:\n- name: test\n  user: {{token: test}}\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
        ApiServer { child, addr, dir }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Run kubectl against the stand-in; `stdin` is piped in when given.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut child = Command::new(kubectl_bin())
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin, &[]);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl create -f -` with this YAML.
    pub fn create(&self, yaml: &str) -> String {
        self.kubectl_ok(&["create", "-f", "-"], Some(yaml))
    }

    /// A test control of the stand-in (`expire`, `outage?ms=N`).
    pub fn control(&self, what: &str) {
        let r = crate::request(self.addr, "POST", "x", &format!("/_stand-in/{what}"), &[])
            .expect("the stand-in answers");
        assert_eq!(r.status, 200, "control {what}");
    }

    /// Every request line the stand-in has seen.
    pub fn requests(&self) -> Vec<String> {
        let r = crate::get(self.addr, "x", "/_stand-in/requests").unwrap();
        r.text().lines().map(str::to_string).collect()
    }

    /// The gateway in Kubernetes mode against this stand-in.
    pub fn gateway(&self, extra: &[&str]) -> Gateway {
        let kc = self.kubeconfig();
        Gateway::start_mode(
            &["--kube".into()],
            extra,
            &[("KUBECONFIG", kc.to_str().unwrap())],
        )
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
