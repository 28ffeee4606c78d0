//! The stat handles a cache currently hands out, published for readers on other
//! threads (the console's sampler) without a lock the config loop or a request holds.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// A published list of handles, each with the generation it was first published in.
pub struct RosterList<T> {
    /// Bumped on every publish; 0 before the first.
    pub generation: u64,
    /// `(handle, generation of the publish that first listed it)`.
    pub entries: Vec<(Arc<T>, u64)>,
}

/// Shared by the cache that publishes and the readers; cloning shares it.
pub struct Roster<T>(Arc<ArcSwap<RosterList<T>>>);

impl<T> Clone for Roster<T> {
    fn clone(&self) -> Self {
        Roster(self.0.clone())
    }
}

impl<T> Default for Roster<T> {
    fn default() -> Self {
        Roster(Arc::new(ArcSwap::from_pointee(RosterList {
            generation: 0,
            entries: Vec::new(),
        })))
    }
}

impl<T> Roster<T> {
    /// The list as last published.
    pub fn load(&self) -> Arc<RosterList<T>> {
        self.0.load_full()
    }

    /// Publish `handles`; one that was listed before (the same `Arc`) keeps its
    /// generation, a new one gets this publish's.
    pub(super) fn publish(&self, handles: impl Iterator<Item = Arc<T>>) {
        let old = self.0.load();
        let generation = old.generation + 1;
        let born: std::collections::HashMap<*const T, u64> = old
            .entries
            .iter()
            .map(|(h, g)| (Arc::as_ptr(h), *g))
            .collect();
        let entries = handles
            .map(|h| {
                let g = born.get(&Arc::as_ptr(&h)).copied().unwrap_or(generation);
                (h, g)
            })
            .collect();
        self.0.store(Arc::new(RosterList {
            generation,
            entries,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_keep_the_generation_they_first_appeared_in() {
        let r: Roster<u32> = Roster::default();
        assert_eq!(r.load().generation, 0);
        let (a, b) = (Arc::new(1), Arc::new(2));
        r.publish([a.clone()].into_iter());
        r.publish([a.clone(), b.clone()].into_iter());
        let l = r.load();
        assert_eq!(l.generation, 2);
        assert_eq!(
            l.entries.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
            [1, 2]
        );
        // A new handle for the same value is new.
        r.publish([Arc::new(1), b].into_iter());
        let l = r.load();
        assert_eq!(
            l.entries.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
            [3, 2]
        );
    }
}
