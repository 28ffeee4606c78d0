//! Config robustness: every case of the bad-config corpus (`tests/bad-config/`, see its
//! README) is rejected with its file, object and field path, the same line from
//! `gateway validate` and from a running gateway; applied live under load, no request
//! fails, the last good config keeps serving, and each rejection is counted. Files the
//! source cannot take as they are (over 4 MiB, a symlink loop, a folder replaced by a
//! file) are made here.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::*;

/// One corpus case: the input, where it goes in a config directory, and the line.
struct Case {
    id: String,
    target: String,
    bytes: Vec<u8>,
    expect: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-config")
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut groups: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    groups.sort();
    for group in groups {
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&group)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        inputs.sort();
        for input in inputs {
            let id = input
                .strip_prefix(corpus_dir())
                .unwrap()
                .with_extension("")
                .display()
                .to_string();
            let expect = std::fs::read_to_string(input.with_extension("expect"))
                .unwrap_or_else(|e| panic!("{id}: no .expect beside it: {e}"));
            let expect = expect.trim_end_matches('\n').to_string();
            assert!(!expect.contains('\n'), "{id}: one line expected");
            let target = expect
                .split_once(": ")
                .unwrap_or_else(|| panic!("{id}: the line starts with the file"))
                .0
                .to_string();
            cases.push(Case {
                id,
                target,
                bytes: std::fs::read(&input).unwrap(),
                expect,
            });
        }
    }
    cases
}

/// Write `bytes` at `rel` below `dir` atomically (a temp file renamed into place).
fn put(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let tmp = p.with_extension("yaml.tmp");
    std::fs::File::create(&tmp)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    std::fs::rename(tmp, p).unwrap();
}

/// `gateway validate DIR`: exit code and stdout lines.
fn validate(dir: &Path) -> (Option<i32>, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    (
        out.status.code(),
        text.lines().map(str::to_string).collect(),
    )
}

#[test]
fn corpus_has_eight_cases_per_kind_at_least() {
    let mut per_group: BTreeMap<String, usize> = BTreeMap::new();
    for c in corpus() {
        *per_group
            .entry(c.id.split('/').next().unwrap().to_string())
            .or_default() += 1;
    }
    // Every folder the directory source reads, `configmaps/` as its two shapes.
    let folders = [
        "higress-config",
        "domains",
        "ingresses",
        "mcpbridges",
        "secrets",
        "wasmplugins",
        "services",
        "endpoints",
        "endpointslices",
        "kingresses",
        "gateways",
        "virtualservices",
        "destinationrules",
    ];
    for f in folders {
        let n = per_group.get(f).copied().unwrap_or(0);
        assert!(n >= 8, "{f}: {n} cases, 8 at least: {per_group:?}");
    }
    assert_eq!(per_group.len(), folders.len(), "{per_group:?}");
    let total: usize = per_group.values().sum();
    assert!(total >= 80, "{total}");
    eprintln!("bad-config corpus: {total} cases {per_group:?}");
}

#[test]
fn validate_prints_the_exact_line_of_each_case() {
    let cases = corpus();
    // Two at a time: each is a process of its own.
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let Some(c) = cases.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let dir = tempfile::tempdir().unwrap();
                put(dir.path(), &c.target, &c.bytes);
                let (code, lines) = validate(dir.path());
                assert_eq!(code, Some(1), "{}: {lines:?}", c.id);
                assert_eq!(lines, std::slice::from_ref(&c.expect), "{}", c.id);
            });
        }
    });
}

/// What `ingresses/big.yaml` of `len` bytes is: YAML comments only (an empty Ingress,
/// valid), so only its size can reject it.
fn big_yaml(len: usize) -> Vec<u8> {
    let mut b = b"# padding\n".repeat(len / 10 + 1);
    b.truncate(len - 1);
    b.push(b'\n');
    b
}

const LIMIT: usize = 4 << 20;

#[test]
fn validate_reports_files_it_cannot_take() {
    // Exactly 4 MiB is read; one byte more is too large.
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "ingresses/big.yaml", &big_yaml(LIMIT));
    assert_eq!(validate(dir.path()).0, Some(0), "4 MiB exactly is read");
    put(dir.path(), "ingresses/big.yaml", &big_yaml(10 << 20));
    let (code, lines) = validate(dir.path());
    assert_eq!(code, Some(1));
    assert_eq!(
        lines,
        ["ingresses/big.yaml: Ingress higress-system/big: .: file too large: 10485760 bytes, the limit is 4194304 (4 MiB)"]
    );

    // A symlink to itself is reported; symlinks back to a folder being read are not
    // followed (two of them were 2^40 paths), so each object is read once.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path();
    put(
        cfg,
        "ingresses/r.yaml",
        ingress_yaml("r", &[], &[(None, "Prefix", "/")]).as_bytes(),
    );
    std::os::unix::fs::symlink("loop.yaml", cfg.join("ingresses/loop.yaml")).unwrap();
    std::os::unix::fs::symlink(".", cfg.join("ingresses/again")).unwrap();
    std::os::unix::fs::symlink("..", cfg.join("ingresses/up")).unwrap();
    let t0 = Instant::now();
    let (code, lines) = validate(cfg);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(code, Some(1));
    assert_eq!(
        lines,
        ["ingresses/loop.yaml: Ingress higress-system/loop: .: cannot read the file: Too many levels of symbolic links (os error 40)"]
    );

    // A kind's folder replaced by a file.
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "mcpbridges", b"registries: []\n");
    let (code, lines) = validate(dir.path());
    assert_eq!(code, Some(1));
    assert_eq!(
        lines,
        ["mcpbridges: McpBridge */*: .: not a directory (a file is where the folder should be); every McpBridge read from it stays in force"]
    );
}

