//! The staging directory of one import, `<root>/tmp/<unique>/`, on the store's file system so
//! that committing is a rename. Dropping a [`Staging`] removes the directory, so an import that
//! fails anywhere leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::fsutil::{open_nofollow, remove_tree, unique_name};

/// A layer ready to commit, or found already in the store.
#[derive(Clone, Debug)]
pub(crate) struct StagedLayer {
    /// Digest of the layer blob as stored (compressed or not).
    pub blob: Digest,
    pub blob_size: u64,
    /// The layer media type matching the blob's real compression.
    pub media_type: &'static str,
    /// Bytes of regular-file content once unpacked.
    pub unpacked: u64,
    /// True when unpacked into the staging directory (to be renamed into the store).
    pub extracted: bool,
}

pub(crate) struct Staging {
    dir: PathBuf,
    /// Hex digests of blobs in `<dir>/blobs/`.
    blobs: BTreeSet<String>,
    /// Layers of this import by diff_id hex.
    layers: BTreeMap<String, StagedLayer>,
}

impl Staging {
    /// Creates a fresh staging directory under `tmp_root`.
    pub(crate) fn create(tmp_root: &Path) -> Result<Self, ImageError> {
        let dir = tmp_root.join(unique_name());
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ImageError::io("create staging directory", &dir, e))?;
        let staging = Staging {
            dir,
            blobs: BTreeSet::new(),
            layers: BTreeMap::new(),
        };
        for sub in ["blobs", "layers", "scratch"] {
            let path = staging.dir.join(sub);
            fs::create_dir(&path).map_err(|e| ImageError::io("create directory", &path, e))?;
        }
        Ok(staging)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs").join(hex)
    }

    pub(crate) fn layer_path(&self, hex: &str) -> PathBuf {
        self.dir.join("layers").join(hex)
    }

    /// A fresh path for a temporary file in the staging directory.
    pub(crate) fn scratch_path(&self, what: &str) -> PathBuf {
        self.dir
            .join("scratch")
            .join(format!("{what}-{}", unique_name()))
    }

    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.contains(digest.hex())
    }

    pub(crate) fn blobs(&self) -> impl Iterator<Item = &str> {
        self.blobs.iter().map(String::as_str)
    }

    pub(crate) fn layer(&self, diff_id: &Digest) -> Option<&StagedLayer> {
        self.layers.get(diff_id.hex())
    }

    pub(crate) fn add_layer(&mut self, diff_id: &Digest, layer: StagedLayer) {
        self.layers.insert(diff_id.hex().to_owned(), layer);
    }

    /// Layers unpacked in this staging directory, by diff_id hex.
    pub(crate) fn extracted_layers(&self) -> impl Iterator<Item = &str> {
        self.layers
            .iter()
            .filter(|(_, l)| l.extracted)
            .map(|(hex, _)| hex.as_str())
    }

    /// Stages a small blob held in memory; returns its digest.
    pub(crate) fn add_blob_bytes(&mut self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            let path = self.blob_path(digest.hex());
            fs::write(&path, bytes).map_err(|e| ImageError::io("write", &path, e))?;
            self.blobs.insert(digest.hex().to_owned());
        }
        Ok(digest)
    }

    /// Brings the blob at `src` into staging, checking it against `expected` (digest) and
    /// `expected_size` when given; returns its digest and size. When `owned` (the file lives in
    /// this staging directory, extracted from an archive) it is moved, otherwise copied. Errors
    /// name `label`.
    pub(crate) fn ingest_blob(
        &mut self,
        src: &Path,
        label: &Path,
        owned: bool,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), ImageError> {
        let file = open_nofollow(src).map_err(|e| ImageError::io("open", label, e))?;
        let len = file
            .metadata()
            .map_err(|e| ImageError::io("inspect", label, e))?
            .len();
        check_size(label, expected, expected_size, len)?;

        let scratch = self.scratch_path("blob");
        let (digest, size) = if owned {
            fs::rename(src, &scratch).map_err(|e| ImageError::io("move", label, e))?;
            let reader = HashingReader::new(BufReader::new(file));
            let (digest, size, _) = reader
                .drain()
                .map_err(|e| ImageError::io("read", label, e))?;
            (digest, size)
        } else {
            copy_hashing(file, &scratch, label)?
        };
        check_size(label, expected, expected_size, size)?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(ImageError::DigestMismatch {
                path: label.to_owned(),
                what: "blob",
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
        if self.has_blob(&digest) {
            let _ = fs::remove_file(&scratch);
        } else {
            let dst = self.blob_path(digest.hex());
            fs::rename(&scratch, &dst).map_err(|e| ImageError::io("rename", &dst, e))?;
            self.blobs.insert(digest.hex().to_owned());
        }
        Ok((digest, size))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.dir) {
            warn!(path = %self.dir.display(), error = %e, "cannot remove staging directory; it is removed when the store is next opened");
        }
    }
}

fn check_size(
    label: &Path,
    expected: Option<&Digest>,
    expected_size: Option<u64>,
    actual: u64,
) -> Result<(), ImageError> {
    match expected_size {
        Some(size) if size != actual => Err(ImageError::SizeMismatch {
            path: label.to_owned(),
            digest: expected.map(ToString::to_string).unwrap_or_default(),
            expected: size,
            actual,
        }),
        _ => Ok(()),
    }
}

fn copy_hashing(src: File, dst: &Path, label: &Path) -> Result<(Digest, u64), ImageError> {
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(|e| ImageError::io("create", dst, e))?;
    let mut out = BufWriter::new(out);
    let mut reader = HashingReader::new(BufReader::new(src));
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::io("read", label, e)),
        };
        out.write_all(&buf[..n])
            .map_err(|e| ImageError::io("write", dst, e))?;
    }
    out.flush().map_err(|e| ImageError::io("write", dst, e))?;
    let (digest, size, _) = reader.finish();
    Ok((digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_and_drop_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("blob");
        fs::write(&src, b"content").unwrap();
        let good = Digest::of(b"content");
        let dir;
        {
            let mut staging = Staging::create(tmp.path()).unwrap();
            dir = staging.dir().to_owned();
            let (d, n) = staging
                .ingest_blob(&src, Path::new("/in/blob"), false, Some(&good), Some(7))
                .unwrap();
            assert_eq!((d, n), (good.clone(), 7));
            assert!(staging.blob_path(good.hex()).is_file());
            assert!(src.is_file(), "a copied source stays in place");

            let bad = Digest::of(b"other");
            let err = staging
                .ingest_blob(&src, Path::new("/in/blob"), false, Some(&bad), None)
                .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("/in/blob")
                    && msg.contains(&bad.to_string())
                    && msg.contains(&good.to_string()),
                "{msg}"
            );

            let err = staging
                .ingest_blob(&src, Path::new("/in/blob"), false, Some(&good), Some(8))
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    ImageError::SizeMismatch {
                        expected: 8,
                        actual: 7,
                        ..
                    }
                ),
                "{err}"
            );
        }
        assert!(!dir.exists(), "staging directory removed on drop");
    }
}
