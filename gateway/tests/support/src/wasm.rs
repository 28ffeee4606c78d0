//! Wasm plugin test support: the compiled Higress plugins of the PyPI package
//! `gpustack-higress-plugins` (installed into the peers' venv by scripts/test.sh), the
//! hand-written ABI module, a shared compile cache, and `WasmPlugin` objects.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{ConfigDir, Gateway};

/// Long enough for a cold compile of several Go plugins on two busy cores.
pub const LOAD_WAIT: Duration = Duration::from_secs(240);

/// `plugins/` of the installed package (found without importing it).
pub fn plugins_dir() -> PathBuf {
    let python = crate::tracing_peers::python();
    let out = Command::new(&python)
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('gpustack_higress_plugins'); print(s.submodule_search_locations[0] if s else '')",
        ])
        .output()
        .expect("run the peers' python");
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !dir.is_empty(),
        "gpustack-higress-plugins is not installed in {}: run scripts/test.sh (or \
         `NEED_PEERS_VENV=1 bash scripts/prereqs.sh`), which installs \
         gateway/tests/peers/wasm-plugins.txt",
        python.display()
    );
    PathBuf::from(dir).join("plugins")
}

/// `plugins/<name>/<version>/plugin.wasm`.
pub fn plugin(name: &str, version: &str) -> PathBuf {
    let p = plugins_dir().join(name).join(version).join("plugin.wasm");
    assert!(p.exists(), "{} is missing from the package", p.display());
    p
}

/// The hand-written ABI edge-case module.
pub fn abi_module() -> PathBuf {
    crate::repo_root().join("gateway/tests/fixtures/abi_edge.wat")
}

/// Compiled modules shared by every test run (a module compiles once per machine).
pub fn cache_dir() -> PathBuf {
    crate::repo_root().join("target/wasm-test-cache")
}

/// A `WasmPlugin` in `higress-system`: `spec` is the YAML under `spec:` after `url`,
/// indented by two spaces.
pub fn wasm_plugin_yaml(name: &str, url: &str, spec: &str) -> String {
    let mut y = format!(
        "apiVersion: extensions.higress.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: {name}\n  namespace: higress-system\nspec:\n  url: {url}\n"
    );
    for line in spec.lines() {
        y.push_str("  ");
        y.push_str(line);
        y.push('\n');
    }
    y
}

impl ConfigDir {
    /// Write `wasmplugins/<name>.yaml`.
    pub fn wasm_plugin(&self, name: &str, url: &str, spec: &str) {
        self.write(
            &format!("wasmplugins/{name}.yaml"),
            &wasm_plugin_yaml(name, url, spec),
        );
    }
}

impl Gateway {
    /// A gateway on `config` with the test compile cache and `extra` flags; then the
    /// `plugins` (name, url, spec) are written, and it returns once they are all in the
    /// chain (a cold compile takes longer than start-up may).
    pub fn start_with_plugins(
        config: &ConfigDir,
        extra: &[&str],
        plugins: &[(&str, &str, &str)],
    ) -> Gateway {
        let cache = cache_dir();
        let mut args = vec!["--wasm-cache-dir", cache.to_str().unwrap()];
        args.extend_from_slice(extra);
        let gw = Gateway::start_with(config.path(), &args);
        for (name, url, spec) in plugins {
            config.wasm_plugin(name, url, spec);
        }
        for (name, _, _) in plugins {
            gw.wait_plugin(name);
        }
        gw
    }

    /// Names (`<namespace>.<name>`) of the plugins in the live chain, in run order.
    pub fn chain(&self) -> Vec<String> {
        self.configz()["plugins"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait until plugin `name` (metadata name) is in the live chain.
    pub fn wait_plugin(&self, name: &str) {
        let full = format!("higress-system.{name}");
        let object = format!("WasmPlugin higress-system/{name}");
        let start = Instant::now();
        while !self.chain().contains(&full) {
            let z = self.configz();
            if let Some(r) = z["rejected"]
                .as_array()
                .and_then(|a| a.iter().find(|r| r["object"] == object.as_str()))
            {
                panic!("plugin {full} was rejected: {}", r["error"]);
            }
            assert!(
                start.elapsed() < LOAD_WAIT,
                "plugin {full} not loaded after {LOAD_WAIT:?}; configz: {}\nlog: {}",
                self.configz(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The rejection of WasmPlugin `name`, once there is one.
    pub fn wait_rejection(&self, name: &str) -> String {
        let object = format!("WasmPlugin higress-system/{name}");
        let start = Instant::now();
        loop {
            let z = self.configz();
            if let Some(r) = z["rejected"]
                .as_array()
                .and_then(|a| a.iter().find(|r| r["object"] == object.as_str()))
            {
                return r["error"].as_str().unwrap_or_default().to_string();
            }
            assert!(
                start.elapsed() < LOAD_WAIT,
                "no rejection of {object} after {LOAD_WAIT:?}: {z}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
