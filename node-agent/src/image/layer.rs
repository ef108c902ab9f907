//! One layer of an import: bring its blob into staging (verified), detect its compression by
//! magic bytes, unpack it into `<staging>/layers/<diff_id hex>/` unless the store already has
//! it, and check the uncompressed stream against the config's diff_id.

use std::fs::{self, DirBuilder, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use tracing::debug;

use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::fsutil::{open_nofollow, tree_size};
use super::oci::{OCI_LAYER_GZIP, OCI_LAYER_TAR};
use super::staging::{StagedLayer, Staging};
use super::store::ImageStore;
use super::unpack::{Mode, unpack};

/// What the importer knows about a layer.
pub(crate) struct LayerInput<'a> {
    /// Finds the blob file to read (only called when the blob is needed).
    pub locate: &'a dyn Fn() -> Result<PathBuf, ImageError>,
    /// Its name in errors (archive path joined with the member path).
    pub label: PathBuf,
    /// The file lives in the staging directory and may be moved rather than copied.
    pub owned: bool,
    /// Blob digest announced by a descriptor or the file name.
    pub blob: Option<Digest>,
    /// Blob size announced by a descriptor.
    pub size: Option<u64>,
    /// The uncompressed digest from the image config.
    pub diff_id: &'a Digest,
}

/// Compression of a stream, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
}

impl Compression {
    /// Recognises gzip; names zstd, bzip2 and xz as unsupported; anything else is taken as an
    /// uncompressed tar (the tar reader refuses it if it is not one).
    pub(crate) fn detect(head: &[u8]) -> Result<Self, &'static str> {
        match head {
            [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Err("zstd"),
            [b'B', b'Z', b'h', ..] => Err("bzip2"),
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Err("xz"),
            _ => Ok(Compression::None),
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
        }
    }
}

/// A decompressing reader over a buffered file.
pub(crate) enum Decoder<R: BufRead> {
    Plain(R),
    Gzip(MultiGzDecoder<R>),
}

impl<R: BufRead> Decoder<R> {
    pub(crate) fn new(reader: R, compression: Compression) -> Self {
        match compression {
            Compression::None => Decoder::Plain(reader),
            Compression::Gzip => Decoder::Gzip(MultiGzDecoder::new(reader)),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
        }
    }
}

/// Opens `path` buffered and detects its compression. `unsupported` builds the error for a
/// compression the store cannot read.
pub(crate) fn open_detect(
    path: &Path,
    label: &Path,
    unsupported: impl FnOnce(&'static str) -> ImageError,
) -> Result<(BufReader<File>, Compression), ImageError> {
    let file = open_nofollow(path).map_err(|e| ImageError::io("open", label, e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().map_err(|e| ImageError::Read {
        path: label.to_owned(),
        source: e,
    })?;
    let compression = Compression::detect(head).map_err(unsupported)?;
    Ok((reader, compression))
}

/// Stages one layer; see the module docs.
pub(crate) fn stage_layer(
    store: &ImageStore,
    staging: &mut Staging,
    input: LayerInput<'_>,
) -> Result<StagedLayer, ImageError> {
    let diff_id = input.diff_id;
    if let Some(done) = staging.layer(diff_id)
        && input.blob.as_ref().is_none_or(|b| *b == done.blob)
    {
        return Ok(done.clone());
    }

    let layer_in_store = store.layer_dir(diff_id).is_dir();
    if let Some(blob) = &input.blob {
        let blob_in_store = store.blob_path(blob);
        if layer_in_store && blob_in_store.is_file() {
            debug!(layer = %diff_id, "layer already in the store");
            let staged = existing_layer(store, diff_id, blob, &blob_in_store)?;
            staging.add_layer(diff_id, staged.clone());
            return Ok(staged);
        }
    }

    let blob_path = match &input.blob {
        Some(blob) if store.blob_path(blob).is_file() => store.blob_path(blob),
        Some(blob) if staging.has_blob(blob) => staging.blob_path(blob.hex()),
        _ => {
            let path = (input.locate)()?;
            let (digest, _) = staging.ingest_blob(
                &path,
                &input.label,
                input.owned,
                input.blob.as_ref(),
                input.size,
            )?;
            staging.blob_path(digest.hex())
        }
    };
    let blob = input
        .blob
        .clone()
        .map_or_else(|| Digest::from_hex(&file_name(&blob_path)), Ok)?;
    let blob_size = fs::metadata(&blob_path)
        .map_err(|e| ImageError::io("inspect", &input.label, e))?
        .len();

    let layer_name = blob.to_string();
    let (reader, compression) = open_detect(&blob_path, &input.label, |compression| {
        ImageError::UnsupportedCompression {
            path: input.label.clone(),
            layer: layer_name,
            compression,
        }
    })?;
    let read_err = |source| ImageError::Read {
        path: input.label.clone(),
        source,
    };
    let diff_reader = HashingReader::new(Decoder::new(reader, compression));
    let (actual, unpacked, extracted) = if layer_in_store || staging.layer(diff_id).is_some() {
        let (actual, _, _) = diff_reader.drain().map_err(read_err)?;
        let unpacked = match staging.layer(diff_id) {
            Some(l) => l.unpacked,
            None => tree_size(&store.layer_dir(diff_id)),
        };
        (actual, unpacked, false)
    } else {
        let dest = staging.layer_path(diff_id.hex());
        DirBuilder::new()
            .mode(0o755)
            .create(&dest)
            .and_then(|()| fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)))
            .map_err(|e| ImageError::io("create directory", &dest, e))?;
        let (unpacked, diff_reader) = unpack(diff_reader, &dest, Mode::Layer, &input.label)?;
        let (actual, _, _) = diff_reader.drain().map_err(read_err)?;
        (actual, unpacked, true)
    };
    if actual != *diff_id {
        return Err(ImageError::DigestMismatch {
            path: input.label,
            what: "uncompressed layer (diff_id)",
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    let staged = StagedLayer {
        blob,
        blob_size,
        media_type: compression.media_type(),
        unpacked,
        extracted: extracted || staging.layer(diff_id).is_some_and(|l| l.extracted),
    };
    staging.add_layer(diff_id, staged.clone());
    Ok(staged)
}

/// A layer whose blob and unpacked directory are both in the store already.
fn existing_layer(
    store: &ImageStore,
    diff_id: &Digest,
    blob: &Digest,
    blob_path: &Path,
) -> Result<StagedLayer, ImageError> {
    let (_, compression) = open_detect(blob_path, blob_path, |compression| {
        ImageError::UnsupportedCompression {
            path: blob_path.to_owned(),
            layer: blob.to_string(),
            compression,
        }
    })?;
    let blob_size = fs::metadata(blob_path)
        .map_err(|e| ImageError::io("inspect", blob_path, e))?
        .len();
    Ok(StagedLayer {
        blob: blob.clone(),
        blob_size,
        media_type: compression.media_type(),
        unpacked: tree_size(&store.layer_dir(diff_id)),
        extracted: false,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_compression_by_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Ok(Compression::Gzip));
        assert_eq!(Compression::detect(b"usr/\0\0\0"), Ok(Compression::None));
        assert_eq!(Compression::detect(&[]), Ok(Compression::None));
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Err("zstd")
        );
        assert_eq!(Compression::detect(b"BZh91AY"), Err("bzip2"));
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Err("xz")
        );
    }
}
