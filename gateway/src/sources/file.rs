//! The Higress standalone layout: `DIR/<kind-plural>/**/<name>.yaml|yml`, every object
//! named after its file and in namespace `higress-system`, except the kinds that keep
//! their own `metadata.namespace` ([`Kind::keeps_namespace`]: KIngresses, Services,
//! Endpoints, EndpointSlices, Secrets and Istio's kinds, since Knative's objects live in
//! their service's namespace).
//!
//! Watching waits for 25 ms of quiet, then re-reads the files the events named and diffs
//! their contents against the last scan (robust to editors' temp files and
//! `write + rename`); anything else (a folder created or removed, lost events, a name two
//! files share) and a timer every 5 s rescan the whole directory. With 10,000 files a
//! full rescan reads for tens of milliseconds; one changed file is re-read alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Change;
use crate::resources::{Kind, Resource, ResourceKey, SYSTEM_NAMESPACE};

/// Quiet time after the last file event before a re-read. Higress (Istio's debounce)
/// waits 100 ms; 25 ms leaves room in a 100 ms budget for the rebuild with 10,000
/// Ingresses, and still coalesces an editor's write + rename or a tool's burst of
/// writes (microseconds apart) into one batch.
pub const DEBOUNCE: Duration = Duration::from_millis(25);

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("{0}: not a readable directory: {1}")]
    Unreadable(String, std::io::Error),
    #[error("watching {0}: {1}")]
    Watch(String, notify::Error),
}

/// Every object file, keyed by object: its path and a digest of its contents. The bytes
/// themselves are kept only until [`Scan::all`] or [`Scan::diff`] has parsed them (with
/// 10,000 Ingresses they would stay resident for nothing but the comparison).
#[derive(Default, Clone)]
pub struct Scan {
    files: BTreeMap<ResourceKey, File>,
    /// What each file's metadata said when it was read: the periodic safety check
    /// compares these instead of reading 10,000 files again.
    stamps: HashMap<PathBuf, Stamp>,
}

#[derive(Clone)]
struct File {
    origin: String,
    digest: Digest,
    /// The contents as read, until parsed.
    bytes: Option<Vec<u8>>,
}

/// SHA-1 of a file's contents: no accidental collision among config files, and hashing
/// the 5 MB of 10,000 Ingresses adds little to reading them.
type Digest = [u8; 20];

fn digest(bytes: &[u8]) -> Digest {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).into()
}

/// Equal when the same files have the same contents.
impl PartialEq for Scan {
    fn eq(&self, other: &Self) -> bool {
        self.files.len() == other.files.len()
            && self
                .files
                .iter()
                .zip(&other.files)
                .all(|((k, a), (l, b))| k == l && a.origin == b.origin && a.digest == b.digest)
    }
}

/// A file's metadata that changes when it is written or replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ino: m.ino(),
        }
    }
}

/// A file's contents and the metadata of what was read (one open, no extra stat).
fn read_stamped(path: &Path) -> std::io::Result<(Vec<u8>, Stamp)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let stamp = Stamp::of(&f.metadata()?);
    let mut bytes = Vec::with_capacity(stamp.len as usize);
    f.read_to_end(&mut bytes)?;
    Ok((bytes, stamp))
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
                let Ok((bytes, stamp)) = read_stamped(&path) else {
                    continue;
                };
                scan.stamps.insert(path.clone(), stamp);
                let origin = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let key = ResourceKey {
                    kind,
                    namespace: namespace_of(kind, &bytes),
                    name,
                };
                if let Some(prev) = scan.files.get(&key) {
                    tracing::warn!(file = %origin, other = %prev.origin, "two files name the same object; the later one wins");
                }
                let file = File {
                    origin,
                    digest: digest(&bytes),
                    bytes: Some(bytes),
                };
                scan.files.insert(key, file);
            }
        }
        Ok(scan)
    }

    /// Every object as an upsert (the initial load); drops the bytes read.
    pub fn all(&mut self) -> Vec<Change> {
        Scan::default().diff(self)
    }

    /// What changed from `self` to `next`; drops the bytes `next` read.
    pub fn diff(&self, next: &mut Scan) -> Vec<Change> {
        let mut out = Vec::new();
        for (key, file) in &mut next.files {
            let bytes = file.bytes.take();
            if self.files.get(key).map(|f| f.digest) != Some(file.digest) {
                out.push(Change::Upsert {
                    key: key.clone(),
                    origin: file.origin.clone(),
                    result: parse(key, bytes.as_deref()),
                });
            }
        }
        for (key, file) in &self.files {
            if !next.files.contains_key(key) {
                out.push(Change::Delete {
                    key: key.clone(),
                    origin: file.origin.clone(),
                });
            }
        }
        out
    }
}

