//! The node's content-addressed image store.
//!
//! Images come in as `docker save` archives, OCI image layouts (directory or tar), a root
//! file system ([`ImageStore::import`], [`ImageStore::import_rootfs`]), or from a registry
//! ([`ImageStore::pull`]; [`ImageStore::push`] sends them back, see [`registry`]). Every blob is checked
//! against its sha256 digest; every layer is unpacked once, safely and with OCI whiteouts in
//! overlayfs form, into `<root>/layers/<diff_id hex>/`, and shared by all images that use it
//! ([`ImageStore::layer_dirs`] gives the overlay lower directories). Imports are staged and
//! committed by rename under an exclusive `flock`, so a failed import leaves the store as it
//! was and two processes can import and remove at the same time.
//!
//! Files, one idea each:
//! - `store`: on-disk layout, records, tags, resolve / list / tag / remove, commit
//! - `import`: archive formats; `rootfs`: images from a root file system
//! - `layer`: one layer (blob checks, compression, unpack, diff_id); `unpack`: safe extraction
//! - `staging`: the per-import staging directory; `fsutil`: atomic writes, the lock
//! - `config`, `oci`, `reference`, `digest`: the formats
//! - `registry/`: pull from and push to OCI Distribution registries

mod config;
mod digest;
mod error;
mod fsutil;
mod import;
mod layer;
mod oci;
mod record;
mod reference;
pub mod registry;
mod rootfs;
mod staging;
mod store;
mod unpack;

#[cfg(test)]
mod tests;

pub use config::{DEFAULT_PATH_ENV, ImageConfig};
pub use error::ImageError;
pub use record::{ImageRecord, InUse, RemoveReport};
pub use store::ImageStore;
