//! IP address management for the node's container subnet.
//!
//! The allocation table lives in one JSON file (e.g. `<state-dir>/net/ipam.json`) and is
//! read-modify-written under an exclusive `flock(2)` on a sibling lock file (`ipam.json.lock`),
//! then replaced atomically (temporary file, rename), so separate processes never hand
//! out one address twice. The table logic itself is a pure value ([`table`]).
//!
//! The gateway is the subnet's first host address (the bridge's); the network and broadcast
//! addresses are never handed out either.

mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::fcntl::Flock;

use table::Table;

/// An error from address management.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// A file-system operation on the table or its lock failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "rename", "lock", ...).
        op: &'static str,
        /// The file the operation was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The table file exists but cannot be understood.
    #[error("IPAM table {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The table file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The table was written for another subnet than the one asked for.
    #[error(
        "IPAM table {} was written for subnet {table}, not {requested}; \
         release or remove it before changing the node's subnet",
        path.display()
    )]
    SubnetMismatch {
        /// The table file.
        path: PathBuf,
        /// The subnet recorded in the table.
        table: Ipv4Net,
        /// The subnet asked for.
        requested: Ipv4Net,
    },

    /// The table holds addresses of another subnet than the one asked for.
    #[error(
        "the node's containers use subnet {table} ({owners} address(es) held in {}), \
         so it cannot change to {requested}: remove those containers first",
        path.display()
    )]
    SubnetInUse {
        /// The table file.
        path: PathBuf,
        /// The subnet recorded in the table.
        table: Ipv4Net,
        /// The subnet asked for.
        requested: Ipv4Net,
        /// How many addresses are held.
        owners: usize,
    },

    /// The subnet cannot be used for containers.
    #[error("subnet {subnet} cannot be used for containers: {reason}")]
    InvalidSubnet {
        /// The subnet given.
        subnet: Ipv4Net,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The owner name is not acceptable.
    #[error("invalid IPAM owner {owner:?}: {reason}")]
    InvalidOwner {
        /// The owner given.
        owner: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// Every assignable address of the subnet is taken.
    #[error("no free address left in {subnet} for {owner} (table {})", path.display())]
    Exhausted {
        /// The full subnet.
        subnet: Ipv4Net,
        /// The owner that asked.
        owner: String,
        /// The table file.
        path: PathBuf,
    },
}

impl IpamError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        IpamError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// Address allocation for one subnet, backed by a table file shared across processes.
#[derive(Debug, Clone)]
pub struct Ipam {
    path: PathBuf,
    lock_path: PathBuf,
    subnet: Ipv4Net,
}

impl Ipam {
    /// Opens (creating) the allocation table at `path` for `subnet`. A table written for a
    /// different subnet is an error naming both; so is a subnet given with host bits set or one
    /// smaller than a /30 (no room for a gateway and a container).
    pub fn open(path: &Path, subnet: Ipv4Net) -> Result<Self, IpamError> {
        let ipam = Self::at(path, subnet)?;
        // Creates the table if missing and checks its subnet.
        ipam.update(|_| Ok(()))?;
        Ok(ipam)
    }

    /// Points the table at `path` to `subnet` (creating it if missing): a table written for
    /// another subnet is replaced by an empty one for `subnet` if it holds no address, and is
    /// [`IpamError::SubnetInUse`] otherwise. Returns the subnet it was written for when that
    /// changed.
    pub fn retarget(path: &Path, subnet: Ipv4Net) -> Result<Option<Ipv4Net>, IpamError> {
        let ipam = Self::at(path, subnet)?;
        let _lock = ipam.lock()?;
        let bytes = match fs::read(&ipam.path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(IpamError::io("read", &ipam.path, e)),
        };
        let old = match bytes {
            None => None,
            Some(b) => {
                let table: Table = serde_json::from_slice(&b).map_err(|e| IpamError::Corrupt {
                    path: ipam.path.clone(),
                    reason: e.to_string(),
                })?;
                if table.subnet == subnet {
                    return Ok(None);
                }
                if !table.allocations.is_empty() {
                    return Err(IpamError::SubnetInUse {
                        path: ipam.path.clone(),
                        table: table.subnet,
                        requested: subnet,
                        owners: table.allocations.len(),
                    });
                }
                Some(table.subnet)
            }
        };
        ipam.store(&Table::new(subnet))?;
        Ok(old)
    }

    /// Checks `subnet` and makes the table's directory; the table itself is not touched.
    fn at(path: &Path, subnet: Ipv4Net) -> Result<Self, IpamError> {
        if subnet.prefix_len() > 30 {
            return Err(IpamError::InvalidSubnet {
                subnet,
                reason: "it is smaller than a /30 (no room for a gateway and a container)",
            });
        }
        if subnet.trunc() != subnet {
            return Err(IpamError::InvalidSubnet {
                subnet,
                reason: "it has host bits set (give the network address, e.g. 10.88.0.0/16)",
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| IpamError::io("create directory", dir, e))?;
        }
        let mut lock_name = path.file_name().unwrap_or_default().to_owned();
        lock_name.push(".lock");
        Ok(Ipam {
            path: path.to_owned(),
            lock_path: path.with_file_name(lock_name),
            subnet,
        })
    }

    /// The gateway: the subnet's first host address, the bridge's.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// The subnet addresses are allocated from.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The table file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Allocates a free address for `owner` (a container id); the same owner gets its existing
    /// address back. Round-robin from the last address allocated.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        if owner.is_empty() {
            return Err(IpamError::InvalidOwner {
                owner: owner.to_owned(),
                reason: "it is empty",
            });
        }
        self.update(|table| {
            table.allocate(owner).ok_or_else(|| IpamError::Exhausted {
                subnet: self.subnet,
                owner: owner.to_owned(),
                path: self.path.clone(),
            })
        })
    }

    /// Releases `owner`'s address (no error if it has none).
    pub fn release(&self, owner: &str) -> Result<(), IpamError> {
        self.update(|table| {
            table.release(owner);
            Ok(())
        })
    }

    /// Drops every allocation whose owner is not in `live` (crash recovery at agent start);
    /// returns the released (owner, address) pairs, in owner order.
    pub fn reconcile(&self, live: &HashSet<String>) -> Result<Vec<(String, Ipv4Addr)>, IpamError> {
        self.update(|table| Ok(table.reconcile(live)))
    }

    /// Every current allocation, owner to address.
    pub fn allocations(&self) -> Result<BTreeMap<String, Ipv4Addr>, IpamError> {
        let _lock = self.lock()?;
        Ok(self.load()?.map(|t| t.allocations).unwrap_or_default())
    }

    /// Runs `f` on the table under the lock and writes the table back if it changed.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut Table) -> Result<T, IpamError>,
    ) -> Result<T, IpamError> {
        let _lock = self.lock()?;
        let stored = self.load()?;
        let mut table = stored.clone().unwrap_or_else(|| Table::new(self.subnet));
        let out = f(&mut table)?;
        if stored.as_ref() != Some(&table) {
            self.store(&table)?;
        }
        Ok(out)
    }

    /// Takes the exclusive lock, released when the returned value drops.
    fn lock(&self) -> Result<Flock<File>, IpamError> {
        Ok(crate::durable::lock_exclusive(&self.lock_path)?)
    }

    fn load(&self) -> Result<Option<Table>, IpamError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IpamError::io("read", &self.path, e)),
        };
        let corrupt = |reason: String| IpamError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let table: Table = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if table.subnet != self.subnet {
            return Err(IpamError::SubnetMismatch {
                path: self.path.clone(),
                table: table.subnet,
                requested: self.subnet,
            });
        }
        table.validate().map_err(corrupt)?;
        Ok(Some(table))
    }

    /// Writes the table atomically (temporary file, rename), without fsync: after a machine
    /// crash no container is live, and the table is reconciled against the live containers
    /// when the agent starts, so waiting for the disk on every container start buys nothing.
    fn store(&self, table: &Table) -> Result<(), IpamError> {
        let mut bytes = serde_json::to_vec_pretty(table).map_err(|e| IpamError::Corrupt {
            path: self.path.clone(),
            reason: format!("cannot serialise: {e}"),
        })?;
        bytes.push(b'\n');
        Ok(crate::durable::replace_atomic(&self.path, &bytes, 0o600)?)
    }
}

impl From<crate::durable::FsError> for IpamError {
    fn from(e: crate::durable::FsError) -> Self {
        IpamError::io(e.op, &e.path, e.source)
    }
}
