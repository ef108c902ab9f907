//! One-layer images made from a root file system: a directory (walked without following
//! symbolic links, device nodes kept) or a tar / tar.gz of one.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{major, minor};
use tar::{EntryType, Header, HeaderMode};
use tracing::debug;

use super::config::{ImageConfig, ParsedConfig, new_config_json};
use super::error::ImageError;
use super::fsutil::open_nofollow;
use super::import::pending;
use super::layer::{Decoder, LayerInput, open_detect, stage_layer};
use super::oci::new_manifest_json;
use super::record::ImageRecord;
use super::reference::Reference;
use super::staging::Staging;
use super::store::ImageStore;

/// The one xattr recorded from a directory, as Docker does: file capabilities.
const CAPABILITY_XATTR: &str = "security.capability";

impl ImageStore {
    /// Makes a one-layer image from a root file system directory, or a tar / tar.gz of one,
    /// and tags it `reference`. `config` supplies Entrypoint, Cmd, Env and the rest; an Env
    /// without `PATH=` gets the standard `PATH` first.
    pub fn import_rootfs(
        &self,
        src: &Path,
        reference: &str,
        config: ImageConfig,
    ) -> Result<ImageRecord, ImageError> {
        let tag = Reference::parse(reference)?;
        let meta = fs::metadata(src).map_err(|e| ImageError::io("open", src, e))?;
        let lock = self.lock()?;
        let mut staging = Staging::create(&self.tmp_dir())?;

        let tar_path = staging.scratch_path("rootfs");
        if meta.is_dir() {
            write_tree_tar(src, &tar_path)?;
        } else {
            decompress_to(src, &tar_path)?;
        }
        let (diff_id, _) = staging.ingest_blob(&tar_path, src, true, None, None)?;
        let blob_path = staging.blob_path(diff_id.hex());
        let layer = stage_layer(
            self,
            &mut staging,
            LayerInput {
                locate: &|| Ok(blob_path.clone()),
                label: src.to_owned(),
                owned: true,
                blob: Some(diff_id.clone()),
                size: None,
                diff_id: &diff_id,
            },
        )?;

        let config_bytes = new_config_json(&config, std::slice::from_ref(&diff_id));
        let parsed = ParsedConfig::parse(&config_bytes, src)?;
        let id = staging.add_blob_bytes(&config_bytes)?;
        let manifest_bytes = new_manifest_json(
            &id,
            config_bytes.len() as u64,
            &[(layer.blob.clone(), layer.blob_size, layer.media_type)],
        );
        let manifest = staging.add_blob_bytes(&manifest_bytes)?;
        let image = pending(id, manifest, &parsed, &[layer], vec![tag]);
        let mut records = self.commit(&lock, &staging, vec![image])?;
        records.pop().ok_or_else(|| ImageError::NotFound {
            reference: reference.to_owned(),
        })
    }
}

/// Copies a tar or tar.gz to `dst` uncompressed.
fn decompress_to(src: &Path, dst: &Path) -> Result<(), ImageError> {
    let (reader, compression) =
        open_detect(src, src, |compression| ImageError::UnsupportedCompression {
            path: src.to_owned(),
            layer: src.display().to_string(),
            compression,
        })?;
    let mut decoder = Decoder::new(reader, compression);
    let mut out = create(dst)?;
    copy_checked(&mut decoder, &mut out, src, dst)?;
    out.flush().map_err(|e| ImageError::io("write", dst, e))
}

fn create(path: &Path) -> Result<BufWriter<File>, ImageError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(BufWriter::new)
        .map_err(|e| ImageError::io("create", path, e))
}

/// io::copy, telling read errors (the input) from write errors (the output).
fn copy_checked(
    reader: &mut impl Read,
    writer: &mut impl Write,
    src: &Path,
    dst: &Path,
) -> Result<(), ImageError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ImageError::Read {
                    path: src.to_owned(),
                    source,
                });
            }
        };
        writer
            .write_all(&buf[..n])
            .map_err(|e| ImageError::io("write", dst, e))?;
    }
}

