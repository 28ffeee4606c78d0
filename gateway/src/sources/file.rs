//! The Higress standalone layout: `DIR/<kind-plural>/**/<name>.yaml|yml`, every object in
//! namespace `higress-system` and named after its file.
//!
//! Watching rescans the whole directory after 50 ms of quiet and diffs file contents
//! against the last scan. That is robust to editors' temp files and `write + rename`, and
//! these directories are small.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Change;
use crate::resources::{Kind, Resource, ResourceKey, SYSTEM_NAMESPACE};

/// Quiet time after the last file event before a rescan. Higress uses 100 ms; half
/// that keeps a change visible well within 100 ms and still coalesces an editor's or a
/// tool's burst of writes into one scan.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("{0}: not a readable directory: {1}")]
    Unreadable(String, std::io::Error),
    #[error("watching {0}: {1}")]
    Watch(String, notify::Error),
}

/// Contents of every object file, keyed by object.
#[derive(Default, Clone, PartialEq)]
pub struct Scan {
    files: BTreeMap<ResourceKey, (String, Vec<u8>)>,
}

impl Scan {
    /// Read every object file below `dir`.
    pub fn read(dir: &Path) -> Result<Scan, FileSourceError> {
        std::fs::read_dir(dir)
            .map_err(|e| FileSourceError::Unreadable(dir.display().to_string(), e))?;
        let mut scan = Scan::default();
        for kind in Kind::ALL {
            let mut paths = Vec::new();
            collect(&dir.join(kind.folder()), &mut paths);
            paths.sort();
            for path in paths {
                let Some(name) = object_name(&path) else {
                    continue;
                };
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let origin = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let key = ResourceKey {
                    kind,
                    namespace: SYSTEM_NAMESPACE.to_string(),
                    name,
                };
                if let Some((prev, _)) = scan.files.get(&key) {
                    tracing::warn!(file = %origin, other = %prev, "two files name the same object; the later one wins");
                }
                scan.files.insert(key, (origin, bytes));
            }
        }
        Ok(scan)
    }

    /// Every object as an upsert (the initial load).
    pub fn all(&self) -> Vec<Change> {
        Scan::default().diff(self)
    }

    /// What changed from `self` to `next`.
    pub fn diff(&self, next: &Scan) -> Vec<Change> {
        let mut out = Vec::new();
        for (key, (origin, bytes)) in &next.files {
            if self.files.get(key).map(|(_, b)| b) != Some(bytes) {
                out.push(Change::Upsert {
                    key: key.clone(),
                    origin: origin.clone(),
                    result: Resource::parse(key.kind, bytes, &key.name, &key.namespace),
                });
            }
        }
        for (key, (origin, _)) in &self.files {
            if !next.files.contains_key(key) {
                out.push(Change::Delete {
                    key: key.clone(),
                    origin: origin.clone(),
                });
            }
        }
        out
    }
}

/// Events that cannot change what a scan reads: opens, reads, closes after reading.
fn is_read_only(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(
        kind,
        notify::EventKind::Access(
            AccessKind::Open(_)
                | AccessKind::Read
                | AccessKind::Close(AccessMode::Read)
                | AccessKind::Any
                | AccessKind::Other
        )
    )
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// `name` of `name.yaml` / `name.yml`; `None` for any other file (temp files etc.).
fn object_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let name = file
        .strip_suffix(".yaml")
        .or_else(|| file.strip_suffix(".yml"))?;
    if name.is_empty() || name.starts_with('.') {
        return None;
    }
    Some(name.to_string())
}

/// Watch `dir` and send each debounced batch of changes. `last` is the scan the
/// receiver already has. Runs until the receiver is gone.
pub async fn watch(
    dir: PathBuf,
    mut last: Scan,
    tx: mpsc::Sender<Vec<Change>>,
) -> Result<(), FileSourceError> {
    use notify::Watcher;
    let (ping_tx, mut ping_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Our own rescans open and read the files: those access events must not
        // trigger another rescan (that would loop every debounce period).
        if res.as_ref().is_ok_and(|e| is_read_only(&e.kind)) {
            return;
        }
        let _ = ping_tx.send(());
    })
    .map_err(|e| FileSourceError::Watch(dir.display().to_string(), e))?;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .map_err(|e| FileSourceError::Watch(dir.display().to_string(), e))?;
    // Also rescan now and then: covers events lost by the OS (overflow, network fs).
    let mut safety = tokio::time::interval(Duration::from_secs(5));
    safety.tick().await;
    loop {
        tokio::select! {
            got = ping_rx.recv() => { if got.is_none() { return Ok(()); } }
            _ = safety.tick() => {}
        }
        // Debounce: wait for a quiet period.
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, ping_rx.recv()).await {}
        tracing::debug!(dir = %dir.display(), "config directory rescan");
        let next = match Scan::read(&dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "config directory unreadable; keeping the current config");
                continue;
            }
        };
        let changes = last.diff(&next);
        last = next;
        if !changes.is_empty() && tx.send(changes).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_do_not_trigger_rescans() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        use notify::EventKind;
        assert!(is_read_only(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(is_read_only(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_read_only(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!is_read_only(&EventKind::Modify(ModifyKind::Any)));
        assert!(!is_read_only(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn names_come_from_yaml_files_only() {
        assert_eq!(
            object_name(Path::new("a/b/route.yaml")).as_deref(),
            Some("route")
        );
        assert_eq!(object_name(Path::new("x.yml")).as_deref(), Some("x"));
        assert_eq!(object_name(Path::new("x.yaml.tmp")), None);
        assert_eq!(object_name(Path::new(".x.yaml.swp")), None);
        assert_eq!(object_name(Path::new(".yaml")), None);
    }

    #[test]
    fn scan_reads_recursively_and_diffs() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("ingresses/team");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::create_dir_all(dir.path().join("configmaps")).unwrap();
        std::fs::write(sub.join("r1.yaml"), "spec: {}\n").unwrap();
        std::fs::write(dir.path().join("configmaps/c.yaml"), "data: {a: b}\n").unwrap();
        std::fs::write(dir.path().join("configmaps/c.yaml.tmp"), "junk").unwrap();
        let s1 = Scan::read(dir.path()).unwrap();
        let all = s1.all();
        assert_eq!(all.len(), 2);
        let Change::Upsert {
            key,
            origin,
            result,
        } = &all[1]
        else {
            panic!()
        };
        assert_eq!(
            (key.name.as_str(), origin.as_str()),
            ("r1", "ingresses/team/r1.yaml")
        );
        assert_eq!(result.as_ref().unwrap().meta().namespace, SYSTEM_NAMESPACE);

        std::fs::remove_file(sub.join("r1.yaml")).unwrap();
        std::fs::write(dir.path().join("configmaps/c.yaml"), "data: [\n").unwrap();
        let s2 = Scan::read(dir.path()).unwrap();
        let d = s1.diff(&s2);
        assert_eq!(d.len(), 2);
        assert!(matches!(&d[0], Change::Upsert { result: Err(_), .. }));
        assert!(matches!(&d[1], Change::Delete { .. }));
        assert!(s2.diff(&s2).is_empty());
    }
}
