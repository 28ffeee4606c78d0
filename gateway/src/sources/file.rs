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
//!
//! A file that cannot be taken as it is (over [`MAX_FILE_BYTES`], unreadable such as a
//! symlink loop, or changing while it is read) is an object that failed to parse: the
//! config loop rejects it and keeps its last good version. A kind's folder that is not a
//! directory (a file took its place) keeps every object read from it, and is rejected as
//! the object `<Kind> */*`. A file gone between the listing and the read is deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Change;
use crate::error::FieldError;
use crate::resources::{Kind, Resource, ResourceKey, SYSTEM_NAMESPACE};

/// Quiet time after the last file event before a re-read. Higress (Istio's debounce)
/// waits 100 ms; 25 ms leaves room in a 100 ms budget for the rebuild with 10,000
/// Ingresses, and still coalesces an editor's write + rename or a tool's burst of
/// writes (microseconds apart) into one batch.
pub const DEBOUNCE: Duration = Duration::from_millis(25);

/// Largest object file read, in bytes (4 MiB): far above any real object (10,000
/// Ingresses are 5 MB in 10,000 files), and small enough that a stray dump or log in a
/// kind's folder cannot make the config thread hold tens of megabytes.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// How often a file that changed while it was read is read again before it is reported.
const TORN_READ_RETRIES: u32 = 3;

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
    /// Kinds whose folder exists but cannot be listed (a file took its place), with why.
    broken: BTreeMap<Kind, String>,
}

