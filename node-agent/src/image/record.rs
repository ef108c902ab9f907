//! The types the store hands out: image records, what is in use, what a removal did.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::config::ImageConfig;

/// One image in the store, as saved in `<root>/images/<hex>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    /// Tags in Docker's short form (`busybox:latest`), sorted. `repositories.json` is the
    /// source of truth: this is filled from it whenever a record is read.
    pub repo_tags: Vec<String>,
    /// Uncompressed layer digests, bottom layer first.
    pub diff_ids: Vec<String>,
    /// What a container of this image runs by default.
    pub config: ImageConfig,
    /// `created` from the image config (RFC 3339).
    pub created: Option<String>,
    /// `architecture` from the image config.
    pub architecture: Option<String>,
    /// `os` from the image config.
    pub os: Option<String>,
    /// Bytes of regular-file content in the unpacked layers.
    pub size: u64,
    /// `sha256:<hex>` of the OCI manifest blob kept in the store (config + layer blobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// What running or created containers use; [`super::ImageStore::remove`] never deletes these.
#[derive(Debug, Default, Clone)]
pub struct InUse {
    /// Image ids, `sha256:<hex>`.
    pub images: HashSet<String>,
    /// Layer diff_ids, `sha256:<hex>`.
    pub layers: HashSet<String>,
}

/// What [`super::ImageStore::remove`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RemoveReport {
    /// Tags removed, short form.
    pub untagged: Vec<String>,
    /// The image id, then the diff_ids of the unpacked layers deleted.
    pub deleted: Vec<String>,
}