/// Writes the tree under `root` (not `root` itself) as an uncompressed tar at `dst`, in sorted
/// order, with hard links kept as links and symbolic links not followed.
fn write_tree_tar(root: &Path, dst: &Path) -> Result<(), ImageError> {
    let mut writer = TreeWriter {
        builder: tar::Builder::new(create(dst)?),
        root,
        links: HashMap::new(),
    };
    writer.walk(Path::new(""))?;
    let mut out = writer
        .builder
        .into_inner()
        .map_err(|e| ImageError::io("write", dst, e))?;
    out.flush().map_err(|e| ImageError::io("write", dst, e))
}

struct TreeWriter<'a, W: Write> {
    builder: tar::Builder<W>,
    root: &'a Path,
    /// (device, inode) of multiply-linked files already written -> their archive path.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TreeWriter<'_, W> {
    fn walk(&mut self, rel: &Path) -> Result<(), ImageError> {
        let dir = self.root.join(rel);
        let entries = fs::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))?;
        let mut names: Vec<OsString> = entries
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| ImageError::io("list", &dir, e))?;
        names.sort();
        for name in names {
            let child = rel.join(&name);
            self.append(&child)?;
        }
        Ok(())
    }

    fn append(&mut self, rel: &Path) -> Result<(), ImageError> {
        let path = self.root.join(rel);
        let err = |e| ImageError::io("archive", &path, e);
        let meta = fs::symlink_metadata(&path).map_err(err)?;
        let ft = meta.file_type();
        if ft.is_socket() {
            debug!(path = %path.display(), "skipping socket");
            return Ok(());
        }
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&meta, HeaderMode::Complete);
        header.set_mode(meta.mode() & 0o7777);

        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                return self
                    .builder
                    .append_link(&mut header, rel, first)
                    .map_err(err);
            }
            self.links.insert(key, rel.to_owned());
        }
        self.capability_xattr(&path, rel)?;

        if ft.is_dir() {
            self.builder
                .append_data(&mut header, rel, io::empty())
                .map_err(err)?;
            self.walk(rel)
        } else if ft.is_file() {
            let file = open_nofollow(&path).map_err(err)?;
            let reader = ExactReader {
                inner: file,
                remaining: meta.len(),
            };
            self.builder
                .append_data(&mut header, rel, reader)
                .map_err(err)
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(err)?;
            self.builder
                .append_link(&mut header, rel, target)
                .map_err(err)
        } else {
            if ft.is_char_device() || ft.is_block_device() {
                let rdev = meta.rdev();
                header
                    .set_device_major(major(rdev) as u32)
                    .and_then(|()| header.set_device_minor(minor(rdev) as u32))
                    .map_err(err)?;
            }
            self.builder
                .append_data(&mut header, rel, io::empty())
                .map_err(err)
        }
    }

    /// Emits a PAX header carrying `security.capability` when the file has one.
    fn capability_xattr(&mut self, path: &Path, rel: &Path) -> Result<(), ImageError> {
        let Ok(Some(value)) = xattr::get(path, CAPABILITY_XATTR) else {
            return Ok(());
        };
        let record = pax_record(&format!("SCHILY.xattr.{CAPABILITY_XATTR}"), &value);
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_mode(0o644);
        header.set_size(record.len() as u64);
        let name = format!(
            "PaxHeaders/{}",
            rel.file_name().unwrap_or_default().to_string_lossy()
        );
        let name: String = name.chars().take(90).collect();
        header
            .set_path(&name)
            .map_err(|e| ImageError::io("archive", path, e))?;
        header.set_cksum();
        self.builder
            .append(&header, &record[..])
            .map_err(|e| ImageError::io("archive", path, e))
    }
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Reads exactly `remaining` bytes, failing if the file shrank since it was measured (a short
/// entry would corrupt the tar).
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being archived",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("SCHILY.xattr.a", b"xy");
        let text = String::from_utf8(r.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
        // Crossing a digit boundary: body of 98 bytes needs a 3-digit length.
        let r = pax_record(&"k".repeat(94), b"");
        let text = String::from_utf8(r.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
    }

    #[test]
    fn exact_reader_fails_on_short_input() {
        let mut r = ExactReader {
            inner: &b"abc"[..],
            remaining: 5,
        };
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
