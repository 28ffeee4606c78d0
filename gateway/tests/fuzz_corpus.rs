//! The fuzz targets' committed inputs replayed as ordinary tests, without nightly or
//! libFuzzer: every file of `fuzz/corpus/<target>/` (seeds) and
//! `fuzz/regressions/<target>/` (inputs that once crashed, kept after the fix) goes
//! through the same entry function the target calls (`gateway::fuzzing`). Real fuzzing
//! runs in `scripts/fuzz.sh`.

use std::path::{Path, PathBuf};

use gateway::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files directly in `dir`, sorted (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn entry(target: &str) -> fn(&[u8]) {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"))
        .1
}

/// Every input of `target`'s corpus and regressions; the panics are collected so one
/// run names every failing file.
fn replay(target: &str) {
    let run = entry(target);
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(
        corpus.len() >= 5,
        "fuzz/corpus/{target} has {} seeds; commit a few real-looking inputs",
        corpus.len()
    );
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: inputs that panic: {failed:#?}"
    );
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        /// Every target has a test here, a cargo-fuzz binary that calls its entry
        /// function, and no corpus folder is left without a target.
        #[test]
        fn every_target_is_replayed_and_built() {
            let tested = [$(stringify!($target)),*];
            let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, tested, "gateway::fuzzing::TARGETS and this file's list");
            let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
            for name in &names {
                let src = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
                let src = std::fs::read_to_string(&src)
                    .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
                assert!(
                    src.contains(&format!("gateway::fuzzing::{name}")),
                    "fuzz_targets/{name}.rs does not call gateway::fuzzing::{name}"
                );
                assert!(
                    manifest.contains(&format!("name = \"{name}\"")),
                    "fuzz/Cargo.toml has no [[bin]] {name}"
                );
            }
            for kind in ["corpus", "regressions"] {
                let Ok(dirs) = std::fs::read_dir(fuzz_dir().join(kind)) else {
                    continue;
                };
                for d in dirs {
                    let d = d.unwrap().file_name().into_string().unwrap();
                    assert!(names.contains(&d.as_str()), "fuzz/{kind}/{d} names no target");
                }
            }
        }
    };
}

replay_tests!(
    sw8,
    w3c,
    b3_single,
    b3_multi,
    resp,
    higress_config,
    resource,
    translate,
    destination,
    accept_encoding,
    stats_filter,
    wasm_host,
);