/// The namespace an object of `kind` is keyed in: [`SYSTEM_NAMESPACE`], or for a kind
/// that keeps its own, its `metadata.namespace` (`higress-system` when absent; a file
/// that does not parse is keyed there too, and its parse reports why).
fn namespace_of(kind: Kind, bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        metadata: Option<Meta>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        namespace: Option<String>,
    }
    if !kind.keeps_namespace() {
        return SYSTEM_NAMESPACE.to_string();
    }
    serde_yaml::from_slice::<Head>(bytes)
        .ok()
        .and_then(|h| h.metadata?.namespace)
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| SYSTEM_NAMESPACE.to_string())
}

/// Parse the object `key` from `bytes`, read by the scan that found it changed.
fn parse(key: &ResourceKey, bytes: Option<&[u8]>) -> Result<Resource, crate::error::FieldError> {
    // A scan's bytes are taken once, by the diff that finds them changed.
    let bytes = bytes.expect("a changed file's bytes are read and not yet parsed");
    Resource::parse(key.kind, bytes, &key.name, &key.namespace)
}

impl Scan {
    /// Re-read only `paths` (as file events named them) and apply them to `self`.
    /// Returns the changes, or `None` (and leaves `self` as it was) when only a full
    /// rescan can tell: a path outside `dir`, a folder, a file whose object another
    /// file also names, an unreadable file.
    pub fn reread(&mut self, dir: &Path, paths: &BTreeSet<PathBuf>) -> Option<Vec<Change>> {
        let mut found = Vec::new();
        // Keys whose file now names another namespace; removed once nothing says `None`.
        let mut moved = Vec::new();
        for path in paths {
            let rel = path.strip_prefix(dir).ok()?;
            let mut parts = rel.components();
            let first = parts.next()?.as_os_str().to_str()?;
            let kind = Kind::ALL.into_iter().find(|k| k.folder() == first);
            let in_folder = parts.next().is_some();
            match (kind, in_folder) {
                // A kind's folder itself: created, removed or renamed.
                (Some(_), false) => return None,
                // Nothing a scan reads (files beside the kinds' folders, other folders).
                (None, _) => {
                    if path.is_dir() {
                        return None;
                    }
                    continue;
                }
                (Some(kind), true) => {
                    if path.is_dir() {
                        return None;
                    }
                    let Some(name) = object_name(path) else {
                        continue;
                    };
                    let origin = rel.display().to_string();
                    let bytes = match read_stamped(path) {
                        Ok(b) => Some(b),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(_) => return None,
                    };
                    // The key this file had: its namespace may be what changed.
                    let before = kind
                        .keeps_namespace()
                        .then(|| self.key_of(kind, &origin))
                        .flatten();
                    let namespace = match (&bytes, &before) {
                        (Some((b, _)), _) => namespace_of(kind, b),
                        (None, Some(k)) => k.namespace.clone(),
                        (None, None) => SYSTEM_NAMESPACE.to_string(),
                    };
                    let key = ResourceKey {
                        kind,
                        namespace,
                        name,
                    };
                    if self.files.get(&key).is_some_and(|f| f.origin != origin) {
                        return None;
                    }
                    moved.extend(before.filter(|k| *k != key));
                    found.push((key, origin, path, bytes));
                }
            }
        }
        let mut out = Vec::new();
        for old in moved {
            if let Some(f) = self.files.remove(&old) {
                out.push(Change::Delete {
                    key: old,
                    origin: f.origin,
                });
            }
        }
        for (key, origin, path, bytes) in found {
            match bytes {
                Some((b, stamp)) => {
                    self.stamps.insert(path.clone(), stamp);
                    let digest = digest(&b);
                    if self.files.get(&key).map(|f| f.digest) != Some(digest) {
                        out.push(Change::Upsert {
                            key: key.clone(),
                            origin: origin.clone(),
                            result: Resource::parse(key.kind, &b, &key.name, &key.namespace),
                        });
                        let file = File {
                            origin,
                            digest,
                            bytes: None,
                        };
                        self.files.insert(key, file);
                    }
                }
                None => {
                    self.stamps.remove(path);
                    if self.files.remove(&key).is_some() {
                        out.push(Change::Delete { key, origin });
                    }
                }
            }
        }
        Some(out)
    }

