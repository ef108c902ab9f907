//! [`LogCache`]: the newest Raft log entries, kept decoded in memory.
//!
//! Right after an entry is appended, openraft reads it back twice on the leader (to replicate
//! it and to apply it) and once on a follower (to apply it). Serving those reads from memory
//! saves a redb read and a JSON decode each. The cache holds exactly what the database holds
//! for the indexes it has: entries enter after their append committed and leave with a
//! truncation or a purge; the oldest are evicted beyond [`CAPACITY`]. A read it cannot serve
//! whole goes to the database.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use super::types::Entry;

/// The most entries kept.
pub(crate) const CAPACITY: usize = 4096;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct LogCache {
    entries: Mutex<BTreeMap<u64, Entry>>,
}

impl LogCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds entries just appended to the database.
    pub(crate) fn insert(&self, entries: &[Entry]) {
        let mut map = self.lock();
        for e in entries {
            map.insert(e.log_id.index, e.clone());
        }
        while map.len() > CAPACITY {
            map.pop_first();
        }
    }

    /// Forgets the entries from `index` on (a truncation).
    pub(crate) fn truncate(&self, index: u64) {
        drop(self.lock().split_off(&index));
    }

    /// Forgets the entries up to `index` included (a purge).
    pub(crate) fn purge(&self, index: u64) {
        let mut map = self.lock();
        let kept = match index.checked_add(1) {
            Some(next) => map.split_off(&next),
            None => BTreeMap::new(),
        };
        *map = kept;
    }

    /// The entries of a bounded range, if the cache holds every one of them.
    pub(crate) fn get(&self, (start, end): (Bound<u64>, Bound<u64>)) -> Option<Vec<Entry>> {
        let first = match start {
            Bound::Included(s) => s,
            Bound::Excluded(s) => s.checked_add(1)?,
            Bound::Unbounded => return None,
        };
        let last = match end {
            Bound::Included(e) => e,
            Bound::Excluded(e) => e.checked_sub(1)?,
            Bound::Unbounded => return None,
        };
        if first > last {
            return None;
        }
        let map = self.lock();
        let found: Vec<Entry> = map.range(first..=last).map(|(_, e)| e.clone()).collect();
        let whole = u64::try_from(found.len()).ok() == Some(last - first + 1);
        whole.then_some(found)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{EntryPayload, LogId};

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn serves_only_whole_bounded_ranges_and_follows_truncate_and_purge() {
        let cache = LogCache::default();
        cache.insert(&(3..=8).map(entry).collect::<Vec<_>>());
        let r = |a: Bound<u64>, b: Bound<u64>| indexes(cache.get((a, b)));
        assert_eq!(
            r(Bound::Included(4), Bound::Excluded(7)),
            Some(vec![4, 5, 6])
        );
        assert_eq!(r(Bound::Included(2), Bound::Included(4)), None, "2 missing");
        assert_eq!(r(Bound::Included(7), Bound::Included(9)), None, "9 missing");
        assert_eq!(r(Bound::Included(5), Bound::Unbounded), None);
        assert_eq!(r(Bound::Included(5), Bound::Excluded(5)), None);

        cache.truncate(7);
        assert_eq!(r(Bound::Included(6), Bound::Included(7)), None);
        cache.purge(4);
        assert_eq!(r(Bound::Included(4), Bound::Included(5)), None);
        assert_eq!(r(Bound::Included(5), Bound::Included(6)), Some(vec![5, 6]));
    }

    #[test]
    fn keeps_the_newest_entries_up_to_its_capacity() {
        let cache = LogCache::default();
        let n = CAPACITY as u64 + 10;
        cache.insert(&(1..=n).map(entry).collect::<Vec<_>>());
        assert_eq!(cache.get((Bound::Included(1), Bound::Included(10))), None);
        assert_eq!(
            indexes(cache.get((Bound::Included(n - 1), Bound::Included(n)))),
            Some(vec![n - 1, n])
        );
    }
}
