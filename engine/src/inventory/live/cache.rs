//! The objects a live inventory holds, one map per kind of their [facts](super::super::facts),
//! with watch events applied to them (a re-list replaces a kind's objects at once when it
//! completes).

use std::collections::HashMap;

use kube::runtime::watcher::Event;

use super::super::facts::{Key, Keyed};

/// The objects of one kind in one scope, as the watch last reported them.
#[derive(Debug)]
pub(crate) struct KindCache<K> {
    objects: HashMap<Key, K>,
    /// Objects of a re-list in progress; they replace `objects` when it completes.
    relist: Option<HashMap<Key, K>>,
    synced: bool,
}

impl<K> Default for KindCache<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            relist: None,
            synced: false,
        }
    }
}

impl<K: Keyed> KindCache<K> {
    /// Applies one watch event; returns whether what the join reads changed.
    pub fn apply(&mut self, event: Event<K>) -> bool {
        match event {
            Event::Apply(object) => {
                self.objects.insert(object.key(), object);
                true
            }
            Event::Delete(object) => self.objects.remove(&object.key()).is_some(),
            Event::Init => {
                self.relist = Some(HashMap::new());
                false
            }
            Event::InitApply(object) => {
                self.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(object.key(), object);
                false
            }
            Event::InitDone => {
                if let Some(objects) = self.relist.take() {
                    self.objects = objects;
                }
                self.synced = true;
                true
            }
        }
    }

    /// Whether a complete list has been read at least once.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The objects, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &K> {
        self.objects.values()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.objects.len()
    }
}

/// A watch event of an object as an event of its facts.
pub(crate) fn to_facts<K, F: From<K>>(event: Event<K>) -> Event<F> {
    match event {
        Event::Apply(object) => Event::Apply(F::from(object)),
        Event::Delete(object) => Event::Delete(F::from(object)),
        Event::Init => Event::Init,
        Event::InitApply(object) => Event::InitApply(F::from(object)),
        Event::InitDone => Event::InitDone,
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