/// Two client threads sending requests to the good route until told to stop: (answers,
/// failures and what they were).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    fn start(gw: &Gateway) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|_| {
                let (stop, addr) = (stop.clone(), gw.http);
                std::thread::spawn(move || {
                    let (mut ok, mut failed) = (0, Vec::new());
                    // Bounded: a stop that never comes ends the loop after 2 minutes.
                    let t0 = Instant::now();
                    while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
                        match get(addr, "shop.example.com", "/") {
                            Ok(r) if r.status == 200 && r.json()["backend"] == "good" => ok += 1,
                            Ok(r) => failed.push(format!("{} {}", r.status, r.text())),
                            Err(e) => failed.push(e.to_string()),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = (0, Vec::new());
        for t in self.threads {
            let (ok, failed) = t.join().unwrap();
            total.0 += ok;
            total.1.extend(failed);
        }
        total
    }
}

const REJECTED: &str = "gateway_config_reloads_total{result=\"rejected\"}";

/// Wait until the rejected counter reaches `n`; it must not pass it.
fn wait_rejected(gw: &Gateway, n: f64, what: &str) {
    let got = wait_for(&format!("rejection #{n} ({what})"), || {
        let v = gw.metric(REJECTED).unwrap_or(0.0);
        (v >= n).then_some(v)
    });
    assert_eq!(got, n, "{what}: one rejection, not more");
}

#[test]
fn live_bad_configs_are_rejected_under_load_and_the_good_one_keeps_serving() {
    let good = Backend::start("good");
    let other = Backend::start("other");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("good", good.addr.to_string(), 80),
        ("other", other.addr.to_string(), 80),
    ]);
    cfg.host_route("r", "shop.example.com", "good.static");
    let gw = Gateway::start(cfg.path());
    let load = Load::start(&gw);
    let t0 = Instant::now();
    let mut rejected = gw.metric(REJECTED).unwrap_or(0.0);

    // A duplicate route is no error (Higress keeps the older Ingress's route and reports
    // the newer one): in a directory the file named first is the older.
    let v = gw.version();
    cfg.host_route("z-duplicate", "shop.example.com", "other.static");
    gw.wait_version_after(v);

    let cases = corpus();
    for c in &cases {
        // What was there before: the good McpBridge for its cases, else nothing.
        let before = std::fs::read(cfg.path().join(&c.target)).ok();
        put(cfg.path(), &c.target, &c.bytes);
        rejected += 1.0;
        wait_rejected(&gw, rejected, &c.id);
        let log = gw.log();
        assert!(
            log.contains(&format!("rejected {}; ", c.expect)),
            "{}: {} not in the log",
            c.id,
            c.expect
        );
        match before {
            Some(b) => put(cfg.path(), &c.target, &b),
            None => std::fs::remove_file(cfg.path().join(&c.target)).unwrap(),
        }
    }

    // Made here: too large, a symlink loop, the McpBridge folder replaced by a file.
    put(cfg.path(), "ingresses/big.yaml", &big_yaml(10 << 20));
    rejected += 1.0;
    wait_rejected(&gw, rejected, "a 10 MiB file");
    std::fs::remove_file(cfg.path().join("ingresses/big.yaml")).unwrap();
    std::os::unix::fs::symlink("loop.yaml", cfg.path().join("ingresses/loop.yaml")).unwrap();
    rejected += 1.0;
    wait_rejected(&gw, rejected, "a symlink loop");
    std::fs::remove_file(cfg.path().join("ingresses/loop.yaml")).unwrap();
    let bridges = cfg.path().join("mcpbridges");
    std::fs::rename(&bridges, cfg.path().join("mcpbridges.away")).unwrap();
    std::fs::write(&bridges, b"not a folder\n").unwrap();
    rejected += 1.0;
    wait_rejected(&gw, rejected, "the McpBridge folder replaced by a file");
    assert!(gw
        .log()
        .contains("rejected mcpbridges: McpBridge */*: .: not a directory"));
    let folder_back = || {
        let z = gw.configz();
        let listed = z["rejected"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["object"] == "McpBridge */*"));
        (!listed).then_some(())
    };
    std::fs::remove_file(&bridges).unwrap();
    std::fs::rename(cfg.path().join("mcpbridges.away"), &bridges).unwrap();
    wait_for("the McpBridge folder's rejection to clear", folder_back);

    let took = t0.elapsed();
    let (ok, failed) = load.stop();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > cases.len(), "{ok} requests answered");
    assert_eq!(
        other.requests(),
        0,
        "the older duplicate route kept every request"
    );
    assert_eq!(get(gw.http, "shop.example.com", "/").unwrap().status, 200);
    eprintln!(
        "{} cases + 3 made here applied live in {took:?}; {ok} requests, none failed",
        cases.len()
    );
}