#[derive(Clone)]
struct File {
    origin: String,
    digest: Digest,
    /// The contents as read, until parsed.
    bytes: Option<Vec<u8>>,
    /// Why the contents could not be taken (too large, unreadable, changing); the digest
    /// is then that of the message, so the same problem is reported once.
    problem: Option<FieldError>,
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
            && self.broken == other.broken
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

/// What reading one object file gave.
enum Read {
    /// The contents, and the metadata of what was read.
    Bytes(Vec<u8>, Stamp),
    /// Gone since it was listed (or named by an event): the object is deleted.
    Gone,
    /// Not to be taken: the file's problem, reported as the object's.
    Problem(FieldError),
}

/// Read one object file: at most [`MAX_FILE_BYTES`], and only contents that stayed put
/// while they were read (a writer that does not rename into place can be caught half
/// way: the metadata before and after the read differ, or the length read is not the
/// file's); such a read is tried again a few times, then reported.
fn read_object(path: &Path) -> Read {
    use std::io::Read as _;
    let problem = |m: String| Read::Problem(FieldError::new("", m));
    let mut attempt = 0;
    loop {
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::Gone,
            Err(e) => return problem(format!("cannot read the file: {e}")),
        };
        let before = match f.metadata() {
            Ok(m) if m.is_dir() => return problem("is a directory".into()),
            Ok(m) => Stamp::of(&m),
            Err(e) => return problem(format!("cannot read the file: {e}")),
        };
        if before.len > MAX_FILE_BYTES {
            return problem(too_large(before.len));
        }
        let mut bytes = Vec::with_capacity(before.len as usize);
        if let Err(e) = (&mut f).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
            return problem(format!("cannot read the file: {e}"));
        }
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return problem(too_large(bytes.len() as u64));
        }
        let after = f.metadata().ok().map(|m| Stamp::of(&m));
        if after == Some(before) && bytes.len() as u64 == before.len {
            return Read::Bytes(bytes, before);
        }
        attempt += 1;
        if attempt > TORN_READ_RETRIES {
            return problem(format!(
                "the file changed while it was read ({} bytes read, its size says {}); it is read again at its next change",
                bytes.len(),
                after.map_or(before.len, |a| a.len)
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn too_large(len: u64) -> String {
    format!("file too large: {len} bytes, the limit is {MAX_FILE_BYTES} (4 MiB)")
}

/// Whether a kind's folder can be listed: `Ok(false)` when it does not exist (no
/// objects of that kind), `Err` when something else is there.
fn folder_state(folder: &Path) -> Result<bool, String> {
    match std::fs::metadata(folder) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err("not a directory (a file is where the folder should be)".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot read the folder: {e}")),
    }
}

/// The key under which a kind's broken folder is rejected: every object of that kind.
fn folder_key(kind: Kind) -> ResourceKey {
    ResourceKey {
        kind,
        namespace: "*".into(),
        name: "*".into(),
    }
}

impl Scan {
    /// Read every object file below `dir`.
    pub fn read(dir: &Path) -> Result<Scan, FileSourceError> {
        std::fs::read_dir(dir)
            .map_err(|e| FileSourceError::Unreadable(dir.display().to_string(), e))?;
        let mut scan = Scan::default();
        for kind in Kind::ALL {
            let folder = dir.join(kind.folder());
            match folder_state(&folder) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(why) => {
                    scan.broken.insert(kind, why);
                    continue;
                }
            }
            let mut paths = Vec::new();
            collect(&folder, &mut paths);
            paths.sort();
            scan.read_files(dir, kind, paths);
        }
        Ok(scan)
    }

    /// Read the listed object files of `kind` (a file gone since the listing is left out).
    fn read_files(&mut self, dir: &Path, kind: Kind, paths: Vec<PathBuf>) {
        for path in paths {
            let Some(name) = object_name(&path) else {
                continue;
            };
            let origin = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            let file = match read_object(&path) {
                Read::Gone => continue,
                Read::Bytes(bytes, stamp) => {
                    self.stamps.insert(path.clone(), stamp);
                    File::read(origin, bytes)
                }
                Read::Problem(p) => File::problem(origin, p),
            };
            let key = ResourceKey {
                kind,
                namespace: file.namespace(kind),
                name,
            };
            if let Some(prev) = self.files.get(&key) {
                tracing::warn!(file = %file.origin, other = %prev.origin, "two files name the same object; the later one wins");
            }
            self.files.insert(key, file);
        }
    }

    /// Every object as an upsert (the initial load); drops the bytes read.
    pub fn all(&mut self) -> Vec<Change> {
        Scan::default().diff(self)
    }

    /// What changed from `self` to `next`; drops the bytes `next` read.
    pub fn diff(&self, next: &mut Scan) -> Vec<Change> {
        let mut out = Vec::new();
        // A broken folder keeps what was read from it; it is reported once, and cleared
        // when the folder is back.
        for (kind, why) in &next.broken {
            for (key, file) in self.files.iter().filter(|(k, _)| k.kind == *kind) {
                next.files
                    .entry(key.clone())
                    .or_insert_with(|| file.clone());
            }
            if self.broken.get(kind) != Some(why) {
                out.push(Change::Upsert {
                    key: folder_key(*kind),
                    origin: kind.folder().to_string(),
                    result: Err(FieldError::new(
                        "",
                        format!("{why}; every {kind} read from it stays in force"),
                    )),
                });
            }
        }
        for kind in self.broken.keys() {
            if !next.broken.contains_key(kind) {
                out.push(Change::Delete {
                    key: folder_key(*kind),
                    origin: kind.folder().to_string(),
                });
            }
        }
        for (key, file) in &mut next.files {
            let bytes = file.bytes.take();
            if self.files.get(key).map(|f| f.digest) != Some(file.digest) {
                let result = match &file.problem {
                    Some(p) => Err(p.clone()),
                    None => parse(key, bytes.as_deref()),
                };
                out.push(Change::Upsert {
                    key: key.clone(),
                    origin: file.origin.clone(),
                    result,
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

impl File {
    fn read(origin: String, bytes: Vec<u8>) -> File {
        File {
            origin,
            digest: digest(&bytes),
            bytes: Some(bytes),
            problem: None,
        }
    }

    fn problem(origin: String, problem: FieldError) -> File {
        // Salted: no file's contents can have the digest of a problem.
        let text = format!("\0problem\0{}", problem.message);
        File {
            origin,
            digest: digest(text.as_bytes()),
            bytes: None,
            problem: Some(problem),
        }
    }

    /// The namespace its object is keyed in (a file whose contents could not be taken is
    /// keyed in [`SYSTEM_NAMESPACE`], as one that does not parse).
    fn namespace(&self, kind: Kind) -> String {
        match &self.bytes {
            Some(b) => namespace_of(kind, b),
            None => SYSTEM_NAMESPACE.to_string(),
        }
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
    /// file also names, a kind's folder that is not (or was not) a directory.
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
                    if path.is_dir()
                        || self.broken.contains_key(&kind)
                        || folder_state(&dir.join(kind.folder())) != Ok(true)
                    {
                        return None;
                    }
                    let Some(name) = object_name(path) else {
                        continue;
                    };
                    let origin = rel.display().to_string();
                    let read = match read_object(path) {
                        Read::Bytes(b, stamp) => Some((File::read(origin.clone(), b), Some(stamp))),
                        // No stamp: the safety check looks at it again.
                        Read::Problem(p) => Some((File::problem(origin.clone(), p), None)),
                        Read::Gone => None,
                    };
                    // The key this file had: its namespace may be what changed.
                    let before = kind
                        .keeps_namespace()
                        .then(|| self.key_of(kind, &origin))
                        .flatten();
                    let namespace = match (&read, &before) {
                        (Some((f, _)), _) => f.namespace(kind),
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
                    found.push((key, origin, path, read));
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
        for (key, origin, path, read) in found {
            match read {
                Some((mut file, stamp)) => {
                    match stamp {
                        Some(stamp) => self.stamps.insert(path.clone(), stamp),
                        None => self.stamps.remove(path),
                    };
                    if self.files.get(&key).map(|f| f.digest) != Some(file.digest) {
                        let bytes = file.bytes.take();
                        let result = match &file.problem {
                            Some(p) => Err(p.clone()),
                            None => parse(&key, bytes.as_deref()),
                        };
                        out.push(Change::Upsert {
                            key: key.clone(),
                            origin,
                            result,
                        });
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

/// Every file below `dir`, symlinked folders followed once (the console finds an
/// object's file with it).
pub(crate) fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    collect_below(dir, out, &mut Vec::new());
}

/// A directory's identity, to tell a symlink back to a folder being listed.
fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// `collect` below `dir`, whose ancestors being listed are `open`: a folder reached
/// again through a symlink (a loop, such as `ingresses/again -> .` or `ingresses/up ->
/// ..`) is not listed again, else two such links would make 2^40 paths before the
/// kernel's limit on nested links stops the walk.
fn collect_below(dir: &Path, out: &mut Vec<PathBuf>, open: &mut Vec<(u64, u64)>) {
    let id = dir_id(dir);
    if id.is_some_and(|id| open.contains(&id)) {
        tracing::warn!(folder = %dir.display(), "symlink loop in the config directory; not followed");
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    open.extend(id);
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
            collect_below(&p, out, open);
        } else {
            out.push(p);
        }
    }
    if id.is_some() {
        open.pop();
    }
}

/// `name` of `name.yaml` / `name.yml`; `None` for any other file (temp files etc.).
pub(crate) fn object_name(path: &Path) -> Option<String> {
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
    fn a_file_deleted_between_listing_and_reading_is_a_delete() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("ingresses")).unwrap();
        std::fs::write(d.join("ingresses/a.yaml"), "spec: {}\n").unwrap();
        std::fs::write(d.join("ingresses/b.yaml"), "spec: {}\n").unwrap();
        let mut before = Scan::read(d).unwrap();
        before.all();
        // Listed, then gone before its read: left out, no problem reported.
        let mut paths = Vec::new();
        collect(&d.join("ingresses"), &mut paths);
        paths.sort();
        std::fs::remove_file(d.join("ingresses/b.yaml")).unwrap();
        let mut next = Scan::default();
        next.read_files(d, Kind::Ingress, paths);
        let ch = before.diff(&mut next);
        assert!(
            matches!(&ch[..], [Change::Delete { key, .. }] if key.name == "b"),
            "{ch:?}"
        );
    }

    #[test]
    fn a_file_that_changes_while_read_is_reported_not_taken() {
        // procfs files say size 0 and read as more: what a read racing a writer that
        // does not rename into place sees, every time.
        let Read::Problem(p) = read_object(Path::new("/proc/self/status")) else {
            panic!("a read whose length is not the file's must not be taken");
        };
        assert!(
            p.message
                .starts_with("the file changed while it was read (")
                && p.message
                    .ends_with("its size says 0); it is read again at its next change"),
            "{}",
            p.message
        );
        assert_eq!(p.path, "");
    }

    #[test]
    fn a_problem_file_is_rejected_once_and_a_broken_folder_keeps_its_objects() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("mcpbridges")).unwrap();
        std::fs::create_dir_all(d.join("ingresses")).unwrap();
        std::fs::write(d.join("mcpbridges/default.yaml"), "spec: {}\n").unwrap();
        std::os::unix::fs::symlink("x.yaml", d.join("ingresses/x.yaml")).unwrap();
        let mut s1 = Scan::read(d).unwrap();
        let all = s1.all();
        assert!(
            matches!(&all[..], [Change::Upsert { key, result: Err(e), .. }, Change::Upsert { result: Ok(_), .. }]
                if key.name == "x" && e.message.contains("symbolic links")),
            "{all:?}"
        );
        // Read again: the same problem is no change.
        let mut s2 = Scan::read(d).unwrap();
        assert!(s1.diff(&mut s2).is_empty());
        // The folder replaced by a file: one rejection, the McpBridge is not deleted.
        std::fs::remove_dir_all(d.join("mcpbridges")).unwrap();
        std::fs::write(d.join("mcpbridges"), "x").unwrap();
        let mut s3 = Scan::read(d).unwrap();
        let ch = s2.diff(&mut s3);
        assert!(
            matches!(&ch[..], [Change::Upsert { key, origin, result: Err(_) }]
                if key.to_string() == "McpBridge */*" && origin == "mcpbridges"),
            "{ch:?}"
        );
        assert!(
            s3.diff(&mut Scan::read(d).unwrap()).is_empty(),
            "reported once"
        );
        // Back: the rejection clears, nothing else changed.
        std::fs::remove_file(d.join("mcpbridges")).unwrap();
        std::fs::create_dir_all(d.join("mcpbridges")).unwrap();
        std::fs::write(d.join("mcpbridges/default.yaml"), "spec: {}\n").unwrap();
        let ch = s3.diff(&mut Scan::read(d).unwrap());
        assert!(
            matches!(&ch[..], [Change::Delete { key, .. }] if key.name == "*"),
            "{ch:?}"
        );
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
