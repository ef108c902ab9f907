//! [`LogCache`]: the newest Raft log entries, kept decoded in memory.
//!
//! Right after an entry is appended, openraft reads it back twice on the leader (to replicate
//! it and to apply it) and once on a follower (to apply it). Serving those reads from memory
//! saves a redb read and a JSON decode each. The cache holds exactly what the database holds
//! for the indexes it has: entries enter after their append committed and leave with a
//! truncation or a purge; the oldest are evicted beyond [`CAPACITY`] entries or [`CAPACITY_BYTES`]. A read it cannot serve
//! whole goes to the database.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use super::types::{Entry, estimated_bytes};

/// The most entries kept.
pub(crate) const CAPACITY: usize = 4096;
/// The most bytes of entries held ([`estimated_bytes`]): at 100,000 tasks, 4,096 grouped
/// entries of half a megabyte would hold two gigabytes.
pub(crate) const CAPACITY_BYTES: usize = 64 * 1024 * 1024;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct LogCache {
    entries: Mutex<Cached>,
}

/// The entries, and the sum of their [`estimated_bytes`].
#[derive(Debug, Default)]
struct Cached {
    map: BTreeMap<u64, Entry>,
    bytes: usize,
}

impl Cached {
    fn evict_first(&mut self) {
        if let Some((_, e)) = self.map.pop_first() {
            self.bytes = self.bytes.saturating_sub(estimated_bytes(&e));
        }
    }

    /// Holds `map` instead, recounting the bytes.
    fn replace(&mut self, map: BTreeMap<u64, Entry>) {
        self.bytes = map.values().map(estimated_bytes).sum();
        self.map = map;
    }
}

impl LogCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds entries just appended to the database.
    pub(crate) fn insert(&self, entries: &[Entry]) {
        let mut c = self.lock();
        for e in entries {
            c.bytes += estimated_bytes(e);
            if let Some(old) = c.map.insert(e.log_id.index, e.clone()) {
                c.bytes = c.bytes.saturating_sub(estimated_bytes(&old));
            }
        }
        while c.map.len() > CAPACITY || (c.bytes > CAPACITY_BYTES && c.map.len() > 1) {
            c.evict_first();
        }
    }

    /// Forgets the entries from `index` on (a truncation).
    pub(crate) fn truncate(&self, index: u64) {
        let mut c = self.lock();
        let dropped = c.map.split_off(&index);
        c.bytes = c
            .bytes
            .saturating_sub(dropped.values().map(estimated_bytes).sum());
    }

    /// Forgets the entries up to `index` included (a purge).
    pub(crate) fn purge(&self, index: u64) {
        let mut c = self.lock();
        let kept = match index.checked_add(1) {
            Some(next) => c.map.split_off(&next),
            None => BTreeMap::new(),
        };
        c.replace(kept);
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
        let c = self.lock();
        let found: Vec<Entry> = c.map.range(first..=last).map(|(_, e)| e.clone()).collect();
        let whole = u64::try_from(found.len()).ok() == Some(last - first + 1);
        whole.then_some(found)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{EntryPayload, LogId};

    use crate::raft::Expect;
    use crate::raft::types::{Command, Op};

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

    #[test]
    fn keeps_its_bytes_under_the_bound_and_counts_them_exactly() {
        let big = |index: u64| {
            let mut e = entry(index);
            e.payload = EntryPayload::Normal(Command::Batch(vec![Op::Put {
                key: format!("k{index}"),
                value: vec![0; 1024 * 1024],
                expect: Expect::Any,
            }]));
            e
        };
        let cache = LogCache::default();
        let n = 100u64;
        cache.insert(&(1..=n).map(big).collect::<Vec<_>>());
        let (held, bytes) = {
            let c = cache.lock();
            (c.map.len(), c.bytes)
        };
        assert!(bytes <= CAPACITY_BYTES, "{bytes} bytes held");
        assert!((32..100).contains(&held), "{held} entries held");
        assert_eq!(
            indexes(cache.get((Bound::Included(n), Bound::Included(n)))),
            Some(vec![n])
        );
        cache.truncate(n);
        cache.purge(n - 5);
        let c = cache.lock();
        assert_eq!(c.map.len(), 4);
        assert_eq!(c.bytes, c.map.values().map(estimated_bytes).sum::<usize>());
    }
}
