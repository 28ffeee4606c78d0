//! Shared data (a key-value store with compare-and-swap) and shared queues, per VM id:
//! every VM of a plugin, on every worker thread, sees the same ones, and they outlive a
//! plugin's reconfiguration, as in Envoy.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::abi::Status;

/// Who to tell when a queue gets an item: the registering VM's root context.
pub trait QueueOwner: Send + Sync {
    fn queue_ready(&self, root_id: u32, queue_id: u32);
}

struct Queue {
    name: String,
    items: VecDeque<Vec<u8>>,
    owner: Option<(Weak<dyn QueueOwner>, u32)>,
}

#[derive(Default)]
struct Space {
    data: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    queues: HashMap<u32, Queue>,
    next_queue: u32,
}

/// The shared data and queues of one VM id.
#[derive(Default)]
pub struct SharedSpace {
    inner: Mutex<Space>,
}

fn spaces() -> &'static Mutex<HashMap<String, Arc<SharedSpace>>> {
    static SPACES: OnceLock<Mutex<HashMap<String, Arc<SharedSpace>>>> = OnceLock::new();
    SPACES.get_or_init(Default::default)
}

impl SharedSpace {
    /// The space of `vm_id`, made on first use.
    pub fn of(vm_id: &str) -> Arc<SharedSpace> {
        let mut all = spaces().lock().unwrap_or_else(|e| e.into_inner());
        all.entry(vm_id.to_string()).or_default().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Space> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value and its CAS token.
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.lock().data.get(key).cloned()
    }

    /// Store `value` unless `cas` is non-zero and not the current token.
    pub fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Status {
        let mut s = self.lock();
        match s.data.get_mut(key) {
            Some((_, current)) if cas != 0 && cas != *current => Status::CasMismatch,
            Some((v, current)) => {
                *v = value.to_vec();
                *current = current.wrapping_add(1).max(1);
                Status::Ok
            }
            None => {
                s.data.insert(key.to_vec(), (value.to_vec(), 1));
                Status::Ok
            }
        }
    }

    /// Open (or create) queue `name`, owned by `owner`'s root `root_id` from now on.
    pub fn register_queue(&self, name: &str, owner: Weak<dyn QueueOwner>, root_id: u32) -> u32 {
        let mut s = self.lock();
        if let Some((&id, q)) = s.queues.iter_mut().find(|(_, q)| q.name == name) {
            q.owner = Some((owner, root_id));
            return id;
        }
        s.next_queue += 1;
        let id = s.next_queue;
        s.queues.insert(
            id,
            Queue {
                name: name.to_string(),
                items: VecDeque::new(),
                owner: Some((owner, root_id)),
            },
        );
        id
    }

    pub fn resolve_queue(&self, name: &str) -> Option<u32> {
        self.lock()
            .queues
            .iter()
            .find(|(_, q)| q.name == name)
            .map(|(&id, _)| id)
    }

    /// Add an item and tell the owner (outside the lock).
    pub fn enqueue(&self, id: u32, value: &[u8]) -> Status {
        let owner = {
            let mut s = self.lock();
            let Some(q) = s.queues.get_mut(&id) else {
                return Status::NotFound;
            };
            q.items.push_back(value.to_vec());
            q.owner.clone()
        };
        if let Some((w, root)) = owner {
            if let Some(o) = w.upgrade() {
                o.queue_ready(root, id);
            }
        }
        Status::Ok
    }

    pub fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status> {
        let mut s = self.lock();
        let q = s.queues.get_mut(&id).ok_or(Status::NotFound)?;
        q.items.pop_front().ok_or(Status::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counter(AtomicU32);
    impl QueueOwner for Counter {
        fn queue_ready(&self, _root: u32, _queue: u32) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn cas_and_queues() {
        let s = SharedSpace::of("test-space");
        assert!(s.get(b"k").is_none());
        assert_eq!(s.set(b"k", b"v1", 0), Status::Ok);
        let (v, cas) = s.get(b"k").unwrap();
        assert_eq!((v.as_slice(), cas), (&b"v1"[..], 1));
        assert_eq!(s.set(b"k", b"v2", 7), Status::CasMismatch);
        assert_eq!(s.set(b"k", b"v2", cas), Status::Ok);
        assert_eq!(s.get(b"k").unwrap().1, 2);
        // The same space for the same VM id.
        assert_eq!(SharedSpace::of("test-space").get(b"k").unwrap().0, b"v2");

        let owner: Arc<dyn QueueOwner> = Arc::new(Counter(AtomicU32::new(0)));
        let id = s.register_queue("q", Arc::downgrade(&owner), 1);
        assert_eq!(s.resolve_queue("q"), Some(id));
        assert_eq!(s.dequeue(id), Err(Status::Empty));
        assert_eq!(s.enqueue(id, b"a"), Status::Ok);
        assert_eq!(s.dequeue(id).unwrap(), b"a");
        assert_eq!(s.enqueue(99, b"a"), Status::NotFound);
    }
}
