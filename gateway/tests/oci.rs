//! WasmPlugins from OCI images in a real registry on loopback (Debian's `docker-registry`,
//! distribution 2.8), pushed with scripts/oci-push.py in the three layouts Higress
//! publishes: the real gateway pulls `transformer` 2.0.0 and a request shows its header
//! edits; a restart with the registry down runs from the cache; a wrong `sha256` and an
//! unreachable registry are refused while the running plugin stays; an htpasswd
//! registry is pulled from with an `imagePullSecret`'s credentials, also when the Secret
//! comes after the plugin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use test_support::wasm::{plugin, LOAD_WAIT};
use test_support::{free_port, repo_root, request, wait_for, Backend, ConfigDir, Gateway};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A registry process with its storage in a temporary directory.
struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Registry {
    /// `htpasswd`: require Basic credentials (user, password).
    fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: run scripts/test.sh (or apt-get install docker-registry)"
        );
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = htpasswd {
            // bcrypt at the lowest cost: the registry checks it on every request.
            let hash = bcrypt::hash(password, 4).unwrap();
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                file.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Registry { child, addr, dir };
        let start = Instant::now();
        // Up once /v2/ answers (401 with auth).
        while test_support::client::get(addr, "r", "/v2/").is_err() {
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!("docker-registry exited with {status}: {}", reg.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "docker-registry not up: {}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Push `wasm` as `<repository>:<tag>` in `layout`; returns the manifest digest.
    fn push(
        &self,
        repository: &str,
        tag: &str,
        layout: &str,
        wasm: &Path,
        creds: Option<(&str, &str)>,
    ) -> String {
        let mut cmd = Command::new("python3");
        cmd.arg(repo_root().join("scripts/oci-push.py"))
            .args(["--registry", &self.addr.to_string()])
            .args(["--repository", repository, "--tag", tag, "--layout", layout])
            .arg("--wasm")
            .arg(wasm);
        if let Some((u, p)) = creds {
            cmd.args(["--user", u, "--password", p]);
        }
        let out = cmd.output().expect("run scripts/oci-push.py");
        assert!(
            out.status.success(),
            "push {repository}:{tag} ({layout}): {}\nregistry: {}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(digest.starts_with("sha256:"), "{digest}");
        digest
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn transformer() -> PathBuf {
    plugin("transformer", "2.0.0")
}

/// transformer's config adding request header `name: value`.
fn adds(name: &str, value: &str) -> String {
    format!("defaultConfig:\n  reqRules:\n  - operate: add\n    headers:\n    - key: {name}\n      value: {value}\n")
}

/// The request headers the backend saw.
fn seen(gw: &Gateway) -> serde_json::Value {
    let r = request(gw.http, "GET", "oci.test", "/", &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["headers"].clone()
}

/// The rejection of plugin `name` once it contains `want`.
fn rejection_containing(gw: &Gateway, name: &str, want: &str) -> String {
    let start = Instant::now();
    loop {
        let error = gw.wait_rejection(name);
        if error.contains(want) {
            return error;
        }
        assert!(
            start.elapsed() < LOAD_WAIT,
            "last rejection of {name}: {error:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_layouts_run_then_restart_from_the_cache_and_failures_keep_the_plugin() {
    let reg = Registry::start(None);
    let wasm = transformer();
    let at = reg.addr;
    let layouts = ["go", "docker", "cpp"];
    let digests: Vec<String> = layouts
        .iter()
        .map(|l| reg.push(&format!("plugins/t-{l}"), "2.0.0", l, &wasm, None))
        .collect();
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let insecure = at.to_string();
    let flags = ["--wasm-insecure-registries", insecure.as_str()];
    let url = |l: &str, tag: &str| format!("oci://{at}/plugins/t-{l}:{tag}");
    let specs: Vec<(String, String, String)> = layouts
        .iter()
        .map(|l| {
            (
                format!("t-{l}"),
                url(l, "2.0.0"),
                adds(&format!("x-from-{l}"), l),
            )
        })
        .collect();
    let plugins: Vec<(&str, &str, &str)> = specs
        .iter()
        .map(|(n, u, s)| (n.as_str(), u.as_str(), s.as_str()))
        .collect();
    let gw = Gateway::start_with_plugins(&cfg, &flags, &plugins);
    let h = seen(&gw);
    for l in layouts {
        assert_eq!(h[format!("x-from-{l}")], l, "{h}");
    }
    drop(gw);

    // The registry is gone: a new gateway runs every plugin from the cache.
    reg.stop();
    let gw = Gateway::start_with_plugins(&cfg, &flags, &[]);
    for l in layouts {
        gw.wait_plugin(&format!("t-{l}"));
    }
    let h = seen(&gw);
    for l in layouts {
        assert_eq!(h[format!("x-from-{l}")], l, "{h}");
    }

    // A sha256 that is not the image's manifest digest is refused; the plugin stays.
    let zeros = "0".repeat(64);
    cfg.wasm_plugin(
        "t-go",
        &url("go", "2.0.0"),
        &format!("sha256: {zeros}\n{}", adds("x-from-go", "changed")),
    );
    let e = rejection_containing(&gw, "t-go", "spec.sha256");
    assert!(
        e.contains(&format!(
            "spec.sha256: oci://{at}/plugins/t-go:2.0.0: the image's manifest digest is {}",
            digests[0]
        )) && e.contains(&format!("expected sha256:{zeros}")),
        "{e}"
    );
    assert_eq!(seen(&gw)["x-from-go"], "go");

    // An image the cache does not have, from the stopped registry: refused naming
    // spec.url and the registry; the plugin stays.
    cfg.wasm_plugin("t-go", &url("go", "3.0.0"), &adds("x-from-go", "three"));
    let e = rejection_containing(&gw, "t-go", "unreachable");
    assert!(
        e.starts_with(&format!("spec.url: oci://{at}/plugins/t-go:3.0.0: registry {at} unreachable: connecting to {at}")),
        "{e}"
    );
    assert_eq!(seen(&gw)["x-from-go"], "go");
}

#[test]
fn an_image_pull_secret_gives_the_registry_credentials() {
    let (user, password) = ("alice", "s3cret");
    let reg = Registry::start(Some((user, password)));
    let at = reg.addr;
    reg.push(
        "private/t",
        "1.0",
        "go",
        &transformer(),
        Some((user, password)),
    );
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let docker_config = format!(
        r#"{{"auths":{{"http://{at}":{{"auth":"{}"}}}}}}"#,
        b64(&format!("{user}:{password}"))
    );
    cfg.write(
        "secrets/regcred.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
            b64(&docker_config)
        ),
    );
    let insecure = at.to_string();
    let url = format!("oci://{at}/private/t:1.0");
    // `Always`: from the registry, whatever the cache holds (the test cache outlives
    // runs, and the same module pushed the same way has the same digest).
    let spec = format!(
        "imagePullSecret: regcred\nimagePullPolicy: Always\n{}",
        adds("x-private", "yes")
    );
    let gw = Gateway::start_with_plugins(
        &cfg,
        &["--wasm-insecure-registries", &insecure],
        &[("private", &url, &spec)],
    );
    assert_eq!(seen(&gw)["x-private"], "yes");

    // Without credentials the registry says no (`Always`: the cache would have the image);
    // with a Secret that is not there, the field says so.
    cfg.wasm_plugin(
        "anon",
        &format!("oci://{at}/private/t:1.0"),
        &format!("imagePullPolicy: Always\n{}", adds("x-anon", "1")),
    );
    let e = rejection_containing(&gw, "anon", "refused access");
    assert!(
        e.contains(&format!("registry {at} refused access")) && e.contains("spec.imagePullSecret"),
        "{e}"
    );
    cfg.wasm_plugin(
        "missing",
        &format!("oci://{at}/private/t:1.0"),
        &format!("imagePullSecret: nope\n{}", adds("x-missing", "1")),
    );
    let e = rejection_containing(&gw, "missing", "spec.imagePullSecret");
    assert!(
        e.contains("spec.imagePullSecret: there is no Secret higress-system/nope"),
        "{e}"
    );
    assert_eq!(seen(&gw)["x-private"], "yes");
    // The Secret coming later (as Kubernetes watchers may list it) applies the plugin.
    cfg.write(
        "secrets/nope.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: nope\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{docker_config}'\n"
        ),
    );
    // (Not wait_plugin: the rejection shows until the retry replaces it.)
    wait_for("the plugin to be applied with the new Secret", || {
        gw.chain()
            .contains(&"higress-system.missing".to_string())
            .then_some(())
    });
    let h = seen(&gw);
    assert_eq!(
        (&h["x-private"], &h["x-missing"]),
        (&"yes".into(), &"1".into()),
        "{h}"
    );
}
