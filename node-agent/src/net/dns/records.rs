//! The names the resolver answers itself: one entry per service, its VIP and the addresses
//! of its healthy tasks.
//!
//! [`DnsRecords`] is a shared snapshot: a reader takes the current map (one `Arc` clone
//! under a read lock held for nanoseconds) and looks names up without holding anything; a
//! writer builds the next map beside it and only swaps the pointer under the write lock. A
//! query therefore never waits while a writer copies or edits the map.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::DnsError;

/// TTL of a service's VIP: a VIP stays the same while the service exists.
pub const VIP_TTL: u32 = 5;

/// TTL of task addresses (`tasks.<service>`, and a service without a VIP): 0, as tasks
/// come and go with every reschedule and the per-query rotation is the only balancing a
/// client gets.
pub const TASKS_TTL: u32 = 0;

/// The prefix label of the name that lists a service's tasks.
const TASKS_LABEL: &str = "tasks";

/// One service's records, as given to [`DnsRecords::replace_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The service name: one DNS label (letters, digits, `-`, `_`; matched ignoring case).
    pub name: String,
    /// Its virtual IP, if the service has one.
    pub vip: Option<Ipv4Addr>,
    /// The addresses of its healthy tasks.
    pub tasks: Vec<Ipv4Addr>,
}

/// What a local name resolves to; returned by [`DnsRecords::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The A records, in the order to answer them (empty: the name exists without
    /// addresses, answered NOERROR without records).
    pub addrs: Vec<Ipv4Addr>,
    /// Their TTL in seconds.
    pub ttl: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    vip: Option<Ipv4Addr>,
    tasks: Vec<Ipv4Addr>,
}

/// Keys and values are shared between snapshots, so copying the map for an edit only
/// copies pointers.
type Map = HashMap<Arc<str>, Arc<Service>>;

#[derive(Debug, Default)]
struct Inner {
    /// The current snapshot; readers clone the `Arc`.
    current: RwLock<Arc<Map>>,
    /// Serializes writers, so two edits never build on the same snapshot and lose one.
    writer: Mutex<()>,
    /// Rotates task addresses from one query to the next.
    rotation: AtomicUsize,
}

/// The service records of the node's resolver; cheap to clone, all clones share one table.
#[derive(Debug, Clone, Default)]
pub struct DnsRecords {
    inner: Arc<Inner>,
}

impl DnsRecords {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (adds or replaces) a service's VIP and task addresses. Repeated task addresses
    /// are kept once.
    pub fn set_service(
        &self,
        name: &str,
        vip: Option<Ipv4Addr>,
        tasks: Vec<Ipv4Addr>,
    ) -> Result<(), DnsError> {
        let key = service_key(name)?;
        let service = Arc::new(Service {
            vip,
            tasks: dedup(tasks),
        });
        self.edit(|map| {
            map.insert(key, service);
        });
        Ok(())
    }

    /// Removes a service; its names are forwarded from now on. Removing an unknown service
    /// does nothing.
    pub fn remove_service(&self, name: &str) {
        let key = name.to_ascii_lowercase();
        self.edit(|map| {
            map.remove(key.as_str());
        });
    }

    /// Replaces the whole table. Every name is checked first: on an invalid one nothing
    /// changes. When a name is given twice (ignoring case) the last entry wins.
    pub fn replace_all<I>(&self, services: I) -> Result<(), DnsError>
    where
        I: IntoIterator<Item = ServiceEntry>,
    {
        let mut map = Map::new();
        for entry in services {
            let key = service_key(&entry.name)?;
            let service = Service {
                vip: entry.vip,
                tasks: dedup(entry.tasks),
            };
            map.insert(key, Arc::new(service));
        }
        let _writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *self.write_current() = Arc::new(map);
        Ok(())
    }

    /// The number of services in the table.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// Looks a name up, ignoring case, with or without a trailing dot: `<service>` is its
    /// VIP (or, for a service without one, its tasks' addresses), `tasks.<service>` every
    /// task address, rotated by one position per lookup. `None`: not a local name.
    pub fn lookup(&self, name: &str) -> Option<Found> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
        self.lookup_labels(&labels)
    }

    /// [`DnsRecords::lookup`] on a name given as its labels (as the wire format holds
    /// them, without the root).
    pub(crate) fn lookup_labels(&self, labels: &[&[u8]]) -> Option<Found> {
        let (service_label, tasks_only) = match labels {
            [service] => (*service, false),
            [tasks, service] if tasks.eq_ignore_ascii_case(TASKS_LABEL.as_bytes()) => {
                (*service, true)
            }
            _ => return None,
        };
        // Stored keys are valid labels, so a label that is not UTF-8 is simply not found.
        let key = std::str::from_utf8(service_label)
            .ok()?
            .to_ascii_lowercase();
        let service = self.snapshot().get(key.as_str())?.clone();
        match (tasks_only, service.vip) {
            (false, Some(vip)) => Some(Found {
                addrs: vec![vip],
                ttl: VIP_TTL,
            }),
            _ => Some(Found {
                addrs: self.rotated(&service.tasks),
                ttl: TASKS_TTL,
            }),
        }
    }

    fn rotated(&self, addrs: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
        if addrs.is_empty() {
            return Vec::new();
        }
        let start = self.inner.rotation.fetch_add(1, Ordering::Relaxed) % addrs.len();
        let mut out = Vec::with_capacity(addrs.len());
        out.extend_from_slice(&addrs[start..]);
        out.extend_from_slice(&addrs[..start]);
        out
    }

    fn snapshot(&self) -> Arc<Map> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn write_current(&self) -> std::sync::RwLockWriteGuard<'_, Arc<Map>> {
        self.inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies the current map (the services themselves are shared), edits the copy and
    /// swaps it in.
    fn edit(&self, f: impl FnOnce(&mut Map)) {
        let _writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = Map::clone(&self.snapshot());
        f(&mut next);
        *self.write_current() = Arc::new(next);
    }
}

/// The table key of a service name: lower case, after checking that it is one label of
/// letters, digits, `-` and `_` (at most 63 bytes).
fn service_key(name: &str) -> Result<Arc<str>, DnsError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("a DNS label has at most 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Some("only letters, digits, '-' and '_' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DnsError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(name.to_ascii_lowercase().into()),
    }
}

/// The addresses without repeats, in their first order.
fn dedup(mut addrs: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
    let mut seen = HashSet::with_capacity(addrs.len());
    addrs.retain(|a| seen.insert(*a));
    addrs
}
