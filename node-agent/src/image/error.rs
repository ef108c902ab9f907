//! The image store's one error type.
//!
//! Every variant carries the thing that is wrong in a field: the file (for files inside an
//! imported archive, the archive path joined with the member path), the tar entry, the digest
//! expected and the one found, or the image reference.

use std::io;
use std::path::PathBuf;

/// An error from the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file-system operation on the store or on an input failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create directory", "rename", ...).
        op: &'static str,
        /// The file the operation was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Reading an archive or a layer stream failed: a truncated tar, a bad tar header, a gzip
    /// stream with a bad CRC or cut short.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The archive or layer being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// One entry of a layer or archive could not be extracted.
    #[error("{}: entry {entry:?}: {source}", path.display())]
    Entry {
        /// The archive or layer the entry belongs to.
        path: PathBuf,
        /// The entry's name as written in the tar.
        entry: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An entry would write outside the extraction directory or through a symbolic link.
    #[error("{}: refusing unsafe entry {entry:?}: {reason}", path.display())]
    UnsafeEntry {
        /// The archive or layer the entry belongs to.
        path: PathBuf,
        /// The entry's name as written in the tar.
        entry: String,
        /// Why it is refused.
        reason: String,
    },

    /// An entry has a tar type the store cannot extract.
    #[error("{}: entry {entry:?} has unsupported tar entry type {kind}", path.display())]
    UnsupportedEntry {
        /// The archive or layer the entry belongs to.
        path: PathBuf,
        /// The entry's name as written in the tar.
        entry: String,
        /// The tar type flag, as a character.
        kind: String,
    },

    /// A blob's content does not hash to the digest it was announced with.
    #[error("{}: {what} digest mismatch: expected {expected}, got {actual}", path.display())]
    DigestMismatch {
        /// The file whose content was hashed.
        path: PathBuf,
        /// Which digest: "blob", "config", "uncompressed layer (diff_id)".
        what: &'static str,
        /// The digest announced by the manifest, config or file name.
        expected: String,
        /// The digest of the content actually read.
        actual: String,
    },

    /// A blob's size differs from its descriptor's size.
    #[error("{}: size mismatch: descriptor {digest} says {expected} bytes, file has {actual}", path.display())]
    SizeMismatch {
        /// The blob file.
        path: PathBuf,
        /// The descriptor's digest.
        digest: String,
        /// Size in the descriptor.
        expected: u64,
        /// Size of the file.
        actual: u64,
    },

    /// A layer is compressed with something other than gzip.
    #[error(
        "{}: layer {layer} is {compression}-compressed; only gzip and uncompressed tar layers are supported",
        path.display()
    )]
    UnsupportedCompression {
        /// The layer blob.
        path: PathBuf,
        /// The layer's digest (blob digest, or diff_id when the blob digest is unknown).
        layer: String,
        /// "zstd", "bzip2", "xz".
        compression: &'static str,
    },

    /// A manifest or index names a media type the store does not handle.
    #[error("{}: {what} {digest} has unsupported media type {media_type:?}", path.display())]
    UnsupportedMediaType {
        /// The manifest or index that holds the descriptor.
        path: PathBuf,
        /// "layer", "config", "manifest".
        what: &'static str,
        /// The descriptor's digest.
        digest: String,
        /// The media type found.
        media_type: String,
    },

    /// A JSON document (manifest, index, config, record) does not parse.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file holding the document.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// An archive or layout is structurally wrong: a file it names is missing, layer counts
    /// disagree, no image for this platform, and so on.
    #[error("{}: {reason}", path.display())]
    InvalidArchive {
        /// The archive, or the file inside it that is wrong.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A digest string is malformed or uses an unsupported algorithm.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The digest as written.
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An image reference (`name[:tag]`) is malformed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as written.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No image matches the reference.
    #[error("no such image: {reference}")]
    NotFound {
        /// The reference as written.
        reference: String,
    },

    /// A short image id matches more than one image.
    #[error("image id prefix {prefix:?} is ambiguous: it matches {}", matches.join(", "))]
    AmbiguousId {
        /// The prefix as written.
        prefix: String,
        /// The ids it matches.
        matches: Vec<String>,
    },

    /// The image is used by a container and removal was not forced.
    #[error(
        "image {reference} ({id}) is used by a container: remove the container first, or force the removal"
    )]
    InUse {
        /// The reference as written.
        reference: String,
        /// The image id.
        id: String,
    },

    /// Pulling from or pushing to a registry failed.
    #[error(transparent)]
    Registry(Box<super::registry::RegistryError>),
}

impl From<super::registry::RegistryError> for ImageError {
    fn from(e: super::registry::RegistryError) -> Self {
        ImageError::Registry(Box::new(e))
    }
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ImageError::InvalidArchive {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<crate::durable::FsError> for ImageError {
    fn from(e: crate::durable::FsError) -> Self {
        ImageError::io(e.op, e.path, e.source)
    }
}