    /// The key of the object of `kind` read from file `origin`.
    fn key_of(&self, kind: Kind, origin: &str) -> Option<ResourceKey> {
        self.files
            .iter()
            .find(|(k, f)| k.kind == kind && f.origin == origin)
            .map(|(k, _)| k.clone())
    }

    /// The object files below `dir` whose metadata differ from what was read (written,
    /// replaced, created or removed since), by listing and stat only. What the periodic
    /// safety check re-reads: with 10,000 files a full read blocked the source (and a
    /// change arriving meanwhile) for about 100 ms every time.
    pub fn stale(&self, dir: &Path) -> BTreeSet<PathBuf> {
        let mut now = Vec::new();
        for kind in Kind::ALL {
            collect(&dir.join(kind.folder()), &mut now);
        }
        let mut out = BTreeSet::new();
        let mut seen = std::collections::HashSet::with_capacity(now.len());
        for path in now {
            if object_name(&path).is_none() {
                continue;
            }
            let stamp = std::fs::metadata(&path).ok().map(|m| Stamp::of(&m));
            if stamp.is_none() || self.stamps.get(&path) != stamp.as_ref() {
                out.insert(path.clone());
            }
            seen.insert(path);
        }
        out.extend(self.stamps.keys().filter(|p| !seen.contains(*p)).cloned());
        out
    }
}

/// What the events of one debounce period ask for.
#[derive(Default)]
struct Dirty {
    /// A full rescan.
    all: bool,
    paths: BTreeSet<PathBuf>,
}

impl Dirty {
    fn add(&mut self, event: Option<PathBuf>) {
        match event {
            Some(p) if !self.all => {
                self.paths.insert(p);
            }
            Some(_) => {}
            None => self.all = true,
        }
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
        // The entry's type comes with the directory listing: no stat per file (10,000
        // files are 10,000 stats). A symlink is followed, as `is_dir` did.
        let is_dir = match e.file_type() {
            Ok(t) if t.is_symlink() => p.is_dir(),
            Ok(t) => t.is_dir(),
            Err(_) => p.is_dir(),
        };
        if is_dir {
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
    // A path an event named, or `None`: rescan everything.
    let (ping_tx, mut ping_rx) = mpsc::unbounded_channel::<Option<PathBuf>>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            // Our own rescans open and read the files: those access events must not
            // trigger another rescan (that would loop every debounce period).
            Ok(e) if is_read_only(&e.kind) => {}
            Ok(e) if !e.need_rescan() && !e.paths.is_empty() => {
                for p in e.paths {
                    let _ = ping_tx.send(Some(p));
                }
            }
            _ => {
                let _ = ping_tx.send(None);
            }
        }
    })
    .map_err(|e| FileSourceError::Watch(dir.display().to_string(), e))?;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .map_err(|e| FileSourceError::Watch(dir.display().to_string(), e))?;
    // Also rescan now and then: covers events lost by the OS (overflow, network fs).
    let mut safety = tokio::time::interval(Duration::from_secs(5));
    safety.tick().await;
    loop {
        let mut dirty = Dirty::default();
        tokio::select! {
            got = ping_rx.recv() => match got {
                Some(p) => dirty.add(p),
                None => return Ok(()),
            },
            _ = safety.tick() => {
                let stale = last.stale(&dir);
                if stale.is_empty() {
                    continue;
                }
                tracing::debug!(files = stale.len(), "safety check: files changed without an event");
                for p in stale {
                    dirty.add(Some(p));
                }
            }
        }
        // Debounce: wait for a quiet period.
        while let Ok(Some(p)) = tokio::time::timeout(DEBOUNCE, ping_rx.recv()).await {
            dirty.add(p);
        }
        let t0 = std::time::Instant::now();
        let partial = match dirty.all {
            true => None,
            false => last.reread(&dir, &dirty.paths),
        };
        let changes = match partial {
            Some(changes) => {
                tracing::debug!(
                    files = dirty.paths.len(),
                    took_us = t0.elapsed().as_micros() as u64,
                    "config files re-read"
                );
                changes
            }
            None => {
                tracing::debug!(dir = %dir.display(), "config directory rescan");
                let mut next = match Scan::read(&dir) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "config directory unreadable; keeping the current config");
                        continue;
                    }
                };
                let changes = last.diff(&mut next);
                last = next;
                changes
            }
        };
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
        let mut s1 = Scan::read(dir.path()).unwrap();
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
        let mut s2 = Scan::read(dir.path()).unwrap();
        let d = s1.diff(&mut s2);
        assert_eq!(d.len(), 2);
        assert!(matches!(&d[0], Change::Upsert { result: Err(_), .. }));
        assert!(matches!(&d[1], Change::Delete { .. }));
        assert!(s2.diff(&mut s2.clone()).is_empty());
    }

    #[test]
    fn stale_finds_what_changed_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("ingresses")).unwrap();
        for n in ["a", "b", "c"] {
            std::fs::write(d.join(format!("ingresses/{n}.yaml")), "spec: {}\n").unwrap();
        }
        let mut scan = Scan::read(d).unwrap();
        assert!(scan.stale(d).is_empty(), "nothing changed since the read");
        // Rewritten (another length), replaced by a rename (another inode), removed,
        // created; a temp file is not an object file.
        std::fs::write(d.join("ingresses/a.yaml"), "spec: {rules: []}\n").unwrap();
        std::fs::write(d.join("ingresses/b.tmp"), "spec: {}\n").unwrap();
        std::fs::rename(d.join("ingresses/b.tmp"), d.join("ingresses/b.yaml")).unwrap();
        std::fs::remove_file(d.join("ingresses/c.yaml")).unwrap();
        std::fs::write(d.join("ingresses/n.yaml"), "spec: {}\n").unwrap();
        std::fs::write(d.join("ingresses/x.yaml.tmp"), "junk").unwrap();
        let stale = scan.stale(d);
        let want: BTreeSet<PathBuf> = ["a", "b", "c", "n"]
            .iter()
            .map(|n| d.join(format!("ingresses/{n}.yaml")))
            .collect();
        assert_eq!(stale, want);
        // Re-read, the scan is current again: b's contents are the same (no change),
        // the rest are an upsert, a delete and a new object.
        let ch = scan.reread(d, &stale).unwrap();
        assert_eq!(ch.len(), 3, "{}", ch.len());
        assert!(scan.stale(d).is_empty());
        assert!(scan == Scan::read(d).unwrap());
    }

    #[test]
    fn reread_takes_only_the_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("ingresses/team")).unwrap();
        std::fs::create_dir_all(d.join("configmaps")).unwrap();
        std::fs::write(d.join("ingresses/a.yaml"), "spec: {}\n").unwrap();
        std::fs::write(d.join("ingresses/team/b.yaml"), "spec: {}\n").unwrap();
        std::fs::write(d.join("configmaps/c.yaml"), "data: {a: b}\n").unwrap();
        let mut scan = Scan::read(d).unwrap();
        let set = |ps: &[&str]| ps.iter().map(|p| d.join(p)).collect::<BTreeSet<_>>();

        // A change to one file, a temp file, a file beside the folders: one upsert.
        std::fs::write(d.join("ingresses/team/b.yaml"), "spec: {rules: []}\n").unwrap();
        std::fs::write(d.join("ingresses/x.yaml.tmp"), "junk").unwrap();
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        let ch = scan
            .reread(
                d,
                &set(&["ingresses/team/b.yaml", "ingresses/x.yaml.tmp", "notes.txt"]),
            )
            .unwrap();
        assert_eq!(ch.len(), 1);
        assert!(matches!(&ch[0], Change::Upsert { key, origin, .. }
            if key.name == "b" && origin == "ingresses/team/b.yaml"));
        // Named again with the same contents: nothing.
        assert!(scan
            .reread(d, &set(&["ingresses/team/b.yaml"]))
            .unwrap()
            .is_empty());
        // Removed: a delete; the scan now equals a full one.
        std::fs::remove_file(d.join("ingresses/a.yaml")).unwrap();
        let ch = scan.reread(d, &set(&["ingresses/a.yaml"])).unwrap();
        assert!(matches!(&ch[..], [Change::Delete { key, .. }] if key.name == "a"));
        assert!(scan == Scan::read(d).unwrap());

        // Only a full rescan can tell: a folder, a second file naming an object, a path
        // outside the directory.
        let before = scan.clone();
        std::fs::create_dir_all(d.join("ingresses/new")).unwrap();
        assert!(scan.reread(d, &set(&["ingresses/new"])).is_none());
        assert!(scan.reread(d, &set(&["ingresses"])).is_none());
        std::fs::write(d.join("ingresses/new/b.yaml"), "spec: {}\n").unwrap();
        assert!(scan.reread(d, &set(&["ingresses/new/b.yaml"])).is_none());
        let outside: BTreeSet<PathBuf> = [PathBuf::from("/elsewhere/x.yaml")].into();
        assert!(scan.reread(d, &outside).is_none());
        assert!(scan == before, "a refused reread changes nothing");
    }

    #[test]
    fn namespaced_kinds_keep_their_namespace_and_may_move() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("services")).unwrap();
        std::fs::create_dir_all(d.join("ingresses")).unwrap();
        let svc = |ns: &str| format!("metadata: {{name: web, namespace: {ns}}}\nspec: {{}}\n");
        std::fs::write(d.join("services/web.yaml"), svc("shop")).unwrap();
        // An Ingress's namespace stays the gateway's, whatever the file says.
        std::fs::write(
            d.join("ingresses/a.yaml"),
            "metadata: {namespace: shop}\nspec: {}\n",
        )
        .unwrap();
        std::fs::write(d.join("services/plain.yaml"), "spec: {}\n").unwrap();
        let mut scan = Scan::read(d).unwrap();
        let keys: Vec<String> = scan
            .all()
            .iter()
            .map(|c| match c {
                Change::Upsert { key, .. } | Change::Delete { key, .. } => key.to_string(),
            })
            .collect();
        assert_eq!(
            keys,
            [
                "Ingress higress-system/a",
                "Service higress-system/plain",
                "Service shop/web"
            ]
        );
        // The file moves to another namespace: the old object is deleted, the new one
        // comes, and the scan equals a full one.
        std::fs::write(d.join("services/web.yaml"), svc("prod")).unwrap();
        let paths: BTreeSet<PathBuf> = [d.join("services/web.yaml")].into();
        let ch = scan.reread(d, &paths).unwrap();
        assert!(
            matches!(&ch[..], [Change::Delete { key: old, .. }, Change::Upsert { key: new, .. }]
                if old.namespace == "shop" && new.namespace == "prod"),
            "{}",
            ch.len()
        );
        assert!(scan == Scan::read(d).unwrap());
        // Removed: the delete names the namespace it had.
        std::fs::remove_file(d.join("services/web.yaml")).unwrap();
        let ch = scan.reread(d, &paths).unwrap();
        assert!(matches!(&ch[..], [Change::Delete { key, .. }] if key.namespace == "prod"));
    }
}
